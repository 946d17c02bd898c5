"""The worker side of one node: turns fires into queued runs, claims due runs,
executes them, records outcomes, keeps heartbeats, enforces timeouts and stops
gracefully. Pure Python: it sees storage only through :class:`RunStore`.

Threads (each a loop that reports liveness; see :meth:`Node.problems`):

* ``enqueuer``  — writes fires from the trigger side as runs, in batches; keeps them in
  memory and retries while the database is away, so no fire is lost.
* ``dispatcher`` — claims due runs up to free capacity and hands them to executors;
  woken at once by new runs and freed slots, else polls.
* ``recorder``  — writes outcomes (with retries, dependents) in batches; keeps them in
  memory and retries while the database is away.
* ``maintenance`` — timeouts (every 100 ms), heartbeats and operator stop requests,
  reaping runs of dead nodes, and periodic jobs such as pruning old runs.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler_app.engine.interfaces import Capacity, ClaimedRun, Fire, Outcome, RunLog, RunStore

logger = logging.getLogger(__name__)

Executors = Mapping[str, Any]


#: Clock differences below this are not corrected (measurement noise).
CLOCK_TOLERANCE = timedelta(milliseconds=50)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NodeConfig:
    name: str
    max_concurrent: int = 50
    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0
    lost_after: float = 30.0
    stall_after: float = 60.0
    batch_size: int = 500
    # While fires keep coming, at most one fire write per this many seconds (the fires
    # meanwhile join the batch): the trigger side hands fires over one by one, and at
    # 1,000 fires/s each write would hold a few fires and cost a whole transaction
    # (bench/enqueue_profile.py: ~4x the CPU per fire). A fire after a quiet spell is
    # written at once.
    fire_interval: float = 0.05
    # Seconds between writes of the logs of running runs that changed.
    log_flush_interval: float = 2.0
    # While outcomes keep coming, at most one outcome write per this many seconds (the
    # outcomes meanwhile join the batch): runs finishing one by one would otherwise cost
    # a transaction each. An outcome after a quiet spell is written at once.
    record_interval: float = 0.05
    # Without prefetch (other live nodes; executors with none) each freed worker would cost a claim of one run
    # (a transaction of five statements) as workers free up one by one: a freed worker
    # waits at most this many seconds for others to free up, so that one claim fills
    # them together. A claim is made at once when half the workers (or all) are free.
    claim_linger: float = 0.02


@dataclass
class Periodic:
    name: str
    interval: float
    func: Callable[[], Any]
    last: float = 0.0


class Node:
    def __init__(
        self,
        config: NodeConfig,
        store: RunStore,
        executors: Executors,
        periodic: Sequence[Periodic] = (),
        is_transient: Callable[[BaseException], bool] = lambda exc: True,
        reset_connection: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        # "Now" for claims, heartbeats and the reaper: the shared database's clock as
        # seen from here (a node whose clock is off claims what is due by the database's
        # time, not its own).
        self.clock = clock
        self.store = store
        self.executors = dict(executors)
        self.periodic = list(periodic)
        self._is_transient = is_transient
        self._reset_connection = reset_connection
        self._fires: queue.Queue[Fire] = queue.Queue()
        self._outcomes: queue.Queue[Outcome] = queue.Queue()
        self._wake = threading.Event()
        # Whether a claim could find something: cleared when a claim drains the queue,
        # set by new runs, follow-ups, poll ticks and outside wake-ups. Freed slots alone
        # do not make runs due, so they only cause a claim while this is set.
        self._maybe_due = True
        # The executors (with room) the claims since the last wake-up or poll tick found
        # nothing for: they do not make a claim worth it (a claim made for another
        # executor still takes their runs) until something may have queued runs.
        self._found_nothing_for: frozenset[str] = frozenset()
        self._wakes = 0
        # The poll tick keeps its own schedule: wake-ups (outcomes arriving all the time on
        # a busy node) do not postpone it, so runs another node queued are seen within a
        # poll interval.
        self._next_poll = time.monotonic() + self.config.poll_interval
        # The executors whose workers ran out of work while the last claim for them was
        # in flight: their runs are quicker than a claim, so waiting for half the intake
        # to free up would halve every batch; they are claimed for when they run dry.
        self._claim_bound: frozenset[str] = frozenset()
        # Executors without prefetch: since when (monotonic) their free workers wait for
        # a claim, and the earliest moment a lingering one must be claimed for.
        self._free_since: dict[str, float] = {}
        self._linger_until: float | None = None
        self._stopping = threading.Event()  # no more claiming
        self._closed = threading.Event()  # loops exit
        self._beats: dict[str, float] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._pending_fires: list[Fire] = []
        self._last_fire_write = float("-inf")
        self._pending_outcomes: list[Outcome] = []
        self._db_down_since: float | None = None
        self._last_db_failure = float("-inf")
        self.stats = {"enqueued": 0, "claimed": 0, "recorded": 0}
        self._unsaved_logs: dict[int, RunLog] = {}  # taken from executors, not written yet
        # Reasons not to claim (draining, self-fenced, overloaded): claims only when empty.
        self._holds: set[str] = set()
        # With other live nodes, claim only what can start now: runs prefetched here
        # would wait while another node's workers sit idle.
        self.prefetch = True

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        for executor in self.executors.values():
            if hasattr(executor, "on_release"):  # plugin executors may not have it
                # An outcome wakes the dispatcher before its slot is given back; a claim
                # made in between sees no room: wake it again when the slot is free.
                executor.on_release = self._wake.set
        for name, target in (
            ("enqueuer", self._enqueue_loop),
            ("dispatcher", self._dispatch_loop),
            ("recorder", self._record_loop),
            ("maintenance", self._maintenance_loop),
        ):
            thread = threading.Thread(target=self._guard(name, target), name=f"node-{name}", daemon=True)
            self._beats[name] = time.monotonic()
            self._threads[name] = thread
            thread.start()

    def submit_fire(self, fire: Fire) -> None:
        """Called by the trigger side (APScheduler's thread); never blocks."""
        self._fires.put(fire)

    def unwritten_fire_times(self) -> dict[int, datetime]:
        """The latest fire time per job among the fires taken but not yet written (the
        database was away): a new trigger side resumes after them, not before. Read
        the queue before the batch in hand, so a fire moving between them is seen."""
        with self._fires.mutex:
            fires = list(self._fires.queue)
        fires += list(self._pending_fires)
        latest: dict[int, datetime] = {}
        for fire in fires:
            if fire.run_times:
                last = max(fire.run_times)
                if fire.job_id not in latest or last > latest[fire.job_id]:
                    latest[fire.job_id] = last
        return latest

    def outcome(self, outcome: Outcome) -> None:
        """Executors report here; never blocks. Their times, taken by this machine's
        clock, are moved onto the database's (see ``clock``)."""
        offset = self.clock() - utcnow()
        if abs(offset) > CLOCK_TOLERANCE:
            outcome = dataclasses.replace(
                outcome, started_at=outcome.started_at + offset, finished_at=outcome.finished_at + offset
            )
        self._outcomes.put(outcome)
        self._wake.set()  # a slot is free

    def wake(self) -> None:
        self._maybe_due = True
        self._found_nothing_for = frozenset()
        self._wakes += 1  # a claim in flight must not mark executors found-nothing after it
        self._wake.set()

    def running_ids(self) -> list[int]:
        return [rid for ex in self.executors.values() for rid in ex.running_ids()]

    def hold(self, reason: str, on: bool = True) -> None:
        """Stop (``on``) or resume claiming for ``reason``; running runs go on."""
        if on and reason not in self._holds:
            self._holds.add(reason)
            logger.info("claiming paused", extra={"why": reason})
        elif not on and reason in self._holds:
            self._holds.discard(reason)
            logger.info("claiming resumed", extra={"why": reason})
            self.wake()

    @property
    def holds(self) -> frozenset[str]:
        return frozenset(self._holds)

    def self_fence(self, reason: str) -> int:
        """Stop every in-flight run at once (process runs killed, asyncio runs
        cancelled, thread runs flagged so their outcome is discarded) and claim nothing
        until ``hold("fenced", False)``: by the time the cluster declares this node
        dead and retries its runs elsewhere, they no longer execute here."""
        self.hold("fenced")
        released = sum(ex.release_waiting() for ex in self.executors.values())
        stopped = 0
        for executor in self.executors.values():
            for run_id in executor.running_ids():
                if executor.stop(run_id, "interrupted", reason):
                    stopped += 1
        logger.error("self-fenced", extra={"stopped": stopped, "released": released, "why": reason})
        return stopped

    def problems(self) -> list[str]:
        """Dead or stalled loops; empty when healthy."""
        found = []
        now = time.monotonic()
        for name, thread in self._threads.items():
            if not thread.is_alive() and not self._closed.is_set():
                found.append(f"the {name} loop died")
            elif now - self._beats.get(name, now) > self.config.stall_after:
                found.append(f"the {name} loop stalled for {now - self._beats[name]:.0f} s")
        return found

    def shutdown(
        self,
        grace: float,
        reason: str = "scheduler shut down",
        fires_written: Callable[[], None] = lambda: None,
    ) -> None:
        """Stop claiming, flush fires, let runs finish for ``grace`` seconds, then stop
        the rest as ``interrupted``, record every outcome and stop the loops.
        ``fires_written`` is called once the fires are written (to hand the lease on)."""
        self._stopping.set()
        self._wake.set()
        self._wait_written(self._fires, self._pending_fires, "fires", timeout=30)
        fires_written()
        released = sum(ex.release_waiting() for ex in self.executors.values())
        if released:
            logger.info("released runs that had not started", extra={"count": released})
        deadline = time.monotonic() + grace
        while self.running_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = 0
        for executor in self.executors.values():
            for run_id in executor.running_ids():
                if executor.stop(run_id, "interrupted", f"{reason} before the run finished"):
                    left += 1
        if left:
            logger.warning("interrupted runs at shutdown", extra={"count": left})
        self._wait_written(self._outcomes, self._pending_outcomes, "outcomes", timeout=60)
        self._closed.set()
        for thread in self._threads.values():
            thread.join(timeout=5)
        for executor in self.executors.values():
            executor.shutdown(wait=False)

    # -- loops ----------------------------------------------------------------------------

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException:
                logger.critical("scheduler loop crashed", extra={"loop": name}, exc_info=True)
                raise

        return run

    def _beat(self, name: str) -> None:
        self._beats[name] = time.monotonic()

    def _db_ok(self) -> None:
        if self._db_down_since is not None:
            logger.warning(
                "database reachable again",
                extra={"down_seconds": round(time.monotonic() - self._db_down_since, 1)},
            )
            self._db_down_since = None

    def _db_failed(self, where: str, exc: BaseException) -> float:
        self._last_db_failure = time.monotonic()
        self._reset_connection()
        if not self._is_transient(exc):
            logger.exception("unexpected error", extra={"loop": where})
        elif self._db_down_since is None:
            self._db_down_since = time.monotonic()
            logger.error("database unavailable; retrying", extra={"loop": where, "error": str(exc)})
        return 1.0

    def _drain(self, source: queue.Queue[Any], pending: list[Any], wait: float) -> None:
        if not pending:
            try:
                pending.append(source.get(timeout=wait))
            except queue.Empty:
                return
        while len(pending) < self.config.batch_size:
            try:
                pending.append(source.get_nowait())
            except queue.Empty:
                break

    def _write_fires(self, batch: list[Fire]) -> None:
        linger = self._last_fire_write + self.config.fire_interval - time.monotonic()
        if linger > 0 and not self._stopping.is_set():
            # Written a moment ago: let this batch fill for the rest of the interval (the
            # pending list keeps what joins, so a failed write retries all of it).
            self._closed.wait(linger)
            self._drain(self._fires, self._pending_fires, 0)
            batch = list(self._pending_fires)
        self._last_fire_write = time.monotonic()
        created = self.store.enqueue(batch)
        self.stats["enqueued"] += created
        if created:
            self.wake()

    def _write_outcomes(self, batch: list[Outcome]) -> None:
        if self.store.record(batch):
            self.wake()  # retries, dependents or released runs were queued
        elif self._maybe_due:
            # The last claim left runs queued (behind an overlap slot or a concurrency
            # key these outcomes may have just freed): claim again now, not at the poll.
            self._wake.set()
        self.stats["recorded"] += len(batch)

    def _pump(
        self,
        name: str,
        source: queue.Queue[Any],
        pending: list[Any],
        write: Callable[[list[Any]], None],
        interval: float = 0.0,
    ) -> None:
        backoff = 0.0
        last_write = float("-inf")
        while not self._closed.is_set():
            self._beat(name)
            if backoff:
                self._closed.wait(backoff)
            self._drain(source, pending, 0.5)
            if not pending:
                backoff = 0.0
                continue
            linger = last_write + interval - time.monotonic()
            if linger > 0 and len(pending) < self.config.batch_size and not self._stopping.is_set():
                # Written a moment ago: let this batch fill for the rest of the interval.
                self._closed.wait(linger)
                self._drain(source, pending, 0)
            try:
                last_write = time.monotonic()
                write(list(pending))
            except Exception as exc:
                backoff = self._db_failed(name, exc)
                continue
            pending.clear()
            self._db_ok()
            backoff = 0.0

    def _enqueue_loop(self) -> None:
        self._pump("enqueuer", self._fires, self._pending_fires, self._write_fires)

    def _record_loop(self) -> None:
        self._pump(
            "recorder",
            self._outcomes,
            self._pending_outcomes,
            self._write_outcomes,
            interval=self.config.record_interval,
        )

    def _wait_written(self, source: queue.Queue[Any], pending: list[Any], what: str, timeout: float) -> None:
        """Wait (at shutdown) until the loop has written everything queued."""
        deadline = time.monotonic() + timeout
        while (pending or not source.empty()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pending or not source.empty():
            logger.error(
                "could not write everything at shutdown",
                extra={"what": what, "left": len(pending) + source.qsize()},
            )

    def capacity(self) -> Capacity:
        per = {
            name: ex.free_slots() - (0 if self.prefetch else min(ex.prefetch, ex.free_slots()))
            for name, ex in self.executors.items()
        }
        busy = sum(len(ex.running_ids()) for ex in self.executors.values())
        total = max(self.config.max_concurrent - busy, 0)
        return Capacity(per_executor={k: min(v, total) for k, v in per.items()}, total=total)

    def _wait_for_work(self, backoff: float) -> None:
        """Wait for a wake-up, the end of a claim linger or the poll tick (every poll
        interval whatever the wake-ups: delayed runs, other nodes' runs may be due)."""
        poll_at = time.monotonic() + backoff if backoff else self._next_poll
        while True:
            now = time.monotonic()
            until = poll_at if backoff or self._linger_until is None else min(poll_at, self._linger_until)
            if self._wake.wait(max(until - now, 0.0)) and time.monotonic() < poll_at:
                break
            if time.monotonic() >= poll_at:
                self._maybe_due = True
                self._found_nothing_for = frozenset()
                self._next_poll = time.monotonic() + self.config.poll_interval
                break
            if self._linger_until is not None and time.monotonic() >= self._linger_until:
                break
        self._wake.clear()

    def _dispatch_loop(self) -> None:
        backoff = 0.0
        while not self._closed.is_set():
            self._beat("dispatcher")
            if self._stopping.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._wait_for_work(backoff)
            if self._stopping.is_set():
                continue
            try:
                more = self._dispatch_once()
            except Exception as exc:
                self._maybe_due = True
                backoff = self._db_failed("dispatcher", exc)
                continue
            self._db_ok()
            backoff = 0.0
            if more:
                self._wake.set()

    def _worth_claiming(self, capacity: Capacity) -> bool:
        """With prefetch, claim when some executor with room has run dry or has at
        least half its intake free: while runs still wait in an executor, a claim for
        one or two slots would cost a database round trip for nothing, and the waiting
        runs keep the workers busy in the meantime. Without prefetch every free slot is
        an idle worker: claim when half the workers (or all) are free, or when the first
        of them has waited ``claim_linger`` (the loop wakes up for it then)."""
        now = time.monotonic()
        worth = False
        for name, free in capacity.per_executor.items():
            executor = self.executors[name]
            if free <= 0:
                self._free_since.pop(name, None)
                continue
            if name in self._found_nothing_for:
                continue
            intake = self._intake(executor)
            if self.prefetch and executor.prefetch > 0:
                if executor.waiting() == 0:
                    worth = True
                elif name not in self._claim_bound and free * 2 >= intake:
                    worth = True
                continue
            since = self._free_since.setdefault(name, now)
            if free * 2 >= intake or not executor.running_ids():
                worth = True
            elif now - since >= self.config.claim_linger:
                worth = True
            else:
                until = since + self.config.claim_linger
                self._linger_until = until if self._linger_until is None else min(self._linger_until, until)
        if worth:
            self._linger_until = None
        return worth

    def _dispatch_once(self) -> bool:
        self._linger_until = None
        if not self._maybe_due or self._holds:
            return False
        capacity = self.capacity()
        if capacity.total <= 0 or not self._worth_claiming(capacity):
            return False
        room = frozenset(name for name, free in capacity.per_executor.items() if free > 0)
        self._maybe_due = False  # set again by anything that queues runs meanwhile
        wakes = self._wakes
        result = self.store.claim(self.config.name, capacity, self.clock())
        self._claim_bound = frozenset(name for name in room if self._ran_dry(self.executors[name]))
        for name in room:
            self._free_since.pop(name, None)
        # An idle executor whose runs the claim found none of (often the asyncio and
        # process ones) would otherwise make every freed thread slot worth a claim.
        # Only executors the claim saw nothing of: not those of runs it left queued (no
        # total room, an overlap slot, a concurrency key); and a wake-up during the claim
        # (runs queued meanwhile) clears the mark.
        took = {run.executor for run in result.runs}
        if not result.more and wakes == self._wakes:
            self._found_nothing_for |= room - took - result.left_of
        self._found_nothing_for -= took
        # A claim only sees the runs of executors with room: finding nothing for those
        # says nothing about the runs queued for a full one, which a freed slot (an
        # outcome wakes this loop) must then claim at once, not a poll interval later.
        excluded = any(free <= 0 for free in capacity.per_executor.values())
        if result.more or result.left_queued or excluded:
            self._maybe_due = True
        for run_id in result.stop:
            self.stop_local(run_id, "cancelled", "replaced by a newer run (overlap policy: replace)")
        for run in result.runs:
            self._start(run)
        self.stats["claimed"] += len(result.runs)
        return result.more

    def _intake(self, executor: Any) -> int:
        """How many runs ``executor`` takes at most: its workers, plus its prefetch when
        this node prefetches (without other live nodes; see ``capacity``)."""
        return int(executor.size + (executor.prefetch if self.prefetch else 0))

    @staticmethod
    def _ran_dry(executor: Any) -> bool:
        """No run waits in ``executor`` and some of its workers are idle."""
        return bool(executor.waiting() == 0 and len(executor.running_ids()) < executor.size)

    def _start(self, run: ClaimedRun) -> None:
        executor = self.executors.get(run.executor)
        if executor is None:
            now = utcnow()
            self.outcome(
                Outcome(
                    run_id=run.run_id,
                    state="failed",
                    started_at=now,
                    finished_at=now,
                    error_type="ConfigurationError",
                    error=f"executor {run.executor!r} is not available on this node",
                )
            )
            return
        logger.debug(
            "run claimed",
            extra={
                "job": run.job_name,
                "run_id": run.run_id,
                "attempt": run.attempt,
                "executor": run.executor,
            },
        )
        executor.submit(run)

    def _save_logs(self) -> None:
        """Write the logs of running runs that changed since the last write (one batch
        for all of them); kept for the next try while the database is away."""
        for executor in self.executors.values():
            take = getattr(executor, "take_logs", None)  # plugin executors may not have it
            if callable(take):
                self._unsaved_logs.update(take())
        if self._unsaved_logs:
            logs, self._unsaved_logs = self._unsaved_logs, {}
            try:
                self.store.save_logs(self.config.name, logs, utcnow())
            except Exception:
                self._unsaved_logs = {**logs, **self._unsaved_logs}
                raise

    def stop_local(self, run_id: int, state: str, reason: str) -> bool:
        for executor in self.executors.values():
            if run_id in executor.running_ids():
                return bool(executor.stop(run_id, state, reason))
        return False

    def _maintenance_loop(self) -> None:
        last_heartbeat = last_reap = last_logs = 0.0
        while not self._closed.is_set():
            self._beat("maintenance")
            now_m = time.monotonic()
            for executor in self.executors.values():
                for run in executor.overdue(now_m):
                    executor.stop(run.run_id, "timed_out", f"exceeded its timeout of {run.timeout:g} s")
            try:
                if now_m - last_heartbeat >= self.config.heartbeat_interval:
                    last_heartbeat = now_m
                    for run_id in self.store.heartbeat(self.config.name, self.running_ids(), self.clock()):
                        self.stop_local(run_id, "cancelled", "stopped by an operator")
                if now_m - last_logs >= self.config.log_flush_interval:
                    last_logs = now_m
                    self._save_logs()
                # After a database outage every heartbeat is stale; give live nodes
                # lost_after seconds to beat again before judging any run lost.
                quiet = now_m - self._last_db_failure > self.config.lost_after
                if quiet and now_m - last_reap >= max(self.config.lost_after / 3, 1.0):
                    last_reap = now_m
                    if self.store.reap_lost(self.clock(), self.config.lost_after, self.running_ids()):
                        self._wake.set()
                for job in self.periodic:
                    if now_m - job.last >= job.interval:
                        job.last = now_m
                        job.func()
            except Exception as exc:
                self._db_failed("maintenance", exc)
            self._closed.wait(0.1)
