"""Two nodes recording fan-in outcomes at the same time, on PostgreSQL with real
concurrent sessions. Each outcome's downstream job row is locked (``FOR NO KEY UPDATE``)
to serialise its joins; a batch must take those locks in one fixed order (pk), or two
batches reaching the same downstream jobs in different orders deadlock and PostgreSQL
aborts one of them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.models import Job, JobDependency, JobRun, RunReason, RunState
from tests.integration.sessions import InThread, until, waiting_locks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks between sessions: PostgreSQL")


def running(job):
    when = timezone.now() - timedelta(seconds=5)
    return JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=when,
        reason=RunReason.MANUAL,
        not_before=when,
        executor="thread",
        state=RunState.RUNNING,
        node="n1",
        started_at=when,
    )


def test_two_batches_reaching_the_same_downstream_jobs_in_opposite_orders_both_commit(make_job):
    low, mid, high = (make_job(name) for name in ("d-low", "d-mid", "d-high"))  # pks in this order
    # Batch B's runs of another task: its metrics row differs from A's (batches recording
    # the same labels wait for each other there, before any downstream lock).
    ups = {
        name: make_job(name, task="demo.echo" if name in ("u3", "u4") else "demo.noop")
        for name in ("u1", "x", "u2", "u3", "u4")
    }
    for up, down in (("u1", high), ("x", mid), ("u2", low), ("u3", low), ("u4", high)):
        JobDependency.objects.create(tenant=down.tenant, upstream=ups[up], downstream=down)
    runs = {name: running(job) for name, job in ups.items()}  # recorded in this order

    def outcomes(*names):
        now = timezone.now()
        return [Outcome(runs[n].pk, RunState.SUCCEEDED, now - timedelta(seconds=1), now) for n in names]

    # Another session holds d-mid: batch A locks d-high (u1's edge), then waits on d-mid.
    held, release = threading.Event(), threading.Event()

    def hold_mid():
        with transaction.atomic():
            Job.objects.select_for_update(no_key=True).get(pk=mid.pk)
            held.set()
            release.wait(30)

    holder = InThread(hold_mid)
    assert held.wait(10)
    a = InThread(lambda: DjangoRunStore().record(outcomes("u1", "x", "u2")))
    assert until(lambda: waiting_locks() >= 1), "batch A never waited for d-mid"
    # Batch B takes d-low (u3's edge) first, then wants d-high.
    b = InThread(lambda: DjangoRunStore().record(outcomes("u3", "u4")))
    assert until(lambda: waiting_locks() >= 2), "batch B never waited"
    release.set()  # A goes on to d-low: held by B, which waits for A's d-high
    for side in (holder, a, b):
        assert side.done.wait(30)
    assert (a.error, b.error) == (None, None)
    assert set(
        JobRun.objects.filter(pk__in=[r.pk for r in runs.values()]).values_list("state", flat=True)
    ) == {RunState.SUCCEEDED}
