"""The scheduler service of one node: APScheduler (trigger side), the definition sync,
and the engine's node (queue, executors) wired to the Django backends."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from django.db import close_old_connections, connection

from scheduler_app import plugins
from scheduler_app.alerts.delivery import DeliveryLoop
from scheduler_app.backends import bridge
from scheduler_app.backends.runstore import DjangoRunStore, is_transient
from scheduler_app.conf import app_settings
from scheduler_app.engine.executors import AsyncioExecutor, ProcessExecutor, ThreadExecutor
from scheduler_app.engine.node import Node, NodeConfig, Periodic
from scheduler_app.registry import registry

logger = logging.getLogger(__name__)


def resolve_task(name: str) -> Any:
    return registry.get(name).func


class SchedulerService:
    def __init__(self, node_name: str, *, job_store: str | None = None) -> None:
        self.node_name = node_name
        self.job_store = job_store or app_settings.JOB_STORE
        self.store = DjangoRunStore()
        self.node: Node | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.sync: bridge.JobSync | None = None
        self._stop_sync = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._sync_beat = time.monotonic()
        self._database_ok_at: float | None = None  # monotonic time of the last good round trip
        self.alerts: DeliveryLoop | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        close_old_connections()
        report = self.store.recover(self.node_name, datetime.now(UTC))
        if report.lost or report.requeued:
            logger.warning(
                "recovered runs from an earlier life",
                extra={"lost": report.lost, "requeued": report.requeued},
            )
        cfg = NodeConfig(
            name=self.node_name,
            max_concurrent=app_settings.MAX_CONCURRENT_RUNS,
            poll_interval=app_settings.POLL_INTERVAL,
            heartbeat_interval=app_settings.HEARTBEAT_INTERVAL,
            lost_after=app_settings.LOST_AFTER,
        )
        node = Node(
            cfg,
            self.store,
            {},
            periodic=[
                Periodic("prune", 3600.0, self._prune, last=time.monotonic()),
                Periodic("statistics", 300.0, self.store.refresh_statistics),
            ],
            is_transient=is_transient,
            reset_connection=_reset_connection,
        )
        size = app_settings.RESULT_MAX_BYTES
        node.executors = {
            "thread": ThreadExecutor(
                app_settings.THREAD_POOL_SIZE,
                resolve_task,
                node.outcome,
                size,
                prefetch=3 * app_settings.THREAD_POOL_SIZE,
            ),
            "asyncio": AsyncioExecutor(
                app_settings.ASYNCIO_CONCURRENCY,
                app_settings.THREAD_POOL_SIZE,
                resolve_task,
                node.outcome,
                size,
            ),
            "process": ProcessExecutor(
                app_settings.PROCESS_POOL_SIZE, "scheduler_app.backends.procinit:setup", node.outcome, size
            ),
        }
        node.executors.update(plugins.build_executors(node.outcome, size))  # isolated + plugins
        self.node = node
        node.start()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            jobstores={bridge.STORE_ALIAS: bridge.make_job_store(self.job_store)},
            executors={bridge.EXECUTOR_ALIAS: bridge.EnqueueExecutor(node.submit_fire)},
        )
        self.scheduler.start(paused=True)
        self.sync = bridge.JobSync(self.scheduler)
        self.sync.changed()
        self.sync.last_digest = self.sync.digest()
        self.sync.reconcile()
        self.scheduler.resume()
        self._sync_thread = threading.Thread(target=self._sync_loop, name="definition-sync", daemon=True)
        self._sync_thread.start()
        self.alerts = DeliveryLoop(self.node_name)  # any node delivers alerts
        self.alerts.start()
        logger.info(
            "scheduler started",
            extra={
                "node": self.node_name,
                "job_store": self.job_store,
                "jobs": len(self.sync.known),
                "database": connection.vendor,
            },
        )

    def problems(self) -> list[str]:
        found = list(self.node.problems()) if self.node else ["not started"]
        thread = getattr(self.scheduler, "_thread", None)
        if thread is not None and not thread.is_alive():
            found.append("the APScheduler thread died")
        if (
            self._sync_thread is not None
            and not self._sync_thread.is_alive()
            and not self._stop_sync.is_set()
        ):
            found.append("the definition sync loop died")
        elif time.monotonic() - self._sync_beat > 120:
            found.append(f"the definition sync loop stalled for {time.monotonic() - self._sync_beat:.0f} s")
        if self.alerts is not None:
            found.extend(self.alerts.problems())
        return found

    def database_contact_age(self) -> float | None:
        """Seconds since this process last reached the database (the definition sync
        asks it every 0.25 s); None before the first time. For readiness probes."""
        if self._database_ok_at is None:
            return None
        return time.monotonic() - self._database_ok_at

    def shutdown(self, grace: float, reason: str = "scheduler shut down") -> None:
        logger.info("scheduler stopping", extra={"node": self.node_name, "grace": grace})
        self._stop_sync.set()
        if self.alerts is not None:
            self.alerts.stop()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.node is not None:
            self.node.shutdown(grace, reason)
        logger.info(
            "scheduler stopped", extra={"node": self.node_name, **(self.node.stats if self.node else {})}
        )

    # -- loops ----------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        assert self.sync is not None
        last_full = time.monotonic()
        failing = False
        while not self._stop_sync.wait(0.25):
            self._sync_beat = time.monotonic()
            try:
                due = time.monotonic() - last_full >= app_settings.RECONCILE_INTERVAL
                changed = self.sync.changed()
                self._database_ok_at = time.monotonic()
                if changed or due:
                    # Taken before reading the jobs: a change made meanwhile shows up
                    # as a different digest next time.
                    digest = self.sync.digest()
                    if changed or digest is None or digest != self.sync.last_digest:
                        self.sync.reconcile()
                    self.sync.last_digest = digest
                    last_full = time.monotonic()
                if failing:
                    logger.warning("definition sync recovered")
                    failing = False
            except Exception as exc:
                if not failing:
                    logger.error(
                        "definition sync failed; retrying",
                        extra={"error": str(exc)},
                        exc_info=not is_transient(exc),
                    )
                failing = True
                _reset_connection()
                self._stop_sync.wait(1.0)

    def _prune(self) -> None:
        deleted = self.store.prune(datetime.now(UTC), app_settings.RUN_RETENTION_DAYS)
        if deleted:
            logger.info("pruned old runs", extra={"deleted": deleted})


def _reset_connection() -> None:
    """Drop this thread's database connection after an error, so the next query opens a
    fresh one (the server may have restarted)."""
    try:
        connection.close()
    except Exception:
        pass
