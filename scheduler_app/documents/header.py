"""Rules shared by the JSON documents the app reads (jobs files, backups)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.utils.translation import gettext as _


def check_header(
    doc: Mapping[str, Any],
    *,
    error: type[Exception],
    supported: int,
    allowed: Iterable[str],
    kind: str,
    verb: str,
) -> None:
    """A ``version`` this release can read, and no unknown top-level field."""
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise error(
            "version: " + _("required, a whole number (this release writes %(n)s)") % {"n": supported}
        )
    if version > supported:
        raise error(
            "version: "
            + _(
                "the file is %(kind)s version %(version)s, newer than this release understands "
                "(%(supported)s); upgrade scheduler_app to %(verb)s it"
            )
            % {"kind": kind, "version": version, "supported": supported, "verb": verb}
        )
    if version < 1:
        raise error(
            "version: "
            + _("%(version)s is not a valid %(kind)s version") % {"version": version, "kind": kind}
        )
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise error(f"{unknown[0]}: " + _("unknown top-level field"))
