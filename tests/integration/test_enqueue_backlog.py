"""Fires past the grace at enqueue (issue 12, "Sustained rate": at 2x what a node can
do, throughput stays at capacity). A fire of a ``skip`` job that the due runs queued
ahead of it cannot let start within its grace is recorded as skipped when it is
written, with the reason and the figures it was judged on, instead of a queued row
that the shed or a claim skips later (a second write of the row, index entries in the
claim's index, a claim passing over it). Jobs with priority, ``coalesce`` and
``run_all`` keep their schedule; an idle cluster (nothing finished lately) is never
judged. Real PostgreSQL: the queue and the pace are read from the run table."""

from __future__ import annotations

import types
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Capacity, Fire
from scheduler_app.models import Job, JobRun, Node, RunCounter, RunReason, RunState

pytestmark = pytest.mark.django_db

#: Fires are judged against the queue on PostgreSQL only (SQLite: one node, where the
#: claim's and the shed's own checks remain; it has no statement_timestamp()).
PG = pytest.mark.skipif(connection.vendor != "postgresql", reason="judged on PostgreSQL only")


#: The pace window for these tests (counts of finished runs become runs/s over it): long,
#: so a slow machine between writing the finished runs and enqueueing changes nothing.
WINDOW = 30.0


def node(name="n1", *, capacity=None, used=None, **fields):
    """A live node (heartbeat now) with these slots, full by default."""
    now = timezone.now()
    capacity = {"thread": 8} if capacity is None else capacity
    return Node.objects.create(
        name=name,
        incarnation=f"i-{name}",
        started_at=now,
        heartbeat_at=now,
        capacity=capacity,
        used=dict(capacity) if used is None else used,
        **fields,
    )


@pytest.fixture
def full():
    """The one live node has no free thread slot: the cluster is saturated."""
    return node()


@pytest.fixture
def store(monkeypatch, full):
    """A run store whose clock stands still (the pace drains nothing between reading
    the queue and judging a fire) and whose pace window is WINDOW, on a saturated cluster."""
    from scheduler_app.backends import runstore

    monkeypatch.setattr(runstore, "FIRE_BACKLOG_PACE_WINDOW", WINDOW)
    monkeypatch.setattr(runstore, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
    return DjangoRunStore()


def backlog(job, count, *, priority=0):
    """``count`` due queued runs of ``job`` (the queue ahead of new fires)."""
    now = timezone.now()
    JobRun.objects.bulk_create(
        JobRun(
            job=job,
            tenant_id=job.tenant_id,
            scheduled_for=now - timedelta(seconds=1, microseconds=i),
            not_before=now - timedelta(seconds=1, microseconds=i),
            reason=RunReason.SCHEDULE,
            priority=priority,
            executor="thread",
        )
        for i in range(count)
    )


def finished(job, pace, *, state=RunState.SUCCEEDED, ago=timedelta(seconds=1)):
    """Runs of ``job`` that finished ``ago``: ``pace`` runs/s over the pace window."""
    at = timezone.now() - ago
    count = round(pace * WINDOW)
    JobRun.objects.bulk_create(
        JobRun(
            job=job,
            tenant_id=job.tenant_id,
            scheduled_for=at - timedelta(hours=1, microseconds=i),
            not_before=at - timedelta(hours=1),
            reason=RunReason.SCHEDULE,
            executor="thread",
            state=state,
            started_at=at,
            finished_at=at,
            is_final=True,
        )
        for i in range(count)
    )


def fire(job):
    now = timezone.now()
    return Fire(job.pk, (now,), now)


def run_of(job):
    return JobRun.objects.get(
        job=job, reason=RunReason.SCHEDULE, scheduled_for__gt=timezone.now() - timedelta(minutes=1)
    )


@pytest.fixture
def busy(make_job):
    """200 due runs queued (of a run_all job, which keeps them) and 33.3 runs/s
    finishing: a new run of priority 0 waits about 6 s."""
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, 200)
    finished(filler, 100 / 3)
    return filler


