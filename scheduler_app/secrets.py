"""Secret kwargs. Kept apart from kwargs, stored encrypted, and revealed only in the
worker, at run time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scheduler_app.crypto import MASK, SecretsError

__all__ = ["MASK", "SecretsError", "redact", "reveal"]


def reveal(job: Any) -> dict[str, Any]:
    """The job's secret kwargs in clear, for the run about to start."""
    return job.reveal_secret_kwargs()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by the mask."""
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
