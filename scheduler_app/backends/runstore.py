"""The engine's :class:`~scheduler_app.engine.interfaces.RunStore` on the Django ORM.

Claims use ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the
``IMMEDIATE`` transaction mode serialises writers, which is enough for one node.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import socket
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone, translation

from scheduler_app import alerts, signals
from scheduler_app.backends import joins
from scheduler_app.backends.load import LoadJudge
from scheduler_app.conf import app_settings
from scheduler_app.engine import cluster as cluster_rules
from scheduler_app.engine import rules, throttle, waits
from scheduler_app.engine.interfaces import (
    Capacity,
    ClaimedRun,
    ClaimResult,
    Fire,
    Outcome,
    RecoveryReport,
    RunLog,
)
from scheduler_app.models import (
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    JobRunLog,
    LoadPolicy,
    Routing,
    RunReason,
    RunState,
    Tenant,
    ThrottlePolicy,
)
from scheduler_app.monitoring import counters

logger = logging.getLogger(__name__)

FAILED_STATES = {RunState.FAILED, RunState.TIMED_OUT, RunState.LOST}
RECORDED_FIELDS = [
    "state",
    "started_at",
    "finished_at",
    "duration",
    "cpu_seconds",
    "peak_memory_mb",
    "result",
    "error_type",
    "error",
    "traceback",
    "is_final",
]
#: What a claim reads of a candidate's job (its decisions, the throttles' scopes and
#: what the executor needs): not the trigger, description, secrets' names, audit times.
CLAIM_JOB_FIELDS = (
    "tenant__slug",
    "tenant__rate_limit",
    "group__name",
    "group__rate_limit",
    "name",
    "task",
    "args",
    "kwargs",
    "secrets_token",
    "executor",
    "max_instances",
    "overlap_policy",
    "misfire_policy",
    "misfire_grace_seconds",
    "timeout_seconds",
    "cpu_limit_seconds",
    "memory_limit_mb",
    "routing",
    "routing_tags",
    "rate_limit",
    "concurrency_key",
    "concurrency_limit",
    "throttle_policy",
    "load_policy",
    "load_max_delay_seconds",
    "upstream_param",
    "enabled",
    "paused",
)
#: Fires written by one INSERT ... SELECT FROM unnest(...) (PostgreSQL).
FIRE_STATEMENT_ROWS = 2000
#: The run table's planner statistics are refreshed (ANALYZE) by the fire path once the
#: runs it wrote since the last refresh reach this share of the table's rows (at least
#: FIRE_ANALYZE_MIN_ROWS), at most once per FIRE_ANALYZE_INTERVAL seconds (PostgreSQL).
FIRE_ANALYZE_SHARE = 0.1
FIRE_ANALYZE_MIN_ROWS = 5000
FIRE_ANALYZE_INTERVAL = 10.0
#: The queue ahead of new fires (due runs per priority) and the cluster's pace (runs
#: finished per second over the last FIRE_BACKLOG_PACE_WINDOW seconds) are read by the
#: fire path at most once per FIRE_BACKLOG_INTERVAL seconds (see ``_Backlog``).
FIRE_BACKLOG_INTERVAL = 0.25
FIRE_BACKLOG_PACE_WINDOW = 3.0
#: A queue whose oldest claimable run has waited more than this many POLL_INTERVALs
#: is not being drained by claims with free slots (see ``_backlog_ahead``).
FIRE_BACKLOG_HEAD_AGE = 1.5
#: Below this many due runs queued ahead, a fire is always queued (no judgement made).
FIRE_BACKLOG_MIN_AHEAD = 20
#: Runs skipped by one statement of ``shed_misfired``.
SHED_STATEMENT_ROWS = 5000
#: How long that ANALYZE may wait for the table's lock (held by a VACUUM, say).
FIRE_ANALYZE_LOCK_WAIT_MS = 200
#: Outcomes written by one multi-row UPDATE (PostgreSQL).
OUTCOME_STATEMENT_ROWS = 500
OUTCOME_SIGNALS = {
    RunState.SUCCEEDED: signals.run_succeeded,
    RunState.FAILED: signals.run_failed,
    RunState.TIMED_OUT: signals.run_timed_out,
    RunState.LOST: signals.run_lost,
    RunState.SKIPPED: signals.run_skipped,
    RunState.CANCELLED: signals.run_cancelled,
    RunState.INTERRUPTED: signals.run_interrupted,
}


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the database went away or is locked."""
    return isinstance(exc, OperationalError | InterfaceError)