@PG
def test_a_skip_fire_behind_a_backlog_past_its_grace_is_written_as_skipped_not_queued(store, make_job, busy):
    job = make_job("skip2", misfire_policy="skip", misfire_grace_seconds=2)
    assert store.enqueue([fire(job)]) == 0
    run = run_of(job)
    assert (run.state, run.is_final, run.finished_at is not None) == (RunState.SKIPPED, True, True)
    assert run.error == (
        "could not start within the 2 s grace period: 200 due runs queued ahead of it, "
        "33 runs/s finishing (about 6.0 s of waiting; misfire policy: skip)"
    )
    assert not JobRun.objects.filter(job=job, state=RunState.QUEUED).exists()
    # counted in the metrics, labelled from the job read with the fire
    counted = RunCounter.objects.filter(state=RunState.SKIPPED).values_list("tenant", "task", "count")
    assert list(counted) == [(job.tenant.slug, "demo.noop", 1)]


def test_jobs_that_keep_their_schedule_are_queued_behind_the_same_backlog(store, make_job, busy):
    urgent = make_job("urgent", misfire_policy="skip", misfire_grace_seconds=2, priority=5)
    coalesce = make_job("coalesce", misfire_policy="coalesce", misfire_grace_seconds=2)
    run_all = make_job("all", misfire_policy="run_all", misfire_grace_seconds=2)
    long_grace = make_job("patient", misfire_policy="skip", misfire_grace_seconds=60)
    tagged = make_job(
        "tagged", misfire_policy="skip", misfire_grace_seconds=2, routing="tags", routing_tags=["gpu"]
    )
    jobs = [urgent, coalesce, run_all, long_grace, tagged]
    assert store.enqueue([fire(j) for j in jobs]) == len(jobs)
    assert {run_of(j).state for j in jobs} == {RunState.QUEUED}


@PG
def test_the_batch_counts_its_own_runs_as_ahead_of_its_later_ones(store, make_job):
    """50 ahead, 33.3 runs/s, grace 2 s: room for 16 more within the grace; of 30
    fires in one batch, 17 are queued (each waits behind 50..66 runs) and 13 skipped.
    The higher-priority job's fire goes first whatever its place in the batch."""
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, 50)
    finished(filler, 100 / 3)
    jobs = [make_job(f"j{i:02}", misfire_policy="skip", misfire_grace_seconds=2) for i in range(29)]
    urgent = make_job("urgent", misfire_policy="skip", misfire_grace_seconds=2, priority=1)
    assert store.enqueue([fire(j) for j in [*jobs, urgent]]) == 17
    assert run_of(urgent).state == RunState.QUEUED
    states = [run_of(j).state for j in jobs]
    assert states == [RunState.QUEUED] * 16 + [RunState.SKIPPED] * 13
    assert JobRun.objects.filter(state=RunState.QUEUED).count() == 50 + 17


@pytest.mark.parametrize(
    "case",
    ["idle", "fast", "old-finishes", "skips-are-no-pace", "paused-backlog", "held-backlog", "small-backlog"],
)
def test_no_judgement_without_a_backlog_that_cannot_drain(store, make_job, case):
    """Queued as always: nothing finished lately (an idle cluster says nothing about its
    pace); a pace that drains the queue within the grace; finishes older than the pace
    window; skipped runs (not a pace); the queued runs of a paused job or runs held back
    by a limit (no claim takes them); fewer than FIRE_BACKLOG_MIN_AHEAD runs ahead."""
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, 5 if case == "small-backlog" else 200)
    if case == "fast":
        finished(filler, 400 / 3)  # 133 runs/s: 1.5 s of waiting
    elif case == "old-finishes":
        finished(filler, 100 / 3, ago=timedelta(seconds=WINDOW + 5))
    elif case == "skips-are-no-pace":
        finished(filler, 100 / 3, state=RunState.SKIPPED)
    elif case in ("paused-backlog", "held-backlog", "small-backlog"):
        finished(filler, 100 / 3)
    if case == "paused-backlog":
        Job.objects.filter(pk=filler.pk).update(paused=True)
    if case == "held-backlog":
        JobRun.objects.filter(job=filler, state=RunState.QUEUED).update(wait_reason="rate limit")
    job = make_job("skip2", misfire_policy="skip", misfire_grace_seconds=2)
    assert store.enqueue([fire(job)]) == 1
    assert run_of(job).state == RunState.QUEUED


