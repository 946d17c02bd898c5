"""Deprecated: moved to :mod:`scheduler_app.admin.errorpages` (the admin's 400 page).

``handler400 = "scheduler_app.errorpages.bad_request"`` keeps working (with a
``DeprecationWarning`` when Django looks the handler up); change it to
``handler400 = "scheduler_app.admin.errorpages.bad_request"``. This module will be
removed in a later release.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = {"bad_request", "refusal", "wants_json", "is_api_request"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"scheduler_app.errorpages.{name} moved to scheduler_app.admin.errorpages.{name}; "
        "change your handler400 setting (the old path will be removed)",
        DeprecationWarning,
        stacklevel=2,
    )
    from scheduler_app.admin import errorpages

    return getattr(errorpages, name)
