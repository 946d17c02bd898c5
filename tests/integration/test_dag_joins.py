"""DAG joins in the run store (PostgreSQL and SQLite): a skipped upstream run is an end
(at enqueue and at claim), two rounds firing in one batch, a hand re-run keeps the
upstream results, and the downstream jobs of a batch are locked once, in key order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends import joins
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Fire
from scheduler_app.models import Job, JobJoin, JobRun, RunReason, RunState
from tests.integration.sessions import InThread, until, waiting_locks
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
    worker = InThread(lambda: DjangoRunStore().record([outcome(run, RunState.SUCCEEDED)]))
    assert until(lambda: waiting_locks(other_session.execute)), "the batch never waited for D"
    # The batch waits for D and holds nothing of E: E is free.
    other_session.execute(f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [e.pk])
    other_session.rollback()
    assert worker.join(10) and worker.error is None, worker.error
    assert sorted(r.job_id for r in JobRun.objects.filter(reason=RunReason.DEPENDENCY)) == [d.pk, e.pk]


# -- dagfix: tenants, restored rounds, the claim's skips (an outbox), replace vs record ----


def test_upstream_results_never_show_another_tenants_run(store, make_job, other_tenant):
    b = make_job("B")
    d = make_job("D", task="tests.give", upstream_param="upstream")
    services.add_dependency(b, d)
    foreign_b = make_job("B", tenant=other_tenant)
    mine = running(b)
    store.record([outcome(mine, RunState.SUCCEEDED, result={"mine": 1})])
    theirs = running(foreign_b)
    store.record([outcome(theirs, RunState.SUCCEEDED, result={"globex": "secret"})])
    unrelated = running(make_job("E"))  # same tenant, not an upstream of D
    store.record([outcome(unrelated, RunState.SUCCEEDED, result={"e": 1})])
    # a list not trusted (restored from an edited file, or the edges changed since)
    (dr,) = dependency_runs(d)
    JobRun.objects.filter(pk=dr.pk).update(upstream_runs=[mine.pk, theirs.pk, unrelated.pk])
    dr.refresh_from_db()
    entries = joins.upstream_of(dr)
    assert [e["id"] for e in entries] == [mine.pk]
    assert entries[0]["passed"] == {"mine": 1}
    assert joins.visible_upstream_ids(dr) == [mine.pk]
    JobRun.objects.filter(pk=dr.pk).update(not_before=timezone.now() - timedelta(seconds=1))
    (claimed,) = store.claim("n1", ROOM, timezone.now()).runs
    assert claimed.kwargs["upstream"] == {"B": {"mine": 1}}


def test_a_round_end_without_its_run_does_not_break_record(store, make_job):
    """A restored round whose end's run retention deleted (the backup writes run null)."""
    b, c, d = dag(make_job, "all_done")
    b1 = running(b)
    store.record([outcome(b1, RunState.SUCCEEDED)])
    (r,) = JobJoin.objects.filter(job=d)
    r.ends[str(b.pk)]["run"] = None
    r.save()
    JobRun.objects.filter(pk=b1.pk).delete()
    c1 = running(c)
    store.record([outcome(c1, RunState.SUCCEEDED)])
    assert JobRun.objects.get(pk=c1.pk).state == RunState.SUCCEEDED
    (d1,) = dependency_runs(d)
    assert d1.upstream_runs == [c1.pk]  # the round fired; B's end has no run to pass on
    assert not JobJoin.objects.filter(job=d).exists()


def test_a_skip_at_claim_survives_the_node_dying_before_the_joins(store, make_job, monkeypatch):
    b, c, d = dag(make_job, "all_done")
    t0 = timezone.now() - timedelta(minutes=5)
    late = queued(b, t0)

    def die(self, skipped, now):
        raise SystemExit("node killed between the claim's commit and the joins' transaction")

    monkeypatch.setattr(DjangoRunStore, "_skipped_at_claim_end_joins", die)
    with pytest.raises(SystemExit):
        store.claim("n1", ROOM, t0 + timedelta(seconds=31))
    monkeypatch.undo()
    late.refresh_from_db()
    assert late.state == RunState.SKIPPED and late.join_pending  # committed with its mark
    assert not JobJoin.objects.filter(job=d).exists()
    store.reap_lost(timezone.now(), 1)  # any node's sweep feeds it
    (r,) = JobJoin.objects.filter(job=d)
    assert r.ends[str(b.pk)]["run"] == late.pk
    assert not JobRun.objects.get(pk=late.pk).join_pending
    store.reap_lost(timezone.now(), 1)  # and never twice
    store.recover("n1", timezone.now())
    c1 = running(c)
    store.record([outcome(c1, RunState.SUCCEEDED)])
    (d1,) = dependency_runs(d)
    assert sorted(d1.upstream_runs) == sorted([late.pk, c1.pk])
    assert not JobJoin.objects.filter(job=d).exists()


