"""Run statistics: the read side shared by the admin dashboard, the job list, the API
and the metrics.

Every function takes querysets that the caller has already scoped (to a user's tenants,
to one job, ...), so tenant isolation stays where the faces decide it, and answers in a
fixed number of queries whatever the number of jobs and runs:

* counts and time buckets are ``GROUP BY`` queries over indexed columns;
* percentiles use PostgreSQL's ``percentile_cont`` where available; elsewhere (SQLite)
  they are computed in Python over a bounded sample (:data:`SAMPLE_CAP` rows, newest
  first), so the figure is approximate on very large SQLite histories but the page
  never loads a whole table."""

from __future__ import annotations

import math
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Q,
    QuerySet,
    Subquery,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber, TruncDay, TruncHour, TruncMinute

from scheduler_app.engine import waits
from scheduler_app.models import FAILURE_STATES, JobRun, RunState, failure_q

#: Runs a percentile is computed over at most: the newest of the window. Bounds the
#: dashboard's work on long windows (7 days of a busy installation), on every database.
SAMPLE_CAP = 20_000

#: window name -> (length, bucket width, truncation function)
WINDOWS: dict[str, tuple[timedelta, timedelta, Any]] = {
    "1h": (timedelta(hours=1), timedelta(minutes=1), TruncMinute),
    "24h": (timedelta(hours=24), timedelta(hours=1), TruncHour),
    "7d": (timedelta(days=7), timedelta(hours=1), TruncHour),
    "30d": (timedelta(days=30), timedelta(days=1), TruncDay),
}


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(f) WITHIN GROUP (ORDER BY expr)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


def has_percentile_cont() -> bool:
    return connection.vendor == "postgresql"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (what ``percentile_cont`` does)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _window(name: str) -> tuple[timedelta, timedelta, Any]:
    try:
        return WINDOWS[name]
    except KeyError:
        raise ValueError(
            f"window: {name!r} is not one of {', '.join(WINDOWS)}"  # a clear error for the API
        ) from None


# -- totals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    running: int
    queued_due: int
    queued_delayed: int
    late: int
    failed_24h: int
    succeeded_24h: int
    finished_24h: int

    @property
    def failure_rate_24h(self) -> float | None:
        counted = self.failed_24h + self.succeeded_24h
        return None if not counted else self.failed_24h / counted


def totals(runs: QuerySet, now: datetime, late_after: timedelta = timedelta(seconds=60)) -> Totals:
    """Running, queued (due / delayed), late (queued and due for longer than
    ``late_after``) and the last 24 h's outcomes (failures as the ``failed`` alert
    counts them: :func:`~scheduler_app.models.failure_q`): two queries."""
    live = runs.filter(state__in=(RunState.QUEUED, RunState.RUNNING)).aggregate(
        running=Count("pk", filter=Q(state=RunState.RUNNING)),
        queued_due=Count("pk", filter=Q(state=RunState.QUEUED, not_before__lte=now)),
        queued_delayed=Count("pk", filter=Q(state=RunState.QUEUED, not_before__gt=now)),
        late=Count("pk", filter=Q(state=RunState.QUEUED, not_before__lte=now - late_after)),
    )
    day = runs.filter(finished_at__gte=now - timedelta(hours=24)).aggregate(
        failed=Count("pk", filter=failure_q()),
        succeeded=Count("pk", filter=Q(state=RunState.SUCCEEDED)),
        finished=Count("pk"),
    )
    return Totals(
        running=live["running"],
        queued_due=live["queued_due"],
        queued_delayed=live["queued_delayed"],
        late=live["late"],
        failed_24h=day["failed"],
        succeeded_24h=day["succeeded"],
        finished_24h=day["finished"],
    )


def _reason_prefixes() -> dict[str, str]:
    """code -> the literal start of its stored text (each one distinct)."""
    return {code: next(string.Formatter().parse(text))[0] for code, text in waits.TEXTS.items()}


#: What :func:`held_back` counts: every reason code, and ``other`` (a stored text of no
#: known form).
HELD_BACK_REASONS = (*waits.TEXTS, "other")
#: Distinct tag sets of tag-routed jobs with queued runs that :func:`held_back` reads at
#: most (bounds the query on installations with very many differently tagged jobs).
TAG_SETS_CAP = 1000


