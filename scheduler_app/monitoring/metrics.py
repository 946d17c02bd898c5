"""Prometheus metrics at ``/metrics``, cluster-wide.

Every value is read from the database at scrape time, so any web worker answers the
same numbers for the whole cluster, however many web processes and scheduler nodes
run:

* counters and histograms come from :class:`~scheduler_app.models.RunCounter`, kept by
  whoever records outcomes (:mod:`scheduler_app.monitoring.counters`): monotonic,
  never reset by a restart or by pruning old runs;
* gauges (queue depth, running runs, loop lag, jobs) come from one query over the
  queued and running runs (served by the claim index), and the nodes from
  :func:`scheduler_app.monitoring.nodes.cluster_state`.

A scrape reuses what it read for ``METRICS_CACHE_SECONDS`` so that many scrapers do not
load the database. The metrics live in this module's own ``CollectorRegistry``, not
prometheus-client's global one, so a host project's metrics stay separate unless it
registers :class:`SchedulerCollector` in its own registry. See docs/metrics.md."""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views import View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from scheduler_app.conf import app_settings
from scheduler_app.models import AlertCounter, Job, JobRun, RunCounter, RunState
from scheduler_app.models.counters import DURATION_BUCKETS, LATENESS_BUCKETS
from scheduler_app.monitoring import counters, nodes, stats

RUN_LABELS = ["tenant", "group", "task", "state"]
HISTOGRAM_LABELS = ["tenant", "group", "task"]


def _bound(value: float) -> str:
    return f"{value:g}"


def collect_counters(per_job: bool) -> list[Metric]:
    runs = CounterMetricFamily(
        "scheduler_runs",
        "Runs that reached a final state (succeeded, failed, timed_out, cancelled, skipped, lost, interrupted).",
        labels=RUN_LABELS + (["job"] if per_job else []),
    )
    retries = CounterMetricFamily(
        "scheduler_run_retries",
        "Finished runs that were retries (attempt 2 or later).",
        labels=HISTOGRAM_LABELS + (["job"] if per_job else []),
    )
    hist: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {"duration": {}, "lateness": {}}
    retry_totals: dict[tuple[str, ...], float] = defaultdict(float)
    fields = ["tenant", "group", "task", "job", "state", *counters.VALUES]
    for row in RunCounter.objects.order_by("tenant", "group", "task", "job", "state").values_list(*fields):
        data = dict(zip(fields, row, strict=True))
        base = [data["tenant"], data["group"], data["task"]] + ([data["job"]] if per_job else [])
        runs.add_metric([*base[:3], data["state"], *base[3:]], data["count"])
        retry_totals[tuple(base)] += data["retries"]
        for kind, columns in (
            ("duration", counters.DURATION_COLUMNS),
            ("lateness", counters.LATENESS_COLUMNS),
        ):
            agg = hist[kind].setdefault(tuple(base), {"buckets": [0] * len(columns), "sum": 0.0, "count": 0})
            for i, column in enumerate(columns):
                agg["buckets"][i] += data[column]
            agg["sum"] += data[f"{kind}_sum"]
            agg["count"] += data[f"{kind}_count"]
    for labels, value in retry_totals.items():
        retries.add_metric(list(labels), value)
    out: list[Metric] = [runs, retries]
    for kind, bounds, doc in (
        ("duration", DURATION_BUCKETS, "Run duration in seconds (runs that executed)."),
        ("lateness", LATENESS_BUCKETS, "Seconds from when a run was due to when it started."),
    ):
        family = HistogramMetricFamily(
            f"scheduler_run_{kind}_seconds", doc, labels=HISTOGRAM_LABELS + (["job"] if per_job else [])
        )
        for labels, agg in hist[kind].items():
            cumulative, buckets = 0, []
            for bound, value in zip(bounds, agg["buckets"], strict=True):
                cumulative += value
                buckets.append((_bound(bound), cumulative))
            buckets.append(("+Inf", agg["count"]))
            family.add_metric(list(labels), buckets, sum_value=agg["sum"])
        out.append(family)
    return out + collect_alert_counters()


