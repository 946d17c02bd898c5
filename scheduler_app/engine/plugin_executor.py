"""A guard around a plugin's executor: the node never waits on a plugin for long.

``submit`` is handed to one guard thread per executor; if the plugin's ``submit`` has not
returned within ``submit_timeout`` seconds, the run is failed at once ("executor X blocked
in submit") and whatever the plugin reports for it later is dropped. Each run's outcome
reaches the node exactly once, and a plugin that raises in ``submit`` fails that run
with its error instead of breaking the node's loop."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from scheduler_app.engine.interfaces import ClaimedRun, Executor, Outcome, RunLog
from scheduler_app.engine.redaction import Redactor
from scheduler_app.engine.results import storable_result

#: The cap a guard applies when it is not told the setting (RESULT_MAX_BYTES' default).
DEFAULT_RESULT_MAX_BYTES = 64 * 1024

logger = logging.getLogger(__name__)


class GuardedExecutor:
    def __init__(
        self,
        name: str,
        sink: Callable[[Outcome], None],
        submit_timeout: float,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
    ) -> None:
        self.name = name
        self._sink = sink
        self._timeout = submit_timeout
        self._result_max_bytes = result_max_bytes
        # Each accepted run's secret values, to mask what the plugin reports for it.
        self._secrets: dict[int, tuple[Any, ...]] = {}
        self._inner: Executor | None = None
        self._lock = threading.Lock()
        self._reported: set[int] = set()
        # Runs handed to the plugin and not reported yet: they are heartbeated as running
        # even while the plugin's submit has not returned or it forgot them.
        self._accepted: set[int] = set()
        self._pending: queue.Queue[tuple[ClaimedRun, threading.Event] | None] = queue.Queue()
        self._blocked = False
        self._thread = threading.Thread(target=self._loop, name=f"plugin-submit-{name}", daemon=True)

    def attach(self, inner: Executor) -> None:
        self._inner = inner
        self._thread.start()

    # A plugin that says when a slot is free again (``on_release``, see ``Executor``)
    # is told the node's wake-up, as the built-in executors are.
    @property
    def on_release(self) -> Callable[[], None] | None:
        return getattr(self._inner, "on_release", None)

    @on_release.setter
    def on_release(self, callback: Callable[[], None]) -> None:
        if self._inner is not None and hasattr(self._inner, "on_release"):
            try:
                self._inner.on_release = callback
            except Exception:  # noqa: BLE001  (a read-only attribute: the poll tick remains)
                logger.debug("plugin executor %r keeps its on_release", self.name)

    # -- outcomes: exactly once per run ---------------------------------------------

    def sink(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome.run_id in self._reported:
                return
            self._reported.add(outcome.run_id)
            self._accepted.discard(outcome.run_id)
            secrets = self._secrets.pop(outcome.run_id, ())
        self._sink(self._storable(outcome, Redactor(secrets)))

    def _storable(self, outcome: Outcome, redactor: Redactor) -> Outcome:
        """What the plugin reported, as the built-in executors store it: the run's
        secrets masked in the result, the texts and the log, the result capped at
        ``RESULT_MAX_BYTES`` (a plugin is not trusted to do either; a downstream job
        receives the result)."""
        result, note = storable_result(outcome.result, self._result_max_bytes, redactor)
        fields = redactor.fields(
            {"error_type": outcome.error_type, "error": outcome.error or note, "traceback": outcome.traceback}
        )
        log = outcome.log
        if log is not None and redactor.secrets:
            log = replace(log, text=redactor.text(log.text))
        return replace(outcome, result=result, log=log, **fields)

    def _fail(self, run: ClaimedRun, error_type: str, message: str) -> None:
        now = datetime.now(UTC)
        self.sink(
            Outcome(
                run_id=run.run_id,
                state="failed",
                started_at=now,
                finished_at=now,
                error_type=error_type,
                error=message,
            )
        )

    # -- the Executor protocol ----------------------------------------------------------

    def free_slots(self) -> int:
        if self._blocked or self._inner is None:
            return 0
        try:
            return max(int(self._inner.free_slots()), 0)
        except Exception:  # noqa: BLE001
            return 0

    def submit(self, run: ClaimedRun) -> None:
        with self._lock:
            self._accepted.add(run.run_id)
            self._secrets[run.run_id] = tuple(run.secret_values)
        done = threading.Event()
        self._pending.put((run, done))
        if not done.wait(self._timeout):
            self._blocked = True  # no more runs for it until its submit returns
            self._fail(
                run,
                "ExecutorBlocked",
                f"executor {self.name!r} blocked in submit for more than {self._timeout:g} s",
            )

    def _loop(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            run, done = item
            try:
                assert self._inner is not None
                self._inner.submit(run)
            except Exception as exc:  # noqa: BLE001
                self._fail(run, type(exc).__name__, f"executor {self.name!r} refused the run: {exc}")
            finally:
                done.set()
                self._blocked = False

    def stop(self, run_id: int, state: str, reason: str) -> bool:
        with self._lock:
            if run_id in self._reported:
                return False
        assert self._inner is not None
        try:
            if self._inner.stop(run_id, state, reason):
                return True
        except Exception:  # noqa: BLE001
            logger.exception("executor plugin failed to stop a run", extra={"executor": self.name})
        with self._lock:
            known = run_id in self._accepted and run_id not in self._reported
        if not known:
            return False
        # the plugin does not know the run (any more): record the stop ourselves
        now = datetime.now(UTC)
        self.sink(
            Outcome(
                run_id=run_id,
                state=state,
                started_at=now,
                finished_at=now,
                error_type="Stopped",
                error=reason,
            )
        )
        return True

    def running_ids(self) -> list[int]:
        try:
            inner = set(self._inner.running_ids()) if self._inner else set()
        except Exception:  # noqa: BLE001
            inner = set()
        with self._lock:
            return sorted((inner | self._accepted) - self._reported)

    # what the node asks of the built-in executors too
    prefetch = 0

    @property
    def size(self) -> int:
        return int(getattr(self._inner, "size", 1) or 1)

    def waiting(self) -> int:
        check = getattr(self._inner, "waiting", None)
        return int(check()) if callable(check) else 0

    def release_waiting(self) -> int:
        check = getattr(self._inner, "release_waiting", None)
        return int(check()) if callable(check) else 0

    def take_logs(self) -> dict[int, RunLog]:
        """The live logs of the inner executor's running runs, if it captures them
        (optional for a plugin: ``take_logs()`` -> {run id: RunLog}, as the built-in
        executors have); anything else it returns is ignored."""
        check = getattr(self._inner, "take_logs", None)
        if not callable(check):
            return {}
        try:
            logs = dict(check())
        except Exception:  # noqa: BLE001
            logger.exception("executor plugin failed to give its runs' logs", extra={"executor": self.name})
            return {}
        with self._lock:
            return {
                k: v
                for k, v in logs.items()
                if isinstance(k, int) and isinstance(v, RunLog) and k not in self._reported
            }

    def overdue(self, monotonic_now: float) -> list[Any]:
        check = getattr(self._inner, "overdue", None)
        return list(check(monotonic_now)) if callable(check) else []

    def shutdown(self, wait: bool) -> None:
        self._pending.put(None)
        if self._inner is not None:
            self._inner.shutdown(wait)
