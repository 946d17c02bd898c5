"""Load policies on the real database: while the cluster is overloaded (every live
active node above its load limit, or more due runs queued than LOAD_QUEUE_FACTOR × the
live nodes' slots), a ``shed`` job's fires are recorded skipped with reason load, a
``defer`` job's scheduled runs wait (the reason shown, the start moved by a step, never
more than the maximum delay past their time), and ``run`` jobs and runs started by hand
are untouched; when the load falls, everything runs again by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends import load
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.documents import job as job_document
from scheduler_app.engine.interfaces import Capacity, Fire
from scheduler_app.models import Job, JobRun, Node, RunReason, RunState

pytestmark = pytest.mark.django_db
ROOM = Capacity(per_executor={"thread": 8}, total=8)


@pytest.fixture
def store():
    return DjangoRunStore()


def node(name, *, overloaded=False, slots=2, state="active"):
    now = timezone.now()
    return Node.objects.create(
        name=name,
        incarnation=name,
        state=state,
        overloaded=overloaded,
        capacity={"thread": slots},
        started_at=now,
        heartbeat_at=now,
    )


def fire(store, job, when=None):
    when = when or timezone.now()
    store.load.forget()
    store.enqueue([Fire(job.pk, (when,), timezone.now())])
    return JobRun.objects.filter(job=job, scheduled_for=when).get()


def test_the_judgement(db):
    now = timezone.now()
    assert not load.judge(now).overloaded  # no node: nothing to judge
    a = node("a", overloaded=True)
    node("b", overloaded=False)
    assert not load.judge(now).overloaded  # one node still has room
    Node.objects.filter(name="b").update(overloaded=True)
    state = load.judge(now)
    assert state.overloaded and "every live node (2)" in state.why
    Node.objects.filter(name="b").update(state="draining")  # only active nodes count
    assert load.judge(now).overloaded
    Node.objects.filter(pk=a.pk).update(overloaded=False)
    assert not load.judge(now).overloaded
    node("dead", overloaded=True, slots=100)
    Node.objects.filter(name="dead").update(heartbeat_at=now - timedelta(hours=1))
    assert not load.judge(now).overloaded  # a dead node is no evidence


@override_settings(SCHEDULER_APP={"LOAD_QUEUE_FACTOR": 2.0})
def test_a_backlog_beyond_the_factor_overloads(make_job):
    node("a", slots=3)  # bound: 2 x 3 = 6 due runs
    backlog = make_job("backlog")
    now = timezone.now()
    for i in range(6):
        services.enqueue_run(backlog, scheduled_for=now - timedelta(seconds=10 + i))
    services.enqueue_run(backlog, scheduled_for=now + timedelta(hours=1))  # not due: not counted
    assert not load.judge(now).overloaded
    services.enqueue_run(backlog, scheduled_for=now - timedelta(seconds=1))
    state = load.judge(now)
    assert state.overloaded and state.due == 7 and state.slots == 3
    assert "more than 6 due runs queued for 3 slots" in state.why


def test_shed_skips_fires_only_while_overloaded(store, make_job):
    shed = make_job("shed", load_policy="shed")
    keep = make_job("keep")
    node("a", overloaded=True)
    run = fire(store, shed)
    assert run.state == RunState.SKIPPED and run.error.startswith("load: the cluster is overloaded")
    assert fire(store, keep).state == RunState.QUEUED
    Node.objects.update(overloaded=False)
    assert fire(store, shed, timezone.now() + timedelta(seconds=1)).state == RunState.QUEUED


def test_defer_waits_by_steps_up_to_the_maximum_delay(store, make_job):
    deferred = make_job("deferred", load_policy="defer", load_max_delay_seconds=60, max_instances=5)
    plain = make_job("plain")
    node("a", overloaded=True)
    now = timezone.now()
    d = fire(store, deferred, now - timedelta(seconds=1))
    p = fire(store, plain, now - timedelta(seconds=1))
    services.run_jobs_now([deferred])  # a run started by hand is not deferred
    now = timezone.now()
    store.load.forget()
    claimed = {c.run_id for c in store.claim("a", ROOM, now).runs}
    assert p.pk in claimed and d.pk not in claimed
    d.refresh_from_db()
    assert d.state == RunState.QUEUED and d.wait_reason.startswith("deferred: the cluster is overloaded")
    assert now + timedelta(seconds=4) < d.not_before <= now + timedelta(seconds=5)
    assert JobRun.objects.filter(job=deferred, reason=RunReason.MANUAL, state=RunState.RUNNING).exists()

    # Still overloaded near the end of its maximum delay: the last step stops there.
    later = d.scheduled_for + timedelta(seconds=58)
    store.load.forget()
    assert d.pk not in {c.run_id for c in store.claim("a", ROOM, later).runs}
    d.refresh_from_db()
    assert d.not_before == d.scheduled_for + timedelta(seconds=60)
    # At the maximum delay it starts, overloaded or not, and is not judged misfired.
    store.load.forget()
    assert d.pk in {c.run_id for c in store.claim("a", ROOM, d.not_before).runs}
    d.refresh_from_db()
    assert d.state == RunState.RUNNING and d.wait_reason == ""


def test_defer_runs_at_once_when_the_load_falls(store, make_job):
    deferred = make_job("deferred", load_policy="defer")
    node("a", overloaded=True)
    now = timezone.now()
    d = fire(store, deferred, now - timedelta(seconds=1))
    store.load.forget()
    assert not store.claim("a", ROOM, now).runs
    Node.objects.update(overloaded=False)
    d.refresh_from_db()
    store.load.forget()
    assert [c.run_id for c in store.claim("a", ROOM, d.not_before).runs] == [d.pk]


def test_the_job_document_round_trips_and_refuses_bad_values(make_job, tenant):
    job = make_job("j", load_policy="defer", load_max_delay_seconds=120)
    doc = job_document.export_job(job)
    assert doc["load"] == {"policy": "defer", "max_delay_seconds": 120}
    fresh = Job(tenant=tenant, name="k")
    job_document.apply_job_document(fresh, doc, where="k")
    assert (fresh.load_policy, fresh.load_max_delay_seconds) == ("defer", 120)
    for bad, field in (
        ({"policy": "panic"}, "load.policy"),
        ({"max_delay_seconds": 0}, "load.max_delay_seconds"),
        ({"when": 1}, "load.when"),
    ):
        with pytest.raises(job_document.DocumentError, match=field.replace(".", r"\.")):
            job_document.apply_job_document(Job(tenant=tenant, name="x"), {**doc, "load": bad}, where="x")
