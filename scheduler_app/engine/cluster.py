"""Cluster rules as pure functions and one loop: node tags, routing, timings, and the
member loop that keeps a node's registration, heartbeat and leader lease.

Pure Python: the registry (the ``Node`` and ``Lease`` rows) is reached only through
:class:`Registry`; ``scheduler_app.backends.cluster`` implements it on the Django ORM.

Every time judgement (is a node dead, has a lease expired) is made by the *database's*
clock inside the statement that acts on it, so a node whose clock is off cannot steal a
lease or declare a live node dead. The only local clock used is the monotonic one, to
stop firing *before* the database would let another node take over.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

ACTIVE = "active"
DRAINING = "draining"
STOPPED = "stopped"
DEAD = "dead"
LIVE_STATES = (ACTIVE, DRAINING)

#: The trigger side's lease. One shard today; an installation that needs several
#: leaders splits jobs by :func:`shard_of` and takes one lease per shard.
TRIGGER_LEASE = "triggers"


#: A follower tries the lease this long after it expires (the database's clock moves on
#: while the answer travels), and never sooner than LEASE_RETRY_MIN from its last try.
LEASE_RETRY_SLACK = 0.05
LEASE_RETRY_MIN = 0.2


class ClusterError(ValueError):
    """Bad cluster input (tags, timings), with a message naming the field."""


def lease_name(shard: int = 0) -> str:
    return f"{TRIGGER_LEASE}/{shard}"


def shard_of(job_id: int, shards: int = 1) -> int:
    """Which trigger shard fires ``job_id`` (stable, so a lease owns a fixed set)."""
    return job_id % max(shards, 1)


def parse_tags(value: str | Iterable[str] | None, where: str = "tags") -> tuple[str, ...]:
    """Tags from ``"gpu,eu"`` or a list; sorted, unique, each validated."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    tags = []
    for item in items:
        if not isinstance(item, str):
            raise ClusterError(f"{where}: {item!r} is not a string")
        tag = item.strip()
        if not tag:
            continue
        if not TAG_RE.match(tag):
            raise ClusterError(
                f"{where}: {tag!r} is not a valid tag (1-64 characters: letters, digits, '-', '_', '.', "
                "starting with a letter or digit)"
            )
        tags.append(tag)
    return tuple(sorted(set(tags)))


def tags_match(required: Iterable[str], node_tags: Iterable[str]) -> bool:
    """A node may run a job routed by tags when it has *all* of the job's tags."""
    return set(required) <= set(node_tags)


@dataclass(frozen=True)
class Timings:
    heartbeat_interval: float = 2.0
    self_fence_after: float = 10.0
    node_dead_after: float = 15.0
    leader_lease: float = 10.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "self_fence_after", "node_dead_after", "leader_lease"):
            if not getattr(self, name) > 0:
                raise ClusterError(f"{name.upper()}: must be a positive number of seconds")
        if not self.heartbeat_interval < self.self_fence_after < self.node_dead_after:
            raise ClusterError(
                "HEARTBEAT_INTERVAL < SELF_FENCE_AFTER < NODE_DEAD_AFTER must hold "
                f"(got {self.heartbeat_interval:g} < {self.self_fence_after:g} < {self.node_dead_after:g}): "
                "a node must stop its runs before others may declare it dead"
            )
        if self.leader_lease <= self.heartbeat_interval:
            raise ClusterError(
                f"LEADER_LEASE ({self.leader_lease:g} s) must be longer than HEARTBEAT_INTERVAL "
                f"({self.heartbeat_interval:g} s): the lease is renewed by the heartbeat"
            )

    @property
    def renew_every(self) -> float:
        return min(self.heartbeat_interval, self.leader_lease / 3)


class NodeNameTaken(Exception):
    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"a live node is already called {name!r} ({holder}); choose another --node name")
        self.name = name


@dataclass(frozen=True)
class Beat:
    """What the registry answered to a heartbeat."""

    state: str | None  # active | draining; None: this incarnation is no longer registered (declared dead)
    peers: int = 0  # other live nodes
    #: this node's clock minus the database's, in seconds (None: not measured)
    clock_offset: float | None = None