@PG
def test_the_reading_is_reused_within_its_interval_and_counts_what_this_store_queued(store, make_job):
    """Two enqueues within FIRE_BACKLOG_INTERVAL read the queue once: the second one
    sees the first one's run through its own count, not through a query. 20 ahead at
    1 run/s, grace 21 s: the first fire waits 20 s (queued), the second 21 s."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, 20)
    finished(filler, 1)
    a = make_job("a", misfire_policy="skip", misfire_grace_seconds=21)
    b = make_job("b", misfire_policy="skip", misfire_grace_seconds=21)
    assert store.enqueue([fire(a)]) == 1
    with CaptureQueriesContext(connection) as queries:
        assert store.enqueue([fire(b)]) == 0
    assert not [q for q in queries.captured_queries if "GROUP BY" in q["sql"]]
    assert run_of(b).state == RunState.SKIPPED
    assert run_of(b).error.startswith(
        "could not start within the 21 s grace period: 21 due runs queued ahead of it, 1 runs/s"
    )


@pytest.mark.parametrize(
    ("policy", "waited", "state"),
    [
        ("skip", 3, RunState.SKIPPED),
        ("skip", 1, RunState.QUEUED),
        ("coalesce", 3, RunState.QUEUED),
        ("run_all", 3, RunState.QUEUED),
    ],
)
def test_a_fire_that_waited_in_memory_past_its_grace_is_skipped_when_written(
    store, make_job, policy, waited, state
):
    """An enqueuer behind the fire rate: the fire was noticed on time, but written
    ``waited`` s later; a claim judges lateness from the write (queued_at), so without
    this a run would start up to that much past its grace (measured: 18 s late with a 2 s
    grace on a saturated machine). No backlog at all here."""
    job = make_job("j", misfire_policy=policy, misfire_grace_seconds=2)
    noticed = timezone.now() - timedelta(seconds=waited)
    assert store.enqueue([Fire(job.pk, (noticed,), noticed)]) == (1 if state == RunState.QUEUED else 0)
    run = JobRun.objects.get(job=job)
    assert run.state == state
    if state == RunState.SKIPPED:
        assert run.error.startswith(
            "could not start within the 2 s grace period: it waited 3.0 s in this node's fire queue "
            "before it was written (misfire policy: skip)"
        )


def test_a_run_is_judged_at_claim_from_when_its_fire_was_noticed_not_from_its_write(store, make_job):
    """Admitted 1.5 s after it was noticed (grace 2 s): queued_at is the noticed time, so
    a claim 2.5 s after it skips the run (0.5 s past its grace from the write, 2.5 s from
    the fire): lateness stays bounded by the grace, not by the grace plus the wait."""
    job = make_job("j", misfire_policy="skip", misfire_grace_seconds=2)
    noticed = timezone.now() - timedelta(seconds=1.5)
    assert store.enqueue([Fire(job.pk, (noticed,), noticed)]) == 1
    run = JobRun.objects.get(job=job)
    assert run.queued_at == noticed
    room = Capacity(per_executor={"thread": 8}, total=8)
    assert not store.claim("n1", room, noticed + timedelta(seconds=2.5)).runs
    run.refresh_from_db()
    assert run.state == RunState.SKIPPED
    assert run.error == "could not start within the 2 s grace period (2.5 s late; misfire policy: skip)"


# -- review findings (each test failed on the code before the fix) ----------------------


def queued_runs(job, count, *, executor="thread", ago=1.0, **fields):
    """``count`` due queued runs of ``job`` queued ``ago`` s ago."""
    now = timezone.now()
    JobRun.objects.bulk_create(
        JobRun(
            job=job,
            tenant_id=job.tenant_id,
            scheduled_for=now - timedelta(seconds=ago, microseconds=i),
            not_before=now - timedelta(seconds=ago, microseconds=i),
            reason=RunReason.SCHEDULE,
            priority=job.priority,
            executor=executor,
            **fields,
        )
        for i in range(count)
    )


@PG
def test_a_skip_at_enqueue_writes_its_skipped_alert_like_the_claim_and_the_shed(store, make_job, tenant):
    """A ``skipped`` rule gets an outbox row for the backlog's skip and the in-memory
    wait's skip (in the enqueue's transaction), as for a skip made by a claim."""
    from scheduler_app.models import AlertOutbox
    from tests.integration.test_alerts import rule, webhook_channel

    rule(tenant, [webhook_channel(tenant, "http://127.0.0.1:9/hook")], events=["skipped"])
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, 200)
    finished(filler, 100 / 3)
    judged = make_job("judged", misfire_policy="skip", misfire_grace_seconds=2)
    waited = make_job(
        "waited", misfire_policy="skip", misfire_grace_seconds=2, routing="tags", routing_tags=["x"]
    )
    noticed = timezone.now() - timedelta(seconds=3)
    assert store.enqueue([fire(judged), Fire(waited.pk, (noticed,), noticed)]) == 0
    assert {run_of(judged).state, JobRun.objects.get(job=waited).state} == {RunState.SKIPPED}
    outbox = AlertOutbox.objects.filter(event="skipped")
    assert sorted(outbox.values_list("job__name", flat=True)) == ["judged", "waited"]
    # written once: the same fires again write nothing more
    store.enqueue([Fire(waited.pk, (noticed,), noticed)])
    assert outbox.count() == 2


def test_a_backlog_of_another_executor_does_not_skip_a_fire(store, make_job, full):
    """200 process runs queued, both executors full: a thread fire waits behind no
    thread run (queued); a process fire behind them is judged on the process pace."""
    Node.objects.filter(pk=full.pk).update(
        capacity={"thread": 8, "process": 2}, used={"thread": 8, "process": 2}
    )
    slow = make_job("slow", misfire_policy="run_all", executor="process", max_instances=1000)
    queued_runs(slow, 200, executor="process")
    finished(make_job("busy", misfire_policy="run_all"), 100 / 3)  # thread runs finishing
    thready = make_job("thready", misfire_policy="skip", misfire_grace_seconds=2)
    store.enqueue([fire(thready)])
    assert run_of(thready).state == RunState.QUEUED, run_of(thready).error
    # no process run finished lately: a process fire is not judged either
    proc = make_job("proc", misfire_policy="skip", misfire_grace_seconds=2, executor="process")
    store._backlog = None
    store.enqueue([fire(proc)])
    assert run_of(proc).state == RunState.QUEUED


@PG
@pytest.mark.parametrize(
    "case", ["tag-wait", "max-instances", "rate-limit", "broadcast-copies", "stale", "disabled", "not-due"]
)
def test_runs_no_claim_would_take_are_not_counted_ahead(store, make_job, case):
    """200 queued runs that a claim passes over (or that the shed drops): a tag no node
    has, a job at its max_instances (overlap queue), a rate limit, broadcast copies for
    other nodes, runs past their own grace, a disabled job, runs not due yet (a retry's
    backoff). 33 runs/s finishing:
    counted, they would mean 6 s of waiting for a 2 s grace."""
    fields = {"misfire_policy": "run_all", "max_instances": 1000}
    if case == "tag-wait":
        fields |= {"routing": "tags", "routing_tags": ["gpu"]}
    elif case == "max-instances":
        fields |= {"max_instances": 1, "overlap_policy": "queue"}
    elif case == "rate-limit":
        fields |= {"rate_limit": "1/m"}
    elif case == "broadcast-copies":
        fields |= {"routing": "broadcast"}
    elif case == "stale":
        fields |= {"misfire_policy": "skip", "misfire_grace_seconds": 1}
    held = make_job("held", **fields)
    if case == "max-instances":
        now = timezone.now()
        JobRun.objects.create(
            job=held,
            tenant_id=held.tenant_id,
            scheduled_for=now - timedelta(hours=1),
            not_before=now - timedelta(hours=1),
            state=RunState.RUNNING,
            node="n1",
            started_at=now,
            executor="thread",
        )
    queued_runs(
        held,
        200,
        ago={"stale": 120, "not-due": -60}.get(case, 1.0),
        target_node="n2" if case == "broadcast-copies" else "",
    )
    if case == "stale":  # queued_at is set at the write (auto_now_add)
        JobRun.objects.filter(job=held).update(queued_at=timezone.now() - timedelta(seconds=120))
    if case == "disabled":
        Job.objects.filter(pk=held.pk).update(enabled=False)
    finished(make_job("busy", misfire_policy="run_all"), 100 / 3)
    job = make_job("plain", misfire_policy="skip", misfire_grace_seconds=2)
    assert store.enqueue([fire(job)]) == 1, run_of(job).error
    # control: the same count of claimable runs skips it
    other = make_job("claimable", misfire_policy="run_all", max_instances=1000)
    queued_runs(other, 200)
    store._backlog = None
    late = make_job("late", misfire_policy="skip", misfire_grace_seconds=2)
    assert store.enqueue([fire(late)]) == 0


@pytest.mark.parametrize("used", [{"thread": 7}, {}])
def test_a_node_with_a_free_slot_means_no_judgement(store, make_job, full, used):
    """A burst's queue behind a trickle of 1 run/s: with a free thread slot on a live
    node, the pace is the load, not the capacity (one claim takes the queue): queued."""
    Node.objects.filter(pk=full.pk).update(used=used)
    burst = make_job("burst", misfire_policy="run_all", max_instances=500)
    finished(make_job("trickle", misfire_policy="run_all"), 1)
    jobs = [make_job(f"cron{i}", misfire_policy="skip", misfire_grace_seconds=10) for i in range(10)]
    queued_runs(burst, 100, ago=0)  # just queued: no claim has had its chance yet
    assert store.enqueue([fire(j) for j in jobs]) == 10


@PG
def test_a_queue_no_claim_drains_although_slots_are_free_is_judged(store, make_job, full):
    """Free slots, but the oldest claimable run has waited past FIRE_BACKLOG_HEAD_AGE
    polls (a CPU-bound node: its claims do not keep up): judged on the pace."""
    Node.objects.filter(pk=full.pk).update(used={"thread": 1})
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    queued_runs(filler, 200, ago=5)
    JobRun.objects.filter(job=filler).update(queued_at=timezone.now() - timedelta(seconds=5))
    finished(filler, 100 / 3)
    job = make_job("skip2", misfire_policy="skip", misfire_grace_seconds=2)
    assert store.enqueue([fire(job)]) == 0
    assert run_of(job).error.startswith("could not start within the 2 s grace period: 200 due runs")


@pytest.mark.parametrize("nodes", ["none", "draining-only", "one-of-two-free"])
def test_no_judgement_unless_every_live_node_is_full(store, make_job, full, busy, nodes):
    if nodes == "none":
        Node.objects.filter(pk=full.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    elif nodes == "draining-only":
        Node.objects.filter(pk=full.pk).update(state="draining")
    else:
        node("n2", used={"thread": 3})
    job = make_job("skip2", misfire_policy="skip", misfire_grace_seconds=2)
    assert store.enqueue([fire(job)]) == 1


@pytest.mark.parametrize("node_ahead", [0.0, 1.9])
def test_the_queue_and_the_pace_are_read_by_the_databases_clock(make_job, monkeypatch, full, node_ahead):
    """100 runs/s over the real 3 s window, 200 ahead: 2 s of waiting, grace 3 s: queued,
    whatever this node's clock (1.9 s ahead, below the warning, read only 1.1 s of it)."""
    from scheduler_app.backends import runstore

    monkeypatch.setattr(runstore, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
    db_now = timezone.now()
    node_now = db_now + timedelta(seconds=node_ahead)
    monkeypatch.setattr(runstore, "timezone", types.SimpleNamespace(now=lambda: node_now))
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    queued_runs(filler, 200, ago=2)
    JobRun.objects.bulk_create(
        JobRun(
            job=filler,
            tenant_id=filler.tenant_id,
            scheduled_for=db_now - timedelta(hours=1, microseconds=i),
            not_before=db_now - timedelta(hours=1),
            executor="thread",
            state=RunState.SUCCEEDED,
            started_at=db_now - timedelta(seconds=3 * i / 300),
            finished_at=db_now - timedelta(seconds=3 * i / 300),
            is_final=True,
        )
        for i in range(300)
    )
    job = make_job("skip3", misfire_policy="skip", misfire_grace_seconds=3)
    DjangoRunStore().enqueue([Fire(job.pk, (node_now,), node_now)])
    run = JobRun.objects.get(job=job)
    assert run.state == RunState.QUEUED, run.error


def test_a_fire_written_twice_is_counted_once(store, make_job, busy):
    """The old leader queued it; the new leader fires the same time again behind a
    backlog: the row stays queued and nothing counts a skip."""
    job = make_job("skip2", misfire_policy="skip", misfire_grace_seconds=2)
    t = timezone.now()
    JobRun.objects.create(
        job=job, tenant_id=job.tenant_id, scheduled_for=t, not_before=t, reason=RunReason.SCHEDULE
    )
    store.enqueue([Fire(job.pk, (t,), t)])
    assert JobRun.objects.get(job=job).state == RunState.QUEUED
    assert not RunCounter.objects.filter(state=RunState.SKIPPED).exists()


def test_a_broadcast_fire_with_no_node_that_also_waited_is_skipped_once(store, make_job):
    job = make_job(
        "bc", misfire_policy="skip", misfire_grace_seconds=2, routing="broadcast", routing_tags=["gpu"]
    )
    noticed = timezone.now() - timedelta(seconds=3)
    store.enqueue([Fire(job.pk, (noticed,), noticed)])
    run = JobRun.objects.get(job=job)
    assert run.error == "broadcast: no live node matches the job's tags"
    assert RunCounter.objects.get(state=RunState.SKIPPED).count == 1


@PG
@pytest.mark.parametrize(("ahead", "state"), [(19, RunState.QUEUED), (20, RunState.SKIPPED)])
def test_fewer_than_the_minimum_ahead_are_never_judged(store, make_job, ahead, state):
    """At 1 run/s, 19 runs ahead would be 19 s of waiting for a 2 s grace: below
    FIRE_BACKLOG_MIN_AHEAD no judgement is made; 20 are judged (10 of lower priority
    queued too: the queue holds more than the minimum, but they are not ahead)."""
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, ahead)
    backlog(make_job("lower", misfire_policy="run_all", max_instances=1000, priority=-1), 10, priority=-1)
    finished(filler, 1)
    job = make_job("skip2", misfire_policy="skip", misfire_grace_seconds=2)
    store.enqueue([fire(job)])
    assert run_of(job).state == state


