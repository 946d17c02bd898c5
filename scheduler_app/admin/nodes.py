"""``Scheduler › Nodes``: the cluster as the node table sees it. Every staff user may
look; only superusers drain, resume or delete (nodes are shared by all tenants). Deleting
goes through :func:`scheduler_app.services.delete_nodes` (audited, refused for an active
or draining node)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from scheduler_app import display, services
from scheduler_app.admin.base import ReadableTimesMixin
from scheduler_app.backends import cluster as cluster_backend
from scheduler_app.models import Node
from scheduler_app.models.nodes import LIVE_NODE_STATES


@admin.register(Node)
class NodeAdmin(ReadableTimesMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "state",
        "is_leader",
        "tag_list",
        "load_shown",
        "running_runs",
        "heartbeat_shown",
        "clock_shown",
        "host",
        "pid",
        "version",
    ]
    list_filter = ["state"]
    search_fields = ["name", "host"]
    actions = ["drain", "resume", "delete_nodes"]
    readonly_fields = [f.name for f in Node._meta.fields]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Any state: an active or draining node is refused with a message (delete_view,
        # the service), not with a bare 403.
        return bool(request.user.is_superuser)

    def has_drain_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    has_resume_permission = has_drain_permission

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        # Django's would report every selected node as deleted, refused ones included.
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        node = self.get_object(request, object_id)
        if node is not None and node.state in LIVE_NODE_STATES and self.has_delete_permission(request, node):
            result = services.delete_nodes([node], actor=request.user)
            self._report(request, result, _("deleted"))
            return HttpResponseRedirect(reverse("admin:scheduler_app_node_change", args=[node.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Node) -> None:
        result = services.delete_nodes([obj], actor=request.user)
        for node, reason in result.refused:
            self.message_user(request, f"{node.name}: {reason}", messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, services.delete_nodes(list(queryset), actor=request.user), _("deleted"))

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        self._leader = cluster_backend.leader()
        return super().changelist_view(request, extra_context)

    @admin.display(boolean=True, description=_("leader"))
    def is_leader(self, obj: Node) -> bool:
        return obj.name == getattr(self, "_leader", None)

    @admin.display(description=_("tags"))
    def tag_list(self, obj: Node) -> str:
        return ", ".join(obj.tags or ()) or "-"

    @admin.display(description=_("load per CPU"))
    def load_shown(self, obj: Node) -> str:
        return "-" if obj.load is None else f"{obj.load:.2f}"

    @admin.display(description=_("clock offset"), ordering="clock_offset")
    def clock_shown(self, obj: Node) -> str:
        """The node's clock against the database's: a few milliseconds is normal."""
        if obj.clock_offset is None:
            return "-"
        return f"{obj.clock_offset:+.3f} s"

    @admin.display(description=_("running"))
    def running_runs(self, obj: Node) -> int:
        return obj.running

    @admin.display(description=_("last heartbeat"), ordering="heartbeat_at")
    def heartbeat_shown(self, obj: Node) -> str:
        return display.when(obj.heartbeat_at, timezone.get_current_timezone())

    @admin.action(description=_("Drain the selected nodes"), permissions=["drain"])
    def drain(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, services.drain_nodes(list(queryset), actor=request.user), _("draining"))

    @admin.action(description=_("Resume the selected nodes"), permissions=["resume"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, services.resume_nodes(list(queryset), actor=request.user), _("resumed"))

    @admin.action(description=_("Delete the selected stopped or dead nodes"), permissions=["delete"])
    def delete_nodes(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, services.delete_nodes(list(queryset), actor=request.user), _("deleted"))

    def _report(self, request: HttpRequest, result: Any, verb: Any) -> None:
        if result.done:
            self.message_user(request, f"{verb}: {', '.join(n.name for n in result.done)}", messages.SUCCESS)
        for warning in result.warnings:
            self.message_user(request, warning, messages.WARNING)
        for node, reason in result.refused:
            self.message_user(request, f"{node.name}: {reason}", messages.ERROR)