def default_node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DjangoRunStore:
    def __init__(self) -> None:
        self._postgres = connection.vendor == "postgresql"
        # Set by the service of a registered node (see backends.service):
        self.tags: tuple[str, ...] = ()  # this node's tags, for routing
        self.incarnation: Callable[[], str] = lambda: ""  # the node's current incarnation
        # Called inside the enqueue transaction: False when this node no longer holds
        # the leader lease, so a deposed or frozen leader writes no fire.
        self.fire_guard: Callable[[], bool] | None = None
        self.live_node_names: Callable[[], list[str]] = lambda: []
        self.load = LoadJudge()  # is the cluster overloaded (load policies defer / shed)
        # The earliest fire time per job that the fire guard refused to write (see enqueue).
        self.refused_fires: dict[int, datetime] = {}
        self._claims = itertools.count(1)
        # The configuration version (ConfigVersion, bumped by every change of jobs made
        # through the services). The claim's job filters (tag-routed jobs, keyed jobs)
        # are read again only when it moved, or after RECONCILE_INTERVAL (changes made
        # beside the services). A node's service passes the version its definition sync
        # last read (every 0.25 s), so a claim reads nothing for them.
        self.config_version: Callable[[], int] = ConfigVersion.current
        self._job_filters: _JobFilters | None = None
        # How many candidates beyond its room a claim reads (see claim).
        self._claim_slack = 8
        # Runs written by enqueue since the planner statistics were last refreshed, the
        # table's rows then (None: unknown until the first refresh) and when it was.
        self._written_since_analyze = 0
        self._rows_at_analyze: float | None = None
        self._analyzed_at = float("-inf")
        # The queue ahead of new fires, as last read (see enqueue and _Backlog).
        self._backlog: _Backlog | None = None
        self._backlog_skips = 0  # fires skipped at enqueue since the last log line
        self._backlog_logged_at = float("-inf")

    # -- enqueue --------------------------------------------------------------------------

    def enqueue(self, fires: Sequence[Fire]) -> int:
        # Only what deciding and writing a fire needs (no trigger, kwargs, secrets), as
        # plain rows: this read cost more than the INSERT when it built model instances.
        wanted = Job.objects.order_by()
        ids = sorted({f.job_id for f in fires})
        if self._postgres:
            # One array parameter instead of an IN list prepared id by id (py-spy: a tenth
            # of the fire path at 3,000 fires/s).
            wanted = wanted.extra(
                where=[f"{connection.ops.quote_name(Job._meta.db_table)}.id = ANY(%s)"], params=[ids]
            )
        else:
            wanted = wanted.filter(pk__in=ids)
        jobs: dict[int, _FireJob] = {}
        labels: dict[int, tuple[str, str, str, str]] = {}  # for the skipped runs' metrics
        for row in wanted.values_list(*_FIRE_JOB_FIELDS, *_FIRE_LABEL_FIELDS):
            jobs[row[0]] = _FireJob(*row[: len(_FireJob._fields)])
            slug, group, task = row[len(_FireJob._fields) :]
            labels[row[0]] = (slug, group or "", task, row[2])
        rows: list[_NewRun] = []
        queued = 0
        cap = app_settings.MISFIRE_RUN_ALL_CAP
        targets_of: dict[tuple[str, ...], list[str]] = {}  # broadcast targets per tag set
        backlog: _Backlog | None = None  # read when the first fire it may concern comes
        backlog_skips = 0
        # A claim measures lateness from the run's queued_at (this write): the time a
        # fire waited in memory before it (an enqueuer behind a fire rate its node cannot
        # write) would otherwise go unjudged, and runs start that much past the grace.
        writing_at = timezone.now()
        # In queue order (priority, then time), so a batch's own runs count as ahead of
        # the batch's later, lower-priority ones as they will in the queue.
        fires = sorted(
            fires,
            key=lambda f: (
                -(jobs[f.job_id].priority if f.job_id in jobs else 0),
                min(f.run_times, default=f.noticed_at),
            ),
        )
        for fire in fires:
            job = jobs.get(fire.job_id)
            if job is None or not job.is_schedulable:
                continue  # deleted, disabled or paused after the trigger fired
            plan = rules.plan_fires(
                fire.run_times, fire.noticed_at, job.misfire_policy, job.misfire_grace_seconds, cap
            )
            if plan.capped:
                logger.warning(
                    "run_all misfire cap reached",
                    extra={"job": job.name, "job_id": job.pk, "dropped": plan.capped, "cap": cap},
                )
            skipped = list(plan.skipped)
            if len(skipped) > cap:
                dropped = len(skipped) - cap
                skipped = skipped[-cap:]
                first_t, first_reason = skipped[0]
                skipped[0] = (first_t, f"{first_reason}; {dropped} earlier missed times not recorded")
                logger.warning("many missed fire times", extra={"job": job.name, "missed": len(plan.skipped)})
            if plan.run and job.load_policy == LoadPolicy.SHED:
                state = self.load.state(fire.noticed_at)
                if state.overloaded:
                    skipped.extend(
                        (when, f"load: the cluster is overloaded ({state.why}); shed") for when in plan.run
                    )
                    plan = rules.FirePlan(run=(), skipped=plan.skipped, capped=plan.capped)
            targets = [""]
            if job.routing == Routing.BROADCAST:
                # One read of the live nodes per tag set and batch, not one per fire.
                tags = tuple(job.routing_tags or ())
                if tags not in targets_of:
                    targets_of[tags] = self._broadcast_targets(job)
                targets = targets_of[tags]
            if not targets:
                logger.warning(
                    "broadcast job fired with no live node matching its tags; recorded as skipped",
                    extra={"job": job.name, "job_id": job.pk, "tags": ",".join(job.routing_tags or ())},
                )
                skipped.extend((when, "broadcast: no live node matches the job's tags") for when in plan.run)
            # A broadcast fire with no node to run it is skipped once (above), not judged again.
            run_times: Sequence[datetime] = plan.run if targets else ()
            lag = max((writing_at - fire.noticed_at).total_seconds(), 0.0)
            if run_times and rules.skipped_by_backlog(job.misfire_policy, job.misfire_grace_seconds, lag):
                skipped.extend(
                    (
                        when,
                        f"could not start within the {job.misfire_grace_seconds} s grace period: "
                        f"it waited {lag:.1f} s in this node's fire queue before it was written "
                        "(misfire policy: skip)",
                    )
                    for when in run_times
                )
                backlog_skips += len(run_times)
                run_times = ()
            if run_times and job.misfire_policy == rules.SKIP and job.claimable_anywhere and self._postgres:
                # Past the grace before a node could claim it: skipped now, as the claim
                # (or the shed) would skip it later, without a queued row to write,
                # claim past and update again. Judged only when every live node that
                # could claim it is full for its executor (see _Backlog.judge).
                if backlog is None:
                    backlog = self._backlog_ahead(jobs)
                kept: list[datetime] = []
                for when in run_times:
                    judged = backlog.judge(job, lag)
                    if judged is not None and rules.skipped_by_backlog(
                        job.misfire_policy, job.misfire_grace_seconds, judged[1]
                    ):
                        ahead, wait = judged
                        skipped.append(
                            (
                                when,
                                f"could not start within the {job.misfire_grace_seconds} s grace period: "
                                f"{ahead} due runs queued ahead of it, "
                                f"{backlog.pace.get(job.executor, 0.0):.0f} runs/s finishing "
                                f"(about {wait:.1f} s of waiting; misfire policy: skip)",
                            )
                        )
                        backlog_skips += 1
                    else:
                        kept.append(when)
                        backlog.add(job)
                run_times = kept
            elif run_times and backlog is not None:
                for _ in run_times:
                    backlog.add(job)
            for when in run_times:
                for target in targets:
                    rows.append(
                        _NewRun(
                            job.pk,
                            job.tenant_id,
                            when,
                            job.priority,
                            job.executor,
                            target,
                            noticed=fire.noticed_at,
                        )
                    )
                    queued += 1
            for when, reason in skipped:
                rows.append(
                    _NewRun(
                        job.pk, job.tenant_id, when, job.priority, job.executor, "", reason, fire.noticed_at
                    )
                )
        if not rows:
            return 0
        with transaction.atomic():
            if self.fire_guard is not None and not self.fire_guard():
                logger.warning(
                    "fires not written: this node no longer holds the leader lease (the leader "
                    "recomputes them from the last recorded fire times)",
                    extra={"fires": len(fires)},
                )
                # Should this node lead again, its trigger side fires them again (a lone
                # leader back from an outage: nothing else recorded them).
                for fire in fires:
                    if fire.run_times:
                        first = min(fire.run_times)
                        known = self.refused_fires.get(fire.job_id)
                        self.refused_fires[fire.job_id] = first if known is None else min(known, first)
                return 0
            now = timezone.now()
            if self._postgres:
                written = _insert_runs(rows, now)
            else:
                written = _existing_skip_keys(rows, invert=True)
                JobRun.objects.bulk_create(
                    [row.model(now) for row in rows], ignore_conflicts=True, batch_size=500
                )
                _noticed_as_queued_at(rows, now)
            # Only the skips written now: a fire written twice (a new leader firing the
            # same time again) was counted, alerted and joined when first written.
            skipped_runs = [
                _SkippedAtEnqueue(row, now)
                for row in rows
                if row.error is not None and (row.job_id, row.scheduled_for, row.target_node) in written
            ]
            counters.count_finished(skipped_runs, labels)  # metrics
            self._skips_end_joins(skipped_runs)
            self._skips_alert(skipped_runs, now)  # outbox rows, in this transaction
        if self._postgres:
            self._written_since_analyze += len(rows)
            self._analyze_when_grown()
        if signals.run_queued.has_listeners(JobRun) or signals.run_skipped.has_listeners(JobRun):
            self._send_created(rows)
        if backlog_skips:
            self._log_backlog_skips(backlog_skips, backlog)
        return queued

    def _backlog_ahead(self, jobs: Mapping[int, _FireJob]) -> _Backlog:
        """What a fire is judged on (PostgreSQL; see ``_Backlog``), read at most once per
        FIRE_BACKLOG_INTERVAL; in between, the last reading less what the pace has
        drained since, plus the runs this process queued since (``_Backlog.add``).
        Everything by the database's clock (``statement_timestamp()``: inside a transaction too), not this node's."""
        cached = self._backlog
        if cached is not None and time.monotonic() - cached.read_at < FIRE_BACKLOG_INTERVAL:
            return cached
        from scheduler_app.backends import cluster as cluster_backend

        # The cluster is saturated for an executor when every live node that claims it
        # has no free slot of it, or when its claimable queue's oldest run has waited
        # past FIRE_BACKLOG_HEAD_AGE (the nodes have free slots but do not claim fast
        # enough: CPU-bound). Only then is a new run's wait the queue ahead over the pace:
        # a node with a free slot takes a fresh queue at its next poll, whatever the pace
        # (which is then the load, not the capacity).
        capacity: dict[str, list[bool]] = {}
        for node in cluster_backend.live_nodes():
            if node.state != "active":
                continue  # a draining node claims nothing
            used = node.used or {}
            for executor, slots in (node.capacity or {}).items():
                if int(slots or 0) > 0:
                    capacity.setdefault(executor, []).append(int(used.get(executor, 0) or 0) >= int(slots))
        saturated = {executor for executor, full in capacity.items() if full and all(full)}
        due: dict[tuple[str, int], int] = {}
        room: dict[int, int] = {}
        pace: dict[str, float] = {}
        head_age: dict[str, float] = {}
        if capacity:
            table = connection.ops.quote_name(JobRun._meta.db_table)
            jobs_table = connection.ops.quote_name(Job._meta.db_table)
            groups_table = connection.ops.quote_name(JobGroup._meta.db_table)
            with connection.cursor() as cursor:
                # The due runs a claim would take ahead of a new one, per job: queued,
                # not held on purpose (wait_reason), of an enabled, unpaused job routed to
                # any node (no tag wait, no broadcast copy), with no rate limit,
                # concurrency key or load deferral, and not past their own grace (the
                # claim or the shed skips those) unless their policy runs them all; at
                # most as many per job as its max_instances leaves room for.
                cursor.execute(
                    f"""
                    SELECT r.job_id, r.executor, r.priority, count(*), j.max_instances,
                           (SELECT count(*) FROM {table} x WHERE x.job_id = r.job_id AND x.state = %s),
                           min(GREATEST(r.scheduled_for, r.queued_at, r.not_before))
                    FROM {table} r
                    JOIN {jobs_table} j ON j.id = r.job_id
                    LEFT JOIN {groups_table} g ON g.id = j.group_id
                    WHERE r.state = %s AND r.not_before <= statement_timestamp() AND r.wait_reason = ''
                      AND r.target_node = '' AND r.executor = ANY(%s)
                      AND j.enabled AND NOT j.paused AND j.routing = %s
                      AND j.rate_limit = '' AND j.concurrency_key = '' AND j.load_policy <> %s
                      AND COALESCE(g.rate_limit, '') = ''
                      AND (j.misfire_policy = %s OR r.reason <> %s OR r.attempt <> 1
                           OR GREATEST(r.scheduled_for, r.queued_at, r.not_before)
                              >= statement_timestamp() - make_interval(secs => j.misfire_grace_seconds))
                    GROUP BY r.job_id, r.executor, r.priority, j.max_instances
                    """,
                    [
                        RunState.RUNNING,
                        RunState.QUEUED,
                        sorted(capacity),
                        Routing.ANY,
                        LoadPolicy.DEFER,
                        rules.RUN_ALL,
                        RunReason.SCHEDULE,
                    ],
                )
                # The age by this node's clock: a scheduled run's times are the leader's
                # (this node's) fire times, so a node clock behind the database's does
                # not make a fresh queue look old.
                read_at = timezone.now()
                for job_id, executor, priority, n, max_instances, running, head in cursor.fetchall():
                    left = room.get(job_id, max(int(max_instances) - int(running), 0))
                    taken = min(int(n), left)
                    room[job_id] = left - taken
                    due[(executor, priority)] = due.get((executor, priority), 0) + taken
                    if taken:  # a claim would start its oldest run: how long it has waited
                        age = (read_at - head).total_seconds()
                        head_age[executor] = max(head_age.get(executor, 0.0), age)
                threshold = FIRE_BACKLOG_HEAD_AGE * app_settings.POLL_INTERVAL
                saturated |= {e for e, age in head_age.items() if age > threshold}
                due = {key: n for key, n in due.items() if key[0] in saturated}
                # The batch's jobs not queued yet: the room their max_instances leaves.
                others = sorted(pk for pk in jobs if pk not in room)
                if others:
                    cursor.execute(
                        f"SELECT j.id, j.max_instances, (SELECT count(*) FROM {table} x "
                        f"WHERE x.job_id = j.id AND x.state = %s) FROM {jobs_table} j WHERE j.id = ANY(%s)",
                        [RunState.RUNNING, others],
                    )
                    for job_id, max_instances, running in cursor.fetchall():
                        room[job_id] = max(int(max_instances) - int(running), 0)
                if saturated and sum(due.values()) >= FIRE_BACKLOG_MIN_AHEAD:
                    # Executed runs of each executor that finished lately, on any node;
                    # skips and cancellations are not a pace.
                    cursor.execute(
                        f"SELECT executor, count(*) FROM {table} WHERE finished_at >= "
                        "statement_timestamp() - make_interval(secs => %s) AND state = ANY(%s) "
                        "AND executor = ANY(%s) GROUP BY executor",
                        [
                            FIRE_BACKLOG_PACE_WINDOW,
                            [RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT],
                            sorted(saturated),
                        ],
                    )
                    pace = {executor: n / FIRE_BACKLOG_PACE_WINDOW for executor, n in cursor.fetchall()}
        self._backlog = _Backlog(due, pace, saturated, room, time.monotonic())
        return self._backlog

    def _skips_alert(self, skipped: Sequence[_SkippedAtEnqueue], now: datetime) -> None:
        """The ``skipped`` alerts of the runs this enqueue wrote as skipped, as the claim
        and the shed write them for theirs (read as models only when a rule may apply)."""
        from scheduler_app.alerts.evaluate import rules_for

        if not skipped or not rules_for({r.tenant_id for r in skipped}):
            return
        keys = Q()
        for r in skipped:
            keys |= Q(job_id=r.job_id, scheduled_for=r.scheduled_for, attempt=1, target_node=r.target_node)
        runs = list(
            JobRun.objects.filter(keys, state=RunState.SKIPPED)
            .select_related("job__tenant", "job__group")
            .order_by("pk")
        )
        alerts.on_outcome(runs, now)

    def _log_backlog_skips(self, count: int, backlog: _Backlog | None) -> None:
        """One log line per few seconds, not one per batch."""
        self._backlog_skips += count
        if time.monotonic() - self._backlog_logged_at < 5.0:
            return
        logger.warning(
            "fires recorded as skipped at enqueue: the due runs queued ahead of them cannot "
            "be drained within their misfire grace",
            extra={
                "count": self._backlog_skips,
                "queued_ahead": sum(backlog.due.values()) if backlog else None,
                "runs_per_second": round(sum(backlog.pace.values()), 1) if backlog else None,
            },
        )
        self._backlog_skips = 0
        self._backlog_logged_at = time.monotonic()

    def _skips_end_joins(self, rows: Sequence[JobRun | _SkippedAtEnqueue]) -> int:
        """The runs this enqueue wrote as skipped have ended: they go into their
        downstream jobs' joins, in the same transaction. Only the rows written now
        (``bulk_create`` ignores a row that exists already: a double fire's skip was
        counted when it was written)."""
        from django.utils import timezone

        skipped = [r for r in rows if r.state == RunState.SKIPPED]
        edges = self._edges({r.job_id for r in skipped}) if skipped else {}
        keys = Q()
        for r in skipped:
            if r.job_id in edges:
                keys |= Q(
                    job_id=r.job_id,
                    scheduled_for=r.scheduled_for,
                    attempt=r.attempt,
                    target_node=r.target_node,
                    finished_at=r.finished_at,
                )
        if not keys:
            return 0
        written = JobRun.objects.filter(keys, state=RunState.SKIPPED).order_by("scheduled_for", "pk")
        return self._enqueue_dependents(list(written), timezone.now(), edges)

    def _skipped_at_claim_end_joins(self, skipped: list[JobRun], now: datetime) -> None:
        """Runs the claim skipped have ended: they go into their downstream jobs'
        joins, in a transaction of their own after the claim's (inside it, locking the
        downstream jobs after the claim's own job locks could deadlock two claims).
        The claim's statement marked them ``join_pending`` (an outbox): fed here and
        unmarked in one transaction, so a skip is counted once; should this process die
        first (or this fail), the sweep (:meth:`feed_pending_joins` from ``reap_lost``
        and ``recover``) feeds it."""
        marked = [r.pk for r in skipped if r.join_pending]
        if marked:
            self.feed_pending_joins(now, marked)

    def feed_pending_joins(self, now: datetime, run_ids: Sequence[int] | None = None) -> int:
        """Feed the marked skips (``join_pending``: those ``run_ids``, or all of them: the
        sweep) to their downstream joins and clear their marks, in one transaction: a
        skip is counted exactly once, whatever died or was retried in between. Marked
        rows another node is feeding are left to it (SKIP LOCKED). Returns how many were
        fed. A failure is logged and left to the next sweep (the marks stay)."""
        fed = 0
        while True:
            try:
                with transaction.atomic():
                    rows = JobRun.objects.filter(join_pending=True)
                    if run_ids is not None:
                        rows = rows.filter(pk__in=list(run_ids))
                    rows = rows.order_by("finished_at", "pk")
                    if self._postgres:
                        rows = rows.select_for_update(no_key=True, skip_locked=True)
                    batch = list(rows[:500])
                    if not batch:
                        return fed
                    edges = self._edges({r.job_id for r in batch})
                    self._enqueue_dependents([r for r in batch if r.job_id in edges], now, edges)
                    JobRun.objects.filter(pk__in=[r.pk for r in batch]).update(join_pending=False)
            except (OperationalError, InterfaceError):  # transient (is_transient): the sweep retries
                logger.error(
                    "skipped runs not yet counted in their downstream joins (left to the sweep)",
                    exc_info=True,
                    extra={"run_ids": ",".join(str(i) for i in list(run_ids or ())[:20])},
                )
                return fed
            fed += len(batch)
            if run_ids is not None or len(batch) < 500:
                return fed

    def _analyze_when_grown(self) -> None:
        """Refresh the run table's statistics once the fires written since the last time
        are many against its size. A queue that grows faster than autovacuum analyzes
        (a minute at best; 10% of a large table's rows) leaves the planner believing
        there are hardly any queued runs: the claim then sorts every queued run instead
        of reading the claim index (measured: 1 ms at 20,000 queued after ANALYZE, 55 ms
        before), each claim slower as the backlog grows, and under overload the node's
        throughput falls instead of staying at capacity."""
        floor = max(FIRE_ANALYZE_MIN_ROWS, FIRE_ANALYZE_SHARE * (self._rows_at_analyze or 0))
        if (
            self._written_since_analyze < floor
            or time.monotonic() - self._analyzed_at < FIRE_ANALYZE_INTERVAL
        ):
            return
        self._analyzed_at = time.monotonic()  # tried: not again within the interval
        table = connection.ops.quote_name(JobRun._meta.db_table)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # ANALYZE waits for a VACUUM or another ANALYZE of the table (the lock
                # they share): never hold up the fires for that, try again later.
                cursor.execute(f"SET LOCAL lock_timeout = '{FIRE_ANALYZE_LOCK_WAIT_MS}ms'")
                cursor.execute(f"ANALYZE {table}")
                cursor.execute(
                    "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [JobRun._meta.db_table]
                )
                self._rows_at_analyze = float(cursor.fetchone()[0])
            self._written_since_analyze = 0
        except DatabaseError as exc:  # the fires are written; the periodic refresh remains
            logger.warning("could not refresh the run table's statistics", extra={"error": str(exc)})

    def _broadcast_targets(self, job: Job | _FireJob) -> list[str]:
        """One copy per live node having the job's tags (a node joining later does not
        get past fires)."""
        from scheduler_app.backends import cluster as cluster_backend

        required = job.routing_tags or []
        return sorted(
            n.name
            for n in cluster_backend.live_nodes()
            if n.state == "active" and cluster_rules.tags_match(required, n.tags or [])
        )

    def _send_created(self, rows: Iterable[_NewRun]) -> None:
        keys = Q()
        for row in rows:
            keys |= Q(
                job_id=row.job_id,
                scheduled_for=row.scheduled_for,
                attempt=1,
                target_node=row.target_node,
            )
        for run in JobRun.objects.filter(keys):
            if run.state == RunState.QUEUED:
                signals.run_queued.send(sender=JobRun, run=run)
            elif run.state == RunState.SKIPPED:
                signals.run_skipped.send(sender=JobRun, run=run)

    # -- claim ------------------------------------------------------------------------------

    def claim(self, node: str, capacity: Capacity, now: datetime) -> ClaimResult:
        room = dict(capacity.per_executor)
        executors = [name for name, free in room.items() if free > 0]
        if not executors or capacity.total <= 0:
            return ClaimResult()
        # Candidates beyond the room: for runs the claim passes over (overlap, limits,
        # misfire); as many as the last claim passed over, within 2 x room + 8.
        limit = capacity.total + min(self._claim_slack, capacity.total + 8)
        total_left = capacity.total
        claimed: list[tuple[_Candidate, Job]] = []
        skipped: list[tuple[_Candidate, str]] = []
        waiting: list[tuple[_Candidate, _Wait]] = []  # held back by a rate limit or concurrency key
        stop: list[int] = []
        left = 0  # due runs left queued (no room, or waiting for an overlap slot)
        left_of: set[str] = set()  # ... and their executors
        no_room = 0  # candidates left for lack of room
        with transaction.atomic():
            filters = self._job_filter_inputs()  # once per claim (a query outside a node)
            held = self._held_by_full_keys(now, filters)
            # Not candidates: runs waiting for a key would otherwise fill every batch and
            # starve the runs behind them (checked again after the locks anyway).
            candidates, jobs = self._candidates(node, executors, now, limit, [*filters.blocked, *held])
            if not candidates:
                return ClaimResult()
            # Counted AFTER the lock, in a fresh statement: under READ COMMITTED a count
            # taken in the locking statement uses that statement's snapshot, from before
            # the lock wait, and misses runs another node committed meanwhile.
            running = _running_counts(list(jobs))
            broadcast = [pk for pk, j in jobs.items() if j.routing == Routing.BROADCAST]
            if broadcast:
                # A broadcast job's max_instances holds per node: its copies run side by side.
                running.update({pk: 0 for pk in broadcast} | _running_counts(broadcast, node=node))
            # Rate limits and concurrency keys: serialised per scope across nodes, counted
            # after the locks (see _Throttle).
            gate = _Throttle(jobs.values(), now, batch=len(candidates), postgres=self._postgres)
            for run in candidates:
                job = jobs.get(run.job_id)
                if job is None:
                    continue
                if job.routing == Routing.TAGS and not cluster_rules.tags_match(
                    job.routing_tags or [], self.tags
                ):
                    # Checked again on the locked row: the routing filter above comes from
                    # a cache of the configuration (a job re-routed a moment ago).
                    continue
                if not job.enabled or (job.paused and run.reason not in (RunReason.MANUAL, RunReason.RUN_AT)):
                    # Checked again on the locked row too: the candidates' filter saw the
                    # job before its lock (paused a moment ago: its scheduled runs wait).
                    continue
                if total_left <= 0 or room.get(run.executor, 0) <= 0:
                    left += 1
                    left_of.add(run.executor)
                    no_room += 1
                    continue
                late = self._misfired_at_claim(run, job, now, candidates)
                if late:
                    skipped.append((run, late))
                    continue
                action = rules.overlap_action(running.get(job.pk, 0), job.max_instances, job.overlap_policy)
                if action == rules.OVERLAP_QUEUE:
                    left += 1
                    left_of.add(run.executor)
                    continue
                if action == rules.OVERLAP_SKIP:
                    skipped.append(
                        (
                            run,
                            f"{running.get(job.pk, 0)} run(s) of this job already running "
                            f"(max instances {job.max_instances}, overlap policy: skip)",
                        )
                    )
                    continue
                deferred = self._deferred_by_load(run, job, now)
                if deferred is not None:
                    waiting.append((run, deferred))
                    continue
                wait = gate.check(job)
                if wait is not None:
                    if job.throttle_policy == ThrottlePolicy.SKIP:
                        skipped.append((run, f"{wait.reason} (over a limit: skip)"))
                    else:
                        waiting.append((run, wait))
                        if wait.until is None:
                            left += 1  # due again as soon as a run holding the key ends
                            left_of.add(run.executor)
                    continue
                if action == rules.OVERLAP_REPLACE:
                    oldest = (
                        JobRun.objects.filter(job_id=job.pk, state=RunState.RUNNING)
                        .exclude(pk__in=stop)
                        .order_by("started_at", "id")
                        .first()
                    )
                    if oldest is not None and not self._flag_replaced(oldest.pk):
                        left += 1  # being recorded (or beaten) right now: the next claim decides
                        left_of.add(run.executor)
                        continue
                    if oldest is not None:
                        stop.append(oldest.pk)
                claimed.append((run, job))
                gate.started(job)
                running[job.pk] = running.get(job.pk, 0) + 1
                room[run.executor] -= 1
                total_left -= 1
            self._claim_slack = 2 * (len(candidates) - len(claimed) - no_room) + 8
            if claimed:
                token = f"{self.incarnation()}:{next(self._claims)}"
                _mark_claimed([r.pk for r, _ in claimed], node, now, token)
            self._hold_back(waiting)
            _mark_skipped(skipped, now, self._postgres)
            # The skipped runs as models (rare): what metrics, alerts and signals take.
            skipped_runs = (
                list(
                    JobRun.objects.filter(pk__in=[run.pk for run, _ in skipped])
                    .select_related("job__tenant", "job__group")
                    .order_by("pk")
                )
                if skipped
                else []
            )
            counters.count_finished(skipped_runs)  # metrics
            alerts.on_outcome(skipped_runs)  # outbox rows, in this transaction
        for skipped_run in skipped_runs:
            signals.run_skipped.send(sender=JobRun, run=skipped_run)
        if skipped_runs:
            self._skipped_at_claim_end_joins(skipped_runs, now)
        result = []
        upstream = joins.upstream_results(claimed) if claimed else {}
        for run, job in claimed:
            run.state, run.node, run.started_at, run.claim_token = RunState.RUNNING, node, now, token
            result.append(self._claimed(run, job, upstream.get(run.pk)))
        if claimed and signals.run_started.has_listeners(JobRun):
            for started in JobRun.objects.filter(pk__in=[r.pk for r, _ in claimed]).order_by("pk"):
                signals.run_started.send(sender=JobRun, run=started)
        return ClaimResult(
            runs=tuple(result),
            stop=tuple(stop),
            more=len(candidates) >= limit,
            left_queued=left,
            left_of=frozenset(left_of),
        )

    def _flag_replaced(self, run_id: int) -> bool:
        """Ask the run an overlap ``replace`` replaces to stop; False when another
        transaction holds it. Never waits for it: ``record`` locks an ending run and
        then its downstream jobs, which this claim may hold (a deadlock); a locked run
        is being recorded (or heartbeated), so the claim leaves its new run queued."""
        locked = JobRun.objects.filter(pk=run_id, state=RunState.RUNNING)
        if self._postgres:
            locked = locked.select_for_update(no_key=True, skip_locked=True)
        if not list(locked.values_list("pk", flat=True)):
            return False
        JobRun.objects.filter(pk=run_id).update(stop_requested=True)
        return True

    def _candidates(
        self, node: str, executors: Sequence[str], now: datetime, limit: int, excluded_jobs: Sequence[int]
    ) -> tuple[list[_Candidate], dict[int, Job]]:
        """The due runs this node may claim, best first, and their jobs (with tenant and
        group), in one statement: on PostgreSQL the runs are locked ``SKIP LOCKED`` and
        then their job rows, in pk order, ``FOR NO KEY UPDATE`` (serialising max_instances
        checks across nodes; does not conflict with the key-share lock that inserting a
        run for the job takes, so claims and enqueues cannot deadlock). The job columns
        are those of the locked rows (a job changed meanwhile is read as it is now)."""
        sql, params = _claim_sql(self._postgres)
        excluded = sorted(set(excluded_jobs))  # routed to tags this node lacks, or a full key
        where = [f"r.{_c('executor')} IN ({', '.join(['%s'] * len(executors))})"]
        args: list[Any] = [RunState.QUEUED, connection.ops.adapt_datetimefield_value(now), node, *executors]
        if excluded:
            where.append(f"r.{_c('job_id')} NOT IN ({', '.join(['%s'] * len(excluded))})")
            args.extend(excluded)
        args.extend([RunReason.MANUAL, RunReason.RUN_AT, limit])
        candidates: list[_Candidate] = []
        jobs: dict[int, Job] = {}
        tenants: dict[int, Tenant] = {}
        groups: dict[int, JobGroup] = {}
        with connection.cursor() as cursor:
            cursor.execute(sql.replace("{where}", " AND ".join(where)), args)
            rows = cursor.fetchall()
        run_n = len(_CANDIDATE_FIELDS)
        job_n = len(params.job_fields)
        tenant_n = len(params.tenant_fields)
        run_conv, job_conv = params.run_converters, params.job_converters
        alias = connection.alias
        for row in rows:
            run = _Candidate(*(_convert(run_conv, row[:run_n])))
            candidates.append(run)
            if run.job_id in jobs:
                continue
            values = _convert(job_conv, row[run_n : run_n + job_n])
            job = _instance(Job, alias, params.job_attnames, values)
            at = run_n + job_n
            tenant = tenants.get(job.tenant_id)
            # One instance per tenant and group, shared by their jobs. The joined rows are
            # those the statement saw before it waited for the job's lock: a job moved to
            # another group meanwhile comes with a row of NULLs (or the old group), so its
            # group (a rate limit) is read again by the id on the locked row.
            if tenant is None:
                tenant = _instance(Tenant, alias, params.tenant_names, row[at : at + tenant_n])
                if tenant.pk != job.tenant_id:
                    tenant = Tenant.objects.get(pk=job.tenant_id)
                tenants[tenant.pk] = tenant
            job._state.fields_cache["tenant"] = tenant
            group = groups.get(job.group_id) if job.group_id is not None else None
            if group is None and job.group_id is not None:
                group = _instance(JobGroup, alias, params.group_names, row[at + tenant_n :])
                if group.pk != job.group_id:
                    group = JobGroup.objects.get(pk=job.group_id)
                groups[group.pk] = group
            job._state.fields_cache["group"] = group
            jobs[job.pk] = job
        candidates.sort(key=lambda c: (-c.priority, c.not_before, c.pk))
        return candidates, jobs

    def _deferred_by_load(self, run: JobRun, job: Job, now: datetime) -> _Wait | None:
        """A scheduled run of a job whose load policy is ``defer`` waits while the
        cluster is overloaded, at most ``load_max_delay_seconds`` past its time; its
        start moves by ``LOAD_DEFER_STEP`` each time (re-judged then)."""
        if job.load_policy != LoadPolicy.DEFER or run.reason != RunReason.SCHEDULE:
            return None
        latest = run.scheduled_for + timedelta(seconds=job.load_max_delay_seconds)
        if now >= latest:
            return None
        state = self.load.state(now)
        if not state.overloaded:
            return None
        until = min(now + timedelta(seconds=float(app_settings.LOAD_DEFER_STEP)), latest)
        return _Wait(f"deferred: the cluster is overloaded ({state.why})", until)

    def _job_filter_inputs(self) -> _JobFilters:
        """The jobs the claim's filters need (tag-routed, keyed), from one query made
        once per configuration version (see ``config_version``)."""
        version = self.config_version()  # before the jobs: a change after it is seen next time
        cached = self._job_filters
        if (
            cached is not None
            and cached.version == version
            and cached.tags == self.tags
            and time.monotonic() - cached.read_at < float(app_settings.RECONCILE_INTERVAL)
        ):
            return cached
        blocked, keyed = [], []
        for pk, routing, tags, tenant_id, key, limit in Job.objects.filter(
            Q(routing=Routing.TAGS) | ~Q(concurrency_key="")
        ).values_list("pk", "routing", "routing_tags", "tenant_id", "concurrency_key", "concurrency_limit"):
            if routing == Routing.TAGS and not cluster_rules.tags_match(tags or [], self.tags):
                blocked.append(pk)
            if key:
                keyed.append((pk, tenant_id, key, limit))
        fresh = _JobFilters(version, time.monotonic(), self.tags, tuple(blocked), tuple(keyed))
        self._job_filters = fresh
        return fresh

    def _held_by_full_keys(self, now: datetime, filters: _JobFilters | None = None) -> list[int]:
        """Jobs whose concurrency key is full (by a count taken before any lock: only a
        filter; the claim counts again after its locks). Their due runs that do not say
        so yet get their ``wait_reason``."""
        keyed = (filters or self._job_filter_inputs()).keyed
        if not keyed:
            return []
        running = {
            (tenant_id, key): n
            for tenant_id, key, n in JobRun.objects.filter(state=RunState.RUNNING)
            .exclude(job__concurrency_key="")
            .order_by()
            .values_list("tenant_id", "job__concurrency_key")
            .annotate(n=Count("id"))
        }
        held: dict[str, list[int]] = {}
        for pk, tenant_id, key, limit in keyed:
            n = running.get((tenant_id, key), 0)
            if n >= (limit or 1):
                held.setdefault(waits.text("key", key=key, running=n, limit=limit or 1), []).append(pk)
        for reason, pks in held.items():
            stale = JobRun.objects.filter(state=RunState.QUEUED, job_id__in=pks, not_before__lte=now).exclude(
                wait_reason=reason
            )
            if self._postgres:
                # Never wait for (or deadlock with) another node's claim of these rows.
                stale = stale.select_for_update(skip_locked=True, of=("self",))
            ids = list(stale.values_list("pk", flat=True)[:1000])
            if ids:
                JobRun.objects.filter(pk__in=ids).update(wait_reason=reason)
        return [pk for pks in held.values() for pk in pks]

    @staticmethod
    def _hold_back(waiting: list[tuple[JobRun, _Wait]]) -> None:
        """Throttled runs stay queued and say why; a rate limit moves ``not_before`` to
        the next free slot (so they are not claimed again before it, and the misfire
        check measures lateness from it)."""
        updates: dict[tuple[str, datetime | None], list[int]] = {}
        for run, wait in waiting:
            if wait.reason == run.wait_reason and (wait.until is None or wait.until == run.not_before):
                continue  # already recorded: no write on every poll
            updates.setdefault((wait.reason, wait.until), []).append(run.pk)
        for (reason, until), ids in updates.items():
            fields: dict[str, Any] = {"wait_reason": reason}
            if until is not None:
                fields["not_before"] = until
            JobRun.objects.filter(pk__in=ids, state=RunState.QUEUED).update(**fields)

    def _routing_filter(self, node: str) -> Q:
        """Runs this node may claim: not a broadcast copy for another node, and not of a
        job routed to tags this node lacks (those wait for a node that has them)."""
        blocked = self._job_filter_inputs().blocked
        allowed = Q(target_node="") | Q(target_node=node)
        if blocked:
            allowed &= ~Q(job_id__in=list(blocked))
        return allowed

    @staticmethod
    def _misfired_at_claim(run: JobRun, job: Job, now: datetime, batch: list[JobRun]) -> str:
        """A scheduled run that could not start within the job's grace period (the node
        was busy) follows the misfire policy: skip drops it, coalesce drops it when a
        newer scheduled run of the job is waiting, run_all runs it."""
        if run.reason != RunReason.SCHEDULE or run.attempt != 1:
            return ""
        if run.wait_reason:
            return ""  # held back by its limits on purpose, not late because nodes were busy
        # Lateness counts from when the run was queued: a fire time already judged by
        # the misfire policy at enqueue (after downtime) is not judged twice; and from
        # the slot a rate limit moved it to.
        late = (now - max(run.scheduled_for, run.queued_at, run.not_before)).total_seconds()
        if late <= job.misfire_grace_seconds:
            return ""
        if job.misfire_policy == rules.SKIP:
            return (
                f"could not start within the {job.misfire_grace_seconds} s grace period "
                f"({late:.1f} s late; misfire policy: skip)"
            )
        if job.misfire_policy == rules.COALESCE:
            newer = (
                any(
                    o.job_id == run.job_id
                    and o.reason == RunReason.SCHEDULE
                    and o.scheduled_for > run.scheduled_for
                    for o in batch
                )
                or JobRun.objects.filter(
                    job_id=run.job_id,
                    state=RunState.QUEUED,
                    reason=RunReason.SCHEDULE,
                    scheduled_for__gt=run.scheduled_for,
                ).exists()
            )
            if newer:
                return "coalesced into a newer scheduled run (misfire policy: coalesce)"
        return ""

    @staticmethod
    def _claimed(run: JobRun, job: Job, upstream: dict[str, Any] | None = None) -> ClaimedRun:
        """What the executor needs. Secrets are decrypted here, in the worker, at run
        time; a secret no key decrypts fails this run, never the scheduler. A job with
        an ``upstream_param`` gets the upstream results there (``{}`` for a run not
        queued by its upstream jobs)."""
        setup_error = None
        kwargs: dict[str, Any] = {}
        hidden: tuple[Any, ...] = ()
        try:
            revealed = job.reveal_secret_kwargs()
            override = run.kwargs_override or {}
            kwargs = {**(job.kwargs or {}), **revealed, **override}
            if job.upstream_param:
                kwargs[job.upstream_param] = upstream or {}
            # The values as they are (numbers, lists, objects too): the engine's
            # Redactor decides how each is masked. A run-now override given for a
            # secret's name is masked like the secret it replaces.
            hidden = (*revealed.values(), *(v for k, v in override.items() if k in revealed))
        except ValueError as exc:
            with translation.override(None):  # stored, like the run's other errors, in English
                setup_error = f"secret kwargs: {exc}"
        return ClaimedRun(
            run_id=run.pk,
            job_id=job.pk,
            job_name=job.name,
            task=job.task,
            args=tuple(job.args or ()),
            kwargs=kwargs,
            executor=run.executor or job.executor,
            attempt=run.attempt,
            scheduled_for=run.scheduled_for,
            timeout=job.timeout_seconds,
            cpu_limit=job.cpu_limit_seconds,
            memory_limit_mb=job.memory_limit_mb,
            setup_error=setup_error,
            secret_values=hidden,
            claim_token=run.claim_token,
        )

    # -- record ---------------------------------------------------------------------------

    def record(self, outcomes: Sequence[Outcome]) -> int:
        """Write outcomes in one transaction and one bulk UPDATE; a run that is no
        longer ``running`` (already recorded, or reaped as lost) is left alone.
        Returns how many runs it queued (released, retries, dependents)."""
        from django.utils import timezone

        now = timezone.now()
        by_id = {o.run_id: o for o in outcomes}
        finished: list[JobRun] = []
        queued = 0
        with transaction.atomic():
            # With what it needs of the job, its tenant and group (the metrics' labels);
            # every column of the runs when a signal receiver will get them.
            found = _running_runs(list(by_id), self._postgres, whole=self._signalled(outcomes))
            gone = sorted(set(by_id) - {r.pk for r in found})
            if gone:
                # Never silently: e.g. a cut-off node's outcomes for runs already declared lost.
                logger.warning(
                    "outcomes not recorded: the runs are no longer running here (finished, or lost and retried)",
                    extra={"count": len(gone), "run_ids": ",".join(map(str, gone[:20]))},
                )
            runs = [r for r in found if self._token_ok(r, by_id[r.pk])]
            released = [r.pk for r in runs if by_id[r.pk].state == "released"]
            if released:
                JobRun.objects.filter(pk__in=released).update(
                    state=RunState.QUEUED,
                    node="",
                    heartbeat_at=None,
                    claimed_at=None,
                    started_at=None,
                    claim_token="",
                )
            done = [r for r in runs if by_id[r.pk].state != "released"]
            follow: list[tuple[JobRun, bool]] = []
            for run in done:
                retry = self._apply(run, by_id[run.pk])
                follow.append((run, retry))
            if done:
                self._write_outcomes(done)
                logs = {r.pk: log for r in done if (log := by_id[r.pk].log) is not None and log.lines_total}
                write_logs(logs, now)  # one statement for the batch, whatever the lines
                counters.count_finished(done)  # metrics: in the transaction that records them
                alerts.on_outcome(done)  # alert outbox rows: in the same transaction
            edges = self._edges({r.job_id for r in done})
            retries = []
            ended = []
            for run, retry in follow:
                if retry:
                    job = run.job
                    delay = rules.retry_delay(
                        run.attempt,
                        job.retry_backoff_seconds,
                        job.retry_backoff_factor,
                        job.retry_max_backoff_seconds,
                    )
                    retries.append(
                        self._follow_up(
                            run,
                            attempt=run.attempt + 1,
                            reason=RunReason.RETRY,
                            not_before=now + timedelta(seconds=delay),
                        )
                    )
                if run.state != RunState.INTERRUPTED and run.job_id in edges:
                    ended.append(run)
            queued += self._enqueue_dependents(ended, now, edges)
            if retries:
                JobRun.objects.bulk_create(retries, ignore_conflicts=True)
            finished = done
            queued += len(retries) + len(released)
        for run in finished:
            sender = OUTCOME_SIGNALS.get(run.state)
            # has_listeners() without a sender sees only receivers connected for any sender.
            if sender is not None and sender.has_listeners(JobRun):
                sender.send(sender=JobRun, run=run)
            if run.state in FAILED_STATES and not run.is_final:
                signals.run_retrying.send(sender=JobRun, run=run)
        _log_finished(finished)
        return queued

    @staticmethod
    def _signalled(outcomes: Sequence[Outcome]) -> bool:
        """Whether recording these outcomes may send a signal that has a receiver."""
        for state in {o.state for o in outcomes}:
            sender = OUTCOME_SIGNALS.get(state)
            if sender is not None and sender.has_listeners(JobRun):
                return True
            if state in FAILED_STATES and signals.run_retrying.has_listeners(JobRun):
                return True
        return False

    @staticmethod
    def _token_ok(run: JobRun, outcome: Outcome) -> bool:
        """Fencing: an outcome from an earlier claim of this run (a node declared dead,
        a frozen process, a re-claimed run) never overwrites the current one."""
        if not outcome.claim_token or outcome.claim_token == run.claim_token:
            return True
        logger.warning(
            "outcome refused: stale claim token (the run was re-claimed or its node declared dead)",
            extra={
                "run_id": run.pk,
                "state": outcome.state,
                "token": outcome.claim_token,
                "current": run.claim_token,
            },
        )
        return False

    @staticmethod
    def _write_outcomes(runs: list[JobRun]) -> None:
        """The batch's outcomes in one statement on PostgreSQL (``UPDATE ... FROM
        (VALUES ...)``, one round trip and one plan for hundreds of rows); elsewhere one
        UPDATE per run, sent with executemany. Both much cheaper than ``bulk_update``'s
        CASE expressions."""
        fields = [JobRun._meta.get_field(name) for name in RECORDED_FIELDS]
        q = connection.ops.quote_name
        table = q(JobRun._meta.db_table)
        if connection.vendor == "postgresql":
            payload = _outcomes_json(runs, fields)
            if payload is not None:
                # One parameter whatever the batch: the statement's text is the same every
                # time (psycopg parses it once) and no value is quoted one by one.
                names = [q(f.column) for f in fields]
                columns = ", ".join(
                    f"{n} {f.cast_db_type(connection)}" for n, f in zip(names, fields, strict=True)
                )
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {table} SET {', '.join(f'{n} = v.{n}' for n in names)} "
                        f"FROM jsonb_to_recordset(%s::jsonb) AS v({columns}, id bigint) WHERE {table}.id = v.id",
                        [payload],
                    )
                return
        preps = _outcome_preps()
        params = [
            [
                value if type(value) in plain else f.get_db_prep_save(value, connection)
                for (f, plain), value in zip(preps, [getattr(run, f.attname) for f in fields], strict=True)
            ]
            + [run.pk]
            for run in runs
        ]
        with connection.cursor() as cursor:
            if connection.vendor != "postgresql":
                assignments = ", ".join(f"{q(f.column)} = %s" for f in fields)
                cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", params)
                return
            for start in range(0, len(params), OUTCOME_STATEMENT_ROWS):
                chunk = params[start : start + OUTCOME_STATEMENT_ROWS]
                names = [q(f.column) for f in fields]
                # Each value cast to its column's type: a VALUES column of NULLs and
                # untyped literals would otherwise be text.
                assignments = ", ".join(
                    f"{n} = v.{n}::{f.cast_db_type(connection)}" for n, f in zip(names, fields, strict=True)
                )
                row = f"({', '.join(['%s'] * (len(fields) + 1))})"
                cursor.execute(
                    f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row] * len(chunk))}) "
                    f"AS v({', '.join(names)}, id) WHERE {table}.id = v.id::bigint",
                    [value for values in chunk for value in values],
                )

    @staticmethod
    def _apply(run: JobRun, outcome: Outcome) -> bool:
        """Set the outcome's fields on ``run``; True if a retry must follow."""
        job = run.job
        state = outcome.state
        retry = state in FAILED_STATES and rules.should_retry(run.attempt, job.retry_max_attempts)
        error = outcome.error
        if state in FAILED_STATES and not retry and job.retry_max_attempts > 1:
            error = f"{error} (final: attempt {run.attempt} of {job.retry_max_attempts})"
        elif state in FAILED_STATES and job.retry_max_attempts == 1:
            error = f"{error} (final: no retries configured)"
        run.state = state
        run.started_at = outcome.started_at
        run.finished_at = outcome.finished_at
        run.duration = outcome.duration
        run.cpu_seconds = outcome.cpu_seconds
        run.peak_memory_mb = outcome.peak_memory_mb
        run.result = _without_nul(outcome.result)
        run.error_type = _without_nul(outcome.error_type[:200])
        run.error = _without_nul(error)
        run.traceback = _without_nul(outcome.traceback)
        # Interrupted runs are re-queued when a scheduler starts again.
        run.is_final = not retry and state != RunState.INTERRUPTED
        return retry

    @staticmethod
    def _edges(job_ids: set[int]) -> dict[int, list[tuple[int, str]]]:
        return joins.edges_of(job_ids)

    @staticmethod
    def _follow_up(run: JobRun, *, attempt: int, reason: str, not_before: datetime) -> JobRun:
        return JobRun(
            job_id=run.job_id,
            tenant_id=run.tenant_id,
            scheduled_for=run.scheduled_for,
            attempt=attempt,
            reason=reason,
            priority=run.job.priority,
            not_before=not_before,
            kwargs_override=run.kwargs_override,
            triggered_by_id=run.triggered_by_id,
            upstream_runs=run.upstream_runs,
            executor=run.job.executor,
            target_node=run.target_node,
        )

    def _enqueue_dependents(
        self, ended: Sequence[JobRun], now: datetime, edges: Mapping[int, list[tuple[int, str]]]
    ) -> int:
        """The joins that ``ended``'s ends complete (outcomes, and skips: a skipped run
        has ended too)."""
        if not ended:
            return 0
        return joins.enqueue_dependents(ended, now, edges, postgres=self._postgres)

    # -- liveness -------------------------------------------------------------------------

    def heartbeat(self, node: str, run_ids: Sequence[int], now: datetime) -> list[int]:
        if not run_ids:
            return []
        mine = JobRun.objects.filter(pk__in=run_ids, state=RunState.RUNNING, node=node)
        if self.incarnation():
            mine = mine.filter(claim_token__startswith=f"{self.incarnation()}:")
        mine.update(heartbeat_at=now)
        return list(mine.filter(stop_requested=True).values_list("pk", flat=True))

    def save_logs(self, node: str, logs: Mapping[int, RunLog], now: datetime) -> None:
        """Live logs: only of runs still running here, under this incarnation."""
        if not logs:
            return
        mine = JobRun.objects.filter(pk__in=list(logs), state=RunState.RUNNING, node=node)
        if self.incarnation():
            mine = mine.filter(claim_token__startswith=f"{self.incarnation()}:")
        live = set(mine.values_list("pk", flat=True))
        write_logs({pk: log for pk, log in logs.items() if pk in live}, now)

    def recover(self, node: str, now: datetime) -> RecoveryReport:
        """Runs this node left ``running`` in an earlier life become lost (retried per
        policy); interrupted runs are re-queued as a new attempt."""
        host = node.rsplit(":", 1)[0]
        current = self.incarnation()
        stale_ids = []
        for run_id, run_node, token in JobRun.objects.filter(state=RunState.RUNNING).values_list(
            "pk", "node", "claim_token"
        ):
            if current and token.startswith(f"{current}:"):
                continue
            if run_node == node or _dead_local_process(run_node, host):
                stale_ids.append(run_id)
        lost = self._mark_lost(
            stale_ids, now, "the node running it stopped without finishing it (crash or kill)"
        )
        self.feed_pending_joins(now)  # skips a dead process left unfed
        return RecoveryReport(lost=lost, requeued=self.requeue_interrupted(now))

    def requeue_interrupted(self, now: datetime) -> int:
        """Interrupted runs (SIGTERM, self-fence) are queued again as a new attempt, by
        whichever live node gets here first (each at most once)."""
        requeued = 0
        interrupted = JobRun.objects.filter(state=RunState.INTERRUPTED, is_final=False).select_related("job")
        for run in interrupted[:500]:
            with transaction.atomic():
                if not JobRun.objects.filter(pk=run.pk, is_final=False).update(is_final=True):
                    continue
                JobRun.objects.bulk_create(
                    [
                        self._follow_up(
                            run, attempt=run.attempt + 1, reason=RunReason.RECOVERY, not_before=now
                        )
                    ],
                    ignore_conflicts=True,
                )
                requeued += 1
        return requeued

    def reap_lost(self, now: datetime, lost_after: float, exclude: Sequence[int] = ()) -> int:
        """Running runs whose node is not a live registered node (dead, stopped, never
        registered) and whose heartbeat is older than ``lost_after``. Runs of live nodes
        are never reaped here: a slow node is not a dead one (see ``fail_over``)."""
        cutoff = now - timedelta(seconds=lost_after)
        ids = list(
            JobRun.objects.filter(state=RunState.RUNNING, heartbeat_at__lt=cutoff)
            .exclude(pk__in=list(exclude))
            .exclude(node__in=self.live_node_names())
            .values_list("pk", flat=True)[:500]
        )
        found = self._mark_lost(ids, now, f"no heartbeat for more than {lost_after:g} s; its node is gone")
        self.feed_pending_joins(now)  # skips a dead node (or a failed feed) left unfed
        return found + self.requeue_interrupted(now)

    def fail_over(self, dead_nodes: Sequence[str], now: datetime) -> int:
        """The work of nodes just declared dead: running runs become lost (retried per
        policy on a live node); broadcast copies meant for them are cancelled."""
        gone = "node gone: its node was declared dead"
        running = JobRun.objects.filter(state=RunState.RUNNING, node__in=list(dead_nodes))
        lost_ids = list(running.filter(target_node="").values_list("pk", flat=True))
        copies = list(running.exclude(target_node="").values("pk", "started_at"))
        count = self._mark_lost(
            lost_ids, now, "its node was declared dead (no heartbeat); retried per policy"
        )
        if copies:
            self.record(
                [
                    Outcome(
                        run_id=c["pk"],
                        state=RunState.CANCELLED,
                        started_at=c["started_at"] or now,
                        finished_at=now,
                        error_type="NodeGone",
                        error=gone,
                    )
                    for c in copies
                ]
            )
        cancelled = JobRun.objects.filter(state=RunState.QUEUED, target_node__in=list(dead_nodes)).update(
            state=RunState.CANCELLED, finished_at=now, error=gone, error_type="NodeGone", is_final=True
        )
        if lost_ids or copies or cancelled:
            logger.warning(
                "failed over the runs of dead nodes",
                extra={"nodes": ",".join(dead_nodes), "lost": count, "cancelled": len(copies) + cancelled},
            )
        return count

    def _mark_lost(self, run_ids: list[int], now: datetime, reason: str) -> int:
        if not run_ids:
            return 0
        outcomes = []
        for run in JobRun.objects.filter(pk__in=run_ids):
            outcomes.append(
                Outcome(
                    run_id=run.pk,
                    state=RunState.LOST,
                    started_at=run.started_at or now,
                    finished_at=now,
                    error_type="Lost",
                    error=reason,
                )
            )
        self.record(outcomes)
        logger.warning("runs marked lost", extra={"count": len(outcomes), "reason": reason})
        return len(outcomes)

    # -- housekeeping -------------------------------------------------------------------

    def shed_misfired(self, now: datetime, limit: int = SHED_STATEMENT_ROWS) -> int:
        """Record as skipped, in one statement, the queued scheduled runs that can no
        longer start within their job's misfire grace and that the policy drops: what a
        claim does to each such candidate (``_misfired_at_claim``: ``skip`` drops it,
        ``coalesce`` when a newer scheduled run of the job is queued, ``run_all`` never),
        for the whole backlog at once. A claim looks only at its oldest few candidates
        and writes one UPDATE per skipped run: under a backlog of stale runs it skipped
        as many as it read, claimed none, and the node executed nothing while its queue
        grew (measured: 0 runs/s at 1,000 fires/s of demo.noop, grace 2 s). Runs locked
        by a claim are left to it (SKIP LOCKED); PostgreSQL only (elsewhere the claim's
        own check remains). Returns how many were skipped."""
        if not self._postgres:
            return 0
        q = connection.ops.quote_name
        run_t, job_t = q(JobRun._meta.db_table), q(Job._meta.db_table)
        # queued: read from the queued runs alone (MATERIALIZED: the claim's partial
        # index, whatever the statistics), never by job through the runs' history; only
        # runs due before the shortest grace can be past theirs.
        sql = f"""
            WITH queued AS MATERIALIZED (
                SELECT r.id, r.job_id, r.scheduled_for,
                       GREATEST(r.scheduled_for, r.queued_at, r.not_before) AS since
                FROM {run_t} r
                WHERE r.state = %(queued)s AND r.reason = %(schedule)s AND r.attempt = 1
                  AND r.wait_reason = ''
                  AND r.not_before < %(now)s - make_interval(secs => (
                      SELECT coalesce(min(g.misfire_grace_seconds), 0) FROM {job_t} g
                      WHERE g.misfire_policy IN (%(skip)s, %(coalesce)s)))
            ), stale AS (
                SELECT q.id, j.misfire_policy AS policy, j.misfire_grace_seconds AS grace,
                       EXTRACT(EPOCH FROM (%(now)s - q.since)) AS late
                FROM queued q JOIN {job_t} j ON j.id = q.job_id
                WHERE j.enabled AND NOT j.paused
                  AND q.since < %(now)s - make_interval(secs => j.misfire_grace_seconds)
                  AND (j.misfire_policy = %(skip)s OR (j.misfire_policy = %(coalesce)s AND EXISTS (
                      SELECT 1 FROM {run_t} n WHERE n.job_id = q.job_id AND n.state = %(queued)s
                        AND n.reason = %(schedule)s AND n.scheduled_for > q.scheduled_for)))
                ORDER BY q.id LIMIT %(limit)s
            ), locked AS (
                SELECT r.id FROM {run_t} r JOIN stale s ON s.id = r.id
                WHERE r.state = %(queued)s
                FOR UPDATE OF r SKIP LOCKED
            )
            UPDATE {run_t} u SET state = %(skipped)s, finished_at = %(now)s, is_final = true,
                {_c("join_pending")} = {join_pending_sql("u")},
                error = CASE WHEN stale.policy = %(skip)s
                    THEN 'could not start within the ' || stale.grace || ' s grace period ('
                         || to_char(stale.late, 'FM999999990.0') || ' s late; misfire policy: skip)'
                    ELSE 'coalesced into a newer scheduled run (misfire policy: coalesce)' END
            FROM stale JOIN locked ON locked.id = stale.id WHERE u.id = stale.id
            RETURNING u.id
        """
        params = {
            "now": now,
            "queued": RunState.QUEUED,
            "skipped": RunState.SKIPPED,
            "schedule": RunReason.SCHEDULE,
            "skip": rules.SKIP,
            "coalesce": rules.COALESCE,
            "limit": limit,
        }
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return 0
            shed = list(JobRun.objects.filter(pk__in=ids).select_related("job__tenant", "job__group"))
            counters.count_finished(shed)  # metrics
            alerts.on_outcome(shed)  # outbox rows, in this transaction
        for run in shed:
            signals.run_skipped.send(sender=JobRun, run=run)
        self.feed_pending_joins(now, [run.pk for run in shed])  # a skip is an end for the joins
        logger.info("shed runs past their misfire grace", extra={"count": len(shed)})
        return len(shed)

    def refresh_statistics(self) -> None:
        """Keep PostgreSQL's planner statistics on the run table fresh. A queue that
        grows before autovacuum's first ANALYZE would otherwise be claimed by sorting
        every queued row instead of reading the claim index (100 ms instead of 1 ms)."""
        if self._postgres:
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(JobRun._meta.db_table)}")

    def prune(self, now: datetime, days: float | None) -> int:
        if days is None:
            return 0
        cutoff = now - timedelta(days=days)
        _, per_model = (
            JobRun.objects.filter(finished_at__lt=cutoff)
            .exclude(state__in=[RunState.QUEUED, RunState.RUNNING])
            .delete()
        )
        return per_model.get(JobRun._meta.label, 0)  # their logs go along, uncounted


