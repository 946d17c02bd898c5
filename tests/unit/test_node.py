"""The node's loops against an in-memory store: wake-ups, liveness, shutdown.
Pure engine, no Django: proves the engine runs without a configured project."""

import threading
import time
from datetime import UTC, datetime

import pytest

from scheduler_app.engine.executors import ThreadExecutor
from scheduler_app.engine.interfaces import ClaimedRun, ClaimResult, RecoveryReport
from scheduler_app.engine.node import Node, NodeConfig


class MemoryStore:
    def __init__(self):
        self.queue = []
        self.outcomes = []
        self.logs = []
        self.fail_claims = False
        self.lock = threading.Lock()

    def enqueue(self, fires):
        for fire in fires:
            for t in fire.run_times:
                self.queue.append(
                    ClaimedRun(
                        run_id=len(self.queue) + 1,
                        job_id=fire.job_id,
                        job_name="j",
                        task="sleep",
                        args=(),
                        kwargs={"seconds": 0.05},
                        executor="thread",
                        attempt=1,
                        scheduled_for=t,
                    )
                )
        return len(fires)

    def claim(self, node, capacity, now):
        if self.fail_claims:
            raise SystemExit("claim loop killed")
        with self.lock:
            take = self.queue[: capacity.per_executor.get("thread", 0)]
            del self.queue[: len(take)]
        return ClaimResult(runs=tuple(take), left_queued=len(self.queue))

    def record(self, outcomes):
        self.outcomes.extend(outcomes)

    def heartbeat(self, node, run_ids, now):
        return []

    def save_logs(self, node, logs, now):
        self.logs.append(dict(logs))

    def recover(self, node, now):
        return RecoveryReport()

    def reap_lost(self, now, lost_after, exclude=()):
        return 0


def make_node(store, poll=5.0, **kw):
    node = Node(NodeConfig(name="n", poll_interval=poll, **kw), store, {})
    tasks = {"sleep": lambda seconds: time.sleep(seconds) or "ok"}
    node.executors = {"thread": ThreadExecutor(2, tasks.__getitem__, node.outcome, 1000)}
    return node


