"""Executors: where claimed runs execute on a node. Pure Python (no Django).

* :class:`ThreadExecutor` — a thread pool. A thread cannot be killed: on timeout or
  stop the run is recorded at once and whatever the thread returns later is discarded;
  the thread's slot stays busy until the function returns.
* :class:`AsyncioExecutor` — one event loop thread; coroutine tasks run as asyncio
  tasks and are cancelled on timeout or stop; sync tasks run in its thread pool.
* :class:`ProcessExecutor` — a pool of long-lived worker processes (see
  :mod:`scheduler_app.engine.procworker`); on timeout or stop the worker process is
  killed and replaced, so a run can always be stopped; CPU and memory limits apply.

Each executor reports every run it accepted exactly once, through ``sink(outcome)``.
Every executor masks the run's secrets (:mod:`scheduler_app.engine.redaction`) in what
it reports before the outcome leaves it, and holds them in
:data:`~scheduler_app.engine.outputguard.ACTIVE` while the run executes, so that what
the task prints or logs is masked too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scheduler_app.engine.interfaces import ClaimedRun, Outcome
from scheduler_app.engine.outputguard import ACTIVE
from scheduler_app.engine.redaction import NO_SECRETS, Redactor
from scheduler_app.engine.results import describe_exception, storable_result
from scheduler_app.engine.runlog import DEFAULT_MAX_BYTES, RunLog, RunLogBuffer, capturing

logger = logging.getLogger(__name__)

Resolver = Callable[[str], Callable[..., Any]]
Sink = Callable[[Outcome], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Inflight:
    run: ClaimedRun
    started_at: datetime
    deadline: float | None
    started: bool = False
    finished: bool = False  # an outcome has been reported
    handle: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    redactor: Redactor = NO_SECRETS
    output_token: int | None = None  # the run's secrets held in ACTIVE
    log: RunLogBuffer | None = None  # what the run logs (None: capture is off)


def _nothing() -> None:
    pass


class _BaseExecutor:
    name = "base"

    def __init__(
        self,
        size: int,
        sink: Sink,
        result_max_bytes: int,
        prefetch: int = 0,
        log_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.size = size
        self.log_max_bytes = log_max_bytes
        # Runs accepted beyond the pool size wait in the executor's own queue, so the
        # next one starts the moment a worker frees up instead of after a database
        # round trip. Their timeout and start time count from when they really start.
        self.prefetch = prefetch
        self._sink = sink
        self._result_max_bytes = result_max_bytes
        self._lock = threading.Lock()
        self._inflight: dict[int, _Inflight] = {}
        # Called once a run's slot is free again (after its outcome was reported): the
        # node claims for it then, not when the outcome arrives and the slot still counts.
        self.on_release: Callable[[], None] = _nothing

    # -- bookkeeping shared by all executors ----------------------------------------

    def free_slots(self) -> int:
        with self._lock:
            return max(self.size + self.prefetch - len(self._inflight), 0)

    def waiting(self) -> int:
        """Runs accepted but not started yet (prefetched)."""
        with self._lock:
            return sum(1 for e in self._inflight.values() if not e.started and not e.finished)

    def executing(self) -> int:
        with self._lock:
            return sum(1 for e in self._inflight.values() if e.started and not e.finished)

    def running_ids(self) -> list[int]:
        with self._lock:
            return [rid for rid, e in self._inflight.items() if not e.finished]

    def take_logs(self) -> dict[int, RunLog]:
        """The logs of the runs executing here that changed since the last call (for
        the node to write while they run)."""
        with self._lock:
            entries = [e for e in self._inflight.values() if e.started and not e.finished and e.log]
        logs = {}
        for entry in entries:
            log = entry.log.take() if entry.log is not None else None
            if log is not None:
                logs[entry.run.run_id] = log
        return logs

    def overdue(self, monotonic_now: float) -> list[ClaimedRun]:
        with self._lock:
            return [
                e.run
                for e in self._inflight.values()
                if not e.finished and e.deadline is not None and monotonic_now >= e.deadline
            ]

    def _register(self, run: ClaimedRun) -> _Inflight:
        entry = _Inflight(run=run, started_at=utcnow(), deadline=None)
        if run.secret_values:
            entry.redactor = Redactor(run.secret_values)
            entry.output_token = ACTIVE.hold(run.secret_values)
        if self.log_max_bytes > 0:
            entry.log = RunLogBuffer(self.log_max_bytes, entry.redactor)
        with self._lock:
            self._inflight[run.run_id] = entry
        return entry

    def _begin(self, entry: _Inflight) -> None:
        """The run really starts now: its duration and timeout count from here."""
        with self._lock:
            entry.started = True
            entry.started_at = utcnow()
            if entry.run.timeout:
                entry.deadline = time.monotonic() + entry.run.timeout

    def _claim_report(self, run_id: int) -> _Inflight | None:
        """Mark the run as reported; None if it already was (stopped earlier)."""
        with self._lock:
            entry = self._inflight.get(run_id)
            if entry is None or entry.finished:
                return None
            entry.finished = True
            return entry

    def _release(self, run_id: int) -> None:
        """The run's code has returned (or its process is gone): forget it."""
        with self._lock:
            entry = self._inflight.pop(run_id, None)
        if entry is not None:
            ACTIVE.release(entry.output_token)
            self.on_release()

    def _report(self, entry: _Inflight, state: str, **fields: Any) -> None:
        # Everything reported is masked here, whichever way it was made (the process
        # executor's worker masked it already; stop reasons and setup errors too).
        fields = entry.redactor.fields(fields)
        if entry.log is not None and entry.started and entry.log.total:
            # Masked line by line already; what the run logs after this is dropped.
            fields["log"] = entry.log.snapshot()
        outcome = Outcome(
            run_id=entry.run.run_id,
            claim_token=entry.run.claim_token,
            state=state,
            started_at=entry.started_at,
            finished_at=utcnow(),
            **fields,
        )
        try:
            self._sink(outcome)
        except Exception as exc:  # the sink must never take an executor thread down
            _log_failure("outcome sink failed", entry, exc)

    def _success(self, entry: _Inflight, value: Any, **fields: Any) -> None:
        result, note = storable_result(value, self._result_max_bytes, entry.redactor)
        self._report(entry, "succeeded", result=result, error=note, **fields)

    def _failure(self, entry: _Inflight, exc: BaseException, **fields: Any) -> None:
        kind, message, text = describe_exception(exc, entry.redactor)
        self._report(entry, "failed", error_type=kind, error=message, traceback=text, **fields)

    def _setup_failure(self, entry: _Inflight) -> bool:
        if entry.run.setup_error is None:
            return False
        if self._claim_report(entry.run.run_id):
            self._report(entry, "failed", error_type="SetupError", error=entry.run.setup_error)
        self._release(entry.run.run_id)
        return True

    def release_waiting(self) -> int:
        """Give back runs accepted but not started (at shutdown): they return to the
        queue for any node, as ``released`` outcomes."""
        with self._lock:
            waiting = [e for e in self._inflight.values() if not e.started and not e.finished]
            for entry in waiting:
                entry.finished = True
        for entry in waiting:
            self._report(entry, "released", error="released at shutdown before it started")
        return len(waiting)

    def stop(self, run_id: int, state: str, reason: str) -> bool:
        entry = self._claim_report(run_id)
        if entry is None:
            return False
        self._interrupt(entry)
        self._report(entry, state, error_type="Stopped" if state != "timed_out" else "Timeout", error=reason)
        return True

    def _interrupt(self, entry: _Inflight) -> None:
        """Executor-specific: make the run stop (or give up on it)."""


