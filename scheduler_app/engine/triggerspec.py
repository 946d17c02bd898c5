"""Trigger specifications: the stored, editable form of a job's trigger.

A job keeps its trigger as a small JSON document (the same shape as in jobs files)::

    {"type": "cron", "expression": "0 2 L * *", "dialect": "crontab", "timezone": "Europe/Berlin"}
    {"type": "date", "run_at": "2026-12-01T09:00:00+01:00"}
    {"type": "interval", "seconds": 30, "start": null, "end": null, "jitter": null}
    {"type": "manual"}
    {"type": "all" | "any", "triggers": [...]}

:func:`parse_trigger` validates such a document into frozen dataclasses, raising
:class:`TriggerSpecError` with the dotted path of the bad key; :meth:`TriggerSpec.to_dict`
gives the canonical document back, so a trigger survives any number of round trips.
:func:`build_trigger` turns a spec into APScheduler 3 trigger objects. No Django here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

TRIGGER_TYPES = ("cron", "date", "interval", "manual", "all", "any")
CRON_DIALECTS = ("crontab", "quartz")
#: Defaults of the combination caps (the app passes its TRIGGER_MAX_* settings).
MAX_CHILDREN = 20
MAX_NESTING = 3
#: Times a trigger may name, after conversion to UTC (the API bounds its times alike).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: Interval bounds: 1 second to 100 years.
MIN_INTERVAL = 1
MAX_INTERVAL = 100 * 366 * 86400


class TriggerSpecError(ValueError):
    """A trigger document is invalid; ``path`` names the key (``trigger.expression``)."""

    def __init__(self, path: str, message: str, cron_error: Exception | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        # The CronSyntaxError behind message, so faces can show it in the user's language.
        self.cron_error = cron_error

    @property
    def key(self) -> str:
        """The last key of the path (``expression``), for mapping onto form fields."""
        return self.path.rsplit(".", 1)[-1].split("[", 1)[0]


def check_timezone(name: object, path: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise TriggerSpecError(path, "must be an IANA time zone name, e.g. 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TriggerSpecError(path, f"unknown time zone {name!r}") from None


def _parse_datetime(value: object, path: str, tz: ZoneInfo | None) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise TriggerSpecError(
                path, f"{value!r} is not an ISO 8601 date-time (e.g. 2026-12-01T09:00:00+01:00)"
            ) from None
    else:
        raise TriggerSpecError(path, "must be an ISO 8601 date-time string")
    if parsed.tzinfo is None:
        if tz is None:
            raise TriggerSpecError(path, f"{value!r} has no UTC offset; add one or give a 'timezone'")
        parsed = parsed.replace(tzinfo=tz)
    try:
        utc = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise TriggerSpecError(path, "must lie between 1970-01-01 and 9000-01-01 (UTC)")
    return parsed


def _iso(value: datetime) -> str:
    return value.isoformat()


def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    unknown = sorted(set(data) - set(allowed) - {"type"})
    if unknown:
        raise TriggerSpecError(f"{path}.{unknown[0]}", "unknown key")


def _positive_int(value: object, path: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TriggerSpecError(path, "must be a whole number of seconds")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise TriggerSpecError(path, "must be a whole number of seconds")
    if value > MAX_INTERVAL:
        raise TriggerSpecError(path, f"must be at most {MAX_INTERVAL} seconds (100 years)")
    number = int(value)
    if number < 0 or (number == 0 and not allow_zero):
        raise TriggerSpecError(path, "must be greater than 0" if not allow_zero else "must be 0 or more")
    return number


@dataclass(frozen=True)
class CronSpec:
    expression: str
    dialect: str = "crontab"
    timezone: str = "UTC"
    type: str = "cron"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "cron",
            "expression": self.expression,
            "dialect": self.dialect,
            "timezone": self.timezone,
        }

    @property
    def timezone_name(self) -> str:
        return self.timezone


@dataclass(frozen=True)
class DateSpec:
    run_at: datetime
    timezone: str | None = None
    type: str = "date"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": "date", "run_at": _iso(self.run_at)}
        if self.timezone:
            doc["timezone"] = self.timezone
        return doc

    @property
    def timezone_name(self) -> str:
        return self.timezone or "UTC"


@dataclass(frozen=True)
class IntervalSpec:
    seconds: int
    start: datetime | None = None
    end: datetime | None = None
    jitter: int | None = None
    timezone: str | None = None
    type: str = "interval"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": "interval", "seconds": self.seconds}
        if self.start is not None:
            doc["start"] = _iso(self.start)
        if self.end is not None:
            doc["end"] = _iso(self.end)
        if self.jitter:
            doc["jitter"] = self.jitter
        if self.timezone:
            doc["timezone"] = self.timezone
        return doc

    @property
    def timezone_name(self) -> str:
        return self.timezone or "UTC"


@dataclass(frozen=True)
class ManualSpec:
    type: str = "manual"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "manual"}

    @property
    def timezone_name(self) -> str:
        return "UTC"


@dataclass(frozen=True)
class CombinedSpec:
    type: str  # "all" | "any"
    triggers: tuple[TriggerSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "triggers": [t.to_dict() for t in self.triggers]}

    @property
    def timezone_name(self) -> str:
        return self.triggers[0].timezone_name


@dataclass(frozen=True)
class PluginSpec:
    """A trigger of a type a plugin contributes (:mod:`scheduler_app.engine.extensions`):
    its canonical document, as the plugin's ``validate`` returned it."""

    type: str
    document: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.document, "type": self.type}

    @property
    def timezone_name(self) -> str:
        tz = self.document.get("timezone")
        return tz if isinstance(tz, str) and tz else "UTC"


