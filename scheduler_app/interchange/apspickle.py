"""Reading django-apscheduler's pickled job state without trusting it.

``DjangoJob.job_state`` is ``pickle.dumps(job.__getstate__())``: a dict of plain values
with APScheduler trigger objects inside. A free ``pickle.loads`` of database content
would run whatever callable the bytes name, so :func:`load_job_state` uses an
unpickler whose ``find_class`` admits only APScheduler's own trigger classes (and
their cron fields and expressions), ``datetime``'s value types and ``ZoneInfo``.
Any other global, including ``builtins.getattr`` except for the one use the standard
library makes of it (``ZoneInfo._unpickle``), is refused before anything is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

ALLOWED: dict[str, frozenset[str]] = {
    "apscheduler.triggers.cron": frozenset({"CronTrigger"}),
    "apscheduler.triggers.cron.fields": frozenset(
        {
            "BaseField",
            "WeekField",
            "DayOfMonthField",
            "DayOfWeekField",
            "MonthField",
        }
    ),
    "apscheduler.triggers.cron.expressions": frozenset(
        {
            "AllExpression",
            "RangeExpression",
            "MonthRangeExpression",
            "WeekdayRangeExpression",
            "WeekdayPositionExpression",
            "LastDayOfMonthExpression",
        }
    ),
    "apscheduler.triggers.interval": frozenset({"IntervalTrigger"}),
    "apscheduler.triggers.date": frozenset({"DateTrigger"}),
    "apscheduler.triggers.combining": frozenset({"AndTrigger", "OrTrigger"}),
    "datetime": frozenset({"datetime", "date", "time", "timedelta", "timezone"}),
    "zoneinfo": frozenset({"ZoneInfo"}),
    "zoneinfo._zoneinfo": frozenset({"ZoneInfo"}),
}


class UnsafePickleError(ValueError):
    """The pickle names something outside the allowed classes; nothing was executed."""


def _zoneinfo_getattr(obj: Any, name: str) -> Any:
    # ZoneInfo pickles as getattr(ZoneInfo, "_unpickle")(key, from_cache).
    from zoneinfo import ZoneInfo

    if obj is ZoneInfo and name == "_unpickle":
        return ZoneInfo._unpickle  # type: ignore[attr-defined]
    raise UnsafePickleError(f"the pickle asks for attribute {name!r} of {obj!r}; refused")


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name == "getattr":
            return _zoneinfo_getattr
        if name in ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"the pickle names {module}.{name}, which is not an APScheduler trigger, "
            "date/time or time zone class; refused, nothing was executed"
        )


def load_job_state(data: bytes | memoryview) -> dict[str, Any]:
    """The job-state dict of one ``DjangoJob`` row, or :class:`UnsafePickleError`."""
    try:
        state = RestrictedUnpickler(io.BytesIO(bytes(data))).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated, wrong protocol, not a pickle
        raise UnsafePickleError(f"not a readable job-state pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "trigger" not in state:
        raise UnsafePickleError("not an APScheduler job state (a dict with a 'trigger')")
    return state
