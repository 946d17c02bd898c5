"""Which scheduler nodes are alive: the one seam the health check, the metrics and the
API read the cluster through. Read from the ``Node`` table (registration, heartbeat,
capacity, state) and the leader ``Lease``; judged by the database's clock. Callers only
use :func:`cluster_state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from scheduler_app.models import Node


@dataclass(frozen=True)
class NodeState:
    name: str
    heartbeat_at: datetime | None
    fresh: bool
    state: str = "active"
    running: int = 0
    capacity: int | None = None
    tags: tuple[str, ...] = ()
    leader: bool = False
    load: float | None = None
    clock_offset: float | None = None  # the node's clock minus the database's (s)


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[NodeState, ...] = field(default_factory=tuple)
    leader: str | None = None
    #: whether this installation has a leader lease to check
    has_lease: bool = True
    checked_at: datetime | None = None

    @property
    def alive(self) -> list[NodeState]:
        return [n for n in self.nodes if n.fresh]


def cluster_state(now: datetime | None = None) -> ClusterState:
    """Every registered node that is live or died lately (not long-stopped ones), with
    whether it is fresh (active or draining, heartbeat within NODE_DEAD_AFTER by the
    database's clock) and which one leads: three small indexed queries."""
    from scheduler_app.backends import cluster as cluster_backend

    now = now or timezone.now()
    dead_after = cluster_backend.timings().node_dead_after
    fresh = set(Node.objects.live(dead_after).values_list("pk", flat=True))
    leader = cluster_backend.leader()
    nodes = tuple(
        NodeState(
            name=n.name,
            heartbeat_at=n.heartbeat_at,
            fresh=n.pk in fresh,
            state=n.state,
            running=n.running,
            capacity=sum(int(v) for v in (n.capacity or {}).values()) or None,
            tags=tuple(n.tags or ()),
            leader=n.name == leader,
            load=n.load,
            clock_offset=n.clock_offset,
        )
        for n in Node.objects.exclude(state="stopped").order_by("name")[:1000]
    )
    return ClusterState(nodes=nodes, leader=leader if leader else None, checked_at=now)
