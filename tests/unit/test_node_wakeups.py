"""The node's wake-ups under a backlog (found by review of the claim-linger work): the
poll tick comes every poll interval however many outcomes arrive, runs left queued for
lack of total room (or behind an overlap slot) start when their executor frees up, a
wake-up during a claim that finds nothing is not lost, a plugin executor that says when
its slot is free (``on_release``) is claimed for at once, a draining or stopping node
claims nothing when its linger ends. In memory, the real node loop."""

import threading
import time
from datetime import UTC, datetime

from scheduler_app.engine.executors import ThreadExecutor
from scheduler_app.engine.interfaces import ClaimedRun, ClaimResult, Outcome
from scheduler_app.engine.plugin_executor import GuardedExecutor
from tests.unit.test_node import MemoryStore, make_node, wait

TASKS = {"sleep": lambda seconds: time.sleep(seconds) or "ok"}


def run(i, seconds, executor="thread"):
    return ClaimedRun(
        run_id=i,
        job_id=1,
        job_name="j",
        task="sleep",
        args=(),
        kwargs={"seconds": seconds},
        executor=executor,
        attempt=1,
        scheduled_for=datetime.now(UTC),
    )


class SharedStore(MemoryStore):
    """Like the run store: a claim sees only runs of executors with room; left_queued
    counts what it saw and left."""

    def claim(self, node, capacity, now):
        with self.lock:
            room = dict(capacity.per_executor)
            take, keep, left_of = [], [], set()
            for r in self.queue:
                if room.get(r.executor, 0) > 0:
                    room[r.executor] -= 1
                    take.append(r)
                else:
                    keep.append(r)
                    if capacity.per_executor.get(r.executor, 0) > 0:
                        left_of.add(r.executor)  # a candidate its executor ran out of room for
            self.queue = keep
            self.claimed_at = getattr(self, "claimed_at", {})
            for r in take:
                self.claimed_at[r.run_id] = time.monotonic()
        left = sum(1 for r in keep if r.executor in left_of)
        return ClaimResult(runs=tuple(take), left_queued=left, left_of=frozenset(left_of))

    def record(self, outcomes):
        self.outcomes.extend(outcomes)
        return 0


def test_a_run_another_node_queued_is_claimed_within_a_poll_interval_while_outcomes_keep_coming():
    """Free slots, a run queued by another node (no wake-up here): the poll tick must
    claim it within poll_interval. Outcomes arriving < poll_interval apart restart the
    wait in _wait_for_work, so the poll tick never comes while they keep coming."""
    store = SharedStore()
    node = make_node(store, poll=0.5, max_concurrent=50)
    node.prefetch = False
    node.executors["thread"] = ThreadExecutor(30, TASKS.__getitem__, node.outcome, 1000)
    store.queue = [run(i, 0.15 * i) for i in range(1, 21)]  # one outcome every 150 ms for 3 s
    node.start()
    node.wake()
    try:
        assert wait(lambda: not store.queue, 2)
        time.sleep(0.2)
        added = time.monotonic()
        with store.lock:
            store.queue.append(run(100, 0.01))  # written by another node: no wake-up here
        assert wait(lambda: 100 in store.claimed_at, 6)
        delay = store.claimed_at[100] - added
        assert delay < 1.0, (
            f"claimed {delay:.2f} s after it was queued (poll interval 0.5 s, 10 or more threads free)"
        )
    finally:
        node.shutdown(1)


class SlowReleasePlugin:
    """A plugin executor that, like the built-in ones did, reports the outcome before its
    slot is free again."""

    size = 1

    def __init__(self):
        self.busy = set()
        self.lock = threading.Lock()
        self.sink = None
        self.on_release = lambda: None  # the node sets it (through the guard)

    def free_slots(self):
        with self.lock:
            return 1 - len(self.busy)

    def submit(self, claimed):
        with self.lock:
            self.busy.add(claimed.run_id)

        def work():
            time.sleep(0.02)
            now = datetime.now(UTC)
            self.sink(Outcome(run_id=claimed.run_id, state="succeeded", started_at=now, finished_at=now))
            time.sleep(0.05)  # gives the slot back after reporting
            with self.lock:
                self.busy.discard(claimed.run_id)
            self.on_release()

        threading.Thread(target=work, daemon=True).start()

    def stop(self, run_id, state, reason):
        return False

    def running_ids(self):
        with self.lock:
            return sorted(self.busy)

    def shutdown(self, wait):
        pass


