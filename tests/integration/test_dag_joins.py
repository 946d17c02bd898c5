"""DAG joins in the run store (PostgreSQL and SQLite): a skipped upstream run is an end
(at enqueue and at claim), two rounds firing in one batch, a hand re-run keeps the
upstream results, and the downstream jobs of a batch are locked once, in key order."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Fire
from scheduler_app.models import Job, JobJoin, JobRun, RunReason, RunState
from tests.integration.test_runstore import ROOM, other_session, outcome, queued, running  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def store():
    return DjangoRunStore()


def dag(make_job, rule, **upstream_fields):
    """B and C → D under ``rule``; B skips a run that is 31 s late (grace 30 s); D's
    runs wait for each other (overlap policy queue)."""
    b = make_job("B", misfire_policy="skip", misfire_grace_seconds=30, **upstream_fields)
    c = make_job("C")
    d = make_job("D", trigger_rule=rule, upstream_param="upstream", task="tests.give", overlap_policy="queue")
    services.add_dependency(b, d)
    services.add_dependency(c, d)
    return b, c, d


def dependency_runs(job):
    return list(JobRun.objects.filter(job=job, reason=RunReason.DEPENDENCY))


#: rule -> whether D runs once B is skipped and C succeeded (Airflow's semantics)
SKIP_AND_SUCCESS = {
    "all_done": True,  # every upstream ended, in whatever state
    "none_failed": True,  # no upstream failed: a skip is fine
    "one_success": True,  # C's success
    "one_failed": False,  # a skip is no failure
    "all_success": False,  # a skip never meets a success edge
}


@pytest.mark.parametrize("rule", list(SKIP_AND_SUCCESS))
def test_a_run_skipped_at_claim_is_an_end_of_its_upstream(store, make_job, rule):
    b, c, d = dag(make_job, rule)
    t0 = timezone.now() - timedelta(minutes=5)
    late = queued(b, t0)
    assert store.claim("n1", ROOM, t0 + timedelta(seconds=31)).runs == ()
    assert JobRun.objects.get(pk=late.pk).state == RunState.SKIPPED
    if rule in ("all_done", "none_failed", "one_success"):
        # the skip is in the round: C's end completes it
        (open_round,) = JobJoin.objects.filter(job=d)
        assert open_round.ends[str(b.pk)] == {"run": late.pk, "ok": False, "end": "skipped"}
    store.record([outcome(running(c), RunState.SUCCEEDED, result={"from": "C"})])
    runs = dependency_runs(d)
    assert len(runs) == (1 if SKIP_AND_SUCCESS[rule] else 0)
    if runs:
        # every end of the round so far, the skip too
        assert sorted(runs[0].upstream_runs) == sorted([late.pk, JobRun.objects.get(job=c).pk])
        # what D receives: the skipped upstream's result is null
        JobRun.objects.filter(pk=runs[0].pk).update(not_before=timezone.now() - timedelta(seconds=1))
        (claimed,) = store.claim("n1", ROOM, timezone.now()).runs
        assert claimed.kwargs["upstream"] == {"B": None, "C": {"from": "C"}}
    if rule != "all_success":
        assert not JobJoin.objects.filter(job=d).exists()  # both ended: the round is over


def test_a_run_skipped_for_overlap_at_claim_is_an_end(store, make_job):
    b, c, d = dag(make_job, "none_failed", max_instances=1, overlap_policy="skip")
    running(b)
    t0 = timezone.now() - timedelta(seconds=1)
    extra = queued(b, t0)
    store.claim("n1", ROOM, t0 + timedelta(seconds=1))
    assert JobRun.objects.get(pk=extra.pk).state == RunState.SKIPPED
    store.record([outcome(running(c), RunState.SUCCEEDED)])
    (run,) = dependency_runs(d)
    assert extra.pk in run.upstream_runs


def test_a_fire_skipped_at_enqueue_is_an_end_and_counts_once(store, make_job):
    b, c, d = dag(make_job, "all_done")
    noticed = timezone.now()
    fire = Fire(b.pk, (noticed - timedelta(seconds=31),), noticed)
    assert store.enqueue([fire]) == 0
    skipped = JobRun.objects.get(job=b)
    assert skipped.state == RunState.SKIPPED
    (open_round,) = JobJoin.objects.filter(job=d)
    assert open_round.ends == {str(b.pk): {"run": skipped.pk, "ok": False, "end": "skipped"}}
    store.enqueue([fire])  # the same fire again (a double fire): its skip exists, not counted again
    assert JobJoin.objects.get(job=d).ends == open_round.ends
    store.record([outcome(running(c), RunState.SUCCEEDED)])
    (run,) = dependency_runs(d)
    assert sorted(run.upstream_runs) == sorted([skipped.pk, JobRun.objects.get(job=c).pk])
    assert not JobJoin.objects.filter(job=d).exists()


def test_two_rounds_firing_in_one_batch_queue_two_runs(store, make_job):
    """Two ends of one upstream recorded together fire two one_success rounds at the
    same moment: two dependency runs (their scheduled times may not collide)."""
    b, c, d = dag(make_job, "one_success")
    first = running(b, scheduled_for=timezone.now() - timedelta(seconds=9))
    second = running(b, scheduled_for=timezone.now() - timedelta(seconds=8))
    assert store.record([outcome(first, RunState.SUCCEEDED), outcome(second, RunState.SUCCEEDED)]) == 2
    runs = dependency_runs(d)
    assert sorted(r.upstream_runs for r in runs) == [[first.pk], [second.pk]]
    assert runs[0].scheduled_for != runs[1].scheduled_for
    assert JobJoin.objects.filter(job=d).count() == 2  # both wait for C


def test_a_hand_rerun_receives_the_same_upstream_results(store, make_job, admin_user):
    b, c, d = dag(make_job, "all_done")
    store.record([outcome(running(b), RunState.SUCCEEDED, result={"from": "B"})])
    store.record([outcome(running(c), RunState.FAILED, error="x")])
    (original,) = dependency_runs(d)
    rerun = services.rerun_runs([original], actor=admin_user).done[0]
    assert rerun.reason == RunReason.MANUAL
    assert rerun.upstream_runs == original.upstream_runs
    JobRun.objects.filter(job=d).update(not_before=timezone.now() - timedelta(seconds=1))
    claimed = []
    for _ in range(2):  # one at a time (max instances 1)
        (one,) = store.claim("n1", ROOM, timezone.now()).runs
        claimed.append(one)
        store.record([outcome(JobRun.objects.get(pk=one.run_id), RunState.SUCCEEDED)])
    assert [r.run_id for r in claimed] == [original.pk, rerun.pk]
    assert claimed[1].kwargs["upstream"] == {"B": {"from": "B"}, "C": None}
    assert claimed[1].kwargs == claimed[0].kwargs


def test_a_plain_run_now_still_receives_no_upstream_results(store, make_job):
    _b, _c, d = dag(make_job, "all_done")
    (run,) = services.run_jobs_now([d]).done
    assert run.upstream_runs == []


@pytest.mark.django_db(transaction=True)
def test_the_downstream_jobs_of_a_batch_are_locked_in_key_order(store, make_job, other_session):  # noqa: F811
    """B → E and B → D with D's key below E's (edges read E first): the batch waits for
    D before it takes E, so a batch that holds D and wants E never meets one that
    holds E and wants D (PostgreSQL would abort one as a deadlock)."""
    b = make_job("B")
    d, e = make_job("Z-D"), make_job("A-E")  # edges are read in name order: E's first
    assert d.pk < e.pk
    services.add_dependency(b, e)
    services.add_dependency(b, d)
    run = running(b)
    table = Job._meta.db_table
    other_session.execute(f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE", [d.pk])
    errors = []

    def record():
        try:
            DjangoRunStore().record([outcome(run, RunState.SUCCEEDED)])
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    worker = threading.Thread(target=record)
    worker.start()
    deadline = time.monotonic() + 10
    waiting = 0
    while time.monotonic() < deadline and not waiting:
        waiting = other_session.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype IN ('transactionid', 'tuple')"
        ).fetchone()[0]
        time.sleep(0.05)
    assert waiting, "the batch never waited for D"
    # The batch waits for D and holds nothing of E: E is free.
    other_session.execute(f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [e.pk])
    other_session.rollback()
    worker.join(10)
    assert not worker.is_alive() and errors == []
    assert sorted(r.job_id for r in JobRun.objects.filter(reason=RunReason.DEPENDENCY)) == [d.pk, e.pk]
