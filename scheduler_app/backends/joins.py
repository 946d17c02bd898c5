"""DAG joins on the Django ORM: when an upstream run's end queues its downstream jobs
(trigger rules, :func:`scheduler_app.engine.rules.join_decision`), and the upstream
results a dependency run receives (its job's ``upstream_param``).

Called by :class:`~scheduler_app.backends.runstore.DjangoRunStore` inside the
transaction that records the outcome (joins) or claims the run (results). On
PostgreSQL the downstream job's row is locked (``FOR NO KEY UPDATE``) first, which
serialises the joins of one job across nodes; SQLite serialises all writers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Max, Q, TextField
from django.db.models.functions import Cast, Length

from scheduler_app.conf import app_settings
from scheduler_app.engine import rules
from scheduler_app.models import Job, JobDependency, JobJoin, JobRun, RunReason, RunState, TriggerRule

logger = logging.getLogger(__name__)

FAILED_STATES = {RunState.FAILED, RunState.TIMED_OUT, RunState.LOST}


def is_end(run: JobRun) -> bool:
    """A success, a failure no retry follows, or a skip (the run never started: misfire,
    overlap or limit policy ``skip``): what a round of a join counts."""
    return run.state in (RunState.SUCCEEDED, RunState.SKIPPED) or (
        run.state in FAILED_STATES and run.is_final
    )


def end_kind(run: JobRun) -> str:
    if run.state == RunState.SUCCEEDED:
        return rules.END_SUCCESS
    if run.state == RunState.SKIPPED:
        return rules.END_SKIPPED
    return rules.END_FAILED


def edges_of(job_ids: Iterable[int]) -> dict[int, list[tuple[int, str]]]:
    """upstream job id -> its (downstream job id, condition) edges, in the model's
    order (upstream name, downstream name). Plain SQL: the ORM's compilation of this
    per-batch query cost more than running it."""
    edges: dict[int, list[tuple[int, str]]] = {}
    ids = sorted(set(job_ids))
    if not ids:
        return edges
    q = connection.ops.quote_name
    meta = JobDependency._meta
    up, down, cond = (q(meta.get_field(name).column) for name in ("upstream", "downstream", "condition"))
    job_t, name = q(Job._meta.db_table), q(Job._meta.get_field("name").column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.{up}, e.{down}, e.{cond} FROM {q(meta.db_table)} e "
            f"INNER JOIN {job_t} u ON u.{q('id')} = e.{up} INNER JOIN {job_t} d ON d.{q('id')} = e.{down} "
            f"WHERE e.{up} IN ({', '.join(['%s'] * len(ids))}) ORDER BY u.{name}, d.{name}, e.{q('id')}",
            ids,
        )
        for upstream, downstream, condition in cursor.fetchall():
            edges.setdefault(upstream, []).append((downstream, condition))
    return edges


def enqueue_dependents(
    ended: Sequence[JobRun], now: datetime, edges: Mapping[int, Sequence[tuple[int, str]]], *, postgres: bool
) -> int:
    """Queue the downstream runs that the ends of ``ended`` (in that order) complete;
    how many were queued. Call it inside the transaction that writes those ends.

    On PostgreSQL every downstream job of the batch is locked first, in one statement
    and in primary-key order (``FOR NO KEY UPDATE``): that serialises the joins of a job
    across nodes, and two batches locking overlapping downstream jobs always take them
    in the same order, so they wait for each other instead of deadlocking."""
    wanted = sorted({down for run in ended for down, _condition in edges.get(run.job_id, ())})
    if not wanted:
        return 0
    downstream_qs = Job.objects.filter(pk__in=wanted).order_by("pk")
    if postgres:
        downstream_qs = downstream_qs.select_for_update(no_key=True)
    jobs = {job.pk: job for job in downstream_qs}
    queued = 0
    for run in ended:
        for downstream_id, condition in edges.get(run.job_id, ()):
            downstream = jobs.get(downstream_id)
            if downstream is None or not downstream.enabled:
                continue
            if downstream.trigger_rule == TriggerRule.ALL_SUCCESS:
                # A skipped upstream never meets an edge: Airflow skips an all_success
                # task whose upstream was skipped; here the join has no rounds and
                # waits for that upstream's next end that meets the edge.
                if run.state == RunState.SKIPPED or not rules.condition_met(
                    condition, run.state, run.is_final
                ):
                    continue
                upstream_runs = _all_success_join(downstream)
            else:
                if not is_end(run):
                    continue
                upstream_runs = _round(downstream, run, now)
            if upstream_runs is None:
                continue
            _queue(downstream, run, now, upstream_runs)
            queued += 1
    return queued


def _queue(downstream: Job, run: JobRun, now: datetime, upstream_runs: list[int]) -> JobRun:
    """The dependency run, created like every run the store makes
    (:meth:`JobRun.for_job`). Its scheduled time is unique for the job: two rounds
    firing in one batch (two ends of one upstream) would otherwise share ``now`` and
    collide on (job, scheduled_for, attempt)."""
    latest = (
        JobRun.objects.filter(job=downstream, scheduled_for__gte=now, attempt=1, target_node="")
        .order_by("-scheduled_for")
        .values_list("scheduled_for", flat=True)
        .first()
    )
    when = now if latest is None else latest + timedelta(microseconds=1)
    created = JobRun.for_job(
        downstream,
        when,
        reason=RunReason.DEPENDENCY,
        not_before=now,
        triggered_by=run,
        upstream_runs=upstream_runs,
    )
    created.save()
    return created


def _all_success_join(downstream: Job) -> list[int] | None:
    """Every upstream met its edge's condition since the downstream's last
    dependency-triggered run (an AND join): the latest such run of each upstream, or
    None while one is missing."""
    since = JobRun.objects.filter(job=downstream, reason=RunReason.DEPENDENCY).aggregate(
        last=Max("queued_at")
    )["last"]
    found = []
    for edge in JobDependency.objects.filter(downstream=downstream):
        runs = JobRun.objects.filter(job_id=edge.upstream_id, finished_at__isnull=False)
        if since is not None:
            runs = runs.filter(finished_at__gt=since)
        if edge.condition == "success":
            runs = runs.filter(state=RunState.SUCCEEDED)
        elif edge.condition == "failure":
            runs = runs.filter(state__in=FAILED_STATES, is_final=True)
        else:
            runs = runs.filter(Q(state=RunState.SUCCEEDED) | Q(state__in=FAILED_STATES, is_final=True))
        latest = runs.order_by("-finished_at", "-pk").values_list("pk", flat=True).first()
        if latest is None:
            return None
        found.append(latest)
    return found


def _round(downstream: Job, run: JobRun, now: datetime) -> list[int] | None:
    """Put ``run``'s end into the oldest open round of ``downstream`` that has none of
    its job yet (or a new round); the round's upstream run ids when it fires now."""
    key = str(run.job_id)
    rounds = list(JobJoin.objects.filter(job=downstream).order_by("opened_at", "pk"))
    if any(r.ends.get(key, {}).get("run") == run.pk for r in rounds):
        return None  # this end is in a round already (fed twice: never counted twice)
    target = next((r for r in rounds if key not in r.ends), None)
    if target is None:
        cap = int(app_settings.JOIN_OPEN_ROUNDS_MAX)
        if len(rounds) >= cap:
            drop = rounds[: len(rounds) - cap + 1]
            JobJoin.objects.filter(pk__in=[r.pk for r in drop]).delete()
            logger.warning(
                "join rounds dropped: upstream jobs have not ended in them",
                extra={"job": downstream.name, "job_id": downstream.pk, "dropped": len(drop), "cap": cap},
            )
        target = JobJoin(job=downstream, opened_at=now, ends={})
    target.ends[key] = {"run": run.pk, "ok": run.state == RunState.SUCCEEDED, "end": end_kind(run)}
    upstreams = set(JobDependency.objects.filter(downstream=downstream).values_list("upstream_id", flat=True))
    ends = {int(k): stored_end(v) for k, v in target.ends.items()}
    decision = rules.join_decision(downstream.trigger_rule, ends, upstreams, fired=target.fired)
    if decision.fire:
        target.fired = True
    if decision.close:
        if target.pk is not None:
            target.delete()
    else:
        target.save()
    if not decision.fire:
        return None
    # An end whose run retention deleted before a backup (restored with run null) counts
    # for the round but has no run to pass on.
    return [
        int(v["run"])
        for k, v in sorted(target.ends.items())
        if int(k) in upstreams and v.get("run") is not None
    ]