TriggerSpec = CronSpec | DateSpec | IntervalSpec | ManualSpec | CombinedSpec | PluginSpec


def _parse_plugin(kind: str, data: Mapping[str, Any], path: str) -> PluginSpec:
    """Validate a plugin trigger document, then prove it fires at least once: a plugin's
    failure is a field error naming the plugin, never an exception from its code."""
    from scheduler_app.engine import extensions

    kind_info = extensions.TRIGGER_TYPES[kind]
    where = f"trigger type {kind!r} (plugin {kind_info.plugin or '?'})"
    body = {k: v for k, v in data.items() if k != "type"}
    try:
        document = kind_info.validate(body, path)
    except TriggerSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - plugin code
        raise TriggerSpecError(path, f"{where} failed to validate: {type(exc).__name__}: {exc}") from None
    if not isinstance(document, Mapping):
        raise TriggerSpecError(path, f"{where}: validate() must return the document")
    # The plugin's schema too (its validate() speaks first, more precisely): what the
    # admin form and the API schema show is what is enforced.
    for key, message in extensions.schema_problems(kind_info.schema, body)[:1]:
        raise TriggerSpecError(f"{path}.{key}", message)
    spec = PluginSpec(type=kind, document={k: v for k, v in document.items() if k != "type"})
    try:
        trigger = kind_info.build(spec.document, extensions.TriggerContext())
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now) if trigger is not None else None
    except Exception as exc:  # noqa: BLE001
        raise TriggerSpecError(
            path, f"{where} failed to build a trigger: {type(exc).__name__}: {exc}"
        ) from None
    if first is None or first < now:
        raise TriggerSpecError(path, f"{where}: this trigger never fires")
    return spec


