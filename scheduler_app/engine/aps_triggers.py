"""APScheduler 3 triggers built on :mod:`scheduler_app.engine.cron`.

* :class:`CronExpressionTrigger` fires on a :class:`~scheduler_app.engine.cron.CronExpression`
  (either dialect, DST rules of the engine) with APScheduler 3 ``CronTrigger`` semantics.
* :class:`ExcludedDatesTrigger` wraps any trigger and skips fire times whose local date is
  in an exclusion set (Quartz-style exclusion calendars: holidays, freeze days).

Date, interval and AND/OR combinations use APScheduler's own ``DateTrigger``,
``IntervalTrigger``, ``AndTrigger`` and ``OrTrigger``.

Both classes pickle to a versioned state dict (``"version": 1``) so persistent job stores
(SQLAlchemy, Redis, django-apscheduler) can hold them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import AndTrigger

from scheduler_app.engine.cron import HORIZON_YEARS, CronExpression, CronSyntaxError

__all__ = ["AllOfTrigger", "CronExpressionTrigger", "ExcludedDatesTrigger"]

_STATE_VERSION: Final = 1
_ONE_MICROSECOND: Final = timedelta(microseconds=1)


def _check_version(cls_name: str, state: dict[str, Any]) -> None:
    version = state.get("version", 1)
    if not isinstance(version, int) or version > _STATE_VERSION:
        raise ValueError(
            f"Got serialized data for version {version} of {cls_name}, but only versions up "
            f"to {_STATE_VERSION} can be handled; upgrade scheduler_app to load this job"
        )


def _aware(value: datetime | None, zone: ZoneInfo, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value


def _ceil_second(value: datetime) -> datetime:
    if value.microsecond:
        return value.replace(microsecond=0) + timedelta(seconds=1)
    return value


class CronExpressionTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires on a cron expression; APScheduler 3 ``CronTrigger`` semantics.

    :param expression: the expression text, or a ready :class:`CronExpression` (then
        ``dialect``, ``timezone`` and ``hash_key`` are taken from it)
    :param dialect: ``"crontab"`` (default) or ``"quartz"``
    :param timezone: IANA time zone name the expression is evaluated in (default UTC)
    :param hash_key: key that makes ``H`` fields stable (e.g. the job's id)
    :param start_date: earliest possible fire time (naive values are taken in ``timezone``)
    :param end_date: latest possible fire time
    :param jitter: delay each fire time by up to this many seconds
    """

    __slots__ = ("end_date", "expression", "jitter", "start_date")

    expression: CronExpression
    start_date: datetime | None
    end_date: datetime | None
    jitter: int | float | None

    def __init__(
        self,
        expression: str | CronExpression,
        dialect: str = "crontab",
        timezone: str = "UTC",
        hash_key: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        jitter: int | float | None = None,
    ) -> None:
        if isinstance(expression, CronExpression):
            self.expression = expression
        else:
            self.expression = CronExpression.parse(expression, dialect, timezone, hash_key)
        zone = self.expression.zone
        self.start_date = _aware(start_date, zone, "start_date")
        self.end_date = _aware(end_date, zone, "end_date")
        self.jitter = jitter

    @property
    def timezone(self) -> ZoneInfo:
        return self.expression.zone

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        # Mirrors apscheduler.triggers.cron.CronTrigger.get_next_fire_time (3.11):
        # with a previous fire time the search starts just after it (or at ``now`` if that
        # is earlier), otherwise at ``now`` (or start_date if later); the result is the
        # first fire time at or after the start, rounded up to a whole second.
        if previous_fire_time is not None:
            previous = previous_fire_time.astimezone(UTC)  # UTC: wall arithmetic drops fold
            start = min(now.astimezone(UTC), previous + _ONE_MICROSECOND)
            if start == previous:
                start += _ONE_MICROSECOND
        elif self.start_date is not None:
            start = max(now.astimezone(UTC), self.start_date.astimezone(UTC))
        else:
            start = now
        start = _ceil_second(start)
        found = self.expression.next_fire_time(start - _ONE_MICROSECOND)
        if found is None:
            return None
        # Returned in UTC (the same instant): APScheduler compares fire times with ``now``
        # and with each other directly, and Python ignores ``fold`` when comparing two
        # datetimes of the same zone, which would misorder the second pass of a DST fold.
        next_time = found.astimezone(UTC)
        end = self.end_date.astimezone(UTC) if self.end_date is not None else None
        if end is not None and next_time > end:
            return None
        result: datetime | None = self._apply_jitter(next_time, self.jitter, now)
        if result is not None and end is not None:
            result = min(result, end)
        return result

    def __getstate__(self) -> dict[str, Any]:
        expr = self.expression
        return {
            "version": _STATE_VERSION,
            "expression": expr.expression,
            "dialect": expr.dialect,
            "timezone": expr.timezone,
            "hash_key": expr.hash_key,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "jitter": self.jitter,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"Cannot restore {type(self).__name__} from {type(state).__name__}")
        _check_version(type(self).__name__, state)
        self.expression = CronExpression.parse(
            state["expression"], state["dialect"], state["timezone"], state.get("hash_key")
        )
        self.start_date = state.get("start_date")
        self.end_date = state.get("end_date")
        self.jitter = state.get("jitter")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpressionTrigger):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.expression, self.start_date, self.end_date, self.jitter))

    def __str__(self) -> str:
        expr = self.expression
        return f"cron[{expr.expression!r}, {expr.dialect}, {expr.timezone}]"

    def __repr__(self) -> str:
        expr = self.expression
        options = [repr(expr.expression), f"dialect={expr.dialect!r}"]
        if expr.hash_key is not None:
            options.append(f"hash_key={expr.hash_key!r}")
        if self.start_date is not None:
            options.append(f"start_date={self.start_date.isoformat()!r}")
        if self.end_date is not None:
            options.append(f"end_date={self.end_date.isoformat()!r}")
        if self.jitter:
            options.append(f"jitter={self.jitter}")
        return f"<{type(self).__name__} ({', '.join(options)}, timezone={expr.timezone!r})>"