def stored_end(end: Mapping[str, Any]) -> str:
    """How a stored end came (rounds written before skips counted have only ``ok``)."""
    kind = end.get("end")
    if kind in (rules.END_SUCCESS, rules.END_FAILED, rules.END_SKIPPED):
        return str(kind)
    return rules.END_SUCCESS if end.get("ok") else rules.END_FAILED


# -- upstream results ---------------------------------------------------------------------


def upstream_results(runs: Iterable[tuple[JobRun, Job]]) -> dict[int, dict[str, Any]]:
    """For each claimed dependency run whose job has an ``upstream_param``: run id ->
    {upstream job name: result} of its upstream runs (two queries for the batch).

    Results are what the upstream runs stored: JSON, capped by ``RESULT_MAX_BYTES``,
    their secrets already masked. The whole object is capped by
    ``UPSTREAM_RESULTS_MAX_BYTES``: the largest results are replaced by
    ``{"truncated": true, "size_bytes": N}`` until the rest fits."""
    runs = list(runs)
    wanted = {run.pk: [int(i) for i in run.upstream_runs] for run, job in runs if job.upstream_param}
    wanted = {pk: ids for pk, ids in wanted.items() if ids}
    if not wanted:
        return {}
    ids = {i for ids in wanted.values() for i in ids}
    # Each upstream run with the jobs it is an upstream of (a row per edge): only runs of
    # the downstream's tenant and of one of its upstream jobs count; the list is not
    # trusted for that (restored from an edited file, or the edges changed since).
    sized: dict[int, dict[str, Any]] = {}
    feeds: dict[int, set[int]] = {}
    for row in (
        JobRun.objects.filter(pk__in=ids)
        .annotate(size=Length(Cast("result", TextField())))
        .values("pk", "job__name", "size", "tenant_id", "job__downstream_edges__downstream_id")
    ):
        sized.setdefault(row["pk"], row)
        feeds.setdefault(row["pk"], set()).add(row["job__downstream_edges__downstream_id"])
    of = {run.pk: (run.tenant_id, job.pk) for run, job in runs if run.pk in wanted}
    wanted = {
        pk: [i for i in up_ids if i in sized and sized[i]["tenant_id"] == of[pk][0] and of[pk][1] in feeds[i]]
        for pk, up_ids in wanted.items()
    }
    cap = int(app_settings.UPSTREAM_RESULTS_MAX_BYTES)
    keep: dict[int, set[int]] = {}
    for pk, up_ids in wanted.items():
        rows = sorted((sized[i] for i in up_ids if i in sized), key=lambda r: (r["size"] or 0, r["pk"]))
        total, kept = 2, set()
        for row in rows:
            cost = (row["size"] or 4) + len(json.dumps(row["job__name"])) + 2
            if total + cost <= cap:
                kept.add(row["pk"])
                total += cost
        keep[pk] = kept
    values = dict(JobRun.objects.filter(pk__in=set().union(*keep.values())).values_list("pk", "result"))
    out: dict[int, dict[str, Any]] = {}
    for pk, up_ids in wanted.items():
        mapping: dict[str, Any] = {}
        for i in up_ids:
            row = sized.get(i)
            if row is None:
                continue  # the upstream run was deleted (retention)
            if i in keep[pk]:
                mapping[row["job__name"]] = values.get(i)
            else:
                mapping[row["job__name"]] = {"truncated": True, "size_bytes": row["size"]}
        out[pk] = _fit(mapping, cap)
    return out


