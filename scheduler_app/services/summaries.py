"""Stored change summaries (job versions) and pause reasons: written in English, one
text for the database, the audit trail and every reader; shown in the viewer's language.

Each form below is both the English text a writer stores (:func:`english`) and the
message id it is shown through (:func:`translate`): a stored text is matched against the
forms, its parameters taken out and put into the translated form. A text that matches no
form (written by an older release, or by hand) is shown as stored.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from django.utils.translation import gettext, gettext_noop

CREATED = gettext_noop("created")
ENABLED = gettext_noop("enabled")
DISABLED = gettext_noop("disabled")
PAUSED = gettext_noop("paused")
RESUMED = gettext_noop("resumed")
MOVED_TO_NO_GROUP = gettext_noop("moved to no group")
MOVED_TO = gettext_noop("moved to %(group)s")
DEPENDS_ON = gettext_noop("depends on %(job)s")
NO_LONGER_DEPENDS_ON = gettext_noop("no longer depends on %(job)s")
UPSTREAM_EDGES_CHANGED = gettext_noop("upstream edges changed on %(job)s")
ROLLBACK = gettext_noop("rollback to version %(number)s")
GROUP_RENAMED = gettext_noop("group renamed to %(group)s")
GROUP_DELETED = gettext_noop("group deleted")
TENANT_RENAMED = gettext_noop("tenant renamed to %(tenant)s")
CALENDAR_CHANGED = gettext_noop("calendar %(calendar)s changed")
CALENDAR_DELETED = gettext_noop("calendar %(calendar)s deleted")
DEPLOY_CREATED = gettext_noop("deploy: created from %(module)s")
DEPLOY_UPDATED = gettext_noop("deploy: updated from %(module)s")
CHANGED = gettext_noop("changed %(fields)s")
PAUSED_AFTER = gettext_noop("paused after %(n)s consecutive failures")
PAUSE_REASON = gettext_noop("paused after %(n)s consecutive failures; last: run %(run)s %(state)s")
PAUSE_REASON_DETAIL = gettext_noop(
    "paused after %(n)s consecutive failures; last: run %(run)s %(state)s: %(detail)s"
)

#: Tried in this order (a text without parameters before one that could also match it).
FORMS = (
    CREATED,
    ENABLED,
    DISABLED,
    PAUSED,
    RESUMED,
    MOVED_TO_NO_GROUP,
    GROUP_DELETED,
    MOVED_TO,
    DEPENDS_ON,
    NO_LONGER_DEPENDS_ON,
    UPSTREAM_EDGES_CHANGED,
    ROLLBACK,
    GROUP_RENAMED,
    TENANT_RENAMED,
    CALENDAR_CHANGED,
    CALENDAR_DELETED,
    DEPLOY_CREATED,
    DEPLOY_UPDATED,
    CHANGED,
    PAUSED_AFTER,
    PAUSE_REASON_DETAIL,
    PAUSE_REASON,
)

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def english(form: str, **params: Any) -> str:
    """The text to store: ``form`` (one of :data:`FORMS`) in English."""
    assert form in FORMS, form
    return form % params if params else form


@cache
def _pattern(form: str) -> re.Pattern[str]:
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(form):
        parts.append(re.escape(form[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>.+?)")
        last = match.end()
    parts.append(re.escape(form[last:]))
    return re.compile("".join(parts), re.DOTALL)


def translate(text: str) -> str:
    """A stored summary or pause reason in the active language (as stored if it is
    none of the known forms)."""
    if not text:
        return text
    for form in FORMS:
        match = _pattern(form).fullmatch(text)
        if match is not None:
            return gettext(form) % match.groupdict() if match.groupdict() else gettext(form)
    return text