def parse_trigger(
    data: object,
    path: str = "trigger",
    *,
    max_children: int = MAX_CHILDREN,
    max_depth: int = MAX_NESTING,
    _depth: int = 0,
) -> TriggerSpec:
    """Validate a trigger document; raise :class:`TriggerSpecError` naming the bad key.

    Times must lie between 1970 and 9000 (UTC), intervals between 1 s and 100 years with
    jitter below the interval; an "all"/"any" combination has at most ``max_children``
    children and combinations nest at most ``max_depth`` deep."""
    if not isinstance(data, Mapping):
        raise TriggerSpecError(path, "must be an object with a 'type'")
    kind = data.get("type")
    from scheduler_app.engine.extensions import TRIGGER_TYPES as PLUGIN_TYPES

    if isinstance(kind, str) and kind in PLUGIN_TYPES and kind not in TRIGGER_TYPES:
        return _parse_plugin(kind, data, path)
    if kind not in TRIGGER_TYPES:
        raise TriggerSpecError(
            f"{path}.type",
            f"{kind!r} is not a trigger type; use one of {', '.join([*TRIGGER_TYPES, *sorted(PLUGIN_TYPES)])}",
        )
    if kind == "cron":
        _check_keys(data, ("expression", "dialect", "timezone"), path)
        expression = data.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise TriggerSpecError(f"{path}.expression", "a cron expression is required")
        dialect = data.get("dialect", "crontab") or "crontab"
        if dialect not in CRON_DIALECTS:
            raise TriggerSpecError(f"{path}.dialect", f"{dialect!r} is not a dialect; use crontab or quartz")
        tz_name = data.get("timezone", "UTC") or "UTC"
        check_timezone(tz_name, f"{path}.timezone")
        from scheduler_app.engine.cron import CronExpression, CronSyntaxError

        expression = " ".join(expression.split())
        try:
            CronExpression.parse(expression, dialect=dialect, timezone=tz_name)
        except CronSyntaxError as exc:
            raise TriggerSpecError(f"{path}.expression", str(exc), cron_error=exc) from None
        return CronSpec(expression=expression, dialect=dialect, timezone=tz_name)
    if kind == "date":
        _check_keys(data, ("run_at", "timezone"), path)
        tz_name = data.get("timezone")
        tz = check_timezone(tz_name, f"{path}.timezone") if tz_name else None
        if data.get("run_at") in (None, ""):
            raise TriggerSpecError(f"{path}.run_at", "a date-time is required")
        run_at = _parse_datetime(data["run_at"], f"{path}.run_at", tz)
        return DateSpec(run_at=run_at, timezone=tz_name or None)
    if kind == "interval":
        _check_keys(data, ("seconds", "start", "end", "jitter", "timezone"), path)
        if data.get("seconds") is None:
            raise TriggerSpecError(f"{path}.seconds", "the interval in seconds is required")
        seconds = _positive_int(data["seconds"], f"{path}.seconds")
        tz_name = data.get("timezone")
        tz = check_timezone(tz_name, f"{path}.timezone") if tz_name else None
        start = end = None
        if data.get("start") not in (None, ""):
            start = _parse_datetime(data["start"], f"{path}.start", tz)
        if data.get("end") not in (None, ""):
            end = _parse_datetime(data["end"], f"{path}.end", tz)
        if start is not None and end is not None and end <= start:
            raise TriggerSpecError(f"{path}.end", "must be after start")
        jitter = None
        if data.get("jitter") not in (None, 0):
            jitter = _positive_int(data["jitter"], f"{path}.jitter")
            if jitter >= seconds:
                raise TriggerSpecError(f"{path}.jitter", "must be less than the interval")
        return IntervalSpec(seconds=seconds, start=start, end=end, jitter=jitter, timezone=tz_name or None)
    if kind == "manual":
        _check_keys(data, (), path)
        return ManualSpec()
    # all / any
    _check_keys(data, ("triggers",), path)
    if _depth >= max_depth:
        raise TriggerSpecError(path, f"combinations may nest at most {max_depth} deep")
    children = data.get("triggers")
    if not isinstance(children, list) or len(children) < 2:
        raise TriggerSpecError(f"{path}.triggers", "a combination needs a list of at least 2 triggers")
    if len(children) > max_children:
        raise TriggerSpecError(
            f"{path}.triggers",
            f"a combination may have at most {max_children} triggers ({len(children)} given)",
        )
    parsed = []
    for index, child in enumerate(children):
        child_path = f"{path}.triggers[{index}]"
        spec = parse_trigger(
            child, child_path, max_children=max_children, max_depth=max_depth, _depth=_depth + 1
        )
        if isinstance(spec, ManualSpec):
            raise TriggerSpecError(f"{child_path}.type", "a manual trigger cannot be combined")
        parsed.append(spec)
    return CombinedSpec(type=str(kind), triggers=tuple(parsed))


def build_trigger(
    spec: TriggerSpec,
    *,
    hash_key: str | None = None,
    anchor: datetime | None = None,
    excluded_dates: Iterable[date] = (),
) -> BaseTrigger | None:
    """APScheduler trigger for ``spec``; None for a manual trigger.

    ``anchor`` fixes the phase of an interval trigger without a start (the job's creation
    time), so rebuilding after a restart keeps the same fire times. ``excluded_dates``
    (exclusion calendars) are skipped in the trigger's time zone.
    """
    trigger = _build(spec, hash_key, anchor)
    dates = frozenset(excluded_dates)
    if trigger is not None and dates:
        from scheduler_app.engine.aps_triggers import ExcludedDatesTrigger

        trigger = ExcludedDatesTrigger(trigger, dates, spec.timezone_name)
    return trigger


