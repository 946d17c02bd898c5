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

from django.utils import translation
from django.utils.translation import pgettext_lazy

from scheduler_app.models import RunState

# The forms have the catalog context "job change" ("created" is also a column's name).

CREATED = pgettext_lazy("job change", "created")
ENABLED = pgettext_lazy("job change", "enabled")
DISABLED = pgettext_lazy("job change", "disabled")
PAUSED = pgettext_lazy("job change", "paused")
RESUMED = pgettext_lazy("job change", "resumed")
# No form's text is another form's with some name put in (a group may be called "no
# group"): the group forms differ before the name.
REMOVED_FROM_GROUP = pgettext_lazy("job change", "removed from its group")
MOVED_TO = pgettext_lazy("job change", "moved to group %(group)s")
DEPENDS_ON = pgettext_lazy("job change", "depends on %(job)s")
NO_LONGER_DEPENDS_ON = pgettext_lazy("job change", "no longer depends on %(job)s")
UPSTREAM_EDGES_CHANGED = pgettext_lazy("job change", "upstream edges changed on %(job)s")
ROLLBACK = pgettext_lazy("job change", "rollback to version %(number)s")
GROUP_RENAMED = pgettext_lazy("job change", "group renamed to %(group)s")
GROUP_DELETED = pgettext_lazy("job change", "group deleted")
TENANT_RENAMED = pgettext_lazy("job change", "tenant renamed to %(tenant)s")
CALENDAR_CHANGED = pgettext_lazy("job change", "calendar %(calendar)s changed")
CALENDAR_DELETED = pgettext_lazy("job change", "calendar %(calendar)s deleted")
DEPLOY_CREATED = pgettext_lazy("job change", "deploy: created from %(module)s")
DEPLOY_UPDATED = pgettext_lazy("job change", "deploy: updated from %(module)s")
IMPORTED = pgettext_lazy("job change", "imported from a jobs file")
IMPORTED_FROM_PEER = pgettext_lazy("job change", "imported from the schedules of %(source)s")
CHANGED = pgettext_lazy("job change", "changed %(fields)s")
PAUSED_AFTER = pgettext_lazy("job change", "paused after %(n)s consecutive failures")
PAUSE_REASON = pgettext_lazy(
    "job change", "paused after %(n)s consecutive failures; last: run %(run)s %(state)s"
)
PAUSE_REASON_DETAIL = pgettext_lazy(
    "job change", "paused after %(n)s consecutive failures; last: run %(run)s %(state)s: %(detail)s"
)

#: Tried in this order (a text without parameters before one that could also match it).
FORMS = (
    CREATED,
    ENABLED,
    DISABLED,
    PAUSED,
    RESUMED,
    REMOVED_FROM_GROUP,
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
    IMPORTED,
    IMPORTED_FROM_PEER,
    CHANGED,
    PAUSED_AFTER,
    PAUSE_REASON_DETAIL,
    PAUSE_REASON,
)

#: Texts older releases stored, read as the form that replaced them ("moved to no group"
#: is read as the move out of a group, as it was written for every such move).
LEGACY = (
    ("moved to no group", REMOVED_FROM_GROUP),
    ("moved to %(group)s", MOVED_TO),
    ("imported from %(source)s", IMPORTED_FROM_PEER),
)

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _english(form: Any) -> str:
    with translation.override(None):
        return str(form)


def english(form: Any, **params: Any) -> str:
    """The text to store: ``form`` (one of :data:`FORMS`) in English."""
    text = _english(form)
    return text % params if params else text


#: What a number or a state parameter can be (a free text, a job's error in a pause
#: reason, may hold another form's words).
_VALUES = {
    "n": r"\d+",
    "run": r"\d+",
    "number": r"\d+",
    "state": "|".join(re.escape(v) for v in RunState.values),
}


@cache
def _pattern(form: str) -> re.Pattern[str]:
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(form):
        parts.append(re.escape(form[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>{_VALUES.get(match.group(1), '.+?')})")
        last = match.end()
    parts.append(re.escape(form[last:]))
    return re.compile("".join(parts), re.DOTALL)


def translate(text: str) -> str:
    """A stored summary or pause reason in the active language (as stored if it is
    none of the known forms)."""
    if not text:
        return text
    candidates = [(_english(form), form) for form in FORMS] + list(LEGACY)
    for english_text, form in candidates:
        match = _pattern(english_text).fullmatch(text)
        if match is not None:
            params = match.groupdict()
            if params.get("state") in RunState.values:
                params["state"] = RunState(params["state"]).label
            return str(form) % params if params else str(form)
    return text
