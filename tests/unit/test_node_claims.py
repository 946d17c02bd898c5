"""How the dispatcher claims under a backlog of I/O-bound runs: a freed slot is never
left idle for a poll interval, and with no prefetch (other live nodes) the claims are
coalesced instead of one database round trip per freed slot. Pure engine, in-memory
store (tests/unit/test_node.py's)."""

import time
from datetime import UTC, datetime

from scheduler_app.engine.executors import ThreadExecutor
from scheduler_app.engine.interfaces import Fire
from tests.unit.test_node import MemoryStore, make_node, wait

TASKS = {"sleep": lambda seconds: time.sleep(seconds) or "ok"}


class CountingStore(MemoryStore):
    """Each claim costs a round trip's worth of time; remembers each claim's size."""

    def __init__(self, claim_seconds=0.002):
        super().__init__()
        self.claim_seconds = claim_seconds
        self.batches = []
        self.free_at_claim = []

    def claim(self, node, capacity, now):
        time.sleep(self.claim_seconds)
        self.free_at_claim.append(capacity.per_executor.get("thread", 0))
        result = super().claim(node, capacity, now)
        self.batches.append(len(result.runs))
        return result


def backlog(store, count, seconds):
    now = datetime.now(UTC)
    store.enqueue([Fire(job_id=1, run_times=tuple(now for _ in range(count)), noticed_at=now)])
    for run in store.queue:
        object.__setattr__(run, "kwargs", {"seconds": seconds})


def test_a_slot_freed_after_its_outcome_is_reported_is_claimed_at_once():
    """The executor reports a run's outcome (which wakes the dispatcher) before it
    releases the run's slot; a dispatcher that looked in between saw no room and was not
    woken again, so the slot sat idle until the next outcome or the poll tick (runs
    claimed together finish together: the last ones' slots waited a whole poll
    interval, 1,000 runs of 50 ms on 10 threads took 7.0 s instead of 5)."""
    store = CountingStore()
    node = make_node(store, poll=30.0, max_concurrent=10)
    node.prefetch = False

    def slow_return(outcome):  # the worker thread is slow to give its slot back
        node.outcome(outcome)
        time.sleep(0.05)

    node.executors["thread"] = ThreadExecutor(2, TASKS.__getitem__, slow_return, 1000)
    backlog(store, 10, 0.05)
    node.start()
    node.wake()
    try:
        started = time.monotonic()
        # 10 runs of 50 ms on 2 threads, ~0.5 s; each lost wake-up waits 30 s.
        assert wait(lambda: len(store.outcomes) == 10, 10), store.batches
        assert time.monotonic() - started < 5.0
    finally:
        node.shutdown(1)


class StubExecutor:
    """An executor frozen in one state, to ask the dispatcher what it would do."""

    def __init__(self, size, prefetch, executing, waiting):
        self.size, self.prefetch = size, prefetch
        self._executing, self._waiting = executing, waiting

    def free_slots(self):
        return self.size + self.prefetch - self._executing - self._waiting

    def waiting(self):
        return self._waiting

    def running_ids(self):
        return list(range(self._executing + self._waiting))


def test_without_prefetch_half_the_threads_free_is_worth_a_claim():
    """With other live nodes a node claims only what can start now (no prefetch), so its
    intake is its threads, not threads + prefetch. The rule "claim at half the intake
    while runs still wait" used threads + prefetch: with 10 threads (30 prefetch), 9 of
    them free and the one run just handed over not started yet, no claim was made until
    the next run ended, so a node's threads ran in waves of one run (scale-out: 2 and 3
    nodes 1.23x / 1.52x of one)."""
    node = make_node(MemoryStore())
    node.prefetch = False
    node.executors = {"thread": StubExecutor(size=10, prefetch=30, executing=0, waiting=1)}
    capacity = node.capacity()
    assert capacity.per_executor["thread"] == 9
    assert node._worth_claiming(capacity)
    # With prefetch (the only live node) the intake is 40: 9 free of it can wait while
    # 21 runs wait their turn.
    node.prefetch = True
    node.executors = {"thread": StubExecutor(size=10, prefetch=30, executing=10, waiting=21)}
    assert node.capacity().per_executor["thread"] == 9
    assert not node._worth_claiming(node.capacity())