def _build(spec: TriggerSpec, hash_key: str | None, anchor: datetime | None) -> BaseTrigger | None:
    if isinstance(spec, ManualSpec):
        return None
    if isinstance(spec, PluginSpec):
        from scheduler_app.engine import extensions

        kind = extensions.TRIGGER_TYPES.get(spec.type)
        if kind is None:
            raise ValueError(f"trigger type {spec.type!r} is not available (its plugin is not loaded)")
        trigger: BaseTrigger = kind.build(
            spec.document, extensions.TriggerContext(hash_key=hash_key, anchor=anchor)
        )
        return trigger
    if isinstance(spec, CronSpec):
        from scheduler_app.engine.aps_triggers import CronExpressionTrigger
        from scheduler_app.engine.cron import CronExpression

        return CronExpressionTrigger(
            CronExpression.parse(
                spec.expression, dialect=spec.dialect, timezone=spec.timezone, hash_key=hash_key
            )
        )
    if isinstance(spec, DateSpec):
        from apscheduler.triggers.date import DateTrigger

        return DateTrigger(run_date=spec.run_at, timezone=spec.run_at.tzinfo)
    if isinstance(spec, IntervalSpec):
        from apscheduler.triggers.interval import IntervalTrigger

        start = spec.start or anchor
        return IntervalTrigger(
            seconds=spec.seconds,
            start_date=start,
            end_date=spec.end,
            jitter=spec.jitter,
            timezone=ZoneInfo(spec.timezone) if spec.timezone else UTC,
        )
    from apscheduler.triggers.combining import OrTrigger

    from scheduler_app.engine.aps_triggers import AllOfTrigger

    children = [_build(child, hash_key, anchor) for child in spec.triggers]
    cls = AllOfTrigger if spec.type == "all" else OrTrigger
    return cls(children)


def fire_times(trigger: BaseTrigger | None, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times of ``trigger`` strictly after ``after``."""
    if trigger is None:
        return []
    results: list[datetime] = []
    previous: datetime | None = None
    now = after + timedelta(microseconds=1)
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        results.append(nxt)
        previous = nxt
        now = nxt
    return results


def describe(spec: TriggerSpec, *, hash_key: str | None = None, language: str = "en") -> str:
    """Plain words for a trigger: "At 02:00 on the last day of the month (Europe/Berlin)";
    ``language`` "zh-hans" gives Chinese (engine/cron_zh.py)."""
    from scheduler_app.engine import cron_zh

    if cron_zh.is_chinese(language):
        return cron_zh.describe_trigger(spec, hash_key=hash_key)
    if isinstance(spec, ManualSpec):
        return "Manual: runs only when started by hand or by an upstream job"
    if isinstance(spec, PluginSpec):
        from scheduler_app.engine import extensions

        kind = extensions.TRIGGER_TYPES.get(spec.type)
        if kind is None:
            return f"{spec.type} (plugin not loaded)"
        try:
            return str(kind.describe(spec.document))
        except Exception as exc:  # noqa: BLE001 - plugin code
            return f"{spec.type} (describe failed: {type(exc).__name__})"
    if isinstance(spec, CronSpec):
        from scheduler_app.engine.cron import CronExpression

        expr = CronExpression.parse(
            spec.expression, dialect=spec.dialect, timezone=spec.timezone, hash_key=hash_key
        )
        return f"{expr.describe()} ({spec.timezone})"
    if isinstance(spec, DateSpec):
        return f"Once at {spec.run_at.isoformat()}"
    if isinstance(spec, IntervalSpec):
        text = f"Every {_duration(spec.seconds)}"
        if spec.start is not None:
            text += f" from {spec.start.isoformat()}"
        if spec.end is not None:
            text += f" until {spec.end.isoformat()}"
        if spec.jitter:
            text += f", jitter up to {spec.jitter} s"
        return text
    joiner = " and " if spec.type == "all" else " or "
    word = "When all of" if spec.type == "all" else "When any of"
    return f"{word}: " + joiner.join(f"({describe(t, hash_key=hash_key)})" for t in spec.triggers)


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