def _plugin_case(poll):
    """A plugin that reports an outcome before it frees the slot: with ``on_release``
    (the guard forwards the node's) the freed slot is claimed for at once."""
    store = SharedStore()
    node = make_node(store, poll=poll, max_concurrent=10)
    node.prefetch = False
    guard = GuardedExecutor("plug", node.outcome, submit_timeout=5)
    inner = SlowReleasePlugin()
    inner.sink = guard.sink
    guard.attach(inner)
    node.executors = {"plug": guard}
    store.queue = [run(i, 0, executor="plug") for i in range(1, 6)]
    node.start()
    node.wake()
    try:
        # 5 runs of ~70 ms on one slot: < 1 s; each lost wake-up waits the 30 s poll.
        assert wait(lambda: len(store.outcomes) == 5, 5), f"{len(store.outcomes)} of 5 ran in 5 s"
    finally:
        node.shutdown(1)


def test_a_plugin_executor_that_says_when_its_slot_is_free_is_claimed_for_at_once():
    _plugin_case(30.0)  # the guard forwards the node's on_release: no wait for the poll


def test_the_plugin_case_passes_when_the_poll_tick_comes_soon_control():
    _plugin_case(0.2)


class OverlapStore(SharedStore):
    """One job with max_instances=1, overlap policy queue: a run is left queued (and
    counted in left_queued) while an earlier run of the job is not recorded yet."""

    def __init__(self):
        super().__init__()
        self.running = set()

    def claim(self, node, capacity, now):
        with self.lock:
            self.claimed_at = getattr(self, "claimed_at", {})
            if self.running or not self.queue or capacity.per_executor.get("thread", 0) <= 0:
                return ClaimResult(left_queued=len(self.queue), left_of=self._left())
            first = self.queue.pop(0)
            self.running.add(first.run_id)
            self.claimed_at[first.run_id] = time.monotonic()
            return ClaimResult(runs=(first,), left_queued=len(self.queue), left_of=self._left())

    def _left(self):
        return frozenset(r.executor for r in self.queue)

    def record(self, outcomes):
        with self.lock:
            for o in outcomes:
                self.running.discard(o.run_id)
        self.outcomes.extend(outcomes)
        return 0


def test_runs_left_queued_behind_a_running_run_of_their_job_start_soon_after_it_ends():
    store = OverlapStore()
    node = make_node(store, poll=1.0, max_concurrent=10)
    node.prefetch = False
    node.executors["thread"] = ThreadExecutor(4, TASKS.__getitem__, node.outcome, 1000)
    store.queue = [run(i, 0.05) for i in range(1, 6)]
    node.start()
    node.wake()
    try:
        started = time.monotonic()
        assert wait(lambda: len(store.outcomes) == 5, 15)
        took = time.monotonic() - started
        assert took < 2.5, f"5 runs of 50 ms one after the other took {took:.2f} s (poll 1 s)"
    finally:
        node.shutdown(1)


class TotalStore(SharedStore):
    """As the run store: in queue order, a run is taken while its executor has room and
    the node's total room lasts; the others are left queued (counted)."""

    def claim(self, node, capacity, now):
        with self.lock:
            self.claimed_at = getattr(self, "claimed_at", {})
            room, total = dict(capacity.per_executor), capacity.total
            take, keep, left, left_of = [], [], 0, set()
            for r in self.queue:
                if room.get(r.executor, 0) <= 0:
                    keep.append(r)  # not a candidate (its executor has no room)
                elif total <= 0:
                    keep.append(r)
                    left += 1
                    left_of.add(r.executor)
                else:
                    room[r.executor] -= 1
                    total -= 1
                    take.append(r)
                    self.claimed_at[r.run_id] = time.monotonic()
            self.queue = keep
        return ClaimResult(runs=tuple(take), left_queued=left, left_of=frozenset(left_of))


