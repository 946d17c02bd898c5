"""Import django-apscheduler's ``DjangoJob`` rows as jobs (``importjobs --from
django-apscheduler``).

Each row's pickled state is read by :mod:`.apspickle` (never a free unpickle). The job's
``func`` reference (``module:qualname``) is mapped to a registered task through the
mapping file, else to the registered task whose function has that reference; it is never
imported. Triggers:

* ``CronTrigger``: written as a 6-field (or, with a year, 7-field) ``crontab``
  expression with seconds first. APScheduler numbers days of the week from Monday = 0
  (also in ``CronTrigger.from_crontab``, unlike cron where 0 is Sunday: a quirk of
  APScheduler 3), so the days are converted by name, not by number. APScheduler
  matches day AND day of week; when both are restricted the trigger becomes an ``all``
  of two cron triggers. ``last`` (day) becomes ``L``; ``1st mon`` / ``last fri`` become
  ``MON#1`` / ``FRIL`` when day of week is ``*``. ISO ``week``, jitter, an end date or
  a start date in the future are refused: our cron trigger has no such fields.
* ``IntervalTrigger``: seconds, start, end, jitter. ``DateTrigger``: ``run_at``.
* ``AndTrigger`` / ``OrTrigger``: ``all`` / ``any`` of the converted triggers.

``next_run_time`` null (paused in APScheduler) imports the job paused; ``coalesce``
maps to the misfire policy (coalesce / run_all), ``misfire_grace_time`` to the grace,
``max_instances`` kept; args and kwargs must be JSON values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler_app.interchange import apspickle
from scheduler_app.interchange.peers import PeerImportError, PeerReport, resolve_task
from scheduler_app.registry import registry

SOURCE = "django-apscheduler"
DAY_NAMES = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]  # APScheduler's 0..6


def _ref_to_task(ref: str) -> str | None:
    for task in registry:
        func = task.func
        if f"{func.__module__}:{func.__qualname__}" == ref:
            return task.name
    return None


def _dt(value: Any) -> str:
    return value.isoformat()


def _field(trigger: Any, name: str) -> Any:
    return next(f for f in trigger.fields if f.name == name)


def _weekdays(field: Any, where: str) -> str:
    from apscheduler.triggers.cron.expressions import AllExpression, RangeExpression

    days: set[int] = set()
    for expr in field.expressions:
        if type(expr) is AllExpression:
            days.update(range(0, 7, expr.step or 1))
        elif isinstance(expr, RangeExpression):
            last = expr.last if expr.last is not None else expr.first
            days.update(range(expr.first, last + 1, expr.step or 1))
        else:
            raise PeerImportError(f"{where}: trigger.day_of_week: {str(expr)!r} cannot be converted")
    if days == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _cron(trigger: Any, where: str, now: datetime) -> dict[str, Any]:
    from apscheduler.triggers.cron.expressions import (
        LastDayOfMonthExpression,
        WeekdayPositionExpression,
    )

    if not _field(trigger, "week").is_default and str(_field(trigger, "week")) != "*":
        raise PeerImportError(
            f"{where}: trigger.week: ISO week numbers ({_field(trigger, 'week')}) are not supported"
        )
    if trigger.jitter:
        raise PeerImportError(f"{where}: trigger.jitter: cron triggers have no jitter here")
    if trigger.end_date is not None:
        raise PeerImportError(f"{where}: trigger.end_date: cron triggers have no end date here")
    if trigger.start_date is not None and trigger.start_date > now:
        raise PeerImportError(f"{where}: trigger.start_date: cron triggers have no future start date here")
    tz = str(trigger.timezone)
    dow = _weekdays(_field(trigger, "day_of_week"), where)
    day_field = _field(trigger, "day")
    dom_parts: list[str] = []
    for expr in day_field.expressions:
        if isinstance(expr, LastDayOfMonthExpression):
            dom_parts.append("L")
        elif isinstance(expr, WeekdayPositionExpression):
            if len(day_field.expressions) != 1 or dow != "*":
                raise PeerImportError(
                    f"{where}: trigger.day: {str(expr)!r} can only be converted alone, with day_of_week '*'"
                )
            name = DAY_NAMES[expr.weekday]
            dow = f"{name}L" if expr.option_num == 5 else f"{name}#{expr.option_num + 1}"
        else:
            dom_parts.append(str(expr))
    dom = ",".join(dom_parts) if dom_parts else "*"
    fields = {n: str(_field(trigger, n)).upper() for n in ("second", "minute", "hour", "month")}
    year = str(_field(trigger, "year"))

    def cron(d: str, w: str) -> dict[str, Any]:
        parts = [fields["second"], fields["minute"], fields["hour"], d, fields["month"], w]
        if year != "*":
            parts.append(year)
        return {"type": "cron", "expression": " ".join(parts), "dialect": "crontab", "timezone": tz}

    if dom != "*" and dow != "*" and not dow.endswith("L") and "#" not in dow:
        return {"type": "all", "triggers": [cron(dom, "*"), cron("*", dow)]}
    return cron(dom, dow)


def convert_trigger(trigger: Any, where: str, now: datetime) -> dict[str, Any]:
    from apscheduler.triggers.combining import AndTrigger, OrTrigger
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if isinstance(trigger, CronTrigger):
        return _cron(trigger, where, now)
    if isinstance(trigger, IntervalTrigger):
        seconds = trigger.interval.total_seconds()
        if seconds != int(seconds) or seconds < 1:
            raise PeerImportError(
                f"{where}: trigger.interval: {trigger.interval} is not a whole number of seconds"
            )
        doc: dict[str, Any] = {"type": "interval", "seconds": int(seconds), "start": _dt(trigger.start_date)}
        if trigger.end_date is not None:
            doc["end"] = _dt(trigger.end_date)
        if trigger.jitter:
            doc["jitter"] = int(trigger.jitter)
        return doc
    if isinstance(trigger, DateTrigger):
        return {"type": "date", "run_at": _dt(trigger.run_date)}
    if isinstance(trigger, AndTrigger | OrTrigger):
        if trigger.jitter:
            raise PeerImportError(f"{where}: trigger.jitter: combined triggers have no jitter here")
        kind = "all" if isinstance(trigger, AndTrigger) else "any"
        return {"type": kind, "triggers": [convert_trigger(t, where, now) for t in trigger.triggers]}
    raise PeerImportError(f"{where}: trigger: {type(trigger).__name__} is not supported")


def read(mapping: dict[str, str | None], *, tenant: str, now: datetime | None = None) -> PeerReport:
    from django_apscheduler.models import DjangoJob

    now = now or datetime.now(UTC)
    report = PeerReport()
    for row in DjangoJob.objects.order_by("id"):
        where = f"DjangoJob {row.id!r}"
        try:
            state = apspickle.load_job_state(row.job_state)
        except apspickle.UnsafePickleError as exc:
            raise PeerImportError(f"{where}: job_state: {exc}") from None
        ref = state.get("func")
        if not isinstance(ref, str):
            raise PeerImportError(f"{where}: func: not a textual reference")
        found, registered = resolve_task(ref, mapping, also=_ref_to_task)
        if not found:
            report.unmapped.append((where, ref))
            continue
        if registered is None:
            report.skipped.append((where, f"task {ref!r} is mapped to null"))
            continue
        if len(row.id) > 200:
            raise PeerImportError(f"{where}: id: longer than a job name may be (200 characters)")
        args, kwargs = list(state.get("args") or ()), dict(state.get("kwargs") or {})
        try:
            json.dumps([args, kwargs])
        except (TypeError, ValueError):
            raise PeerImportError(
                f"{where}: args/kwargs: not JSON values (only JSON values can be imported)"
            ) from None
        doc: dict[str, Any] = {
            "tenant": tenant,
            "name": row.id,
            "description": state.get("name") if state.get("name") not in (None, row.id) else "",
            "task": registered,
            "args": args,
            "kwargs": kwargs,
            "trigger": convert_trigger(state["trigger"], where, now),
            "paused": row.next_run_time is None,
            "max_instances": int(state.get("max_instances") or 1),
            "misfire": {"policy": "coalesce" if state.get("coalesce", True) else "run_all"},
        }
        grace = state.get("misfire_grace_time")
        if grace is None:
            report.notes.append((where, "misfire_grace_time None (unbounded): given 1 day"))
            doc["misfire"]["grace_seconds"] = int(timedelta(days=1).total_seconds())
        else:
            doc["misfire"]["grace_seconds"] = max(int(grace), 0)
        report.jobs.append(doc)
    return report