class ThreadExecutor(_BaseExecutor):
    name = "thread"

    def __init__(
        self,
        size: int,
        resolve: Resolver,
        sink: Sink,
        result_max_bytes: int,
        prefetch: int = 0,
        log_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(size, sink, result_max_bytes, prefetch, log_max_bytes)
        self._resolve = resolve
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="run-thread")

    def submit(self, run: ClaimedRun) -> None:
        entry = self._register(run)
        if self._setup_failure(entry):
            return
        self._pool.submit(self._execute, entry)

    def _execute(self, entry: _Inflight) -> None:
        run = entry.run
        if entry.finished:  # stopped while it waited for a thread
            self._release(run.run_id)
            return
        self._begin(entry)
        cpu0 = time.thread_time()
        try:
            func = self._resolve(run.task)
            with capturing(entry.log):
                value = func(*run.args, **run.kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run(_await(value))
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a task is a failure too
            if self._claim_report(run.run_id):
                self._failure(entry, exc, cpu_seconds=time.thread_time() - cpu0)
        else:
            if self._claim_report(run.run_id):
                self._success(entry, value, cpu_seconds=time.thread_time() - cpu0)
        finally:
            self._release(run.run_id)

    def shutdown(self, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


async def _await(awaitable: Any) -> Any:
    return await awaitable


class AsyncioExecutor(_BaseExecutor):
    name = "asyncio"

    def __init__(
        self,
        size: int,
        thread_pool_size: int,
        resolve: Resolver,
        sink: Sink,
        result_max_bytes: int,
        log_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(size, sink, result_max_bytes, log_max_bytes=log_max_bytes)
        self._resolve = resolve
        self._threads = ThreadPoolExecutor(max_workers=thread_pool_size, thread_name_prefix="run-async")
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(self._threads)
        self._thread = threading.Thread(target=self._loop.run_forever, name="asyncio-executor", daemon=True)
        self._thread.start()

    def submit(self, run: ClaimedRun) -> None:
        entry = self._register(run)
        if self._setup_failure(entry):
            return
        self._loop.call_soon_threadsafe(self._start, entry)

    def _start(self, entry: _Inflight) -> None:
        entry.handle = self._loop.create_task(self._execute(entry))

    async def _execute(self, entry: _Inflight) -> None:
        run = entry.run
        self._begin(entry)
        try:
            func = self._resolve(run.task)
            # The context variable is set in this task's own context: other tasks on
            # the loop do not see it.
            with capturing(entry.log):
                if inspect.iscoroutinefunction(func):
                    value = await func(*run.args, **run.kwargs)
                else:
                    value = await self._loop.run_in_executor(None, _holding(run, func, entry.log))
                    if inspect.isawaitable(value):
                        value = await value
        except asyncio.CancelledError:
            if self._claim_report(run.run_id):  # cancelled by shutdown of the loop
                self._report(entry, "interrupted", error_type="Cancelled", error="task cancelled")
        except BaseException as exc:  # noqa: BLE001
            if self._claim_report(run.run_id):
                self._failure(entry, exc)
        else:
            if self._claim_report(run.run_id):
                self._success(entry, value)
        finally:
            self._release(run.run_id)

    def _interrupt(self, entry: _Inflight) -> None:
        def cancel() -> None:
            if entry.handle is not None:
                entry.handle.cancel()

        self._loop.call_soon_threadsafe(cancel)

    def shutdown(self, wait: bool) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._threads.shutdown(wait=wait, cancel_futures=True)


class ProcessExecutor(_BaseExecutor):
    """A fixed number of worker processes, each running one run at a time."""

    name = "process"

    def __init__(
        self,
        size: int,
        initializer: str,
        sink: Sink,
        result_max_bytes: int,
        log_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(size, sink, result_max_bytes, log_max_bytes=log_max_bytes)
        self._initializer = initializer
        self._queue: queue.Queue[_Inflight | None] = queue.Queue()
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_ProcessSlot(self, i) for i in range(size)]
        for slot in self._slots:
            slot.thread.start()

    def submit(self, run: ClaimedRun) -> None:
        entry = self._register(run)
        if self._setup_failure(entry):
            return
        self._queue.put(entry)

    def _interrupt(self, entry: _Inflight) -> None:
        entry.extra["kill"] = True

    def shutdown(self, wait: bool) -> None:
        for _ in self._slots:
            self._queue.put(None)
        for slot in self._slots:
            slot.thread.join(timeout=10 if wait else 1)
            slot.terminate()


class _ProcessSlot:
    def __init__(self, owner: ProcessExecutor, index: int) -> None:
        self.owner = owner
        self.index = index
        self.process: Any = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.thread = threading.Thread(target=self.loop, name=f"process-slot-{index}", daemon=True)

    def ensure_process(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        from scheduler_app.engine import procworker

        parent, child = self.owner._ctx.Pipe()
        self.process = self.owner._ctx.Process(
            target=procworker.worker_main,
            args=(child, self.owner._initializer, os.getpid()),
            name=f"scheduler-worker-{self.index}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.conn = parent

    def terminate(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.process = None
        self.conn = None

    def loop(self) -> None:
        owner = self.owner
        while True:
            entry = owner._queue.get()
            if entry is None:
                self.terminate()
                return
            try:
                self.execute(entry)
            except Exception as exc:  # never lose the slot thread
                _log_failure("process slot failed", entry, exc)
                if owner._claim_report(entry.run.run_id):
                    owner._failure(entry, exc)
                self.terminate()
            finally:
                owner._release(entry.run.run_id)

    def execute(self, entry: _Inflight) -> None:
        owner = self.owner
        run = entry.run
        if entry.finished:  # stopped while waiting for a slot
            return
        self.ensure_process()
        owner._begin(entry)
        assert self.conn is not None
        self.conn.send(
            (
                run.run_id,
                run.task,
                list(run.args),
                dict(run.kwargs),
                run.cpu_limit,
                run.memory_limit_mb,
                owner._result_max_bytes,
                tuple(run.secret_values),
                owner.log_max_bytes,
            )
        )
        while True:
            if entry.extra.get("kill"):
                self.terminate()  # outcome was reported by stop()
                return
            try:
                ready = self.conn.poll(0.05)
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    code = self.process.exitcode if self.process is not None else None
                    if self.process is not None:
                        self.process.join(timeout=5)
                        code = self.process.exitcode
                    self.terminate()
                    if owner._claim_report(run.run_id):
                        owner._report(
                            entry,
                            "failed",
                            error_type="WorkerExited",
                            error=_exit_message(code),
                        )
                    return
                if _is_log_message(message):  # the run goes on: keep its log
                    if entry.log is not None:
                        entry.log.extend(message["log"], int(message.get("dropped") or 0))
                    continue
                self._deliver(entry, message)
                return

    def _deliver(self, entry: _Inflight, message: dict[str, Any]) -> None:
        owner = self.owner
        if entry.log is not None and not entry.finished:
            entry.log.extend(message.get("log") or (), int(message.get("log_dropped") or 0))
        if not owner._claim_report(entry.run.run_id):
            return
        fields = {"cpu_seconds": message.get("cpu_seconds"), "peak_memory_mb": message.get("peak_memory_mb")}
        if message["ok"]:
            owner._report(
                entry, "succeeded", result=message["result"], error=message.get("note", ""), **fields
            )
        else:
            owner._report(
                entry,
                "failed",
                error_type=message["error_type"],
                error=message["error"],
                traceback=message["traceback"],
                **fields,
            )
        if message.get("recycle"):
            self.terminate()  # memory limit hit: start clean next time


def _holding(run: ClaimedRun, func: Callable[..., Any], log: RunLogBuffer | None = None) -> Callable[[], Any]:
    """``func`` bound to the run's arguments, holding its secrets in ACTIVE for as long
    as it really runs (a cancelled asyncio run's thread goes on until it returns), and
    capturing its log in that thread (``run_in_executor`` does not copy the context)."""

    def call() -> Any:
        token = ACTIVE.hold(run.secret_values)
        try:
            with capturing(log):
                return func(*run.args, **run.kwargs)
        finally:
            ACTIVE.release(token)

    return call


def _is_log_message(message: Any) -> bool:
    """A child's live log lines (``{"log": [...], "dropped": n}``), not its reply."""
    return isinstance(message, dict) and "ok" not in message and isinstance(message.get("log"), list)


def _log_failure(message: str, entry: _Inflight, exc: BaseException) -> None:
    """Log an executor's own failure with the run's secrets masked (an exception from
    around task code may quote its arguments)."""
    kind, error, text = describe_exception(exc, entry.redactor)
    logger.error(
        message,
        extra={"run_id": entry.run.run_id, "error": f"{kind}: {error}", "traceback": text},
    )


def _exit_message(code: int | None) -> str:
    import signal

    if code is None:
        return "the worker process ended without a result"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (CPU limit exceeded)" if name == "SIGXCPU" else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with code {code} before returning a result"
