"""Cluster operations: draining, resuming and deleting nodes.

Nodes are cluster-wide, not a tenant's: every node claims every tenant's runs, and the
leader fires every tenant's triggers. Draining one takes capacity (and perhaps the
leader lease) away from all tenants at once, so a tenant admin, whose rights end at their
tenant, may not do it; only superusers (or the system: ``actor=None``, a shell operator)
may change nodes. Tenant members still see the nodes (read-only)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from scheduler_app import audit
from scheduler_app.models import Node, NodeState
from scheduler_app.models.nodes import LIVE_NODE_STATES
from scheduler_app.services.bulk import CONFLICT, FORBIDDEN, NOT_FOUND, BulkResult


@dataclass
class NodeResult(BulkResult):
    warnings: list[str] = field(default_factory=list)


#: Why a non-superuser is refused (the API's 403 body, the admin's and jobctl's report).
NOT_ALLOWED = gettext_lazy(
    "only superusers may drain or resume nodes: nodes are shared by every tenant "
    "(each one runs all tenants' jobs), so draining one affects every tenant"
)


#: Why a non-superuser may not delete a node.
NOT_ALLOWED_DELETE = gettext_lazy("only superusers may delete nodes: nodes are shared by every tenant")


def _may_manage(actor: Any) -> bool:
    return actor is None or bool(getattr(actor, "is_superuser", False))


def drain_nodes(nodes: Iterable[Node], *, actor: Any = None) -> NodeResult:
    """A draining node finishes what it runs, claims nothing new and gives up the
    leader lease. Draining the last active node is allowed (``warnings`` says so):
    queued runs then wait until a node is resumed or started."""
    return _set_state(nodes, NodeState.DRAINING, "drain", actor)


def resume_nodes(nodes: Iterable[Node], *, actor: Any = None) -> NodeResult:
    return _set_state(nodes, NodeState.ACTIVE, "resume", actor)


def _set_state(nodes: Iterable[Node], state: str, operation: str, actor: Any) -> NodeResult:
    result = NodeResult()
    for node in nodes:
        if not _may_manage(actor):
            result.refuse(node, str(NOT_ALLOWED), FORBIDDEN)
            continue
        with transaction.atomic():
            live_from = NodeState.ACTIVE if state == NodeState.DRAINING else NodeState.DRAINING
            if not Node.objects.filter(pk=node.pk, state__in=[live_from, state]).update(state=state):
                result.refuse(node, _("the node is %(state)s, not running") % {"state": node.state}, CONFLICT)
                continue
            node.state = state
            audit.record(node, operation, actor=actor)
        result.done.append(node)
    if state == NodeState.DRAINING and result.done:
        from scheduler_app.backends import cluster as cluster_backend

        if not any(n.state == NodeState.ACTIVE for n in cluster_backend.live_nodes()):
            result.warnings.append(
                _("no active node is left: queued runs wait until a node is resumed or started")
            )
    return result


def delete_nodes(nodes: Iterable[Node], *, actor: Any = None) -> NodeResult:
    """Delete the rows of stopped or dead nodes (a node that will not come back), each
    with an audit entry naming the actor. An active or draining node is refused: it
    still runs or may run runs, and would register itself again at its next heartbeat;
    drain it and stop its scheduler first. The state is read under a row lock, so a node
    that came back to life meanwhile is not deleted."""
    result = NodeResult()
    for node in nodes:
        if not _may_manage(actor):
            result.refuse(node, str(NOT_ALLOWED_DELETE), FORBIDDEN)
            continue
        with transaction.atomic():
            current = Node.objects.select_for_update().filter(pk=node.pk).first()
            if current is None:
                result.refuse(node, _("the node is already deleted"), NOT_FOUND)
                continue
            if current.state in LIVE_NODE_STATES:
                result.refuse(
                    node,
                    _(
                        "the node is %(state)s: only a stopped or dead node may be deleted "
                        "(drain it and stop its scheduler first)"
                    )
                    % {"state": current.get_state_display()},
                    CONFLICT,
                )
                continue
            audit.record(
                current,
                "delete",
                actor=actor,
                node=current.name,
                host=current.host,
                state=current.state,
                heartbeat_at=current.heartbeat_at.isoformat(),
            )
            current.delete()
        result.done.append(node)
    return result