def wait(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_new_runs_start_without_waiting_for_the_poll():
    from scheduler_app.engine.interfaces import Fire

    store = MemoryStore()
    node = make_node(store, poll=30.0)
    node.start()
    try:
        started = time.monotonic()
        node.submit_fire(Fire(job_id=1, run_times=(datetime.now(UTC),), noticed_at=datetime.now(UTC)))
        assert wait(lambda: store.outcomes)
        assert time.monotonic() - started < 1.0  # the poll interval is 30 s
        assert store.outcomes[0].state == "succeeded" and store.outcomes[0].result == "ok"
    finally:
        node.shutdown(1)


def test_fires_arriving_one_by_one_are_written_at_most_once_per_interval():
    """The trigger side hands over fires one at a time (1,000 a second at full rate):
    while they keep coming the enqueuer writes at most one batch per fire_interval
    instead of a batch of one or two every millisecond; a fire after a quiet spell is
    written at once."""
    from scheduler_app.engine.interfaces import Fire

    class CountingStore(MemoryStore):
        def __init__(self):
            super().__init__()
            self.batches = []

        def enqueue(self, fires):
            self.batches.append(len(fires))
            return super().enqueue(fires)

    def fire(job_id):
        return Fire(job_id=job_id, run_times=(datetime.now(UTC),), noticed_at=datetime.now(UTC))

    store = CountingStore()
    node = make_node(store, poll=30.0, fire_interval=0.4)
    node.start()
    try:
        started = time.monotonic()
        node.submit_fire(fire(1))
        assert wait(lambda: store.batches == [1])
        assert time.monotonic() - started < 0.2  # the first fire: at once
        for job_id in range(2, 22):
            node.submit_fire(fire(job_id))
            time.sleep(0.005)
        assert wait(lambda: sum(store.batches) == 21)
        assert store.batches == [1, 20]  # the next ones: gathered until the interval ended
        time.sleep(0.5)  # quiet
        started = time.monotonic()
        node.submit_fire(fire(99))
        assert wait(lambda: sum(store.batches) == 22)
        assert time.monotonic() - started < 0.2
    finally:
        node.shutdown(1)


def test_capacity_is_respected_and_freed_slots_wake_the_dispatcher():
    from scheduler_app.engine.interfaces import Fire

    store = MemoryStore()
    node = make_node(store, poll=30.0)
    node.start()
    try:
        now = datetime.now(UTC)
        node.submit_fire(Fire(job_id=1, run_times=tuple(now for _ in range(6)), noticed_at=now))
        assert wait(lambda: len(store.outcomes) == 6, 5)
    finally:
        node.shutdown(1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_loop_is_reported():
    store = MemoryStore()
    store.fail_claims = True
    node = make_node(store, poll=0.05)
    node.start()
    try:
        assert wait(lambda: node.problems(), 3)
        assert node.problems() == ["the dispatcher loop died"]
    finally:
        node.shutdown(0)


def test_shutdown_interrupts_what_outlives_the_grace():
    store = MemoryStore()
    node = make_node(store, poll=0.05)
    store.queue.append(
        ClaimedRun(
            run_id=99,
            job_id=1,
            job_name="j",
            task="sleep",
            args=(),
            kwargs={"seconds": 3},
            executor="thread",
            attempt=1,
            scheduled_for=datetime.now(UTC),
        )
    )
    node.start()
    assert wait(lambda: node.running_ids() == [99])
    started = time.monotonic()
    node.shutdown(0.3, "test shutdown")
    assert time.monotonic() - started < 2.5
    assert [(o.run_id, o.state) for o in store.outcomes] == [(99, "interrupted")]
    assert store.outcomes[0].error == "test shutdown before the run finished"


def test_engine_imports_without_django_settings():
    import subprocess
    import sys

    code = (
        "import sys, os; os.environ.pop('DJANGO_SETTINGS_MODULE', None);"
        "import scheduler_app.engine.node, scheduler_app.engine.executors, scheduler_app.engine.cron,"
        " scheduler_app.engine.triggerspec, scheduler_app.engine.rules, scheduler_app.engine.aps_triggers;"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class PerExecutorStore(MemoryStore):
    """Like the run store: a claim only sees the runs of the executors it has room for,
    and says how many of those it left queued."""

    def claim(self, node, capacity, now):
        with self.lock:
            room = {name: free for name, free in capacity.per_executor.items() if free > 0}
            eligible = sum(1 for run in self.queue if run.executor in room)
            take, keep = [], []
            for run in self.queue:
                if room.get(run.executor, 0) > 0 and len(take) < capacity.total:
                    room[run.executor] -= 1
                    take.append(run)
                else:
                    keep.append(run)
            self.queue = keep
            left = sum(1 for run in keep if capacity.per_executor.get(run.executor, 0) > 0)
        return ClaimResult(runs=tuple(take), left_queued=left, more=eligible >= capacity.total * 2 + 8)


def test_a_claim_for_other_executors_does_not_hide_a_full_executors_backlog():
    """The thread executor is full, another executor has room: the claim made for that
    one finds nothing, which says nothing about the thread runs still queued. A freed
    thread slot must claim them at once, not a poll interval later (it made a node run
    about 30 of its 200 possible runs/s under a backlog of I/O-bound runs)."""
    from scheduler_app.engine.interfaces import Fire

    store = PerExecutorStore()
    node = make_node(store, poll=30.0, max_concurrent=12)
    tasks = {"sleep": lambda seconds: time.sleep(seconds) or "ok"}
    node.executors["thread"] = ThreadExecutor(2, tasks.__getitem__, node.outcome, 1000, prefetch=6)
    node.executors["process"] = ThreadExecutor(4, tasks.__getitem__, node.outcome, 1000)
    node.start()
    try:
        now = datetime.now(UTC)
        started = time.monotonic()
        node.submit_fire(Fire(job_id=1, run_times=tuple(now for _ in range(60)), noticed_at=now))
        assert wait(lambda: len(store.outcomes) == 60, 20)
        # 60 runs of 50 ms on 2 threads: about 1.5 s of work; each missed claim waits 30 s.
        assert time.monotonic() - started < 6.0
    finally:
        node.shutdown(1)


class SlowClaimStore(MemoryStore):
    """Each claim costs a database round trip's worth of time; remembers how many runs
    each one took."""

    def __init__(self, claim_seconds):
        super().__init__()
        self.claim_seconds = claim_seconds
        self.batches = []

    def claim(self, node, capacity, now):
        time.sleep(self.claim_seconds)
        result = super().claim(node, capacity, now)
        if result.runs:
            self.batches.append(len(result.runs))
        return result


@pytest.mark.parametrize(
    ("seconds", "full"),
    [
        pytest.param(0.0, True, id="runs-quicker-than-a-claim-full-batches"),
        pytest.param(0.2, False, id="slow-runs-claimed-at-half-intake"),
    ],
)
def test_a_claim_waits_for_a_full_batch_only_when_runs_are_quicker_than_a_claim(seconds, full):
    """With runs that end before a claim comes back, claiming at half the intake made
    every batch half as big (a burst of no-op runs claimed 20 of 40 at a time, each claim
    a database round trip or eight); runs slower than a claim still get the next batch
    claimed while the executor has work left."""
    from scheduler_app.engine.interfaces import Fire

    store = SlowClaimStore(claim_seconds=0.05)
    node = make_node(store, poll=30.0, max_concurrent=100)
    tasks = {"sleep": lambda seconds: time.sleep(seconds) or "ok"}
    node.executors["thread"] = ThreadExecutor(4, tasks.__getitem__, node.outcome, 1000, prefetch=12)
    total = 400 if full else 64
    now = datetime.now(UTC)
    store.enqueue([Fire(job_id=1, run_times=tuple(now for _ in range(total)), noticed_at=now)])
    for run in store.queue:
        object.__setattr__(run, "kwargs", {"seconds": seconds})
    node.start()
    node.wake()
    try:
        assert wait(lambda: len(store.outcomes) == total, 30)
    finally:
        node.shutdown(1)
    later = store.batches[1:-1]  # the first and last batches are whatever was there
    mean = sum(later) / len(later)
    if full:
        assert mean >= 12, store.batches  # of an intake of 16 (about 8 before)
    else:
        assert mean <= 10, store.batches  # about half of it: claimed before running dry


class SlowRecordStore(MemoryStore):
    """Each write of outcomes takes ``seconds`` (a database round trip or three)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.batches = []

    def record(self, outcomes):
        self.batches.append((time.monotonic(), len(outcomes)))
        time.sleep(self.seconds)
        super().record(outcomes)


def outcome_of(run_id):
    from scheduler_app.engine.interfaces import Outcome

    now = datetime.now(UTC)
    return Outcome(run_id=run_id, state="succeeded", started_at=now, finished_at=now)


def test_outcomes_arriving_one_by_one_are_written_in_batches():
    """Runs finishing one at a time (threads freeing up in turn) cost one transaction
    per ``record_interval`` while they keep coming, not one each."""
    store = SlowRecordStore(0.002)
    node = make_node(store, record_interval=0.05)
    node.start()
    try:
        for run_id in range(1, 101):  # 100 outcomes over ~0.5 s
            node.outcome(outcome_of(run_id))
            time.sleep(0.005)
        assert wait(lambda: len(store.outcomes) == 100)
        assert sorted(o.run_id for o in store.outcomes) == list(range(1, 101))
        assert len(store.batches) <= 15, store.batches  # one write per 5 ms outcome: ~100
        starts = [t for t, _ in store.batches]
        assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.045
    finally:
        node.shutdown(1)


def test_an_outcome_after_a_quiet_spell_is_written_at_once():
    store = SlowRecordStore(0.0)
    node = make_node(store, record_interval=0.3)
    node.start()
    try:
        node.outcome(outcome_of(1))
        assert wait(lambda: store.outcomes, 1)
        time.sleep(0.4)  # longer than the interval
        sent = time.monotonic()
        node.outcome(outcome_of(2))
        assert wait(lambda: len(store.outcomes) == 2, 1)
        assert time.monotonic() - sent < 0.2
    finally:
        node.shutdown(1)


def test_a_stopping_node_writes_its_outcomes_without_lingering():
    store = SlowRecordStore(0.0)
    node = make_node(store, record_interval=30.0)
    node.start()
    node.outcome(outcome_of(1))
    assert wait(lambda: store.outcomes, 1)
    node.outcome(outcome_of(2))  # within the interval after the last write
    started = time.monotonic()
    node.shutdown(1)
    assert [o.run_id for o in store.outcomes] == [1, 2]
    assert time.monotonic() - started < 5.0
