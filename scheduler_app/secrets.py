"""Secret kwargs. Kept apart from kwargs and revealed only in the worker, at run time."""

from __future__ import annotations

from typing import Any


def reveal(job: Any) -> dict[str, Any]:
    """The job's secret kwargs in clear, for the run about to start."""
    value = job.secret_kwargs or {}
    if not isinstance(value, dict):
        raise ValueError("secret kwargs are not an object")
    return dict(value)