@PG
def test_the_batchs_unjudged_runs_count_ahead_of_its_later_fires(store, make_job):
    """30 ahead at 10 runs/s; one batch: a priority-5 skip fire (read the backlog, not
    judged: nothing ahead of it), 20 run_all fires of priority 3 (never judged, but ahead
    of what follows), then a priority-0 skip fire with a 4 s grace: 51 ahead, 5.1 s."""
    filler = make_job("filler", misfire_policy="run_all", max_instances=1000)
    backlog(filler, 30)
    finished(filler, 10)
    first = make_job("first", misfire_policy="skip", misfire_grace_seconds=2, priority=5)
    keepers = [make_job(f"all{i:02}", misfire_policy="run_all", priority=3) for i in range(20)]
    last = make_job("last", misfire_policy="skip", misfire_grace_seconds=4)
    assert store.enqueue([fire(j) for j in [last, *keepers, first]]) == 21
    assert run_of(first).state == RunState.QUEUED
    assert run_of(last).state == RunState.SKIPPED
    assert run_of(last).error.startswith("could not start within the 4 s grace period: 51 due runs")


@PG
def test_a_backlog_skip_sends_run_skipped_and_ends_the_downstream_join(store, make_job, busy):
    from scheduler_app import services, signals
    from scheduler_app.models import JobJoin

    got = []

    def receiver(sender, run, **kw):
        got.append((run.job_id, run.state))

    b = make_job("B", misfire_policy="skip", misfire_grace_seconds=2)
    c = make_job("C")
    d = make_job("D", trigger_rule="all_done")
    services.add_dependency(b, d)
    services.add_dependency(c, d)
    signals.run_skipped.connect(receiver, sender=JobRun)
    try:
        assert store.enqueue([fire(b)]) == 0
    finally:
        signals.run_skipped.disconnect(receiver, sender=JobRun)
    skipped = run_of(b)
    assert got == [(b.pk, RunState.SKIPPED)]
    (open_round,) = JobJoin.objects.filter(job=d)
    assert open_round.ends == {str(b.pk): {"run": skipped.pk, "ok": False, "end": "skipped"}}
