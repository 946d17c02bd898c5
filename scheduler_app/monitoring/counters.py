"""Keeping the run counters of ``/metrics`` (:class:`~scheduler_app.models.RunCounter`).

Whoever writes a run's final state calls :func:`count_finished` in the same
transaction: the counts are then exactly the committed outcomes, whichever node or
process wrote them, and pruning old runs cannot make a counter go backwards. One
``INSERT ... ON CONFLICT DO UPDATE`` per batch adds to every label set at once (the
same statement on PostgreSQL and SQLite); rows are written in label order so that two
nodes recording at the same time cannot deadlock on them."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connection

from scheduler_app.conf import app_settings
from scheduler_app.models import Job, RunCounter, RunState
from scheduler_app.models.counters import DURATION_BUCKETS, LATENESS_BUCKETS

LABELS = ("tenant", "group", "task", "job", "state")
SUMS = ("count", "retries", "duration_sum", "duration_count", "lateness_sum", "lateness_count")
DURATION_COLUMNS = tuple(f"duration_b{i}" for i in range(len(DURATION_BUCKETS)))
LATENESS_COLUMNS = tuple(f"lateness_b{i}" for i in range(len(LATENESS_BUCKETS)))
VALUES = (*SUMS, *DURATION_COLUMNS, *LATENESS_COLUMNS)


def _bucket(bounds: tuple[float, ...], value: float) -> int | None:
    """Index of the first bucket whose bound is >= value; None above the last (+Inf)."""
    index = bisect.bisect_left(bounds, value)
    return index if index < len(bounds) else None


def lateness(run: Any) -> float | None:
    """Seconds between when the run was due and when it started (never negative)."""
    if run.started_at is None or run.state == RunState.SKIPPED:
        return None
    due = max(t for t in (run.scheduled_for, run.not_before) if t is not None)
    return max((run.started_at - due).total_seconds(), 0.0)


def count_finished(runs: Iterable[Any], jobs: Mapping[int, tuple[str, str, str, str]] | None = None) -> int:
    """Add these runs (``JobRun`` objects, just given a final state) to the counters;
    call it inside the transaction that writes them. ``jobs``: the labels of their jobs
    by id when the caller has read them already (tenant slug, group name or "", task,
    job name), saving the query. Returns the label sets touched."""
    runs = [r for r in runs if r.state not in (RunState.QUEUED, RunState.RUNNING)]
    if not runs:
        return 0
    per_job = app_settings.METRICS_JOB_LABELS
    labels = {
        pk: (slug, group, task, name if per_job else "")
        for pk, (slug, group, task, name) in (jobs or {}).items()
    }
    for run in runs:  # from the jobs loaded with the runs (the recorder's batch), when they are
        job = run._state.fields_cache.get("job")
        if job is None or job.pk in labels:
            continue
        cache = job._state.fields_cache
        if "tenant" in cache and (job.group_id is None or "group" in cache):
            group = job.group.name if job.group_id is not None else ""
            labels[job.pk] = (job.tenant.slug, group, job.task, job.name if per_job else "")
    missing = {r.job_id for r in runs} - set(labels)
    if missing:
        labels.update(
            {
                pk: (slug, group or "", task, name if per_job else "")
                for pk, slug, group, task, name in Job.objects.filter(pk__in=missing).values_list(
                    "pk", "tenant__slug", "group__name", "task", "name"
                )
            }
        )
    rows: dict[tuple[str, ...], dict[str, float]] = {}
    for run in runs:
        base = labels.get(run.job_id)
        if base is None:
            continue
        key = (*base, run.state)
        row = rows.setdefault(key, dict.fromkeys(VALUES, 0))
        row["count"] += 1
        if run.attempt > 1:
            row["retries"] += 1
        if run.duration is not None:
            row["duration_sum"] += run.duration
            row["duration_count"] += 1
            index = _bucket(DURATION_BUCKETS, run.duration)
            if index is not None:
                row[DURATION_COLUMNS[index]] += 1
        late = lateness(run)
        if late is not None:
            row["lateness_sum"] += late
            row["lateness_count"] += 1
            index = _bucket(LATENESS_BUCKETS, late)
            if index is not None:
                row[LATENESS_COLUMNS[index]] += 1
    ordered = sorted(rows.items())
    for start in range(0, len(ordered), 200):  # bounded statement size (SQLite's variable limit)
        _upsert(ordered[start : start + 200])
    return len(rows)


def _upsert(rows: list[tuple[tuple[str, ...], dict[str, float]]]) -> None:
    q = connection.ops.quote_name
    table = q(RunCounter._meta.db_table)
    columns = [*LABELS, *VALUES]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(f"{q(c)} = {table}.{q(c)} + EXCLUDED.{q(c)}" for c in VALUES)
    sql = (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) VALUES "
        + ", ".join([placeholders] * len(rows))
        + f" ON CONFLICT ({', '.join(q(c) for c in LABELS)}) DO UPDATE SET {updates}"
    )
    params: list[Any] = []
    for key, values in rows:
        params.extend(key)
        params.extend(values[c] for c in VALUES)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


ALERT_LABELS = ("tenant", "channel_type", "event", "outcome")


def count_alerts(finished: Iterable[tuple[Any, str]], channel_type: str) -> int:
    """Add alerts that reached a final delivery state (``(outbox row, "sent" | "dead")``
    pairs, all of one channel's type) to :class:`~scheduler_app.models.AlertCounter`;
    call it in the transaction that records them. Returns the label sets touched."""
    from scheduler_app.models import AlertCounter, Tenant

    finished = [(row, outcome) for row, outcome in finished if outcome in ("sent", "dead")]
    if not finished:
        return 0
    slugs = dict(
        Tenant.objects.filter(pk__in={row.tenant_id for row, _ in finished}).values_list("pk", "slug")
    )
    counts: dict[tuple[str, ...], int] = {}
    for row, outcome in finished:
        key = (slugs.get(row.tenant_id, ""), channel_type, row.event, outcome)
        counts[key] = counts.get(key, 0) + 1
    q = connection.ops.quote_name
    table = q(AlertCounter._meta.db_table)
    labels = ", ".join(q(c) for c in ALERT_LABELS)
    ordered = sorted(counts.items())  # label order: two nodes recording at once cannot deadlock
    sql = (
        f"INSERT INTO {table} ({labels}, {q('count')}) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s)"] * len(ordered))
        + f" ON CONFLICT ({labels}) DO UPDATE SET {q('count')} = {table}.{q('count')} + EXCLUDED.{q('count')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for key, n in ordered for value in (*key, n)])
    return len(ordered)
