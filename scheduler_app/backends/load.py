"""Is the cluster overloaded? Judged from the shared tables, so every node (the leader
firing, a node claiming) reaches the same answer: overloaded while every live active
node reports itself overloaded (load per CPU above ``MAX_LOAD`` or memory below
``MIN_FREE_MEMORY_MB``), or while more due runs are queued than ``LOAD_QUEUE_FACTOR`` ×
the live nodes' slots. Two queries, at most every ``LOAD_CHECK_INTERVAL`` seconds per
process. Jobs whose load policy is ``defer`` or ``shed`` then hold back or skip their
scheduled runs (see the run store), so high-priority jobs keep their schedule, and all
returns to normal by itself when the load falls."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from scheduler_app.conf import app_settings
from scheduler_app.models import JobRun, Node, NodeState, RunState


@dataclass(frozen=True)
class LoadState:
    overloaded: bool
    why: str = ""  # for the skipped run's error and the wait reason
    due: int = 0
    slots: int = 0


class LoadJudge:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = LoadState(False)
        self._at = float("-inf")

    def state(self, now: datetime) -> LoadState:
        with self._lock:
            if time.monotonic() - self._at < float(app_settings.LOAD_CHECK_INTERVAL):
                return self._state
        state = judge(now)
        with self._lock:
            self._state, self._at = state, time.monotonic()
        return state

    def forget(self) -> None:
        with self._lock:
            self._at = float("-inf")


def judge(now: datetime) -> LoadState:
    from scheduler_app.backends import cluster as cluster_backend

    nodes = [
        n
        for n in Node.objects.live(cluster_backend.timings().node_dead_after).only(
            "state", "overloaded", "capacity"
        )
        if n.state == NodeState.ACTIVE
    ]
    if not nodes:
        return LoadState(False)
    if all(n.overloaded for n in nodes):
        return LoadState(True, f"every live node ({len(nodes)}) is above its load or memory limit")
    slots = sum(int(v) for n in nodes for v in (n.capacity or {}).values() if isinstance(v, int | float))
    if slots <= 0:
        return LoadState(False)
    bound = float(app_settings.LOAD_QUEUE_FACTOR) * slots
    due = JobRun.objects.filter(state=RunState.QUEUED, not_before__lte=now)[: int(bound) + 1].count()
    if due > bound:
        return LoadState(
            True, f"more than {int(bound)} due runs queued for {slots} slots", due=due, slots=slots
        )
    return LoadState(False, due=due, slots=slots)
