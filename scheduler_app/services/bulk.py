"""What a service acting on many objects returns.

A refusal carries its reason (translated, for people) and its **kind** (a stable code,
for programs): a face chooses what to answer from the kind, never from the reason's
words, so the answer does not depend on the language the reason was written in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The actor may not do this to this object (the API answers 403).
FORBIDDEN = "forbidden"
#: The input is wrong (the API answers 400, naming ``Refusal.field``).
INVALID = "invalid"
#: The object's state does not allow it now (the API answers 409).
CONFLICT = "conflict"
#: The object is gone (the API answers 404).
NOT_FOUND = "not_found"

KINDS = (FORBIDDEN, INVALID, CONFLICT, NOT_FOUND)


class Refusal(tuple):
    """``(obj, reason)`` (so ``for obj, reason in result.refused`` keeps working) plus
    ``kind`` (one of :data:`KINDS`), and for an ``invalid`` refusal the ``field`` it is
    about and the ``message`` without the field's name."""

    kind: str
    field: str | None
    message: str

    def __new__(
        cls, obj: Any, reason: Any, kind: str = CONFLICT, *, field: str | None = None, message: Any = None
    ) -> Refusal:
        if kind not in KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        self = super().__new__(cls, (obj, reason))
        self.kind = kind
        self.field = field
        self.message = reason if message is None else message
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild a tuple subclass through __new__ with the tuple alone.
        return (Refusal, (self[0], self[1], self.kind), {"field": self.field, "message": self.message})

    @property
    def obj(self) -> Any:
        return self[0]

    @property
    def reason(self) -> Any:
        return self[1]

    def about(self, obj: Any) -> Refusal:
        """The same refusal about another object (a rerun's run instead of its job)."""
        return Refusal(obj, self.reason, self.kind, field=self.field, message=self.message)


def refusal(item: tuple[Any, Any]) -> Refusal:
    """``item`` as a :class:`Refusal` (a bare ``(obj, reason)`` pair is a conflict)."""
    return item if isinstance(item, Refusal) else Refusal(item[0], item[1])


@dataclass
class BulkResult:
    done: list[Any] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    #: :func:`~scheduler_app.services.runs.run_jobs_now` with an idempotency key: the run
    #: in ``done`` is the one an earlier call with that key queued (nothing new queued).
    replayed: bool = False

    def __bool__(self) -> bool:
        return bool(self.done)

    def refuse(
        self, obj: Any, reason: Any, kind: str = CONFLICT, *, field: str | None = None, message: Any = None
    ) -> None:
        self.refused.append(Refusal(obj, reason, kind, field=field, message=message))
