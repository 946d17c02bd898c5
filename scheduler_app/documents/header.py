"""Rules shared by the JSON documents the app reads (jobs files, backups)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


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
        raise error(f"version: required, a whole number (this release writes {supported})")
    if version > supported:
        raise error(
            f"version: the file is {kind} version {version}, newer than this release "
            f"understands ({supported}); upgrade scheduler_app to {verb} it"
        )
    if version < 1:
        raise error(f"version: {version} is not a valid {kind} version")
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise error(f"{unknown[0]}: unknown top-level field")
