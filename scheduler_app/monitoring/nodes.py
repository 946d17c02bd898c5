"""Which scheduler nodes are alive: the one seam the health check, the metrics and the
API read the cluster through.

Today there is no table of nodes, so the state is derived from the runs, as
``migratejobs`` does (:func:`scheduler_app.backends.storemigration.live_scheduler_problem`):
a node is seen through the heartbeats of the runs it is running and the runs it
finished lately. An idle node is therefore not seen, its capacity is unknown, and there
is no leader lease yet. This module is replaced by reads of the ``Node`` table and the
leader lease when the cluster branch lands; callers only use :func:`cluster_state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max
from django.utils import timezone

from scheduler_app.conf import app_settings
from scheduler_app.models import JobRun, RunState


@dataclass(frozen=True)
class NodeState:
    name: str
    heartbeat_at: datetime | None
    fresh: bool
    state: str = "active"
    running: int = 0
    capacity: int | None = None  # unknown until nodes register
    tags: tuple[str, ...] = ()
    leader: bool = False


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[NodeState, ...] = field(default_factory=tuple)
    leader: str | None = None
    #: whether this installation has a leader lease to check (not yet)
    has_lease: bool = False
    checked_at: datetime | None = None

    @property
    def alive(self) -> list[NodeState]:
        return [n for n in self.nodes if n.fresh]


def cluster_state(now: datetime | None = None) -> ClusterState:
    """The nodes seen within ``LOST_AFTER`` seconds, with their last sign of life: two
    grouped queries over indexed columns (running runs by heartbeat, runs finished
    lately), whatever the size of the run history."""
    now = now or timezone.now()
    window = timedelta(seconds=float(app_settings.LOST_AFTER))
    seen: dict[str, tuple[datetime | None, int]] = {}
    for name, last, running in (
        JobRun.objects.filter(state=RunState.RUNNING)
        .exclude(node="")
        .order_by()
        .values_list("node")
        .annotate(last=Max("heartbeat_at"), n=Count("id"))
    ):
        seen[name] = (last, running)
    for name, last in (
        JobRun.objects.filter(finished_at__gte=now - window)
        .exclude(node="")
        .order_by()
        .values_list("node")
        .annotate(last=Max("finished_at"))
    ):
        previous, running = seen.get(name, (None, 0))
        seen[name] = (max((t for t in (previous, last) if t is not None), default=None), running)
    nodes = tuple(
        NodeState(
            name=name, heartbeat_at=last, fresh=last is not None and now - last <= window, running=running
        )
        for name, (last, running) in sorted(seen.items())
    )
    return ClusterState(nodes=nodes, checked_at=now)