#: What a NUL character in a task's output (error, traceback, result, log) is stored as:
#: PostgreSQL refuses NUL in text and JSON, and one such outcome would otherwise fail
#: its whole batch again on every retry, holding up every later outcome of the node.
NUL_REPLACEMENT = "\ufffd"


#: Run ids a "runs finished" line names at most.
LOGGED_RUN_IDS = 20


def _log_finished(runs: Sequence[JobRun]) -> None:
    """One INFO line per recorded batch (``runs finished`` with the count per state, the
    first run ids and the names of their jobs), and one ``run finished`` line per run: at INFO for every run that
    did not succeed, at DEBUG for successes (formatting and writing a line per success
    was a quarter of the CPU that recording a burst of runs cost)."""
    if not runs or not logger.isEnabledFor(logging.INFO):
        return
    debug = logger.isEnabledFor(logging.DEBUG)
    states: dict[str, int] = {}
    jobs: dict[str, None] = {}
    for run in runs:
        state = str(run.state)
        states[state] = states.get(state, 0) + 1
        if len(jobs) < LOGGED_RUN_IDS:
            jobs[run.job.name] = None
        if state == RunState.SUCCEEDED and not debug:
            continue
        logger.log(
            logging.DEBUG if state == RunState.SUCCEEDED else logging.INFO,
            "run finished",
            extra={
                "job": run.job.name,
                "run_id": run.pk,
                "state": state,
                "duration": round(run.duration or 0.0, 4),
                "attempt": run.attempt,
            },
        )
    logger.info(
        "runs finished",
        extra={
            "count": len(runs),
            **dict(sorted(states.items())),
            "run_ids": ",".join(str(run.pk) for run in runs[:LOGGED_RUN_IDS]),
            "jobs": ",".join(jobs),
        },
    )