def held_back(runs: QuerySet, live_tag_sets: Iterable[frozenset[str]] | None = None) -> dict[str, int]:
    """Queued runs held back, by reason code (every code of
    :data:`HELD_BACK_REASONS`, 0 when none): the reason the claim stored (a concurrency
    key, a rate limit, the cluster's load), or, for a tag-routed run with none stored,
    no live active node with all of its tags (what
    :func:`scheduler_app.monitoring.waiting.wait_reason` says of one run). Two queries:
    the stored reasons counted by prefix, the tag-routed runs grouped by tag set."""
    from scheduler_app.models import Routing

    if live_tag_sets is None:
        from scheduler_app.monitoring import waiting

        live_tag_sets = waiting.live_tag_sets()
    queued = runs.filter(state=RunState.QUEUED)
    prefixes = _reason_prefixes()
    counted = {
        code: Count("pk", filter=Q(wait_reason__startswith=prefix)) for code, prefix in prefixes.items()
    }
    row = queued.exclude(wait_reason="").aggregate(stored=Count("pk"), **counted)
    out = {code: row[code] or 0 for code in prefixes}
    out["other"] = (row["stored"] or 0) - sum(out.values())
    sets = list(live_tag_sets)
    tagged = (
        queued.filter(wait_reason="", target_node="", job__routing=Routing.TAGS)
        .values("job__routing_tags")
        .annotate(n=Count("pk"))
        .order_by()[:TAG_SETS_CAP]
    )
    for row in tagged:
        wanted = frozenset(t for t in (row["job__routing_tags"] or ()) if isinstance(t, str))
        if wanted and not any(wanted <= tags for tags in sets):
            out["tags"] += row["n"]
    return out


def job_counts(jobs: QuerySet) -> dict[str, int]:
    """All, schedulable, paused and disabled jobs: one query."""
    return jobs.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(enabled=True, paused=False)),
        paused=Count("pk", filter=Q(paused=True)),
        disabled=Count("pk", filter=Q(enabled=False)),
    )


# -- time series ----------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """Finished runs per time bucket and state over a window, oldest bucket first."""

    window: str
    start: datetime
    bucket: timedelta
    buckets: tuple[datetime, ...]
    counts: dict[str, tuple[int, ...]]
    #: Failures per bucket (final failed / timed-out / lost runs, as alerts count them).
    failures: tuple[int, ...] = ()

    def total(self, states: Iterable[str] | None = None) -> int:
        keys = list(states) if states is not None else list(self.counts)
        return sum(sum(self.counts.get(s, ())) for s in keys)

    def failure_rates(self) -> tuple[float | None, ...]:
        rates: list[float | None] = []
        failures = self.failures or (0,) * len(self.buckets)
        for i in range(len(self.buckets)):
            failed = failures[i]
            ok = self.counts.get(RunState.SUCCEEDED, (0,) * len(self.buckets))[i]
            rates.append(None if not failed + ok else failed / (failed + ok))
        return tuple(rates)