class Registry(Protocol):
    """The node table and the leases. Rules an implementation must keep:

    * ``register`` refuses a name held by a live node (heartbeat within
      ``node_dead_after`` by the database's clock) and returns a new incarnation id.
    * ``beat`` sets the heartbeat to the database's ``now()`` only for this
      incarnation while it is live; it answers ``Beat(None)`` once the node has been
      declared dead (its runs are lost by then: the node must fence itself).
    * ``hold_lease`` renews the lease held by this incarnation, or takes it when it has
      expired by the database's clock; True when this incarnation holds it for
      ``seconds`` from the statement's time. A renewal never waits for the holder's own
      writes of fires; a takeover never completes while a write of fires that checked
      the lease under the previous holder is still uncommitted (it waits, briefly, or
      answers False and is tried again at the next heartbeat).
    * ``judge_dead`` declares nodes dead whose heartbeat is older than
      ``node_dead_after`` (database clock) and fails over their runs.
    * ``lease_expires_in`` (optional) says in how many seconds lease ``name`` expires by
      the database's clock (None: no lease row), so a follower tries to take it at
      that moment rather than at its next heartbeat.
    """

    def register(self, info: Mapping[str, Any]) -> str: ...

    def beat(self, incarnation: str, report: Mapping[str, Any]) -> Beat: ...

    def hold_lease(self, name: str, incarnation: str, seconds: float) -> bool: ...

    def release_lease(self, name: str, incarnation: str) -> None: ...

    def judge_dead(self, node_dead_after: float) -> list[str]: ...

    def stopped(self, incarnation: str) -> None: ...


