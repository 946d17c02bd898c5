"""The engine's cluster :class:`~scheduler_app.engine.cluster.Registry` on the Django
ORM: ``Node`` rows and leader ``Lease`` rows, judged by the database's clock.

Why a lease *row* and not a PostgreSQL advisory lock: a session-level advisory lock is
tied to one connection, so a black-holed connection keeps the lock on the server for as
long as the server thinks the session lives (minutes, until TCP gives up), and the
lock cannot say *until when* it is valid; a row with an expiry set by the database's
clock can be taken over after exactly ``LEADER_LEASE`` seconds, is visible to operators
(admin, API), works on SQLite too, and splits into one row per shard of jobs.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from scheduler_app import __version__
from scheduler_app.conf import app_settings
from scheduler_app.engine import cluster
from scheduler_app.models import Lease, Node, NodeState
from scheduler_app.models.nodes import LIVE_NODE_STATES, db_now_minus, db_now_plus

logger = logging.getLogger(__name__)

#: Seconds a takeover waits for the last holder's fire-writing transactions to end
#: before it gives up until the next heartbeat.
TAKEOVER_LOCK_WAIT = 1.0
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's lock_timeout


def timings() -> cluster.Timings:
    dead = app_settings.NODE_DEAD_AFTER
    dead = float(app_settings.LOST_AFTER if dead is None else dead)
    fence = app_settings.SELF_FENCE_AFTER
    fence = dead * 2 / 3 if fence is None else float(fence)
    return cluster.Timings(
        heartbeat_interval=float(app_settings.HEARTBEAT_INTERVAL),
        self_fence_after=fence,
        node_dead_after=dead,
        leader_lease=float(app_settings.LEADER_LEASE),
    )


def node_tags(extra: str | None = None) -> tuple[str, ...]:
    """Tags from SCHEDULER_APP['NODE_TAGS'] and ``--tags``, validated."""
    configured = cluster.parse_tags(app_settings.NODE_TAGS or (), "SCHEDULER_APP['NODE_TAGS']")
    given = cluster.parse_tags(extra, "--tags") if extra else ()
    return tuple(sorted(set(configured) | set(given)))


def db_now() -> datetime:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


def live_nodes(dead_after: float | None = None) -> list[Node]:
    return list(Node.objects.live(timings().node_dead_after if dead_after is None else dead_after))


def _same_host_process_gone(node: Node, host: str) -> bool:
    """True when ``node`` was registered by a process of this host that has exited."""
    if node.host != host or not node.pid or node.pid == os.getpid():
        return False
    try:
        os.kill(node.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class DjangoRegistry:
    def __init__(self, dead_after: float) -> None:
        self.dead_after = dead_after

    def register(self, info: Mapping[str, Any]) -> str:
        name = str(info["name"])
        incarnation = uuid.uuid4().hex
        fields = {
            "host": info.get("host") or socket.gethostname(),
            "pid": info.get("pid") or os.getpid(),
            "version": __version__,
            "incarnation": incarnation,
            "tags": list(info.get("tags") or ()),
            "capacity": dict(info.get("capacity") or {}),
            "used": {},
            "state": NodeState.ACTIVE,
            "started_at": Now(),
            "heartbeat_at": Now(),
            "stopped_at": None,
        }
        try:
            with transaction.atomic():
                taken = (
                    Node.objects.select_for_update()
                    .live(self.dead_after)
                    .filter(name=name)
                    .exclude(incarnation=info.get("previous", ""))
                    .first()
                )
                if taken is not None and _same_host_process_gone(taken, fields["host"]):
                    # Restarted after a crash (kill -9, OOM) before the heartbeat aged:
                    # the name's holder was a process of this machine that no longer
                    # exists. Take the name over; recovery deals with its runs.
                    logger.warning(
                        "replacing the registration of a process that is gone",
                        extra={"node": name, "pid": taken.pid, "host": taken.host},
                    )
                    taken = None
                if taken is not None:
                    age = (db_now() - taken.heartbeat_at).total_seconds()
                    raise cluster.NodeNameTaken(
                        name, f"host {taken.host}, pid {taken.pid}, last heartbeat {age:.1f} s ago"
                    )
                if not Node.objects.filter(name=name).update(**fields):
                    Node.objects.create(name=name, **fields)
        except IntegrityError:  # registered at the same moment by another process
            raise cluster.NodeNameTaken(name, "registered at the same moment") from None
        logger.info(
            "node registered",
            extra={"node": name, "incarnation": incarnation, "tags": ",".join(fields["tags"])},
        )
        return incarnation

    def beat(self, incarnation: str, report: Mapping[str, Any]) -> cluster.Beat:
        changed = Node.objects.filter(incarnation=incarnation, state__in=LIVE_NODE_STATES).update(
            heartbeat_at=Now(),
            **{
                k: v
                for k, v in report.items()
                if k in ("used", "load", "free_memory_mb", "overloaded", "capacity", "clock_offset")
            },
        )
        if not changed:
            return cluster.Beat(None)
        sent = timezone.now()
        state, db_time = (
            Node.objects.filter(incarnation=incarnation)
            .annotate(db_time=Now())
            .values_list("state", "db_time")
            .first()
        ) or (None, None)
        answered = timezone.now()
        # Our clock minus the database's, taken at the middle of the round trip.
        offset = None if db_time is None else ((sent + (answered - sent) / 2) - db_time).total_seconds()
        peers = Node.objects.live(self.dead_after).exclude(incarnation=incarnation).count()
        return cluster.Beat(state, peers, offset)

    def hold_lease(self, name: str, incarnation: str, seconds: float) -> bool:
        holder = Node.objects.filter(incarnation=incarnation).values_list("name", flat=True).first() or ""
        # The renewal writes the expiry only: an UPDATE of no key column takes FOR NO KEY
        # UPDATE, which does not conflict with the fire guard's FOR KEY SHARE, so it
        # never waits for a batch of fires being written (see holds_lease).
        if Lease.objects.filter(name=name, incarnation=incarnation).update(expires_at=db_now_plus(seconds)):
            return True
        if self._take_over(name, holder, incarnation, seconds):
            return True
        if Lease.objects.filter(name=name).exists():
            return False
        try:
            with transaction.atomic():
                Lease.objects.create(
                    name=name,
                    holder=holder,
                    incarnation=incarnation,
                    acquired_at=Now(),
                    expires_at=db_now_plus(seconds),
                    term=1,
                )
        except IntegrityError:
            return False
        return True

    def lease_expires_in(self, name: str) -> float | None:
        """Seconds until lease ``name`` expires by the database's clock (negative: it has;
        None: no lease row yet)."""
        found = Lease.objects.filter(name=name).annotate(now=Now()).values_list("expires_at", "now").first()
        if found is None:
            return None
        expires_at, now = found
        return (expires_at - now).total_seconds()

    @staticmethod
    def _take_over(name: str, holder: str, incarnation: str, seconds: float) -> bool:
        """Take an expired lease. The row is locked FOR UPDATE first, which conflicts
        with the FOR KEY SHARE of every fire guard: the takeover waits until the
        transactions writing fires under the last holder's lease have ended, so no fire
        of the old leader commits after the new one started (it resumes from what it
        can see). It waits at most ``TAKEOVER_LOCK_WAIT`` seconds, then gives up until
        the next heartbeat (the membership loop must not hang on a stalled leader's
        transaction; that one loses its session after ``LEADER_LEASE`` idle, see
        holds_lease)."""
        postgres = connection.vendor == "postgresql"
        try:
            with transaction.atomic():
                if postgres:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT set_config('lock_timeout', %s, true)",
                            [f"{int(TAKEOVER_LOCK_WAIT * 1000)}ms"],
                        )
                expired = Lease.objects.select_for_update().filter(name=name, expires_at__lt=Now())
                if not list(expired.values_list("pk", flat=True)):
                    return False
                Lease.objects.filter(name=name).update(
                    holder=holder,
                    incarnation=incarnation,
                    acquired_at=Now(),
                    expires_at=db_now_plus(seconds),
                    term=F("term") + 1,
                )
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            logger.info(
                "lease takeover waits for the last holder's fires being written",
                extra={"lease": name},
            )
            return False
        return True

    def release_lease(self, name: str, incarnation: str) -> None:
        Lease.objects.filter(name=name, incarnation=incarnation).update(expires_at=db_now_minus(0.001))

    def stopped(self, incarnation: str) -> None:
        Node.objects.filter(incarnation=incarnation).update(
            state=NodeState.STOPPED, stopped_at=Now(), used={}
        )

    def judge_dead(self, node_dead_after: float) -> list[str]:
        """Declare overdue nodes dead, then fail their work over: running runs become
        lost (retried per policy), broadcast copies for them are cancelled (node gone)."""
        dead = []
        with transaction.atomic():
            for node in Node.objects.select_for_update(skip_locked=True).overdue(node_dead_after):
                Node.objects.filter(pk=node.pk).update(state=NodeState.DEAD)
                dead.append(node.name)
            if dead:
                # node_down alerts commit with the state change, or not at all.
                from scheduler_app.alerts.evaluate import on_nodes_dead

                on_nodes_dead(dead)
        if dead:
            from scheduler_app.backends.runstore import DjangoRunStore

            DjangoRunStore().fail_over(dead, timezone.now())
        return dead


def holds_lease(name: str, incarnation: str, lock: bool = False) -> bool:
    """Whether ``incarnation`` holds lease ``name`` now (database clock).

    With ``lock`` (the fire guard, called in the transaction that writes fires), the
    row is locked FOR KEY SHARE until the end of the transaction. That conflicts only
    with FOR UPDATE, which a takeover takes (``DjangoRegistry._take_over``), so nobody
    can take the lease over between this check and the commit of the fires it lets
    through; and it does not conflict with the holder's renewal (an UPDATE of the
    expiry alone), so a slow batch never makes the leader lose its lease. The check may
    pass just before the expiry and the batch commit after it: no other node leads in
    between, and the next one sees those fires. On PostgreSQL the transaction's
    session is also ended by the server after ``LEADER_LEASE`` seconds idle, so a
    frozen or cut-off leader holds the lease row no longer than that."""
    if lock and connection.vendor == "postgresql":
        idle_ms = int(max(1.0, float(app_settings.LEADER_LEASE)) * 1000)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true) "
                f"FROM {connection.ops.quote_name(Lease._meta.db_table)} "
                "WHERE name = %s AND incarnation = %s AND expires_at > statement_timestamp() "
                "FOR KEY SHARE",
                [f"{idle_ms}ms", name, incarnation],
            )
            return cursor.fetchone() is not None
    qs = Lease.objects.filter(name=name, incarnation=incarnation, expires_at__gt=Now())
    return bool(list(qs.values_list("pk", flat=True)))


def took_over(name: str, incarnation: str) -> bool:
    """Whether ``incarnation`` holds lease ``name`` in a later term than the first: some
    leader (another node, or an earlier life of this one) held it before, and may have
    died before writing fires it had taken. False for the first leader of an
    installation."""
    term = Lease.objects.filter(name=name, incarnation=incarnation).values_list("term", flat=True).first()
    return bool(term and term > 1)


def leader(name: str | None = None) -> str | None:
    row = (
        Lease.objects.filter(name=name or cluster.lease_name(), expires_at__gt=Now())
        .values_list("holder", flat=True)
        .first()
    )
    return row or None


__all__ = ["DjangoRegistry", "holds_lease", "leader", "live_nodes", "node_tags", "timings", "took_over"]