class ExcludedDatesTrigger(BaseTrigger):  # type: ignore[misc]
    """Wraps a trigger and skips fire times whose local date (in ``timezone``) is excluded.

    The search is bounded: it gives up (returns None) after :attr:`MAX_SKIPS` consecutive
    excluded candidates or once the candidate is more than :data:`HORIZON_YEARS` years past
    ``now``, so excluding every date never hangs the scheduler.

    :param trigger: any APScheduler trigger
    :param dates: the excluded local dates
    :param timezone: IANA time zone name in which fire times are turned into dates
    """

    __slots__ = ("dates", "timezone", "trigger")

    MAX_SKIPS: Final = 10_000

    trigger: BaseTrigger
    dates: frozenset[date]
    timezone: str

    def __init__(self, trigger: BaseTrigger, dates: Iterable[date], timezone: str = "UTC") -> None:
        if not isinstance(trigger, BaseTrigger):
            raise TypeError(f"trigger must be an APScheduler trigger, not {type(trigger).__name__}")
        self.trigger = trigger
        self.dates = _date_set(dates)
        self.timezone = timezone
        self._zone()  # validate

    def _zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except Exception as exc:
            raise CronSyntaxError("is not a known IANA time zone", text=str(self.timezone)) from exc

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        zone = self._zone()
        dates = self.dates
        candidate: datetime | None = self.trigger.get_next_fire_time(previous_fire_time, now)
        if not dates:
            return candidate
        horizon = now.astimezone(UTC) + timedelta(days=366 * HORIZON_YEARS)
        skips = 0
        while candidate is not None:
            local_day = candidate.astimezone(zone).date()
            if local_day not in dates:
                return candidate
            skips += 1
            if skips >= self.MAX_SKIPS or candidate.timestamp() > horizon.timestamp():
                return None
            # Jump to the first instant of the next non-excluded local date ...
            day = local_day + timedelta(days=1)
            while day in dates:
                day += timedelta(days=1)
            day_start = datetime(day.year, day.month, day.day, tzinfo=zone)
            day_start = day_start.astimezone(UTC).astimezone(zone)  # normalise a gap
            following: datetime | None = self.trigger.get_next_fire_time(None, day_start)
            if following is None or following.timestamp() <= candidate.timestamp():
                # ... unless the wrapped trigger cannot start afresh from an arbitrary
                # point (e.g. a DateTrigger): then step one fire time at a time.
                following = self.trigger.get_next_fire_time(candidate, candidate)
                if following is not None and following.timestamp() <= candidate.timestamp():
                    return None
            candidate = following
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "trigger": self.trigger,
            "dates": sorted(self.dates),
            "timezone": self.timezone,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"Cannot restore {type(self).__name__} from {type(state).__name__}")
        _check_version(type(self).__name__, state)
        self.trigger = state["trigger"]
        self.dates = _date_set(state["dates"])
        self.timezone = state["timezone"]

    def __str__(self) -> str:
        return f"{self.trigger} except {len(self.dates)} date(s) in {self.timezone}"

    def __repr__(self) -> str:
        shown = ", ".join(d.isoformat() for d in sorted(self.dates)[:5])
        more = f", ... {len(self.dates) - 5} more" if len(self.dates) > 5 else ""
        return (
            f"<{type(self).__name__} ({self.trigger!r}, dates=[{shown}{more}], timezone={self.timezone!r})>"
        )


def _date_set(dates: Iterable[date]) -> frozenset[date]:
    out = set()
    for d in dates:
        if isinstance(d, datetime) or not isinstance(d, date):
            raise TypeError(f"excluded dates must be datetime.date values, not {d!r}")
        out.add(d)
    return frozenset(out)


class AllOfTrigger(AndTrigger):  # type: ignore[misc]
    """Fires when every child trigger fires at the same instant (AND).

    APScheduler 3's ``AndTrigger`` advances its children only through ``now``; children
    given a previous fire time (cron, interval) ignore a later ``now``, so once it has
    fired it can search forever. This one asks each child for its first fire time at or
    after a moving start instead, and gives up after a bounded number of rounds or when
    a child can no longer fire. It pickles like ``AndTrigger``."""

    MAX_ROUNDS: Final = 10_000

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        start = now if previous_fire_time is None else previous_fire_time + _ONE_MICROSECOND
        for _ in range(self.MAX_ROUNDS):
            times: list[datetime] = []
            for trigger in self.triggers:
                fire = trigger.get_next_fire_time(None, start)
                if fire is None or fire < start:  # e.g. a date trigger already past
                    return None
                times.append(fire)
            earliest, latest = min(times), max(times)
            if earliest == latest:
                result: datetime | None = self._apply_jitter(earliest, self.jitter, now)
                return result
            start = latest
        return None

    def __str__(self) -> str:
        return "all_of[{}]".format(", ".join(str(trigger) for trigger in self.triggers))
