"""The dashboard's figures for one user: everything the admin's ``Scheduler ›
Dashboard`` shows, as plain JSON-ready data (the page renders it, its JSON endpoint
returns it, the API can reuse it).

Scoped exactly like the admin (:func:`scheduler_app.services.permissions.scope`): a
user sees only his tenants' jobs and runs. Nodes are shared by all tenants and shown to
every staff user, as on ``Scheduler › Nodes``. The number of queries is fixed (about
twenty) whatever the number of jobs and runs."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from scheduler_app.engine import triggerspec
from scheduler_app.models import CalendarDate, ConfigVersion, Job, JobRun
from scheduler_app.monitoring import nodes, stats
from scheduler_app.services import permissions

#: Jobs whose next fire times are computed for "upcoming" (highest priority first):
#: bounds the page's work on installations with very many jobs.
UPCOMING_JOBS_CAP = 2000
UPCOMING_LIMIT = 20
#: How long computed fire times are reused (per process and tenant scope) while no
#: scoped job changed: the page polls every few seconds, and 2,000 triggers take a while.
UPCOMING_CACHE_SECONDS = 30.0
#: Fire times kept per job for a reused list (a job firing every half second for the
#: cache time, and the five after).
UPCOMING_PER_JOB_CAP = 65

_upcoming_cache: dict[Any, tuple[float, list[dict]]] = {}
_upcoming_lock = threading.Lock()

#: How long the admin's dashboard figures of one tenant scope and window are reused
#: (per process): the page polls every few seconds, and every operator of the same
#: scope (or tab) polling then costs one computation per period instead of one each.
#: The data says when it was computed (``generated_at``, shown as "updated"); a
#: configuration change (the version the services bump on every job, rule, calendar
#: or group change) or a change of the user's tenants gives a new key at once; run
#: outcomes show up within this time.
BUILD_CACHE_SECONDS = 5.0
_build_cache: dict[Any, tuple[float, dict[str, Any]]] = {}
_build_lock = threading.Lock()


def scope_key(user: Any) -> Any:
    """What :func:`permissions.scope` filters ``user``'s rows by: ``"*"`` or the
    user's tenant ids (users with the same key see exactly the same rows)."""
    if permissions.sees_everything(user):
        return "*"
    return tuple(sorted(permissions.member_tenant_ids(user)))


def forget() -> None:
    """Drop every reused figure (tests; a process that wants fresh data at once)."""
    with _build_lock:
        _build_cache.clear()
    with _upcoming_lock:
        _upcoming_cache.clear()


def scoped_runs(user: Any) -> QuerySet:
    return permissions.scope(user, JobRun.objects.all())


def scoped_jobs(user: Any) -> QuerySet:
    return permissions.scope(user, Job.objects.all())


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def upcoming_fires(
    jobs: QuerySet,
    now: datetime,
    within: timedelta = timedelta(hours=1),
    limit: int | None = UPCOMING_LIMIT,
    every_until: datetime | None = None,
) -> list[dict]:
    """The next fire times in ``within`` of the schedulable jobs, soonest first: two
    queries (jobs, their calendars' excluded dates), then trigger arithmetic in Python.
    Five per job; with ``every_until``, also each one up to that time (at most
    :data:`UPCOMING_PER_JOB_CAP`), so a list reused until then still shows a job that
    fires every second."""
    candidates = list(
        jobs.schedulable()
        .exclude(trigger__type="manual")
        .select_related("tenant")
        .only("pk", "name", "trigger", "created_at", "priority", "enabled", "paused", "tenant__slug")
        .order_by("-priority", "pk")[:UPCOMING_JOBS_CAP]
    )
    excluded: dict[int, list] = {}
    for job_id, date in CalendarDate.objects.filter(calendar__jobs__in=candidates).values_list(
        "calendar__jobs", "date"
    ):
        excluded.setdefault(job_id, []).append(date)
    horizon = now + within
    fires: list[tuple[datetime, Job, str]] = []
    for job in candidates:
        try:
            spec = job.trigger_spec
            trigger = triggerspec.build_trigger(
                spec,
                hash_key=job.hash_key,
                anchor=job.created_at,
                excluded_dates=excluded.get(job.pk, []),
            )
            times = triggerspec.fire_times(trigger, now, 5)
            if every_until is not None and len(times) == 5 and times[-1] <= every_until:
                more = triggerspec.fire_times(trigger, now, UPCOMING_PER_JOB_CAP)
                until = [t for t in more if t <= every_until]
                times = until + [t for t in more if t > every_until][:5]
        except Exception:  # an invalid stored trigger does not break the page
            continue
        zone = getattr(spec, "timezone_name", "") or "UTC"
        fires.extend((t, job, zone) for t in times if t <= horizon)
    fires.sort(key=lambda pair: (pair[0], pair[1].pk))
    return [
        {
            "job_id": job.pk,
            "job": job.name,
            "tenant": job.tenant.slug,
            "at": _iso(at),
            "timezone": zone,
        }
        for at, job, zone in fires[:limit]
    ]