def _without_nul(value: Any) -> Any:
    """``value`` (text, or a JSON value) with every NUL replaced, in keys too."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT) if "\x00" in value else value
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def write_logs(logs: Mapping[int, RunLog], now: datetime) -> None:
    """Insert or update the runs' log rows in one statement (executemany, pipelined by
    psycopg 3). A log never replaces one with more lines: a live write that lost the
    race with the outcome's final log leaves the final one in place."""
    if not logs:
        return
    meta = JobRunLog._meta
    q = connection.ops.quote_name
    table = q(meta.db_table)
    columns = [meta.get_field(name) for name in ("run", "text", "lines_total", "lines_dropped", "updated_at")]
    names = [q(f.column) for f in columns]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    total = q(meta.get_field("lines_total").column)
    sql = (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
        f"ON CONFLICT ({names[0]}) DO UPDATE SET {updates} WHERE {table}.{total} <= excluded.{total}"
    )
    stamp = meta.get_field("updated_at").get_db_prep_save(now, connection)
    params = [
        [pk, _without_nul(log.text), log.lines_total, log.lines_dropped, stamp]
        for pk, log in sorted(logs.items())
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


class _FireJob(NamedTuple):
    """What writing a fire reads of its job (the names are Job's fields)."""

    pk: int
    tenant_id: int
    name: str
    enabled: bool
    paused: bool
    priority: int
    executor: str
    misfire_policy: str
    misfire_grace_seconds: int
    load_policy: str
    routing: str
    routing_tags: list[str] | None
    max_instances: int
    rate_limit: str
    concurrency_key: str
    group_rate_limit: str | None

    @property
    def is_schedulable(self) -> bool:
        return self.enabled and not self.paused

    @property
    def claimable_anywhere(self) -> bool:
        """Whether any node's claim takes its runs as they come: routed to any node,
        held back by no rate limit, concurrency key or load deferral (the runs the
        backlog judgement counts, and the only fires it judges)."""
        return (
            self.is_schedulable
            and self.routing == Routing.ANY
            and not self.rate_limit
            and not self.concurrency_key
            and not self.group_rate_limit
            and self.load_policy != LoadPolicy.DEFER
        )


class _Backlog:
    """What a new fire is judged on, as read by ``_backlog_ahead``: the executors whose
    every live node is full (``saturated``), the claimable due runs queued per executor
    and priority (``due``), each executor's pace (runs finished per second), the room
    each job's max_instances leaves (``room``), and the runs this process queued since
    (``added``)."""

    def __init__(
        self,
        due: Mapping[tuple[str, int], int],
        pace: Mapping[str, float],
        saturated: set[str],
        room: Mapping[int, int],
        read_at: float,
    ) -> None:
        self.due = dict(due)
        self.pace = dict(pace)
        self.saturated = set(saturated)
        self.room = dict(room)
        self.read_at = read_at
        self.added: dict[tuple[str, int], int] = {}

    def add(self, job: _FireJob) -> None:
        """A run of ``job`` queued: ahead of later fires when a claim would take it
        (jobs unknown to this reading are not counted: when in doubt, not ahead)."""
        if not job.claimable_anywhere or self.room.get(job.pk, 0) <= 0:
            return
        self.room[job.pk] -= 1
        key = (job.executor, job.priority)
        self.added[key] = self.added.get(key, 0) + 1

    def ahead(self, executor: str, priority: int) -> int:
        """The due runs a new run of ``executor`` and ``priority`` waits behind (those
        of equal or higher priority); the pace drains the top of the queue."""
        queued = sum(n for (e, p), n in self.due.items() if e == executor and p >= priority)
        queued += sum(n for (e, p), n in self.added.items() if e == executor and p >= priority)
        drained = self.pace.get(executor, 0.0) * (time.monotonic() - self.read_at)
        return max(queued - int(drained), 0)

    def judge(self, job: _FireJob, lag: float) -> tuple[int, float] | None:
        """(runs ahead, seconds of waiting) of a new run of ``job`` that waited ``lag``
        seconds before its write; ``None`` when it cannot be judged: a live node has a
        free slot of its executor, fewer than FIRE_BACKLOG_MIN_AHEAD runs are ahead, or
        nothing of that executor finished lately."""
        if job.executor not in self.saturated:
            return None
        ahead = self.ahead(job.executor, job.priority)
        if ahead < FIRE_BACKLOG_MIN_AHEAD:
            return None
        pace_wait = rules.backlog_wait(ahead, self.pace.get(job.executor, 0.0))
        if pace_wait is None:
            return None
        return ahead, lag + pace_wait


#: The columns read into _FireJob (a field of the job's group has a path).
_FIRE_JOB_FIELDS = (*_FireJob._fields[:-1], "group__rate_limit")
#: What the metrics label a skipped run with, read with its job (see enqueue).
_FIRE_LABEL_FIELDS = ("tenant__slug", "group__name", "task")


class _NewRun(NamedTuple):
    """A scheduled run about to be written by ``enqueue``: queued, or skipped with
    ``error`` as the reason (attempt 1, due at its fire time)."""

    job_id: int
    tenant_id: int
    scheduled_for: datetime
    priority: int
    executor: str
    target_node: str
    error: str | None = None  # None: queued; else skipped, for this reason
    # When the leader noticed the fire: the run's queued_at (never after the write). The
    # claim and the shed measure lateness from queued_at, so the time a fire waited in
    # the enqueuer's memory counts against its grace (as the write time it did not:
    # runs started up to that wait past their grace).
    noticed: datetime | None = None

    def queued_at(self, now: datetime) -> datetime:
        return now if self.noticed is None else min(self.noticed, now)

    def model(self, now: datetime) -> JobRun:
        skipped = self.error is not None
        return JobRun(
            target_node=self.target_node,
            job_id=self.job_id,
            tenant_id=self.tenant_id,
            scheduled_for=self.scheduled_for,
            attempt=1,
            reason=RunReason.SCHEDULE,
            priority=self.priority,
            not_before=self.scheduled_for,
            executor=self.executor,
            state=RunState.SKIPPED if skipped else RunState.QUEUED,
            error=self.error or "",
            queued_at=self.queued_at(now),
            finished_at=now if skipped else None,
            is_final=skipped,
        )


class _SkippedAtEnqueue:
    """A run ``enqueue`` wrote as skipped, with what the metrics (``count_finished``)
    and the joins (``_skips_end_joins``) read of a JobRun: building a JobRun instance
    per skipped fire was half the fire path's CPU under overload (py-spy: 3,000 fires/s,
    most of them skipped, ``Model.__init__`` filling ~40 fields and their defaults)."""

    __slots__ = ("job_id", "tenant_id", "scheduled_for", "not_before", "target_node", "finished_at", "error")
    state = RunState.SKIPPED
    attempt = 1
    duration = None
    started_at = None
    # count_finished looks for the job loaded with the run: none (it reads the labels).
    _state = types.SimpleNamespace(fields_cache=types.MappingProxyType({}))

    def __init__(self, row: _NewRun, now: datetime) -> None:
        self.job_id = row.job_id
        self.tenant_id = row.tenant_id
        self.scheduled_for = self.not_before = row.scheduled_for
        self.target_node = row.target_node
        self.finished_at = now
        self.error = row.error


#: The columns ``_insert_runs`` takes from each row (the rest are the same for all).
_FIRE_COLUMNS = (
    ("job_id", "bigint"),
    ("tenant_id", "bigint"),
    ("scheduled_for", "timestamptz"),
    ("priority", "integer"),
    ("executor", "text"),
    ("target_node", "text"),
    ("state", "text"),
    ("error", "text"),
    ("finished_at", "timestamptz"),
    ("is_final", "boolean"),
    ("queued_at", "timestamptz"),
)


def _insert_runs(rows: Sequence[_NewRun], now: datetime) -> set[tuple[int, datetime, str]]:
    """Write new scheduled runs in multi-row statements (PostgreSQL): one
    ``INSERT ... SELECT FROM unnest(arrays)`` per FIRE_STATEMENT_ROWS rows, one array per
    varying column, instead of a model instance and a parameter per field and row. A
    run already written (same job, time, attempt, node) is left as it is (``ON CONFLICT
    DO NOTHING``, as bulk_create's ignore_conflicts): a fire is never written twice.
    Every other column gets its field's default, as a model instance would; ``queued_at``
    is when the fire was noticed (``_NewRun.queued_at``); ``not_before`` is the fire time.
    Returns the keys (job, time, node) of the skipped rows actually written."""
    varying = {name for name, _ in _FIRE_COLUMNS}
    columns: list[str] = []
    values: list[str] = []
    constants: list[Any] = []
    for field in JobRun._meta.concrete_fields:
        if field.primary_key:
            continue
        column = connection.ops.quote_name(field.column)
        columns.append(column)
        if field.column in varying:
            values.append(f"r.{field.column}")
        elif field.column == "not_before":
            values.append("r.scheduled_for")
        else:
            value = now if field.column == "queued_at" else field.get_default()
            if field.column == "reason":
                value = RunReason.SCHEDULE
            elif field.column == "attempt":
                value = 1
            values.append(f"CAST(%s AS {field.db_type(connection)})")
            constants.append(field.get_db_prep_save(value, connection))
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in _FIRE_COLUMNS)
    names = ", ".join(name for name, _ in _FIRE_COLUMNS)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(JobRun._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM unnest({arrays}) AS r({names}) ON CONFLICT DO NOTHING "
        "RETURNING job_id, scheduled_for, target_node, is_final"
    )
    written: set[tuple[int, datetime, str]] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), FIRE_STATEMENT_ROWS):
            chunk = rows[start : start + FIRE_STATEMENT_ROWS]
            skipped = [row.error is not None for row in chunk]
            arrays_of = [
                [row.job_id for row in chunk],
                [row.tenant_id for row in chunk],
                [row.scheduled_for for row in chunk],
                [row.priority for row in chunk],
                [row.executor for row in chunk],
                [row.target_node for row in chunk],
                [RunState.SKIPPED if s else RunState.QUEUED for s in skipped],
                [row.error or "" for row in chunk],
                [now if s else None for s in skipped],
                skipped,
                [row.queued_at(now) for row in chunk],
            ]
            cursor.execute(sql, [*constants, *arrays_of])
            written.update((job_id, when, node) for job_id, when, node, final in cursor.fetchall() if final)
    return written


