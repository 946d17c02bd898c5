"""What a service acting on many objects returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BulkResult:
    done: list[Any] = field(default_factory=list)
    refused: list[tuple[Any, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.done)