@dataclass
class Member:
    """One node's membership: heartbeat, lease and self-fencing, in one loop thread.

    Callbacks: ``on_lead()`` / ``on_follow()`` when leadership changes (``on_follow`` is
    called the moment the local lease deadline passes, before the database lets anyone
    else take it); ``on_fence(reason)`` when the node could not beat for
    ``self_fence_after`` seconds or was declared dead; ``on_state(state)`` with the
    node's registered state after each beat (draining is set by operators).
    """

    registry: Registry
    info: Mapping[str, Any]
    timings: Timings
    report: Callable[[], Mapping[str, Any]]
    on_lead: Callable[[], None]
    on_follow: Callable[[], None]
    on_fence: Callable[[str], None]
    on_state: Callable[[Beat], None] = lambda beat: None
    on_failure: Callable[[BaseException], None] = lambda exc: None
    may_lead: bool = True
    clock: Callable[[], float] = time.monotonic
    incarnation: str = ""
    leading: bool = False
    state: str = ACTIVE
    lease_until: float = float("-inf")
    last_beat_ok: float = field(default=0.0)
    fenced: bool = False
    #: other live nodes at the last heartbeat written: with none, nobody can take this
    #: node's runs over while it is cut off, so it does not fence itself (a lone node
    #: riding out a database outage keeps its runs and records them afterwards).
    peers: int = 0
    beat_at: float = field(default=0.0)  # monotonic time of the last loop pass (liveness)
    #: monotonic time at which a follower tries the lease again, before its next
    #: heartbeat: just after the holder's lease expires (None: at the next heartbeat)
    lease_retry_at: float | None = None
    _closed: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def join(self) -> str:
        self.incarnation = self.registry.register(self.info)
        self.last_beat_ok = self.clock()
        return self.incarnation

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="node-cluster", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def is_leader(self) -> bool:
        """True only while the lease is held and its local deadline has not passed."""
        return self.leading and self.clock() < self.lease_until

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._step_down()
        try:
            self.registry.release_lease(lease_name(), self.incarnation)
            self.registry.stopped(self.incarnation)
        except Exception as exc:
            logger.warning("could not mark the node stopped", extra={"error": str(exc)})

    # -- loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        next_beat = 0.0
        while not self._closed.is_set():
            now = self.clock()
            self.beat_at = now
            retry = self.lease_retry_at
            if now >= next_beat or (retry is not None and now >= retry):
                self.lease_retry_at = None  # a failing tick must not make it retry at once
                next_beat = now + self.timings.renew_every
                self.tick()
            self.check_deadlines()
            self._closed.wait(0.05)

    def tick(self) -> None:
        """One heartbeat: beat, keep or seek the lease, judge dead nodes."""
        started = self.clock()
        try:
            beat = self.registry.beat(self.incarnation, self.report())
            if beat.state is None:
                self._declared_dead()
                return
            self.last_beat_ok = started
            self.peers = beat.peers
            if self.fenced:
                logger.warning(
                    "heartbeat written again; claiming resumes", extra={"node": self.info.get("name")}
                )
                self.fenced = False
            if beat.state != self.state:
                logger.info("node state changed", extra={"node": self.info.get("name"), "state": beat.state})
            self.state = beat.state
            self.on_state(beat)
            want = self.may_lead and beat.state == ACTIVE
            self.lease_retry_at = None
            if want:
                held = self.registry.hold_lease(lease_name(), self.incarnation, self.timings.leader_lease)
                if held:
                    if self.leading and self.clock() >= self.lease_until:
                        # The renewal ended past the local deadline (a slow or hung
                        # statement): the fire gate refused fires meanwhile, and the
                        # trigger side has moved past them. Restart it, so it resumes
                        # from the fire times recorded in the database.
                        self._step_down("the lease was renewed after its local deadline")
                    # Counted from before the statement was sent: the database's expiry
                    # is at least this late, so we stop firing first.
                    self.lease_until = started + self.timings.leader_lease
                    if not self.leading:
                        self.leading = True
                        logger.info("this node now leads", extra={"node": self.info.get("name")})
                        try:
                            self.on_lead()
                        except Exception:
                            self._step_down("could not start the trigger side")
                            self.registry.release_lease(lease_name(), self.incarnation)
                            raise
                else:
                    self._retry_lease_when_it_expires()
                    if self.leading:
                        self._step_down("another node holds the lease")
            elif self.leading:
                self._step_down(f"node is {beat.state}")
                self.registry.release_lease(lease_name(), self.incarnation)
            dead = self.registry.judge_dead(self.timings.node_dead_after)
            if dead:
                logger.warning("nodes declared dead", extra={"nodes": ",".join(dead)})
        except Exception as exc:
            self.on_failure(exc)

    def _retry_lease_when_it_expires(self) -> None:
        """Another node holds the lease: try again the moment it expires (by the
        database's clock, measured now), not up to a heartbeat later, so a dead leader
        is replaced within ``LEADER_LEASE`` of its last renewal. Never sooner than
        ``LEASE_RETRY_MIN`` from now (a takeover that had to give up, say), never later
        than the next heartbeat."""
        expires_in = getattr(self.registry, "lease_expires_in", None)
        if expires_in is None:
            return
        seconds = expires_in(lease_name())
        if seconds is None or seconds >= self.timings.renew_every:
            return
        # From now, when the expiry was measured (the beat and a takeover that waited on
        # a lock may have taken a while since the tick started).
        self.lease_retry_at = self.clock() + max(seconds + LEASE_RETRY_SLACK, LEASE_RETRY_MIN)

    def check_deadlines(self) -> None:
        now = self.clock()
        if self.leading and now >= self.lease_until:
            self._step_down("could not renew the leader lease in time")
        if not self.fenced and self.peers and now - self.last_beat_ok >= self.timings.self_fence_after:
            self.fenced = True
            reason = f"no heartbeat written for {now - self.last_beat_ok:.1f} s (self-fence)"
            logger.error("self-fencing: stopping in-flight runs", extra={"node": self.info.get("name")})
            self.on_fence(reason)

    def _step_down(self, why: str = "") -> None:
        if self.leading:
            self.leading = False
            logger.warning("this node stopped leading", extra={"node": self.info.get("name"), "why": why})
            self.on_follow()

    def _declared_dead(self) -> None:
        """Others declared us dead (and failed our runs over): stop everything we still
        run, then come back as a new incarnation, a follower."""
        logger.error(
            "this node was declared dead by the cluster; rejoining", extra={"node": self.info.get("name")}
        )
        self._step_down("declared dead")
        if not self.fenced:
            self.fenced = True
            self.on_fence("the node was declared dead by the cluster")
        self.incarnation = self.registry.register(self.info)
        self.last_beat_ok = self.clock()
        self.fenced = False