def _floor(moment: datetime, width: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if width >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if width >= timedelta(hours=1):
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def runs_per_bucket(runs: QuerySet, now: datetime, window: str = "1h") -> Series:
    """Finished runs by finish time bucket (UTC-aligned) and state, and the failures
    among them: one query."""
    length, width, trunc = _window(window)
    last = _floor(now, width)
    count = int(length / width)
    buckets = tuple(last - width * (count - 1 - i) for i in range(count))
    start = buckets[0]
    rows = (
        runs.filter(finished_at__gte=start)
        .annotate(bucket=trunc("finished_at", tzinfo=UTC))
        .values("bucket", "state")
        .annotate(n=Count("pk"), failures=Count("pk", filter=failure_q()))
        .order_by()
    )
    index = {b: i for i, b in enumerate(buckets)}
    counts: dict[str, list[int]] = {}
    failures = [0] * count
    for row in rows:
        bucket = row["bucket"]
        if bucket is None:
            continue
        i = index.get(bucket.astimezone(UTC))
        if i is None:
            continue
        counts.setdefault(row["state"], [0] * count)[i] += row["n"]
        failures[i] += row["failures"]
    return Series(
        window=window,
        start=start,
        bucket=width,
        buckets=buckets,
        counts={state: tuple(values) for state, values in counts.items()},
        failures=tuple(failures),
    )


# -- percentiles ----------------------------------------------------------------------


def _lateness_expression() -> Any:
    return ExpressionWrapper(F("started_at") - F("scheduled_for"), output_field=DurationField())


def _newest_finished(runs: QuerySet, since: datetime) -> QuerySet:
    """The runs that finished since ``since``, at most the newest :data:`SAMPLE_CAP`
    (a backward scan of the ``finished_at`` index, never the whole window)."""
    window = runs.filter(finished_at__gte=since)
    # The finish time of the SAMPLE_CAP-th newest run (none in a quieter window): one
    # uncorrelated subquery, which PostgreSQL evaluates once and uses as an index bound.
    cutoff = window.order_by("-finished_at").values("finished_at")[SAMPLE_CAP - 1 : SAMPLE_CAP]
    return window.filter(finished_at__gte=Coalesce(Subquery(cutoff), Value(since)))


def lateness(runs: QuerySet, since: datetime) -> dict[str, float | None]:
    """p50/p95 of how late runs started (started - scheduled), in seconds, over the
    newest :data:`SAMPLE_CAP` runs that finished since ``since``: one query."""
    started = _newest_finished(runs, since).filter(started_at__isnull=False)
    if has_percentile_cont():
        from django.db.models.functions import Extract

        seconds = Extract(_lateness_expression(), "epoch")
        row = started.aggregate(p50=PercentileCont(seconds, 0.5), p95=PercentileCont(seconds, 0.95))
        return {"p50": _clip(row["p50"]), "p95": _clip(row["p95"])}
    pairs = started.values_list("started_at", "scheduled_for")
    values = [(s - f).total_seconds() for s, f in pairs]
    return {"p50": _clip(percentile(values, 0.5)), "p95": _clip(percentile(values, 0.95))}


def lateness_per_bucket(
    runs: QuerySet, now: datetime, window: str = "1h"
) -> dict[str, tuple[float | None, ...]]:
    """p50/p95 start lateness (seconds) per bucket of :func:`runs_per_bucket` (by finish
    time, UTC-aligned), over the newest :data:`SAMPLE_CAP` runs that finished in the
    window: one query. None for a bucket without started runs."""
    length, width, trunc = _window(window)
    last = _floor(now, width)
    count = int(length / width)
    buckets = tuple(last - width * (count - 1 - i) for i in range(count))
    index = {b: i for i, b in enumerate(buckets)}
    p50: list[float | None] = [None] * count
    p95: list[float | None] = [None] * count
    started = _newest_finished(runs, buckets[0]).filter(started_at__isnull=False)
    if has_percentile_cont():
        from django.db.models.functions import Extract

        seconds = Extract(_lateness_expression(), "epoch")
        rows = (
            started.annotate(bucket=trunc("finished_at", tzinfo=UTC))
            .values("bucket")
            .annotate(p50=PercentileCont(seconds, 0.5), p95=PercentileCont(seconds, 0.95))
            .order_by()
        )
        for row in rows:
            i = index.get(row["bucket"].astimezone(UTC)) if row["bucket"] is not None else None
            if i is not None:
                p50[i], p95[i] = _clip(row["p50"]), _clip(row["p95"])
    else:
        values: dict[int, list[float]] = defaultdict(list)
        for finished_at, started_at, scheduled_for in started.values_list(
            "finished_at", "started_at", "scheduled_for"
        ):
            i = index.get(_floor(finished_at, width))
            if i is not None:
                values[i].append((started_at - scheduled_for).total_seconds())
        for i, seconds_list in values.items():
            p50[i], p95[i] = _clip(percentile(seconds_list, 0.5)), _clip(percentile(seconds_list, 0.95))
    return {"p50": tuple(p50), "p95": tuple(p95)}


def _clip(value: float | None) -> float | None:
    # A run started a hair before its scheduled second is on time, not early.
    return None if value is None else max(float(value), 0.0)


@dataclass(frozen=True)
class JobFigure:
    job_id: int
    runs: int
    failures: int
    p50: float | None
    p95: float | None


def slowest_jobs(runs: QuerySet, since: datetime, limit: int = 10) -> list[JobFigure]:
    """Jobs by p95 duration over the newest :data:`SAMPLE_CAP` runs that finished since
    ``since`` (all of them on all but the busiest windows): one query."""
    finished = _newest_finished(runs, since).filter(duration__isnull=False)
    if has_percentile_cont():
        rows = (
            finished.values("job_id")
            .annotate(
                n=Count("pk"),
                failures=Count("pk", filter=failure_q()),
                p50=PercentileCont("duration", 0.5),
                p95=PercentileCont("duration", 0.95),
            )
            .order_by("-p95", "job_id")[:limit]
        )
        return [JobFigure(r["job_id"], r["n"], r["failures"], r["p50"], r["p95"]) for r in rows]
    per_job: dict[int, list[float]] = defaultdict(list)
    fails: dict[int, int] = defaultdict(int)
    for job_id, duration, state, final in finished.values_list("job_id", "duration", "state", "is_final"):
        per_job[job_id].append(duration)
        fails[job_id] += final and state in FAILURE_STATES
    figures = [
        JobFigure(j, len(v), fails[j], percentile(v, 0.5), percentile(v, 0.95)) for j, v in per_job.items()
    ]
    figures.sort(key=lambda f: (-(f.p95 or 0.0), f.job_id))
    return figures[:limit]


def most_failing_jobs(runs: QuerySet, since: datetime, limit: int = 10) -> list[tuple[int, int, int]]:
    """``(job id, failures, finished runs)`` of the jobs with most failures since
    ``since``, most first: one query."""
    rows = (
        runs.filter(finished_at__gte=since)
        .values("job_id")
        .annotate(failures=Count("pk", filter=failure_q()), n=Count("pk"))
        .filter(failures__gt=0)
        .order_by("-failures", "job_id")[:limit]
    )
    return [(r["job_id"], r["failures"], r["n"]) for r in rows]


def last_runs_per_job(runs: QuerySet, job_ids: Iterable[int], per_job: int = 20) -> dict[int, list[Any]]:
    """The last ``per_job`` finished runs of each of ``job_ids`` (newest first), as
    ``(finished_at, state, duration, run id)`` tuples: one query, so a page of jobs never
    costs a query per job.

    On PostgreSQL the query reads the jobs and, per job, an array of its newest
    ``per_job`` finished runs (a correlated ``ORDER BY finished_at DESC LIMIT per_job``,
    a short backward scan of ``jobrun_job_finished_idx``), so it reads at most
    ``per_job`` runs per job however long the jobs' histories are. Elsewhere a window
    function ranks the runs of the jobs."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return {}
    finished = runs.filter(finished_at__isnull=False)
    rows: Iterable[Any]
    if connection.vendor == "postgresql":
        rows = _last_runs_postgresql(finished, ids, per_job)
    else:
        rows = (
            finished.filter(job_id__in=ids)
            .annotate(
                rank=Window(
                    RowNumber(),
                    partition_by=[F("job_id")],
                    order_by=[F("finished_at").desc(), F("pk").desc()],
                )
            )
            .filter(rank__lte=per_job)
            .order_by("job_id", "rank")
            .values_list("job_id", "finished_at", "state", "duration", "pk")
        )
    out: dict[int, list[Any]] = {i: [] for i in ids}
    for job_id, finished_at, state, duration, pk in rows:
        out[job_id].append((finished_at, state, duration, pk))
    return out


def _last_runs_postgresql(finished: QuerySet, ids: list[int], per_job: int) -> Iterable[Any]:
    from django.contrib.postgres.expressions import ArraySubquery
    from django.db.models import OuterRef
    from django.db.models.functions import JSONObject

    from scheduler_app.models import Job

    newest = (
        finished.filter(job_id=OuterRef("pk"))
        .order_by("-finished_at", "-pk")
        .values(r=JSONObject(f="finished_at", s="state", d="duration", i="pk"))[:per_job]
    )
    for job_id, recent in (
        Job.objects.filter(pk__in=ids).annotate(recent=ArraySubquery(newest)).values_list("pk", "recent")
    ):
        for run in recent:
            yield job_id, datetime.fromisoformat(run["f"]), run["s"], run["d"], run["i"]


def durations_of(rows: Sequence[Any]) -> dict[str, float | None]:
    """p50/p95 of the durations in rows from :func:`last_runs_per_job`."""
    values = [r[2] for r in rows if r[2] is not None]
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def outcomes_since(runs: QuerySet, job_ids: Iterable[int], since: datetime) -> dict[int, dict[str, int]]:
    """Successes and failures per job since ``since``: one query."""
    ids = list(job_ids)
    rows = (
        runs.filter(job_id__in=ids, finished_at__gte=since)
        .values("job_id")
        .annotate(
            ok=Count("pk", filter=Q(state=RunState.SUCCEEDED)),
            failed=Count("pk", filter=failure_q()),
        )
        .order_by()
    )
    out = {i: {"ok": 0, "failed": 0} for i in ids}
    for r in rows:
        out[r["job_id"]] = {"ok": r["ok"], "failed": r["failed"]}
    return out


def recent_failures(runs: QuerySet, limit: int = 10) -> list[JobRun]:
    """The latest failures (:func:`~scheduler_app.models.failure_q`) with their job:
    one query."""
    return list(
        runs.filter(failure_q(), finished_at__isnull=False)
        .select_related("job", "tenant")
        .order_by("-finished_at", "-pk")[:limit]
    )


def running_now(runs: QuerySet, limit: int = 20) -> list[JobRun]:
    return list(
        runs.filter(state=RunState.RUNNING)
        .select_related("job", "tenant")
        .order_by("started_at", "pk")[:limit]
    )


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of an error, shortened."""
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""