def test_runs_left_for_lack_of_total_room_are_claimed_when_their_executor_frees_up():
    """max_concurrent 4: a claim with room for one run takes the other executor's run
    first and leaves the thread runs queued (``left_of``): "thread" must not be marked as
    found-nothing, or the thread slots freed next are not worth a claim until a wake-up or
    poll tick and the free thread workers idle while thread runs are queued."""
    store = TotalStore()
    node = make_node(store, poll=30.0, max_concurrent=4)
    node.prefetch = False
    node.executors = {
        "thread": ThreadExecutor(4, TASKS.__getitem__, node.outcome, 1000),
        "other": ThreadExecutor(1, TASKS.__getitem__, node.outcome, 1000),
    }
    store.queue = [run(i, 0.4) for i in (1, 2, 3)]
    node.start()
    node.wake()
    try:
        assert wait(lambda: not store.queue, 2)
        with store.lock:
            store.queue += [run(10, 4.0, "other"), run(11, 0.05), run(12, 0.05)]
        node.wake()  # new runs were written here
        assert wait(lambda: 10 in store.claimed_at, 2)
        assert wait(lambda: len(store.outcomes) >= 3, 3)  # the 0.4 s thread runs ended
        freed = time.monotonic()
        assert wait(lambda: 11 in store.claimed_at, 6), "run 11 not claimed in 6 s"
        delay = store.claimed_at[11] - freed
        assert delay < 1.0, f"thread run claimed {delay:.2f} s after 3 of 4 thread workers freed up"
    finally:
        node.shutdown(1)


def _lingering_node(store, linger):
    node = make_node(store, poll=30.0, max_concurrent=50, claim_linger=linger)
    node.prefetch = False
    node.executors["thread"] = ThreadExecutor(10, TASKS.__getitem__, node.outcome, 1000)
    store.queue = [run(1, 0.05)] + [run(i, 3.0) for i in range(2, 11)]
    node.start()
    node.wake()
    assert wait(lambda: not store.queue, 2)
    with store.lock:
        store.queue += [run(i, 0.01) for i in range(20, 30)]
    node.wake()
    assert wait(lambda: len(store.outcomes) == 1, 2)  # one worker free: it lingers
    return node


def test_a_draining_node_claims_nothing_when_its_linger_ends():
    store = SharedStore()
    node = _lingering_node(store, 0.5)
    try:
        node.hold("draining")
        time.sleep(1.0)
        assert not any(i in store.claimed_at for i in range(20, 30))
        node.hold("draining", False)
        assert wait(lambda: 20 in store.claimed_at, 1.5)
    finally:
        node.shutdown(0.1)


def test_shutdown_while_lingering_is_prompt_and_claims_nothing():
    store = SharedStore()
    node = _lingering_node(store, 0.5)
    started = time.monotonic()
    node.shutdown(0.1)
    assert time.monotonic() - started < 8
    assert not any(i in store.claimed_at for i in range(20, 30))
    assert not node._threads["dispatcher"].is_alive()


class SnapshotStore(SharedStore):
    """A claim reads the queue (its snapshot), then takes a while to finish, as a
    transaction does: runs written meanwhile are not in it."""

    slow = False

    def claim(self, node, capacity, now):
        with self.lock:
            seen = list(self.queue)
        if self.slow:
            self.in_claim.set()
            time.sleep(0.3)
        with self.lock:
            self.claimed_at = getattr(self, "claimed_at", {})
            room = capacity.per_executor.get("thread", 0)
            take = [r for r in seen if r in self.queue][:room]
            for r in take:
                self.queue.remove(r)
                self.claimed_at[r.run_id] = time.monotonic()
        return ClaimResult(runs=tuple(take))


def test_a_wake_up_during_a_claim_that_found_nothing_is_not_lost():
    """Runs written (and the node woken, as the enqueuer does) while a claim that
    found nothing is in flight: the claim then marks the executor "found nothing",
    overriding the wake-up's reset, and the runs wait for the poll tick."""
    store = SnapshotStore()
    store.in_claim = threading.Event()
    node = make_node(store, poll=30.0, max_concurrent=10)
    node.prefetch = False
    node.start()
    node.wake()
    try:
        time.sleep(0.2)  # the first claim found nothing
        store.slow = True
        node.wake()  # e.g. an operator's resume, a dependent queued elsewhere
        assert store.in_claim.wait(2)
        with store.lock:
            store.queue.append(run(50, 0.01))
        added = time.monotonic()
        node.wake()  # what _write_fires does once its runs are written
        store.slow = False
        assert wait(lambda: 50 in getattr(store, "claimed_at", {}), 5), "not claimed in 5 s (poll 30 s)"
        assert store.claimed_at[50] - added < 1.0
    finally:
        node.shutdown(1)