def _noticed_as_queued_at(rows: Sequence[_NewRun], now: datetime) -> None:
    """SQLite: ``bulk_create`` sets ``queued_at`` to the write time (auto_now_add); the
    rows written now (``queued_at`` not before ``now``) get their fire's noticed time,
    as ``_insert_runs`` writes it on PostgreSQL."""
    by_time: dict[datetime, Q] = {}
    for row in rows:
        at = row.queued_at(now)
        if at != now:
            by_time[at] = by_time.get(at, Q()) | Q(
                job_id=row.job_id, scheduled_for=row.scheduled_for, attempt=1, target_node=row.target_node
            )
    for at, keys in by_time.items():
        JobRun.objects.filter(keys, queued_at__gte=now).update(queued_at=at)


def _existing_skip_keys(rows: Sequence[_NewRun], invert: bool = False) -> set[tuple[int, datetime, str]]:
    """SQLite (one node): the keys of the skipped ``rows`` not written yet (``invert``)
    or already written, read before the insert that ignores conflicts."""
    skips = [r for r in rows if r.error is not None]
    if not skips:
        return set()
    keys = Q()
    for r in skips:
        keys |= Q(job_id=r.job_id, scheduled_for=r.scheduled_for, attempt=1, target_node=r.target_node)
    existing = set(JobRun.objects.filter(keys).values_list("job_id", "scheduled_for", "target_node"))
    if not invert:
        return existing
    return {(r.job_id, r.scheduled_for, r.target_node) for r in skips} - existing