def upstream_jobs(job_ids: Iterable[int]) -> dict[int, set[int]]:
    """downstream job id -> the ids of its upstream jobs (one query)."""
    out: dict[int, set[int]] = {}
    rows = JobDependency.objects.filter(downstream_id__in=set(job_ids)).values_list(
        "downstream_id", "upstream_id"
    )
    for down, up in rows:
        out.setdefault(down, set()).add(up)
    return out


def visible_upstream_ids(run: JobRun) -> list[int]:
    """``run.upstream_runs`` without the ids of runs it may not show: another tenant's
    run, or a run of a job that is not one of its job's upstreams (ids of deleted runs
    stay: retention, shown as gone)."""
    ids = [int(i) for i in run.upstream_runs or ()]
    if not ids:
        return []
    allowed = set(
        JobDependency.objects.filter(downstream_id=run.job_id).values_list("upstream_id", flat=True)
    )
    rows = dict(
        (pk, (tenant_id, job_id))
        for pk, tenant_id, job_id in JobRun.objects.filter(pk__in=ids).values_list(
            "pk", "tenant_id", "job_id"
        )
    )
    return [i for i in ids if i not in rows or (rows[i][0] == run.tenant_id and rows[i][1] in allowed)]


def _fit(mapping: dict[str, Any], cap: int) -> dict[str, Any]:
    """The exact encoding decides (the database's text of a JSON value may differ)."""
    sizes = {name: len(json.dumps(value).encode()) for name, value in mapping.items()}
    total = len(json.dumps(mapping).encode())
    for name in sorted(sizes, key=lambda n: -sizes[n]):
        if total <= cap:
            break
        if isinstance(mapping[name], Mapping) and mapping[name].get("truncated") is True and sizes[name] < 64:
            continue
        mapping[name] = {"truncated": True, "size_bytes": sizes[name]}
        total = len(json.dumps(mapping).encode())
    return mapping


def upstream_of(run: JobRun) -> list[dict[str, Any]]:
    """The upstream runs that queued ``run`` (``upstream_runs``, in that order), for the
    run page and the API: ``{"id", "run"}`` (``run`` None once retention deleted it) and,
    when the job has an ``upstream_param``, ``"passed"``: what that run passed there,
    masked and capped exactly as the downstream received it (:func:`upstream_results`)."""
    # Never another tenant's run nor a run of a job that is not an upstream
    # (dependencies do not cross tenants; a restored or edited list is not trusted for
    # that): such ids are left out.
    ids = visible_upstream_ids(run)
    if not ids:
        return []
    found = JobRun.objects.filter(tenant_id=run.tenant_id).select_related("job").in_bulk(ids)
    job = run.job
    passed = upstream_results([(run, job)]).get(run.pk, {}) if job.upstream_param else None
    out = []
    for pk in ids:
        entry: dict[str, Any] = {"id": pk, "run": found.get(pk)}
        if passed is not None and entry["run"] is not None:
            entry["passed"] = passed.get(entry["run"].job.name)
        out.append(entry)
    return out
