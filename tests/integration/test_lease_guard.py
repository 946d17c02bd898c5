"""The leader lease against the fire guard, on PostgreSQL with real concurrent sessions:
every fire-writing transaction checks the lease (holder and expiry, database clock) and
keeps it locked until it commits. The heartbeat's renewal must never wait for such a
transaction (a leader catching up writes slow batches and used to lose its lease on
``lock_timeout``), while no other node may take the lease over between a guard's check
and the commit of the fires it let through, and a node that lost the lease writes none."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from scheduler_app.backends import cluster as cluster_backend
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Fire
from scheduler_app.models import JobRun, Lease

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

LEASE = "triggers/0"


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks between sessions: PostgreSQL")


@pytest.fixture
def registry():
    return cluster_backend.DjangoRegistry(dead_after=15)


@pytest.fixture
def fail_fast():
    """A statement of this test's own session that waits for a lock fails after 3 s
    instead of hanging (the scheduler's connections wait at most 10 s)."""
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '3s'")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout")


class HeldBatch:
    """A fire batch written by ``store.enqueue`` in its own thread (its own database
    session), held open right after the real fire guard passed: the state of a slow
    batch of a leader catching up, with the guard's lock taken and nothing committed."""

    def __init__(self, store: DjangoRunStore, incarnation: str, fires: list[Fire]) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.guard_said: bool | None = None
        self.written: int | None = None
        self.error: BaseException | None = None

        def guard() -> bool:
            self.guard_said = cluster_backend.holds_lease(LEASE, incarnation, lock=True)
            self.entered.set()
            self.release.wait(30)
            return self.guard_said

        store.fire_guard = guard
        self._thread = threading.Thread(target=self._write, args=(store, fires), daemon=True)
        self._thread.start()
        assert self.entered.wait(10), "the fire batch never reached its guard"

    def _write(self, store: DjangoRunStore, fires: list[Fire]) -> None:
        try:
            self.written = store.enqueue(fires)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> int | None:
        self.release.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        return self.written


def due_fire(job, seconds_ago=5):
    when = timezone.now().replace(microsecond=0) - timedelta(seconds=seconds_ago)
    return Fire(job.pk, (when,), timezone.now())


def test_the_renewal_goes_through_while_a_fire_batch_holds_the_guard(registry, make_job, fail_fast):
    a = registry.register({"name": "a"})
    assert registry.hold_lease(LEASE, a, 10)
    job = make_job("tick", misfire_grace_seconds=3600)
    before = Lease.objects.get().expires_at
    batch = HeldBatch(DjangoRunStore(), a, [due_fire(job)])
    try:
        assert batch.guard_said is True
        started = time.monotonic()
        try:
            renewed = registry.hold_lease(LEASE, a, 10)
        except OperationalError as exc:  # the renewal waited for the batch's lock
            pytest.fail(f"the renewal waited for the fire batch: {exc}")
        took = time.monotonic() - started
        assert renewed and took < 1.0, f"renewal took {took:.2f} s"
        assert Lease.objects.get().expires_at > before
        assert Lease.objects.get().term == 1
    finally:
        written = batch.finish()
    assert written == 1 and JobRun.objects.filter(job=job).count() == 1


def test_no_node_takes_the_lease_over_while_a_guarded_batch_is_open(registry, make_job, fail_fast):
    """The lease lapses (by time) while the holder's batch is open: the other node's
    takeover waits for that batch (a short while, then it tries at its next heartbeat)
    instead of leading while fires it cannot see yet are being written; once they are
    committed it takes over and sees them."""
    a, b = registry.register({"name": "a"}), registry.register({"name": "b"})
    assert registry.hold_lease(LEASE, a, 10)
    job = make_job("tick", misfire_grace_seconds=3600)
    fire = due_fire(job)
    batch = HeldBatch(DjangoRunStore(), a, [fire])
    try:
        assert batch.guard_said is True
        Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # lapsed meanwhile
        started = time.monotonic()
        assert not registry.hold_lease(LEASE, b, 10), "taken over under an open fire batch"
        assert time.monotonic() - started < 2.5  # gave up after its own short lock wait
        assert Lease.objects.get().incarnation == a
    finally:
        written = batch.finish()
    assert written == 1
    assert registry.hold_lease(LEASE, b, 10)
    lease = Lease.objects.get()
    assert (lease.holder, lease.term) == ("b", 2)
    # what the new leader resumes from: the fire the old one wrote under its lease
    assert list(JobRun.objects.filter(job=job).values_list("scheduled_for", flat=True)) == [fire.run_times[0]]


@pytest.mark.parametrize("how", ["taken over", "expired"])
def test_a_node_that_lost_the_lease_writes_no_fire(registry, make_job, how):
    a, b = registry.register({"name": "a"}), registry.register({"name": "b"})
    assert registry.hold_lease(LEASE, a, 10)
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    if how == "taken over":
        assert registry.hold_lease(LEASE, b, 10)
    job = make_job("tick", misfire_grace_seconds=3600)
    store = DjangoRunStore()
    store.fire_guard = lambda: cluster_backend.holds_lease(LEASE, a, lock=True)
    fire = due_fire(job)
    assert store.enqueue([fire]) == 0
    assert not JobRun.objects.filter(job=job).exists()
    assert store.refused_fires == {job.pk: fire.run_times[0]}  # fired again should it lead again


def test_a_batch_left_idle_past_the_lease_loses_its_session_and_holds_up_no_takeover(
    registry, make_job, settings
):
    """A leader frozen (or cut off) in the middle of a batch: the server ends its session
    after LEADER_LEASE idle, which releases the guard's lock, so the other node takes
    over then instead of after the 60 s session timeout; the batch writes nothing."""
    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "LEADER_LEASE": 1.0}
    a, b = registry.register({"name": "a"}), registry.register({"name": "b"})
    assert registry.hold_lease(LEASE, a, 1.0)
    job = make_job("tick", misfire_grace_seconds=3600)
    batch = HeldBatch(DjangoRunStore(), a, [due_fire(job)])
    assert batch.guard_said is True
    time.sleep(2.0)  # frozen past its lease, and idle in its transaction as long
    assert registry.hold_lease(LEASE, b, 10), "the stalled batch still holds the lease row"
    with pytest.raises(Exception, match="idle-in-transaction|terminat|closed"):
        batch.finish()
    assert not JobRun.objects.filter(job=job).exists()