def collect_alert_counters() -> list[Metric]:
    sent = CounterMetricFamily(
        "scheduler_alerts_sent",
        "Alerts delivered to their channel.",
        labels=["tenant", "channel_type", "event"],
    )
    given_up = CounterMetricFamily(
        "scheduler_alerts_given_up",
        "Alerts given up on after ALERTS_GIVE_UP_AFTER_SECONDS of failed delivery attempts.",
        labels=["tenant", "channel_type", "event"],
    )
    families = {"sent": sent, "dead": given_up}
    for tenant, channel_type, event, outcome, count in AlertCounter.objects.order_by(
        "tenant", "channel_type", "event", "outcome"
    ).values_list("tenant", "channel_type", "event", "outcome", "count"):
        if outcome in families:
            families[outcome].add_metric([tenant, channel_type, event], count)
    return [sent, given_up]


def collect_gauges() -> list[Metric]:
    now = timezone.now()
    queued = Q(state=RunState.QUEUED)
    row = JobRun.objects.filter(state__in=[RunState.QUEUED, RunState.RUNNING]).aggregate(
        due=Count("pk", filter=queued & Q(not_before__lte=now)),
        delayed=Count("pk", filter=queued & Q(not_before__gt=now)),
        running=Count("pk", filter=Q(state=RunState.RUNNING)),
        oldest_due=Min("not_before", filter=queued & Q(not_before__lte=now)),
    )
    depth = GaugeMetricFamily(
        "scheduler_queue_depth",
        "Queued runs: due now, or delayed (retry backoff, run at, not yet due).",
        labels=["kind"],
    )
    depth.add_metric(["due"], row["due"])
    depth.add_metric(["delayed"], row["delayed"])
    running = GaugeMetricFamily("scheduler_runs_running", "Runs executing now, on any node.")
    running.add_metric([], row["running"])
    lag = GaugeMetricFamily(
        "scheduler_loop_lag_seconds",
        "How far the dispatchers are behind: age of the oldest due queued run (0 when none waits).",
    )
    lag.add_metric([], max((now - row["oldest_due"]).total_seconds(), 0.0) if row["oldest_due"] else 0.0)
    held = GaugeMetricFamily(
        "scheduler_runs_held_back",
        "Queued runs held back, by reason: concurrency key, rate limit, cluster load, node tags.",
        labels=["reason"],
    )
    for reason, value in stats.held_back(JobRun.objects.all()).items():
        held.add_metric([reason], value)
    jobs = GaugeMetricFamily("scheduler_jobs", "Jobs by status.", labels=["status"])
    counts = Job.objects.aggregate(
        active=Count("pk", filter=Q(enabled=True, paused=False)),
        paused=Count("pk", filter=Q(enabled=True, paused=True)),
        disabled=Count("pk", filter=Q(enabled=False)),
    )
    for status, value in counts.items():
        jobs.add_metric([status], value)
    state = nodes.cluster_state(now)
    alive = GaugeMetricFamily("scheduler_nodes_alive", "Scheduler nodes with a fresh heartbeat.")
    alive.add_metric([], len(state.alive))
    used = GaugeMetricFamily("scheduler_node_used_slots", "Runs executing on each node.", labels=["node"])
    capacity = GaugeMetricFamily(
        "scheduler_node_capacity_slots", "Run slots of each node (when known).", labels=["node"]
    )
    age = GaugeMetricFamily(
        "scheduler_node_heartbeat_age_seconds",
        "Seconds since each node's last sign of life.",
        labels=["node"],
    )
    load = GaugeMetricFamily(
        "scheduler_node_load_per_cpu", "1-minute load average per CPU of each node.", labels=["node"]
    )
    clock = GaugeMetricFamily(
        "scheduler_node_clock_offset_seconds",
        "Each node's clock minus the database's, at its last heartbeat.",
        labels=["node"],
    )
    leader = GaugeMetricFamily(
        "scheduler_node_leader", "1 for the node holding the leader lease.", labels=["node"]
    )
    node_state = GaugeMetricFamily(
        "scheduler_node_state", "1 for each node's registered state.", labels=["node", "state"]
    )
    for node in state.nodes:
        leader.add_metric([node.name], 1.0 if node.leader else 0.0)
        node_state.add_metric([node.name, node.state], 1.0)
        if node.load is not None:
            load.add_metric([node.name], node.load)
        if node.clock_offset is not None:
            clock.add_metric([node.name], node.clock_offset)
        used.add_metric([node.name], node.running)
        if node.capacity is not None:
            capacity.add_metric([node.name], node.capacity)
        if node.heartbeat_at is not None:
            age.add_metric([node.name], max((now - node.heartbeat_at).total_seconds(), 0.0))
    from scheduler_app.backends import load as cluster_load

    overloaded = GaugeMetricFamily(
        "scheduler_cluster_overloaded",
        "1 while the cluster is overloaded (jobs with load policy defer / shed hold back).",
    )
    overloaded.add_metric([], 1.0 if cluster_load.judge(now).overloaded else 0.0)
    return [
        depth,
        running,
        lag,
        held,
        jobs,
        alive,
        used,
        capacity,
        age,
        load,
        clock,
        leader,
        node_state,
        overloaded,
    ]


