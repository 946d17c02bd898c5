"""The scheduler service of one node: its cluster membership (registration, heartbeat,
leader lease), APScheduler (the trigger side, on the leader only), the definition sync,
and the engine's node (queue, executors) wired to the Django backends."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from django.db import close_old_connections, connection

from scheduler_app import plugins
from scheduler_app.alerts.delivery import DeliveryLoop
from scheduler_app.backends import bridge
from scheduler_app.backends import cluster as cluster_backend
from scheduler_app.backends.runstore import DjangoRunStore, is_transient
from scheduler_app.conf import app_settings
from scheduler_app.engine import cluster
from scheduler_app.engine.executors import AsyncioExecutor, ProcessExecutor, ThreadExecutor
from scheduler_app.engine.interfaces import Fire
from scheduler_app.engine.node import Node, NodeConfig, Periodic
from scheduler_app.models import ConfigVersion
from scheduler_app.registry import registry

logger = logging.getLogger(__name__)


def resolve_task(name: str) -> Any:
    return registry.get(name).func


class SchedulerService:
    def __init__(self, node_name: str, *, job_store: str | None = None, tags: tuple[str, ...] = ()) -> None:
        self.node_name = node_name
        self.tags = tuple(tags)
        self.member: cluster.Member | None = None
        self._aps_lock = threading.RLock()  # leadership changes vs the definition sync
        self.job_store = job_store or app_settings.JOB_STORE
        self.store = DjangoRunStore()
        # The configuration version the definition sync last read: the claim's job
        # filters follow it without a query of their own.
        self._config_version: int | None = None
        self.store.config_version = self._last_config_version
        self.node: Node | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.sync: bridge.JobSync | None = None
        self._stop_sync = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._sync_beat = time.monotonic()
        self._database_ok_at: float | None = None  # monotonic time of the last good round trip
        self.alerts: DeliveryLoop | None = None
        # This node's clock minus the database's (seconds), measured at each heartbeat.
        self.clock_offset = 0.0
        self._clock_warned = False

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        close_old_connections()
        # The alert rules this node's outcomes are evaluated against follow the version
        # the definition sync reads too (until shutdown).
        from scheduler_app.alerts import evaluate

        evaluate.config_version = self._last_config_version
        timings = cluster_backend.timings()
        capacity = {
            "thread": app_settings.THREAD_POOL_SIZE,
            "asyncio": app_settings.ASYNCIO_CONCURRENCY,
            "process": app_settings.PROCESS_POOL_SIZE,
        }
        self.member = member = cluster.Member(
            registry=cluster_backend.DjangoRegistry(timings.node_dead_after),
            info={
                "name": self.node_name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "tags": self.tags,
                "capacity": capacity,
            },
            timings=timings,
            report=self._report,
            on_lead=self._lead,
            on_follow=self._follow,
            on_fence=self._fence,
            on_state=self._on_beat,
            on_failure=self._member_failed,
        )
        member.join()  # NodeNameTaken when a live node has this name
        self.store.tags = self.tags
        self.store.incarnation = lambda: member.incarnation
        lease = cluster.lease_name()
        self.store.fire_guard = lambda: cluster_backend.holds_lease(lease, member.incarnation, lock=True)
        self.store.live_node_names = lambda: [
            n.name for n in cluster_backend.live_nodes(timings.node_dead_after)
        ]
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
            log_flush_interval=app_settings.RUN_LOG_FLUSH_INTERVAL,
        )
        self._timings = timings
        node = Node(
            cfg,
            self.store,
            {},
            periodic=[
                Periodic("prune", 3600.0, self._prune, last=time.monotonic()),
                Periodic("statistics", 300.0, self.store.refresh_statistics),
                # The backlog past its misfire grace, skipped in one statement twice a second:
                # a claim alone sheds only the few oldest candidates it reads.
                Periodic("shed", 0.5, lambda: self.store.shed_misfired(self.database_now())),
            ],
            is_transient=is_transient,
            reset_connection=_reset_connection,
            clock=self.database_now,
        )
        size = app_settings.RESULT_MAX_BYTES
        log_size = app_settings.MAX_RUN_LOG_BYTES
        node.executors = {
            "thread": ThreadExecutor(
                app_settings.THREAD_POOL_SIZE,
                resolve_task,
                node.outcome,
                size,
                prefetch=3 * app_settings.THREAD_POOL_SIZE,
                log_max_bytes=log_size,
            ),
            "asyncio": AsyncioExecutor(
                app_settings.ASYNCIO_CONCURRENCY,
                app_settings.THREAD_POOL_SIZE,
                resolve_task,
                node.outcome,
                size,
                log_max_bytes=log_size,
            ),
            "process": ProcessExecutor(
                app_settings.PROCESS_POOL_SIZE,
                "scheduler_app.backends.procinit:setup",
                node.outcome,
                size,
                log_max_bytes=log_size,
            ),
        }
        node.executors.update(plugins.build_executors(node.outcome, size))  # isolated + plugins
        self.node = node
        node.start()
        member.tick()  # decide leadership now: a single node leads from its first second
        member.start()
        self._sync_thread = threading.Thread(target=self._sync_loop, name="definition-sync", daemon=True)
        self._sync_thread.start()
        self.alerts = DeliveryLoop(self.node_name)  # any node delivers alerts
        self.alerts.start()
        logger.info(
            "scheduler started",
            extra={
                "node": self.node_name,
                "job_store": self.job_store,
                "jobs": len(self.sync.known) if self.sync else 0,
                "database": connection.vendor,
                "leader": member.is_leader(),
                "tags": ",".join(self.tags),
                "incarnation": member.incarnation,
            },
        )

    # -- cluster callbacks (called from the member loop) --------------------------------

    def _lead(self) -> None:
        """This node took the lease: start the trigger side. A fresh APScheduler whose
        jobs resume from the last fire times recorded in the database (or taken by this
        node and not yet written, after an outage), also when a persistent job store
        holds a later next-run time, so fire times the previous leader did not write are
        computed again (and meet the misfire policy), while those it wrote are not
        enqueued twice. Taking over from an earlier leader, jobs with no fire recorded
        resume from their creation (or trigger change), at most their misfire grace
        back, since that leader may have died before writing their first fire."""
        assert self.node is not None
        with self._aps_lock:
            scheduler = BackgroundScheduler(
                timezone=UTC,
                jobstores={bridge.STORE_ALIAS: bridge.make_job_store(self.job_store)},
                executors={bridge.EXECUTOR_ALIAS: bridge.EnqueueExecutor(self._on_fire)},
            )
            scheduler.start(paused=True)
            refused = dict(self.store.refused_fires)
            assert self.member is not None
            sync = bridge.JobSync(
                scheduler,
                unwritten=self.node.unwritten_fire_times,
                refused=refused,
                catch_up=cluster_backend.took_over(cluster.lease_name(), self.member.incarnation),
            )
            try:
                sync.changed()
                sync.last_digest = sync.digest()
                sync.reconcile(resume=True)
            except Exception:
                scheduler.shutdown(wait=False)
                raise
            scheduler.resume()
            self.scheduler, self.sync = scheduler, sync
            for pk, first in refused.items():  # fired again by this trigger side
                if self.store.refused_fires.get(pk) == first:
                    del self.store.refused_fires[pk]
        logger.info("trigger side started (leader)", extra={"node": self.node_name, "jobs": len(sync.known)})

    def _follow(self) -> None:
        """Lease lost or given up: stop firing at once (the fire gate already refuses,
        since ``is_leader`` is false), then stop APScheduler."""
        with self._aps_lock:
            scheduler, self.scheduler, self.sync = self.scheduler, None, None
        if scheduler is not None and scheduler.running:
            try:
                scheduler.shutdown(wait=False)
            except Exception:
                logger.exception("could not stop APScheduler")
        logger.warning("trigger side stopped (follower)", extra={"node": self.node_name})

    def _on_fire(self, fire: Fire) -> None:
        if self.member is not None and self.member.is_leader() and self.node is not None:
            self.node.submit_fire(fire)
        else:
            logger.info(
                "fire dropped: not the leader", extra={"job_id": fire.job_id, "times": len(fire.run_times)}
            )

    def _fence(self, reason: str) -> None:
        if self.node is not None:
            self.node.self_fence(reason)

    def database_now(self) -> datetime:
        """The database's clock, as this node's clock corrected by the offset measured
        at the last heartbeat."""
        return datetime.now(UTC) - timedelta(seconds=self.clock_offset)

    def _measure_clock(self, offset: float | None) -> None:
        if offset is None:
            return
        self.clock_offset = offset
        off = abs(self.clock_offset) > CLOCK_WARN_SECONDS
        if off and not self._clock_warned:
            logger.warning(
                "this node's clock is %+.1f s off the database's; claims, heartbeats and "
                "leases follow the database's clock, but this node fires by its own when it "
                "leads: keep clocks synchronised (NTP)",
                self.clock_offset,
                extra={"node": self.node_name, "clock_offset": round(self.clock_offset, 3)},
            )
        elif not off and self._clock_warned:
            logger.info("this node's clock agrees with the database's again", extra={"node": self.node_name})
        self._clock_warned = off

    def _on_beat(self, beat: cluster.Beat) -> None:
        self._measure_clock(beat.clock_offset)
        if self.node is None:
            return
        self.node.hold("fenced", False)
        self.node.hold("draining", beat.state == cluster.DRAINING)
        self.node.prefetch = beat.peers == 0

    def _member_failed(self, exc: BaseException) -> None:
        if is_transient(exc):
            logger.error(
                "cluster heartbeat failed; retrying", extra={"node": self.node_name, "error": str(exc)}
            )
        else:
            logger.exception("cluster heartbeat failed", extra={"node": self.node_name})
        _reset_connection()

    def _report(self) -> dict[str, Any]:
        """What the heartbeat writes; also gates claiming on MAX_LOAD and
        MIN_FREE_MEMORY_MB (runs then flow to the nodes with room)."""
        node = self.node
        used = {name: len(ex.running_ids()) for name, ex in (node.executors.items() if node else ())}
        try:
            load: float | None = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:
            load = None
        free = _available_memory_mb()
        max_load, min_free = app_settings.MAX_LOAD, app_settings.MIN_FREE_MEMORY_MB
        overloaded = (max_load is not None and load is not None and load > float(max_load)) or (
            min_free is not None and free is not None and free < float(min_free)
        )
        if node is not None:
            node.hold("overloaded", overloaded)
        return {
            "used": used,
            "load": load,
            "free_memory_mb": free,
            "overloaded": overloaded,
            "clock_offset": round(self.clock_offset, 3),
        }

    def _last_config_version(self) -> int:
        if self._config_version is None:
            self._config_version = ConfigVersion.current()
        return self._config_version

    def is_leader(self) -> bool:
        return self.member is not None and self.member.is_leader()

    def problems(self) -> list[str]:
        found = list(self.node.problems()) if self.node else ["not started"]
        if self.member is not None and not self.member.alive() and self.node is not None:
            found.append("the cluster membership loop died")
        elif self.member is not None and time.monotonic() - self.member.beat_at > 60:
            found.append("the cluster membership loop stalled")
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
        member = self.member
        if member is not None:
            member.may_lead = False
        with self._aps_lock:
            if self.scheduler is not None and self.scheduler.running:
                self.scheduler.shutdown(wait=False)
        if self.node is not None:
            # Once the fires are written, hand the lease on at once (no wait for expiry).
            self.node.shutdown(grace, reason, fires_written=lambda: self._hand_over())
        if member is not None:
            member.close()
        from scheduler_app.alerts import evaluate

        if evaluate.config_version == self._last_config_version:  # nobody else took it over
            evaluate.config_version = ConfigVersion.current
        logger.info(
            "scheduler stopped", extra={"node": self.node_name, **(self.node.stats if self.node else {})}
        )

    def _hand_over(self) -> None:
        member = self.member
        if member is None:
            return
        member.leading = False
        try:
            member.registry.release_lease(cluster.lease_name(), member.incarnation)
        except Exception as exc:
            logger.warning("could not release the leader lease", extra={"error": str(exc)})

    # -- loops ----------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        last_full = time.monotonic()
        failing = False
        while not self._stop_sync.wait(0.25):
            self._sync_beat = time.monotonic()
            try:
                with self._aps_lock:
                    sync = self.sync
                    if sync is None:  # a follower: no trigger side to keep in sync
                        self._config_version = ConfigVersion.current()
                        self._database_ok_at = time.monotonic()
                        failing = False
                        continue
                    due = time.monotonic() - last_full >= app_settings.RECONCILE_INTERVAL
                    changed = sync.changed()
                    self._config_version = sync.version
                    self._database_ok_at = time.monotonic()
                    if changed or due:
                        # Taken before reading the jobs: a change made meanwhile shows
                        # up as a different digest next time.
                        digest = sync.digest()
                        if changed or digest is None or digest != sync.last_digest:
                            sync.reconcile()
                        sync.last_digest = digest
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


#: Connection settings of a scheduler process on PostgreSQL, so that a black-holed
#: connection (no RST: a cut cable, a dropped route) is noticed within seconds instead
#: of TCP's minutes: keepalives probe an idle connection, ``tcp_user_timeout`` bounds
#: unacknowledged writes, and the server bounds statements and lock waits. A query on
#: a dead connection then fails, the loops log it, stop claiming and firing, keep
#: fires and outcomes in memory and retry (see engine.node); nothing exits.
SCHEDULER_CONNECTION_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 8000,
}
SCHEDULER_SERVER_OPTIONS = (
    "-c statement_timeout=60000 -c lock_timeout=10000 -c idle_in_transaction_session_timeout=60000"
)


#: A node whose clock differs from the database's by more than this is warned about.
CLOCK_WARN_SECONDS = 2.0


def _available_memory_mb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def application_name(node: str) -> str:
    """What a node's connections call themselves on PostgreSQL (``pg_stat_activity``
    shows which node holds which connection, lock or long query); the server keeps 63
    bytes of it."""
    return f"scheduler_app node {node}".encode()[:63].decode(errors="ignore")


def harden_connections(node: str | None = None) -> None:
    """Apply :data:`SCHEDULER_CONNECTION_OPTIONS` to the default database (what the
    project set itself wins), and name the connections after ``node``. Call before the
    scheduler's threads connect."""
    from django.db import connections

    db = connections.settings["default"]
    if not db["ENGINE"].endswith("postgresql"):
        return
    options = db.setdefault("OPTIONS", {})
    for key, value in SCHEDULER_CONNECTION_OPTIONS.items():
        options.setdefault(key, value)
    if node:
        options.setdefault("application_name", application_name(node))
    options["options"] = f"{SCHEDULER_SERVER_OPTIONS} {options.get('options', '')}".strip()
    db["CONN_HEALTH_CHECKS"] = True
    connection.close()  # reconnect with them


def _reset_connection() -> None:
    """Drop this thread's database connection after an error, so the next query opens a
    fresh one (the server may have restarted)."""
    try:
        connection.close()
    except Exception:
        pass
