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
from django.utils import timezone

from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Capacity, Fire
from scheduler_app.models import Job, JobRun, RunCounter, RunReason, RunState

pytestmark = pytest.mark.django_db


#: The pace window for these tests (counts of finished runs become runs/s over it): long,
#: so a slow machine between writing the finished runs and enqueueing changes nothing.
WINDOW = 30.0


@pytest.fixture
def store(monkeypatch):
    """A run store whose clock stands still (the pace drains nothing between reading
    the queue and judging a fire) and whose pace window is WINDOW."""
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
    filler = make_job("filler", misfire_policy="run_all")
    backlog(filler, 200)
    finished(filler, 100 / 3)
    return filler


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


def test_the_batch_counts_its_own_runs_as_ahead_of_its_later_ones(store, make_job):
    """50 ahead, 33.3 runs/s, grace 2 s: room for 16 more within the grace; of 30
    fires in one batch, 17 are queued (each waits behind 50..66 runs) and 13 skipped.
    The higher-priority job's fire goes first whatever its place in the batch."""
    filler = make_job("filler", misfire_policy="run_all")
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
    filler = make_job("filler", misfire_policy="run_all")
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


def test_the_reading_is_reused_within_its_interval_and_counts_what_this_store_queued(store, make_job):
    """Two enqueues within FIRE_BACKLOG_INTERVAL read the queue once: the second one
    sees the first one's run through its own count, not through a query. 20 ahead at
    1 run/s, grace 21 s: the first fire waits 20 s (queued), the second 21 s."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    filler = make_job("filler", misfire_policy="run_all")
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