class _JobFilters(NamedTuple):
    """What the claim's filters need from the job rows, as of a configuration version."""

    version: int
    read_at: float  # monotonic
    tags: tuple[str, ...]  # this node's, when read
    blocked: tuple[int, ...]  # jobs routed to tags this node lacks
    keyed: tuple[tuple[int, int, str, int | None], ...]  # (job, tenant, concurrency key, limit)


class _Wait:
    """Why a run may not start now; ``until``: when it may (a rate limit), or None
    (a concurrency key: when a run holding it ends)."""

    __slots__ = ("reason", "until")

    def __init__(self, reason: str, until: datetime | None) -> None:
        self.reason = reason
        self.until = until


def advisory_key(scope: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock``."""
    digest = hashlib.blake2b(f"scheduler_app:{scope}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Throttle:
    """The rate limits (job, group, tenant) and concurrency keys of the jobs of one
    claim, inside its transaction.

    On PostgreSQL a scope shared by several jobs (a group's or tenant's rate, a
    concurrency key) is serialised with ``pg_advisory_xact_lock`` taken after the job
    rows are locked (a job's own rate is serialised by its row lock), in a fixed order
    so claims cannot deadlock; the counts are read after the locks, in fresh
    statements, so they include what another node's claim just committed. On SQLite
    the single writer serialises claims anyway."""

    def __init__(self, jobs: Iterable[Job], now: datetime, *, batch: int, postgres: bool) -> None:
        self.now = now
        self.rates: dict[str, tuple[throttle.Rate, tuple[str, str]]] = {}  # scope -> (rate, (kind, name))
        self.windows: dict[str, throttle.RateWindow] = {}
        self.running: dict[str, int] = {}  # concurrency scope -> runs holding the key
        members: dict[str, Q] = {}
        shared: set[str] = set()
        for job in jobs:
            for scope, text, label, where in self._rate_scopes(job):
                if scope in self.rates:
                    continue
                try:
                    rate = throttle.parse_rate(text)
                except throttle.RateError as exc:  # stored before validation existed
                    logger.warning(
                        "invalid rate limit ignored", extra={"scope": " ".join(label), "error": str(exc)}
                    )
                    continue
                self.rates[scope] = (rate, label)
                members[scope] = where
                if not scope.startswith("job:"):
                    shared.add(scope)
            key = self._key_scope(job)
            if key is not None and key not in self.running:
                self.running[key] = 0
                shared.add(key)
        if postgres and shared:
            with connection.cursor() as cursor:
                for lock in sorted(advisory_key(scope) for scope in shared):
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
        for scope, (rate, _label) in self.rates.items():
            started = JobRun.objects.filter(
                job_id__in=Job.objects.filter(members[scope]).values("pk"), started_at__gt=now - rate.period
            )
            in_window = started.count()
            # Only the starts whose leaving the window can matter to this batch.
            ranks = throttle.RateWindow.ranks_needed(rate, in_window, batch)
            times = (
                list(
                    started.order_by("-started_at").values_list("started_at", flat=True)[
                        ranks.start - 1 : ranks.stop - 1
                    ]
                )
                if ranks
                else []
            )
            self.windows[scope] = throttle.RateWindow(
                rate, in_window, dict(zip(ranks, times, strict=False)), []
            )
        for scope in self.running:
            _kind, tenant_id, key = scope.split(":", 2)
            self.running[scope] = JobRun.objects.filter(
                state=RunState.RUNNING, tenant_id=int(tenant_id), job__concurrency_key=key
            ).count()

    @staticmethod
    def _rate_scopes(job: Job) -> Iterator[tuple[str, str, tuple[str, str], Q]]:
        if job.rate_limit:
            yield f"job:{job.pk}", job.rate_limit, ("job", f"{job.tenant.slug}/{job.name}"), Q(pk=job.pk)
        if job.group_id and job.group.rate_limit:
            yield (
                f"group:{job.group_id}",
                job.group.rate_limit,
                ("group", f"{job.tenant.slug}/{job.group.name}"),
                Q(group_id=job.group_id),
            )
        if job.tenant.rate_limit:
            yield (
                f"tenant:{job.tenant_id}",
                job.tenant.rate_limit,
                ("tenant", job.tenant.slug),
                Q(tenant_id=job.tenant_id),
            )

    @staticmethod
    def _key_scope(job: Job) -> str | None:
        return f"key:{job.tenant_id}:{job.concurrency_key}" if job.concurrency_key else None

    def check(self, job: Job) -> _Wait | None:
        """None if a run of ``job`` may start now, else why not."""
        key = self._key_scope(job)
        if key is not None:
            limit = job.concurrency_limit or 1
            if self.running[key] >= limit:
                return _Wait(
                    waits.text("key", key=job.concurrency_key, running=self.running[key], limit=limit), None
                )
        latest: tuple[datetime, str] | None = None
        for scope, _text, _label, _where in self._rate_scopes(job):
            if scope not in self.rates:
                continue
            rate, label = self.rates[scope]
            slot = self.windows[scope].next_start(self.now)
            if slot is not None and (latest is None or slot > latest[0]):
                latest = (slot, waits.text("rate", rate=rate, scope=label[0], name=label[1]))
        if latest is not None:
            return _Wait(latest[1], latest[0])
        return None

    def started(self, job: Job) -> None:
        key = self._key_scope(job)
        if key is not None:
            self.running[key] += 1
        for scope, _text, _label, _where in self._rate_scopes(job):
            if scope in self.windows:
                self.windows[scope].add(self.now)


#: The columns of a candidate run a claim reads (see _Candidate).
_CANDIDATE_FIELDS = (
    "id",
    "job_id",
    "tenant_id",
    "scheduled_for",
    "attempt",
    "reason",
    "priority",
    "not_before",
    "queued_at",
    "executor",
    "wait_reason",
    "kwargs_override",
    "upstream_runs",
    "target_node",
)


class _Candidate:
    """A due run as a claim reads it: the columns it decides on and the executor needs,
    without a model instance per run (the claim's hottest path)."""

    __slots__ = (
        *(f if f != "id" else "pk" for f in _CANDIDATE_FIELDS),
        "state",
        "node",
        "started_at",
        "claim_token",
    )

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.__slots__, values, strict=False):
            setattr(self, name, value)
        self.state = RunState.QUEUED
        self.node = ""
        self.started_at = None
        self.claim_token = ""


def _c(name: str) -> str:
    return connection.ops.quote_name(JobRun._meta.get_field(name).column)


class _ClaimSQL(NamedTuple):
    job_fields: tuple[Any, ...]
    job_attnames: tuple[str, ...]
    job_names: frozenset[str]
    tenant_fields: tuple[str, ...]
    tenant_names: tuple[str, ...]
    group_names: tuple[str, ...]
    run_converters: tuple[tuple[Any, list[Any]], ...]
    job_converters: tuple[tuple[Any, list[Any]], ...]


_CLAIM_SQL: dict[tuple[str, bool], tuple[str, _ClaimSQL]] = {}


#: JSON texts a claim or a record reads for most rows (no args, no kwargs, no tags, no
#: upstream runs), made without the decoder: what ``json.loads`` would give.
_PLAIN_JSON: dict[str, Callable[[], Any]] = {"[]": list, "{}": dict, "null": lambda: None}


def _plain_json_first(funcs: list[Any]) -> Any:
    """A JSON column's conversions with the texts of :data:`_PLAIN_JSON` (and NULL)
    made at once: they are most of the values, and decoding them went through the
    field's converters, the stored-JSON limits and ``json.loads`` each time."""

    def convert(value: Any, expression: Any, conn: Any) -> Any:
        if value is None:
            return None
        if type(value) is str:
            make = _PLAIN_JSON.get(value)
            if make is not None:
                return make()
        for func in funcs:
            value = func(value, expression, conn)
        return value

    return convert


def _converters(fields: Sequence[Any]) -> tuple[tuple[Any, list[Any]], ...]:
    """Django's conversions of these columns' database values (as a queryset applies
    them: JSON decoded, SQLite's dates and booleans)."""
    from django.db import models

    out = []
    for field in fields:
        col = field.get_col(field.model._meta.db_table)
        funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if isinstance(field, models.JSONField) and field.decoder is None and funcs:
            funcs = [_plain_json_first(funcs)]
        out.append((col, funcs))
    return tuple(out)


def _instance(cls: Any, alias: str, attnames: Sequence[str], values: Sequence[Any]) -> Any:
    """``cls.from_db(alias, attnames, values)`` for the columns ``attnames`` (in the
    model's field order; the others deferred), without ``Model.__init__``'s setattr per
    field: the instance Django makes (same ``__dict__``, state ``adding`` False, ``db``
    alias; ``Job`` remembers its loaded trigger as its ``from_db`` does). With a
    ``pre_init``/``post_init`` receiver for ``cls``, ``from_db`` itself."""
    from django.db.models.base import ModelState
    from django.db.models.signals import post_init, pre_init

    if pre_init.has_listeners(cls) or post_init.has_listeners(cls):
        return cls.from_db(alias, frozenset(attnames), values)
    obj = cls.__new__(cls)
    state = obj._state = ModelState()
    state.adding = False
    state.db = alias
    obj.__dict__.update(zip(attnames, values, strict=True))
    if cls is Job:
        obj._loaded_trigger = obj.__dict__.get("trigger")
    return obj


def _convert(converters: Sequence[tuple[Any, list[Any]]], values: Sequence[Any]) -> list[Any]:
    out = list(values)
    for i, (col, funcs) in enumerate(converters):
        for func in funcs:
            out[i] = func(out[i], col, connection)
    return out


def _claim_sql(postgres: bool) -> tuple[str, _ClaimSQL]:
    """The claim's statement (with ``{where}`` for the executor and job filters) and how
    to read its rows; built once per database vendor."""
    key = (connection.vendor, postgres)
    if key in _CLAIM_SQL:
        return _CLAIM_SQL[key]
    q = connection.ops.quote_name
    run_fields = [JobRun._meta.get_field(f) for f in _CANDIDATE_FIELDS]
    wanted = {"id", "tenant_id", "group_id", *(f for f in CLAIM_JOB_FIELDS if "__" not in f)}
    job_fields = tuple(f for f in Job._meta.concrete_fields if f.attname in wanted or f.name in wanted)
    tenant_wanted = {"id", *(f.split("__", 1)[1] for f in CLAIM_JOB_FIELDS if f.startswith("tenant__"))}
    group_wanted = {"id", *(f.split("__", 1)[1] for f in CLAIM_JOB_FIELDS if f.startswith("group__"))}
    tenant_fields = tuple(f for f in Tenant._meta.concrete_fields if f.attname in tenant_wanted)
    group_fields = tuple(f for f in JobGroup._meta.concrete_fields if f.attname in group_wanted)
    run_t, job_t = q(JobRun._meta.db_table), q(Job._meta.db_table)
    tenant_t, group_t = q(Tenant._meta.db_table), q(JobGroup._meta.db_table)
    r = lambda name: f"r.{_c(name)}"  # noqa: E731
    inner = (
        f"SELECT {', '.join(f'r.{q(f.column)}' for f in run_fields)} FROM {run_t} r "
        f"INNER JOIN {job_t} j ON j.{q('id')} = {r('job')} "
        f"WHERE {r('state')} = %s AND {r('not_before')} <= %s "
        f"AND ({r('target_node')} = '' OR {r('target_node')} = %s) AND {{where}} "
        f"AND j.{q(Job._meta.get_field('enabled').column)} "
        f"AND NOT (j.{q(Job._meta.get_field('paused').column)} AND {r('reason')} NOT IN (%s, %s)) "
        f"ORDER BY {r('priority')} DESC, {r('not_before')} ASC, {r('id')} ASC LIMIT %s"
    )
    outer_cols = ", ".join(
        [
            "c.*",
            *(f"j.{q(f.column)}" for f in job_fields),
            *(f"t.{q(f.column)}" for f in tenant_fields),
            *(f"g.{q(f.column)}" for f in group_fields),
        ]
    )
    job_run = q(JobRun._meta.get_field("job").column)
    outer = (
        f"SELECT {outer_cols} FROM c INNER JOIN {job_t} j ON j.{q('id')} = c.{job_run} "
        f"INNER JOIN {tenant_t} t ON t.{q('id')} = j.{q(Job._meta.get_field('tenant').column)} "
        f"LEFT OUTER JOIN {group_t} g ON g.{q('id')} = j.{q(Job._meta.get_field('group').column)} "
        f"ORDER BY j.{q('id')}"
    )
    if postgres:
        sql = f"WITH c AS MATERIALIZED ({inner} FOR UPDATE OF r SKIP LOCKED) {outer} FOR NO KEY UPDATE OF j"
    else:
        sql = f"WITH c AS ({inner}) {outer}"
    params = _ClaimSQL(
        job_fields=job_fields,
        job_attnames=tuple(f.attname for f in job_fields),
        # A set: Model.from_db tests each field's name for membership (a tuple made that
        # a scan of every name for every field).
        job_names=frozenset(f.attname for f in job_fields),
        tenant_fields=tuple(f.attname for f in tenant_fields),
        tenant_names=tuple(f.attname for f in tenant_fields),
        group_names=tuple(f.attname for f in group_fields),
        run_converters=_converters(run_fields),
        job_converters=_converters(job_fields),
    )
    _CLAIM_SQL[key] = (sql, params)
    return sql, params


#: What ``record`` reads of a job whose run it ends (the retry policy, the metrics'
#: labels, the alert rules' scopes and mutes, pause on failure, the log line), with the
#: tenant's slug and the group's name: a job instance with its other columns deferred
#: (a signal receiver reading one gets it, read then: one query per job and column).
RECORD_JOB_FIELDS = (
    "id",
    "tenant_id",
    "group_id",
    "name",
    "task",
    "priority",
    "executor",
    "retry_max_attempts",
    "retry_backoff_seconds",
    "retry_backoff_factor",
    "retry_max_backoff_seconds",
    "alerts_muted_until",
    "pause_after_failures",
)


class _RecordSQL(NamedTuple):
    sql: str
    run_names: tuple[str, ...]
    job_names: tuple[str, ...]
    run_n: int
    job_n: int
    run_converters: tuple[tuple[Any, list[Any]], ...]
    job_converters: tuple[tuple[Any, list[Any]], ...]


_RECORD_SQL: dict[tuple[str, bool, int, bool], _RecordSQL] = {}
#: Columns of a run that recording it never reads (nor what it calls: metrics, alerts,
#: joins, retries): left deferred unless a signal receiver will get the run.
RECORD_UNREAD_RUN_FIELDS = (
    "queued_at",
    "claimed_at",
    "heartbeat_at",
    "stop_requested",
    "wait_reason",
    "join_pending",
)


def _record_sql(postgres: bool, count: int, whole: bool = True) -> _RecordSQL:
    """The statement that locks the running runs ``record`` ends and reads them with
    their jobs' :data:`RECORD_JOB_FIELDS`, the tenant's slug and the group's name (one
    round trip, no ORM compilation). A run's columns are all but those the outcome
    overwrites (``state`` aside): once the outcome is applied the model is whole;
    unless ``whole`` is False: then :data:`RECORD_UNREAD_RUN_FIELDS` stay deferred too.
    On PostgreSQL the ids are one array parameter (the same text for every batch)."""
    key = (connection.vendor, postgres, 0 if postgres else count, whole)
    cached = _RECORD_SQL.get(key)
    if cached is not None:
        return cached
    q = connection.ops.quote_name
    overwritten = set(RECORDED_FIELDS) - {"state"}
    if not whole:
        overwritten.update(RECORD_UNREAD_RUN_FIELDS)
    run_fields = [f for f in JobRun._meta.concrete_fields if f.name not in overwritten]
    job_fields = [f for f in Job._meta.concrete_fields if f.attname in RECORD_JOB_FIELDS]
    run_t, job_t = q(JobRun._meta.db_table), q(Job._meta.db_table)
    tenant_t, group_t = q(Tenant._meta.db_table), q(JobGroup._meta.db_table)
    cols = [
        *(f"r.{q(f.column)}" for f in run_fields),
        *(f"j.{q(f.column)}" for f in job_fields),
        f"t.{q(Tenant._meta.get_field('slug').column)}",
        f"g.{q(JobGroup._meta.get_field('name').column)}",
    ]
    ids = "= ANY(%s)" if postgres else f"IN ({', '.join(['%s'] * count)})"
    sql = (
        f"SELECT {', '.join(cols)} FROM {run_t} r "
        f"INNER JOIN {job_t} j ON j.{q('id')} = r.{_c('job')} "
        f"INNER JOIN {tenant_t} t ON t.{q('id')} = j.{q(Job._meta.get_field('tenant').column)} "
        f"LEFT OUTER JOIN {group_t} g ON g.{q('id')} = j.{q(Job._meta.get_field('group').column)} "
        f"WHERE r.{q('id')} {ids} AND r.{_c('state')} = %s ORDER BY r.{q('id')}"
        + (" FOR UPDATE OF r" if postgres else "")
    )
    made = _RecordSQL(
        sql=sql,
        run_names=tuple(f.attname for f in run_fields),
        job_names=tuple(f.attname for f in job_fields),
        run_n=len(run_fields),
        job_n=len(job_fields),
        run_converters=_converters(run_fields),
        job_converters=_converters(job_fields),
    )
    _RECORD_SQL[key] = made
    return made


def _running_runs(run_ids: Sequence[int], postgres: bool, whole: bool = True) -> list[JobRun]:
    """The runs of ``run_ids`` that are still running, locked (PostgreSQL), in id order,
    each with its job (:data:`RECORD_JOB_FIELDS`, the tenant's slug and the group's name
    loaded, one instance per job, tenant and group): what recording an outcome needs,
    without a full job, tenant and group model per run (see ``_record_sql`` for
    ``whole``)."""
    if not run_ids:
        return []
    spec = _record_sql(postgres, len(run_ids), whole)
    ids = sorted(run_ids)
    with connection.cursor() as cursor:
        cursor.execute(spec.sql, [ids, RunState.RUNNING] if postgres else [*ids, RunState.RUNNING])
        rows = cursor.fetchall()
    alias = connection.alias
    run_n, job_n = spec.run_n, spec.job_n
    jobs: dict[int, Job] = {}
    tenants: dict[int, Tenant] = {}
    groups: dict[int, JobGroup] = {}
    runs = []
    for row in rows:
        run = _instance(JobRun, alias, spec.run_names, _convert(spec.run_converters, row[:run_n]))
        job = jobs.get(run.job_id)
        if job is None:
            job = _instance(
                Job, alias, spec.job_names, _convert(spec.job_converters, row[run_n : run_n + job_n])
            )
            tenant = tenants.get(job.tenant_id)
            if tenant is None:
                tenant = tenants[job.tenant_id] = _instance(
                    Tenant, alias, ("id", "slug"), (job.tenant_id, row[run_n + job_n])
                )
            job._state.fields_cache["tenant"] = tenant
            group = None
            if job.group_id is not None:
                group = groups.get(job.group_id)
                if group is None:
                    group = groups[job.group_id] = _instance(
                        JobGroup, alias, ("id", "name"), (job.group_id, row[run_n + job_n + 1])
                    )
            job._state.fields_cache["group"] = group
            jobs[job.pk] = job
        run._state.fields_cache["job"] = job
        runs.append(run)
    if whole and jobs:
        # A signal receiver gets each job whole, as it was when recorded (not columns
        # fetched later, from a row another receiver may have changed or deleted): one
        # query per batch, paid only when a receiver will get the runs.
        full = Job.objects.select_related("tenant", "group").in_bulk(list(jobs))
        for run in runs:
            whole_job = full.get(run.job_id)
            if whole_job is not None:
                run._state.fields_cache["job"] = whole_job
    return runs


def _outcomes_json(runs: Sequence[JobRun], fields: Sequence[Any]) -> str | None:
    """The batch's recorded fields as one JSON array of objects (PostgreSQL reads it with
    ``jsonb_to_recordset``; a JSON field's value nested as it is, encoded as the field
    encodes it), or None when a value has no exact JSON form here (a naive time, a NaN):
    those batches take the VALUES statement."""
    from django.db import models

    if any(isinstance(f, models.JSONField) and f.encoder is not None for f in fields):
        return None
    columns = [f.column for f in fields]
    kinds = ["time" if isinstance(f, models.DateTimeField) else "" for f in fields]
    rows = []
    for run in runs:
        row: dict[str, Any] = {"id": run.pk}
        for column, kind, f in zip(columns, kinds, fields, strict=True):
            value = getattr(run, f.attname)
            if kind == "time" and value is not None:
                if not isinstance(value, datetime) or value.utcoffset() is None:
                    return None
                value = value.isoformat()
            row[column] = value
        rows.append(row)
    try:
        return json.dumps(rows, allow_nan=False)
    except (TypeError, ValueError):
        return None  # what the VALUES statement's own encoding says about it


_OUTCOME_PREPS: list[tuple[Any, frozenset[type]]] = []


def _outcome_preps() -> tuple[tuple[Any, frozenset[type]], ...]:
    """Per recorded field: the field, and the value types its ``get_db_prep_save``
    returns unchanged on this database (written as they are: the prep of ten fields per
    run was a large part of recording a batch). JSON and dates always go through it."""
    if not _OUTCOME_PREPS:
        from django.db import models

        out: list[tuple[Any, frozenset[type]]] = []
        for name in RECORDED_FIELDS:
            field = JobRun._meta.get_field(name)
            plain: set[type] = set()
            if isinstance(field, models.JSONField):
                pass
            elif isinstance(field, models.BooleanField):
                plain = {bool}
            elif isinstance(field, models.FloatField):
                plain = {float, type(None)}
            elif isinstance(field, models.CharField | models.TextField):
                plain = {str}
            out.append((field, frozenset(plain)))
        _OUTCOME_PREPS[:] = out
    return tuple(_OUTCOME_PREPS)


def _mark_claimed(run_ids: Sequence[int], node: str, now: datetime, token: str) -> None:
    """The claimed runs become ``running`` here (plain SQL: the ORM's compilation of this
    per-claim statement cost more than running it)."""
    q = connection.ops.quote_name
    when = connection.ops.adapt_datetimefield_value(now)
    sets = ", ".join(
        f"{_c(name)} = %s"
        for name in ("state", "node", "claimed_at", "started_at", "heartbeat_at", "claim_token")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {q(JobRun._meta.db_table)} SET {sets}, {_c('wait_reason')} = '' "
            f"WHERE {_c('id')} IN ({', '.join(['%s'] * len(run_ids))})",
            [RunState.RUNNING, node, when, when, when, token, *run_ids],
        )


def _mark_skipped(skipped: Sequence[tuple[Any, str]], now: datetime, postgres: bool) -> None:
    """Record a claim's skipped runs, each with its reason: one statement on PostgreSQL
    (under overload most candidates of a claim are past their grace, and an UPDATE each
    left the claim no time to start any)."""
    if postgres and len(skipped) > 1:
        table = connection.ops.quote_name(JobRun._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} r SET state = %s, finished_at = %s, error = s.reason, is_final = true, "
                f"{_c('join_pending')} = {join_pending_sql('r')} "
                "FROM unnest(%s::bigint[], %s::text[]) AS s(id, reason) WHERE r.id = s.id",
                [RunState.SKIPPED, now, [run.pk for run, _ in skipped], [reason for _, reason in skipped]],
            )
    else:
        for run, reason in skipped:
            JobRun.objects.filter(pk=run.pk).update(
                state=RunState.SKIPPED,
                finished_at=now,
                error=reason,
                is_final=True,
                join_pending=Exists(JobDependency.objects.filter(upstream_id=OuterRef("job_id"))),
            )


def join_pending_sql(alias: str) -> str:
    """The outbox mark of a skip, for any statement that writes skips outside the
    transaction that feeds the joins: true when the run's job has downstream edges
    (``alias``: the run table's alias in that statement). Set in the statement that
    writes the skip, so the skip and its mark commit together; the joins' transaction
    (:meth:`DjangoRunStore.feed_pending_joins`) clears it."""
    q = connection.ops.quote_name
    meta = JobDependency._meta
    return (
        f"EXISTS (SELECT 1 FROM {q(meta.db_table)} e "
        f"WHERE e.{q(meta.get_field('upstream').column)} = {alias}.{_c('job')})"
    )


def _running_counts(job_ids: Sequence[int], node: str | None = None) -> dict[int, int]:
    """Running runs per job (of ``node`` only, if given), in plain SQL: the ORM's
    compilation of this per-claim query cost more than the query."""
    if not job_ids:
        return {}
    q = connection.ops.quote_name
    sql = (
        f"SELECT {q('job_id')}, COUNT(*) FROM {q(JobRun._meta.db_table)} "
        f"WHERE {q('state')} = %s AND {q('job_id')} IN ({', '.join(['%s'] * len(job_ids))})"
    )
    params: list[Any] = [RunState.RUNNING, *job_ids]
    if node is not None:
        sql += f" AND {q('node')} = %s"
        params.append(node)
    with connection.cursor() as cursor:
        cursor.execute(sql + f" GROUP BY {q('job_id')}", params)
        return dict(cursor.fetchall())


def _dead_local_process(run_node: str, host: str) -> bool:
    name, _, pid = run_node.rpartition(":")
    if name != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A live process with that pid: only ours if it is a runscheduler (pids are reused).
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"runscheduler" not in fh.read()
    except OSError:
        return False


__all__ = ["DjangoRunStore", "default_node_name", "is_transient"]
