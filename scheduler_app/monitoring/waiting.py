"""Why a queued run is not starting, for the faces (admin, API): the reason the claim
recorded (a rate limit, a concurrency key), or, for a run routed by tags, that no live
active node has all of its tags (such runs wait instead of running elsewhere; the claim
of a node without the tags never sees them, so it cannot say so itself)."""

from __future__ import annotations

import threading
import time

from django.utils.translation import gettext_lazy as _

from scheduler_app.engine import waits
from scheduler_app.models import JobRun, NodeState, Routing, RunState

#: :data:`scheduler_app.engine.waits.TEXTS` in the active language, by code
MESSAGES = {
    "key": _("waiting: concurrency key %(key)s (%(running)s of %(limit)s running)"),
    "rate": _("waiting: rate limit %(rate)s of %(scope)s %(name)s reached"),
    "load_nodes": _(
        "deferred: the cluster is overloaded (every live node (%(nodes)s) is above its load or memory limit)"
    ),
    "load_queue": _(
        "deferred: the cluster is overloaded (more than %(bound)s due runs queued for %(slots)s slots)"
    ),
    "tags": _("waiting for a node with tags %(tags)s"),
}
#: the scopes a rate limit counts in ("rate" reasons)
SCOPES = {"job": _("job"), "group": _("group"), "tenant": _("tenant")}

#: How long the live nodes' tags are reused: the faces show many runs per request.
TTL_SECONDS = 2.0

_lock = threading.Lock()
_cached: tuple[float, tuple[frozenset[str], ...]] = (float("-inf"), ())


def live_tag_sets() -> tuple[frozenset[str], ...]:
    """The tags of each live active node (one query, reused for ``TTL_SECONDS``)."""
    global _cached
    from scheduler_app.backends import cluster as cluster_backend

    with _lock:
        at, sets = _cached
        if time.monotonic() - at < TTL_SECONDS:
            return sets
    nodes = cluster_backend.live_nodes()
    sets = tuple(frozenset(n.tags or ()) for n in nodes if n.state == NodeState.ACTIVE)
    with _lock:
        _cached = (time.monotonic(), sets)
    return sets


def forget() -> None:
    global _cached
    with _lock:
        _cached = (float("-inf"), ())


def wait_reason(run: JobRun) -> str:
    """The reason ``run`` waits, or "" (not queued, or nothing holds it back): the
    stable English text of :mod:`scheduler_app.engine.waits` (the API's
    ``wait_reason``, the same in every language; :func:`wait_reason_display` is the
    one to show a person)."""
    if run.wait_reason or run.state != RunState.QUEUED:
        return run.wait_reason if run.state == RunState.QUEUED else ""
    job = run.job
    if job.routing != Routing.TAGS or run.target_node:
        return ""
    wanted = frozenset(t for t in (job.routing_tags or ()) if isinstance(t, str))
    if not wanted or any(wanted <= tags for tags in live_tag_sets()):
        return ""
    return waits.text("tags", tags=", ".join(sorted(wanted)))


def translate(stored: str) -> str:
    """A stored reason in the active language (a text of no known form as it is)."""
    wait = waits.parse(stored) if stored else None
    if wait is None:
        return stored
    params = dict(wait.params)
    if wait.code == "rate" and params.get("scope") in SCOPES:
        params["scope"] = str(SCOPES[params["scope"]])
    return str(MESSAGES[wait.code]) % params


def wait_reason_display(run: JobRun) -> str:
    """:func:`wait_reason` in the active language."""
    return translate(wait_reason(run))