def cached_upcoming_fires(user: Any, jobs: QuerySet, now: datetime) -> list[dict]:
    """:func:`upcoming_fires` for the next hour, reused for :data:`UPCOMING_CACHE_SECONDS`
    while the scoped jobs are unchanged (one aggregate query tells: their number, newest
    change and highest id) and so is the configuration version (one more: a calendar's
    dates change no job row, but the services bump that version for the jobs using it),
    so polls do not recompute every trigger. What is reused is computed for the hour and
    the cache time after it, and filtered to the hour from now."""
    scope = scope_key(user)
    state = jobs.aggregate(n=Count("pk"), changed=Max("updated_at"), last=Max("pk"))
    key = (scope, state["n"], state["changed"], state["last"], ConfigVersion.current())
    clock = time.monotonic()
    with _upcoming_lock:
        hit = _upcoming_cache.get(key)
    if hit is None or hit[0] < clock:
        ahead = timedelta(hours=1, seconds=UPCOMING_CACHE_SECONDS)
        # What may still be shown until the entry expires: the fires of the cache time
        # and the limit's worth after them.
        soon = now + timedelta(seconds=UPCOMING_CACHE_SECONDS)
        every = upcoming_fires(jobs, now, within=ahead, limit=None, every_until=soon)
        first_later = next(
            (i for i, f in enumerate(every) if datetime.fromisoformat(f["at"]) > soon), len(every)
        )
        fires = every[: first_later + UPCOMING_LIMIT]
        with _upcoming_lock:
            for stale in [k for k, (until, _f) in _upcoming_cache.items() if until < clock]:
                del _upcoming_cache[stale]
            _upcoming_cache[key] = (clock + UPCOMING_CACHE_SECONDS, fires)
    else:
        fires = hit[1]
    horizon = now + timedelta(hours=1)
    return [f for f in fires if now < datetime.fromisoformat(f["at"]) <= horizon][:UPCOMING_LIMIT]


def build(user: Any, window: str = "1h", now: datetime | None = None) -> dict[str, Any]:
    """The dashboard's data for ``user`` over ``window`` (``1h``, ``24h``, ``7d``,
    ``30d``); :class:`ValueError` naming the window when it is unknown."""
    now = now or timezone.now()
    series = stats.runs_per_bucket(scoped_runs(user), now, window)
    runs = scoped_runs(user)
    jobs = scoped_jobs(user)
    length = stats.WINDOWS[window][0]
    since = now - length
    totals = stats.totals(runs, now)
    held = stats.held_back(runs)
    counts = stats.job_counts(jobs)
    slow = stats.slowest_jobs(runs, since)
    failing = stats.most_failing_jobs(runs, since)
    names = dict(
        Job.objects.filter(pk__in={f.job_id for f in slow} | {j for j, _f, _n in failing}).values_list(
            "pk", "name"
        )
    )
    cluster = nodes.cluster_state(now)
    lateness = stats.lateness(runs, since)
    lateness_series = stats.lateness_per_bucket(runs, now, window)
    return {
        "generated_at": _iso(now),
        "window": window,
        "totals": {
            "running": totals.running,
            "queued_due": totals.queued_due,
            "queued_delayed": totals.queued_delayed,
            "late": totals.late,
            "failed_24h": totals.failed_24h,
            "succeeded_24h": totals.succeeded_24h,
            "failure_rate_24h": totals.failure_rate_24h,
            "jobs": counts["total"],
            "jobs_paused": counts["paused"],
            "jobs_disabled": counts["disabled"],
            "nodes_alive": len(cluster.alive),
            "held_back": sum(held.values()),
        },
        "held_back": held,
        "series": {
            "start": _iso(series.start),
            "bucket_seconds": int(series.bucket.total_seconds()),
            "buckets": [_iso(b) for b in series.buckets],
            "counts": dict(series.counts),
            "failures": list(series.failures),
            "failure_rate": list(series.failure_rates()),
        },
        "lateness": lateness,
        "lateness_series": {"p50": list(lateness_series["p50"]), "p95": list(lateness_series["p95"])},
        "slowest_jobs": [
            {"job_id": f.job_id, "job": names.get(f.job_id, ""), "runs": f.runs, "p50": f.p50, "p95": f.p95}
            for f in slow
        ],
        "failing_jobs": [
            {"job_id": j, "job": names.get(j, ""), "failures": f, "runs": n} for j, f, n in failing
        ],
        "running": [
            {
                "run_id": r.pk,
                "job_id": r.job_id,
                "job": r.job.name,
                "tenant": r.tenant.slug,
                "node": r.node,
                "started_at": _iso(r.started_at),
                "seconds": (now - r.started_at).total_seconds() if r.started_at else None,
            }
            for r in stats.running_now(runs)
        ],
        "recent_failures": [
            {
                "run_id": r.pk,
                "job_id": r.job_id,
                "job": r.job.name,
                "tenant": r.tenant.slug,
                "state": r.state,
                "finished_at": _iso(r.finished_at),
                "error": stats.first_line(r.error) or r.error_type,
            }
            for r in stats.recent_failures(runs)
        ],
        "upcoming": cached_upcoming_fires(user, jobs, now),
        "nodes": [
            {
                "name": n.name,
                "state": n.state,
                "alive": n.fresh,
                "leader": n.leader,
                "running": n.running,
                "capacity": n.capacity,
                "heartbeat_at": _iso(n.heartbeat_at),
            }
            for n in cluster.nodes
        ],
    }


def cached_build(user: Any, window: str = "1h") -> dict[str, Any]:
    """:func:`build` for now, reused for :data:`BUILD_CACHE_SECONDS` per (tenant scope,
    window, configuration version) and process: two queries when reused (the scope and
    the version). The answer is a new top-level dict each time (callers add keys); its
    nested values are shared and must not be changed."""
    stats._window(window)  # ValueError naming the window when unknown
    key = (scope_key(user), window, ConfigVersion.current())
    clock = time.monotonic()
    with _build_lock:
        hit = _build_cache.get(key)
    if hit is not None and hit[0] >= clock:
        return dict(hit[1])
    data = build(user, window)
    with _build_lock:
        for stale in [k for k, (until, _d) in _build_cache.items() if until < clock]:
            del _build_cache[stale]
        _build_cache[key] = (time.monotonic() + BUILD_CACHE_SECONDS, data)
    return dict(data)