class SchedulerCollector:
    """prometheus-client collector of every ``scheduler_*`` metric, cached briefly.

    :meth:`exposition` also keeps the text rendering of what it collected: with a few
    thousand label sets (tenants × groups × tasks × states) rendering costs more than
    reading the counters, and every scrape within ``METRICS_CACHE_SECONDS`` would
    otherwise render the same text again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._text: bytes | None = None
        self._at = float("-inf")

    def _fresh(self) -> list[Metric]:
        """The collected metrics, read again once they are older than the cache time;
        call with the lock held."""
        if time.monotonic() - self._at >= float(app_settings.METRICS_CACHE_SECONDS):
            self._cached = collect_counters(bool(app_settings.METRICS_JOB_LABELS)) + collect_gauges()
            self._text = None
            self._at = time.monotonic()
        return self._cached

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cached = self._fresh()
        yield from cached

    def exposition(self) -> bytes:
        """These metrics in Prometheus' text format, rendered once per collection."""
        with self._lock:
            cached = self._fresh()
            if self._text is None:
                self._text = generate_latest(_Fixed(cached))
            return self._text

    def describe(self) -> list[Metric]:
        return []  # collected lazily (no database access at registration)

    def forget(self) -> None:
        with self._lock:
            self._at = float("-inf")
            self._text = None


class _Fixed:
    """A registry-like object of already collected metrics, for ``generate_latest``."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


collector = SchedulerCollector()
registry = CollectorRegistry(auto_describe=False)
registry.register(collector)


def _authorized(request: HttpRequest) -> bool:
    rule = app_settings.METRICS_AUTH
    if rule is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if rule == "key":
        from scheduler_app.services import keys

        return scheme.lower() == "bearer" and keys.find_key(value.strip()) is not None
    if isinstance(rule, dict) and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), str(rule.get("username", "")).encode())
        ok_password = hmac.compare_digest(password.encode(), str(rule.get("password", "")).encode())
        return ok_user and ok_password
    return False


class MetricsView(View):
    """``GET /metrics`` in Prometheus' text format. Mount it where you like:
    ``path("metrics", MetricsView.as_view())``."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not _authorized(request):
            rule = app_settings.METRICS_AUTH
            challenge = 'Bearer realm="metrics"' if rule == "key" else 'Basic realm="metrics"'
            response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = challenge
            return response
        # registry holds only our collector; its cached rendering is the same text.
        return HttpResponse(collector.exposition(), content_type=CONTENT_TYPE_LATEST)
