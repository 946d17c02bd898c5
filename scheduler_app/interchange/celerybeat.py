"""Import django-celery-beat's ``PeriodicTask`` rows as jobs (``importjobs --from
celery-beat``).

Schedules:

* crontab: each field is expanded with celery's own parser (names, ranges that wrap
  like ``fri-mon``, steps) and written as plain numbers, so the meaning cannot drift;
  ``day_of_week`` 0 is Sunday in both. Celery matches a time when *every* field matches,
  day of month AND day of week, where cron (and our ``crontab`` dialect) ORs the two
  day fields when both are restricted; such a schedule becomes an ``all`` trigger of
  two cron triggers (one per day field), which fires only where both agree.
  The crontab's time zone is kept.
* interval: ``every`` × ``period`` in whole seconds, ``start_time`` as the interval's
  start and ``expires`` as its end.
* clocked: a date trigger at ``clocked_time``.
* solar: refused (sunrise/sunset times are not a trigger here).

``enabled``, ``args``/``kwargs`` (JSON), ``priority`` (higher first, as AMQP's) and
``description`` are carried over; ``queue``, ``exchange``, ``routing_key`` and
``headers`` have no meaning here and are reported as notes. ``one_off`` is kept for
clocked tasks (a date trigger fires once) and refused for the others; an ``expires`` in
the past imports the job disabled.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from scheduler_app.interchange.peers import PeerImportError, PeerReport, resolve_task

SOURCE = "django-celery-beat"
#: celery's crontab fields: (PeriodicTask attribute, crontab_parser bounds (max, min)).
FIELDS = {
    "minute": (60, 0),
    "hour": (24, 0),
    "day_of_month": (31, 1),
    "month_of_year": (12, 1),
    "day_of_week": (7, 0),
}
PERIOD_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def _require_app() -> Any:
    from django.apps import apps

    if not apps.is_installed("django_celery_beat"):
        raise PeerImportError(
            "django-celery-beat is not in INSTALLED_APPS here; add 'django_celery_beat' "
            "(pip install django-celery-beat) to read its tables"
        )
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask


def _compact(values: set[int]) -> str:
    """Numbers as a cron list with runs written as ranges: {1,2,3,7} -> '1-3,7'."""
    ordered = sorted(values)
    parts: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(parts)


def cron_fields(schedule: Any, where: str) -> dict[str, str]:
    """Celery crontab fields as cron text (``*`` for "every value")."""
    from celery.schedules import ParseException, crontab_parser

    out: dict[str, str] = {}
    for name, (max_, min_) in FIELDS.items():
        text = str(getattr(schedule, name) or "*").strip()
        try:
            values = crontab_parser(max_, min_).parse(text)
        except (ParseException, ValueError) as exc:
            raise PeerImportError(
                f"{where}: crontab.{name}: {text!r} is not valid for celery: {exc}"
            ) from None
        if not values:
            raise PeerImportError(f"{where}: crontab.{name}: {text!r} matches no value")
        out[name] = "*" if values == set(range(min_, max_ + min_)) else _compact(values)
    return out


def cron_trigger(schedule: Any, where: str) -> dict[str, Any]:
    f = cron_fields(schedule, where)
    tz = str(schedule.timezone or "UTC")

    def cron(dom: str, dow: str) -> dict[str, Any]:
        expression = f"{f['minute']} {f['hour']} {dom} {f['month_of_year']} {dow}"
        return {"type": "cron", "expression": expression, "dialect": "crontab", "timezone": tz}

    if f["day_of_month"] != "*" and f["day_of_week"] != "*":
        # celery ANDs the day fields; cron would OR them
        return {"type": "all", "triggers": [cron(f["day_of_month"], "*"), cron("*", f["day_of_week"])]}
    return cron(f["day_of_month"], f["day_of_week"])


def _json(text: str, default: Any, kind: type, where: str, name: str) -> Any:
    if not (text or "").strip():
        return default
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PeerImportError(f"{where}: {name}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, kind):
        raise PeerImportError(f"{where}: {name}: must be a JSON {'list' if kind is list else 'object'}")
    return value


def read(mapping: dict[str, str | None], *, tenant: str, now: datetime | None = None) -> PeerReport:
    """Every ``PeriodicTask`` as a job document for ``tenant``, or a
    :class:`PeerImportError` naming the task and the field."""
    PeriodicTask = _require_app()
    now = now or datetime.now(UTC)
    report = PeerReport()
    rows = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").order_by("name")
    for task in rows:
        where = f"periodic task {task.name!r}"
        found, registered = resolve_task(task.task, mapping)
        if not found:
            report.unmapped.append((where, task.task))
            continue
        if registered is None:
            report.skipped.append((where, f"task {task.task!r} is mapped to null"))
            continue
        report.jobs.append(_job(task, registered, tenant, where, now, report))
    return report


def _job(
    task: Any, registered: str, tenant: str, where: str, now: datetime, report: PeerReport
) -> dict[str, Any]:
    enabled = bool(task.enabled)
    if task.solar_id:
        raise PeerImportError(
            f"{where}: solar: solar schedules ({task.solar.event}) are not supported; "
            "replace it with a crontab or leave the task out (map it to null)"
        )
    if task.one_off and not task.clocked_id:
        raise PeerImportError(
            f"{where}: one_off: only a clocked schedule can be one-off here; "
            "use a clocked schedule or clear one_off"
        )
    if task.expires is not None and task.expires <= now:
        enabled = False
        report.notes.append((where, f"expired at {task.expires.isoformat()}: imported disabled"))
    if task.expire_seconds:
        report.notes.append((where, f"expire_seconds={task.expire_seconds} not carried over"))
    if task.crontab_id:
        trigger = cron_trigger(task.crontab, where)
        if task.expires is not None and task.expires > now:
            raise PeerImportError(
                f"{where}: expires: a crontab task cannot end at a date here "
                f"({task.expires.isoformat()}); clear expires or disable the task"
            )
    elif task.interval_id:
        interval = task.interval
        if interval.period not in PERIOD_SECONDS:
            raise PeerImportError(
                f"{where}: interval.period: {interval.period!r} is below a second; only whole seconds are supported"
            )
        trigger = {"type": "interval", "seconds": int(interval.every) * PERIOD_SECONDS[interval.period]}
        if task.start_time is not None:
            trigger["start"] = task.start_time.isoformat()
        if task.expires is not None and task.expires > now:
            trigger["end"] = task.expires.isoformat()
    elif task.clocked_id:
        trigger = {"type": "date", "run_at": task.clocked.clocked_time.isoformat()}
        if task.one_off and task.total_run_count:
            enabled = False  # celery beat disables a one-off task once it ran
    else:
        raise PeerImportError(f"{where}: has no schedule (interval, crontab, solar or clocked)")
    for name in ("queue", "exchange", "routing_key"):
        if getattr(task, name, None):
            report.notes.append((where, f"{name}={getattr(task, name)!r} not carried over"))
    headers = _json(task.headers, {}, dict, where, "headers")
    if headers:
        report.notes.append((where, "headers not carried over"))
    doc: dict[str, Any] = {
        "tenant": tenant,
        "name": task.name,
        "description": task.description or "",
        "task": registered,
        "args": _json(task.args, [], list, where, "args"),
        "kwargs": _json(task.kwargs, {}, dict, where, "kwargs"),
        "trigger": trigger,
        "enabled": enabled,
    }
    if task.priority is not None:
        doc["priority"] = int(task.priority)
    return doc
