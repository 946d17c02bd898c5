"""``Scheduler › Nodes``: the cluster as the node table sees it. Every staff user may
look; only superusers drain or resume (nodes are shared by all tenants)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from scheduler_app import display, services
from scheduler_app.admin.base import ReadableTimesMixin
from scheduler_app.backends import cluster as cluster_backend
from scheduler_app.models import Node


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
    actions = ["drain", "resume"]
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
        return bool(request.user.is_superuser and obj is not None and obj.state in ("stopped", "dead"))

    def has_drain_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    has_resume_permission = has_drain_permission

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

    def _report(self, request: HttpRequest, result: Any, verb: Any) -> None:
        if result.done:
            self.message_user(request, f"{verb}: {', '.join(n.name for n in result.done)}", messages.SUCCESS)
        for warning in result.warnings:
            self.message_user(request, warning, messages.WARNING)
        for node, reason in result.refused:
            self.message_user(request, f"{node.name}: {reason}", messages.ERROR)