def test_a_failed_feed_of_a_claims_skip_is_left_to_the_sweep(store, make_job, monkeypatch):
    from django.db import OperationalError

    b, c, d = dag(make_job, "all_done")
    t0 = timezone.now() - timedelta(minutes=5)
    late = queued(b, t0)
    real = DjangoRunStore._enqueue_dependents

    def broken(self, *args, **kwargs):
        raise OperationalError("connection lost")

    monkeypatch.setattr(DjangoRunStore, "_enqueue_dependents", broken)
    store.claim("n1", ROOM, t0 + timedelta(seconds=31))  # the claim itself succeeds
    assert JobRun.objects.get(pk=late.pk).join_pending
    monkeypatch.setattr(DjangoRunStore, "_enqueue_dependents", real)
    assert store.feed_pending_joins(timezone.now()) == 1
    assert store.feed_pending_joins(timezone.now()) == 0
    (r,) = JobJoin.objects.filter(job=d)
    assert r.ends[str(b.pk)]["run"] == late.pk


def test_a_skip_without_downstream_jobs_is_not_marked(store, make_job):
    lone = make_job("lone", misfire_policy="skip", misfire_grace_seconds=30)
    t0 = timezone.now() - timedelta(minutes=5)
    late = queued(lone, t0)
    store.claim("n1", ROOM, t0 + timedelta(seconds=31))
    late.refresh_from_db()
    assert late.state == RunState.SKIPPED and not late.join_pending


@pytest.mark.django_db(transaction=True)
def test_a_replace_claim_never_waits_for_a_run_being_recorded(make_job, other_session):  # noqa: F811
    """record(R) locks R FOR UPDATE, then wants R's downstream job J2. A claim with
    overlap ``replace`` that holds J2 (a candidate's job) must not wait for R: that is a
    deadlock. It leaves its J1 run queued instead."""
    j1 = make_job("J1", max_instances=1, overlap_policy="replace")
    j2 = make_job("J2")
    services.add_dependency(j1, j2)
    r = running(j1)
    t0 = timezone.now() - timedelta(seconds=10)
    new, other_job_run = queued(j1, t0), queued(j2, t0)
    rt, jt = JobRun._meta.db_table, Job._meta.db_table
    other_session.execute(f"SELECT id FROM {rt} WHERE id = %s FOR UPDATE", [r.pk])  # record's first lock
    claim = InThread(lambda: DjangoRunStore().claim("n1", ROOM, timezone.now()))
    claim.join(1.5)  # the claim either finished or waits for R (holding J2)
    other_session.execute("SET lock_timeout = '3s'")
    other_session.execute(f"SELECT id FROM {jt} WHERE id = %s FOR NO KEY UPDATE", [j2.pk])  # record's next
    other_session.rollback()
    assert claim.join(10) and claim.error is None, claim.error
    result = claim.result
    assert [c.run_id for c in result.runs] == [other_job_run.pk]  # J1's new run waits
    assert result.stop == () and result.left_queued == 1
    assert JobRun.objects.get(pk=new.pk).state == RunState.QUEUED
    assert not JobRun.objects.get(pk=r.pk).stop_requested
    # once R is not held, the next claim replaces it
    again = DjangoRunStore().claim("n1", ROOM, timezone.now())
    assert [c.run_id for c in again.runs] == [new.pk] and again.stop == (r.pk,)


def test_the_sheds_skips_are_marked_and_survive_the_node_dying(store, make_job, monkeypatch):
    """shed_misfired (another writer of skips) sets the same mark in its statement."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("shed_misfired: PostgreSQL only")
    b, c, d = dag(make_job, "all_done")
    lone = make_job("lone", misfire_policy="skip", misfire_grace_seconds=30)
    now = timezone.now()
    late = [queued(b, now - timedelta(minutes=5)), queued(b, now - timedelta(minutes=4))]
    alone = queued(lone, now - timedelta(minutes=5))

    def die(self, now, run_ids=None):
        raise SystemExit("node killed after the shed's commit")

    monkeypatch.setattr(DjangoRunStore, "feed_pending_joins", die)
    with pytest.raises(SystemExit):
        store.shed_misfired(now)
    monkeypatch.undo()
    marks = dict(JobRun.objects.filter(state=RunState.SKIPPED).values_list("pk", "join_pending"))
    assert marks == {late[0].pk: True, late[1].pk: True, alone.pk: False}  # only runs with downstream jobs
    assert store.feed_pending_joins(now) == 2
    rounds = list(JobJoin.objects.filter(job=d).order_by("opened_at", "pk"))
    assert [r.ends[str(b.pk)]["run"] for r in rounds] == [
        late[0].pk,
        late[1].pk,
    ]  # each in its own round, once
    assert not JobRun.objects.filter(join_pending=True).exists()


def test_several_skips_of_one_claim_are_marked_in_its_statement(store, make_job):
    b, c, d = dag(make_job, "all_done")
    t0 = timezone.now() - timedelta(minutes=5)
    late = [queued(b, t0), queued(b, t0 + timedelta(seconds=1))]
    store.claim("n1", ROOM, t0 + timedelta(seconds=40))
    assert {r.state for r in JobRun.objects.filter(job=b)} == {RunState.SKIPPED}
    assert not JobRun.objects.filter(join_pending=True).exists()  # fed and cleared at once
    rounds = list(JobJoin.objects.filter(job=d).order_by("opened_at", "pk"))
    assert sorted(r.ends[str(b.pk)]["run"] for r in rounds) == sorted(r.pk for r in late)