def staggered_node(store, threads=10):
    """A node with other live nodes (no prefetch), ``threads`` workers, poll 30 s."""
    node = make_node(store, poll=30.0, max_concurrent=50)
    node.prefetch = False
    node.executors["thread"] = ThreadExecutor(threads, TASKS.__getitem__, node.outcome, 1000, prefetch=30)
    return node


def test_without_prefetch_freed_workers_are_claimed_for_together():
    """Under a backlog, workers free up one by one; a claim per freed worker cost a
    transaction per run (scale-out nodes used 1.4-3.7 ms of CPU per 50 ms run, against
    0.35 ms per run in the burst). A freed worker now waits up to ``claim_linger`` for
    others, so a claim takes several runs; the backlog still drains at the workers'
    pace."""
    store = CountingStore()
    node = staggered_node(store)
    # Staggered durations: the workers free up at different moments, as in real life.
    backlog(store, 300, 0.05)
    for k, run in enumerate(store.queue):
        object.__setattr__(run, "kwargs", {"seconds": 0.03 + 0.005 * (k % 9)})
    node.start()
    node.wake()
    started = time.monotonic()
    try:
        assert wait(lambda: len(store.outcomes) == 300, 30)
        elapsed = time.monotonic() - started
    finally:
        node.shutdown(1)
    claims = [n for n in store.batches if n]
    assert sum(claims) == 300
    assert len(claims) <= 300 / 3, f"{len(claims)} claims: {store.batches}"
    # 300 runs of 30-70 ms on 10 threads: 1.5 s of work; coalescing may add ~20%.
    assert elapsed < 1.5 * 2.0, elapsed
    # Never more than the free workers (no prefetch with other live nodes).
    assert all(n <= free <= 10 for n, free in zip(store.batches, store.free_at_claim, strict=True))


def test_without_prefetch_a_lone_freed_worker_is_claimed_for_after_the_linger():
    """Three workers of four busy for 2 s, the fourth frees up after 0.1 s: it is not
    kept waiting for the others (half the workers are never free together here), but
    claimed for once it has waited ``claim_linger``, by a wake-up of its own (the poll
    is 30 s)."""
    store = CountingStore()
    node = staggered_node(store, threads=4)
    backlog(store, 4, 2.0)
    object.__setattr__(store.queue[3], "kwargs", {"seconds": 0.1})
    node.start()
    node.wake()
    try:
        assert wait(lambda: node.executors["thread"].executing() == 4, 5)
        started = time.monotonic()
        backlog(store, 1, 0.0)
        node.wake()  # what the enqueuer does after writing runs
        assert wait(lambda: len(store.outcomes) == 2, 5), store.batches
        assert time.monotonic() - started < 1.0  # not when the long runs end (2 s)
        assert len(store.batches) == 2, store.batches  # the lingering claim took it
    finally:
        node.shutdown(3)


def test_an_idle_executor_with_nothing_queued_does_not_make_every_freed_slot_a_claim():
    """The only live node (prefetch) has a thread executor busy with a backlog and an
    idle process executor nothing is queued for. "Some executor with room has run dry"
    held for the idle one at every freed thread slot, so each cost a claim of the one
    or two thread slots free (the bench's node: 9 runs a claim of its intake of 40)."""
    store = CountingStore()
    node = make_node(store, poll=30.0, max_concurrent=100)
    node.executors["thread"] = ThreadExecutor(10, TASKS.__getitem__, node.outcome, 1000, prefetch=30)
    node.executors["process"] = ThreadExecutor(4, TASKS.__getitem__, node.outcome, 1000)
    backlog(store, 400, 0.02)
    for k, run in enumerate(store.queue):
        object.__setattr__(run, "kwargs", {"seconds": 0.01 + 0.002 * (k % 11)})
    node.start()
    node.wake()
    try:
        assert wait(lambda: len(store.outcomes) == 400, 30)
    finally:
        node.shutdown(1)
    claims = [n for n in store.batches if n]
    assert len(claims) <= 400 / 12, f"{len(claims)} claims: {store.batches}"
