"""Scheduler nodes (read by everyone with access; drain and resume for superusers, as
``jobctl node drain``) and alert channels and rules (tenant-scoped CRUD; a channel's
secret is write-only: the API shows only whether one is stored and its fingerprint).
Every write goes through :mod:`scheduler_app.services`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from scheduler_app import services
from scheduler_app.api import errors, schemas
from scheduler_app.api.base import ApiViewSet, aware_time, doc, whole_number
from scheduler_app.api.jobs import body_object
from scheduler_app.api.representations import iso
from scheduler_app.api.resources import TenantScopedWrites, _text
from scheduler_app.models import AlertChannel, AlertRule, Job, JobGroup, Node
from scheduler_app.monitoring import dashboard, stats
from scheduler_app.services import nodes as nodes_service
from scheduler_app.services import permissions

# -- nodes --------------------------------------------------------------------------------


def node(item: Node) -> dict[str, Any]:
    return {
        "id": item.pk,
        "name": item.name,
        "host": item.host,
        "pid": item.pid,
        "version": item.version,
        "state": item.state,
        "tags": item.tags if isinstance(item.tags, list) else [],
        "capacity": item.capacity if isinstance(item.capacity, dict) else {},
        "used": item.used if isinstance(item.used, dict) else {},
        "running": item.running,
        "load": item.load,
        "free_memory_mb": item.free_memory_mb,
        "overloaded": item.overloaded,
        "clock_offset": item.clock_offset,
        "started_at": iso(item.started_at),
        "heartbeat_at": iso(item.heartbeat_at),
        "stopped_at": iso(item.stopped_at),
    }


def _node_doc(verb: str, what: str) -> Any:
    return doc(
        summary=f"{verb} the node (superusers)",
        request=None,
        responses={200: schemas.NodeAction},
        description=f"The node {what}. Audited with the caller as actor; 409 if the node is "
        "not in a state that allows it.",
    )


@extend_schema_view(
    list=doc(summary="Scheduler nodes", responses={200: schemas.Node}),
    retrieve=doc(summary="A scheduler node", responses={200: schemas.Node}),
)
class NodeViewSet(ApiViewSet):
    """Nodes are shared by all tenants: any member of a tenant sees them."""

    def base_queryset(self) -> QuerySet:
        return Node.objects.order_by("name", "pk")

    def get_queryset(self) -> QuerySet:
        if permissions.sees_everything(self.actor) or permissions.member_tenant_ids(self.actor):
            return self.base_queryset()
        return Node.objects.none()

    def list(self, request: Any) -> Response:
        return self.page(self.get_queryset(), lambda items: [node(n) for n in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        return Response(node(self.get_object()))

    def _operate(self, request: Any, verb: str) -> Response:
        body_object(request, set())
        target = self.get_object()
        if not permissions.sees_everything(self.actor):
            raise exceptions.PermissionDenied(str(nodes_service.NOT_ALLOWED))
        result = getattr(services, f"{verb}_nodes")([target], actor=self.actor)
        if result.refused:
            raise errors.refused(result.refused[0])
        return Response({"node": node(result.done[0]), "warnings": [str(w) for w in result.warnings]})

    @_node_doc("Drain", "finishes what it runs, claims nothing new and gives up the leader lease")
    @action(detail=True, methods=["post"])
    def drain(self, request: Any, pk: str) -> Response:
        return self._operate(request, "drain")

    @_node_doc("Resume", "claims runs again")
    @action(detail=True, methods=["post"])
    def resume(self, request: Any, pk: str) -> Response:
        return self._operate(request, "resume")


# -- alert channels -----------------------------------------------------------------------


def channel(item: AlertChannel) -> dict[str, Any]:
    return {
        "id": item.pk,
        "tenant": item.tenant.slug,
        "name": item.name,
        "type": item.type,
        "config": item.config if isinstance(item.config, dict) else {},
        "has_secret": bool(item.secret_token),
        "secret_fingerprint": item.secret_fingerprint,
        "language": item.language,
        "subject_template": item.subject_template,
        "body_template": item.body_template,
        "enabled": item.enabled,
        "updated_at": iso(item.updated_at),
    }


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    if name not in data:
        return default
    if not isinstance(data[name], bool):
        raise errors.FieldError([(name, _("must be true or false"))])
    return bool(data[name])


def _unique_name(model: Any, obj: Any) -> None:
    if model.objects.filter(tenant=obj.tenant, name=obj.name).exclude(pk=obj.pk).exists():
        raise errors.FieldError(
            [("name", _("the name %(n)r is taken in %(t)s") % {"n": obj.name, "t": obj.tenant.slug})]
        )


CHANNEL_FIELDS = {
    "id",
    "tenant",
    "name",
    "type",
    "config",
    "secret",
    "language",
    "subject_template",
    "body_template",
    "enabled",
    "has_secret",
    "secret_fingerprint",
    "updated_at",
}


@extend_schema_view(
    list=doc(
        summary="Alert channels",
        parameters=[OpenApiParameter("tenant", str, description="Tenant slug.")],
        responses={200: schemas.AlertChannel},
    ),
    retrieve=doc(summary="An alert channel", responses={200: schemas.AlertChannel}),
    create=doc(
        summary="Create an alert channel",
        request=schemas.AlertChannelWrite,
        responses={201: schemas.AlertChannel},
    ),
    update=doc(
        summary="Change an alert channel",
        request=schemas.AlertChannelWrite,
        responses={200: schemas.AlertChannel},
    ),
    partial_update=doc(
        summary="Change an alert channel",
        request=schemas.AlertChannelPatch,
        responses={200: schemas.AlertChannel},
    ),
    destroy=doc(summary="Delete an alert channel", responses={204: None}),
)
class AlertChannelViewSet(TenantScopedWrites):
    def base_queryset(self) -> QuerySet:
        return AlertChannel.objects.select_related("tenant").order_by("tenant__slug", "name", "pk")

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        if request.query_params.get("tenant"):
            qs = qs.filter(tenant__slug=request.query_params["tenant"])
        return self.page(qs, lambda items: [channel(c) for c in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        item = self.get_object()
        self.require("view", item)
        return Response(channel(item))

    def create(self, request: Any) -> Response:
        return self._save(request, AlertChannel(), status.HTTP_201_CREATED)

    def update(self, request: Any, pk: str) -> Response:
        item = self.get_object()
        self.require("change", item)
        return self._save(request, item, status.HTTP_200_OK)

    def partial_update(self, request: Any, pk: str) -> Response:
        return self.update(request, pk)

    def destroy(self, request: Any, pk: str) -> Response:
        item = self.get_object()
        self.require("delete", item)
        services.delete_alert_objects([item], actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @doc(
        summary="Queue a test alert through the channel",
        request=None,
        responses={202: schemas.AlertTest},
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Any, pk: str) -> Response:
        body_object(request, set())
        item = self.get_object()
        self.require("change", item)
        row = _call(lambda: services.send_test_alert(item, actor=self.actor))
        return Response({"alert_id": str(row.alert_id)}, status=status.HTTP_202_ACCEPTED)

    def _save(self, request: Any, item: AlertChannel, code: int) -> Response:
        data = body_object(request, CHANNEL_FIELDS)
        new = item.pk is None
        tenant = self.tenant_from(data, None if new else item.tenant)
        if new:
            self.require("add", tenant_id=tenant.pk)
        item.tenant = tenant
        item.name = _text(data, "name", required=new, default=item.name)
        item.type = _text(data, "type", required=new, default=item.type)
        if "config" in data:
            if not isinstance(data["config"], dict):
                raise errors.FieldError([("config", _("must be an object"))])
            item.config = data["config"]
        for name in ("language", "subject_template", "body_template"):
            setattr(item, name, _text(data, name, required=False, default=getattr(item, name)))
        item.enabled = _bool(data, "enabled", item.enabled)
        secret = None
        if "secret" in data:
            if data["secret"] is not None and not isinstance(data["secret"], str | dict):
                raise errors.FieldError(
                    [("secret", _("must be a string (empty removes it), an object of secret fields or null"))]
                )
            secret = data["secret"]
        _unique_name(AlertChannel, item)
        _call(lambda: services.save_channel(item, secret=secret, actor=self.actor))
        return Response(channel(item), status=code)


def _call(func: Any) -> Any:
    try:
        return func()
    except ValidationError as exc:
        raise errors.FieldError(errors.validation_errors(exc)) from None


# -- alert rules --------------------------------------------------------------------------


def rule(item: AlertRule) -> dict[str, Any]:
    return {
        "id": item.pk,
        "tenant": item.tenant.slug,
        "name": item.name,
        "job": item.scope_job_id,
        "group": item.scope_group_id,
        "events": item.events if isinstance(item.events, list) else [],
        "channels": sorted(c.pk for c in item.channels.all()),
        "missed_after_seconds": item.missed_after_seconds,
        "late_after_seconds": item.late_after_seconds,
        "slow_after_seconds": item.slow_after_seconds,
        "throttle_seconds": item.throttle_seconds,
        "digest": item.digest,
        "muted_until": iso(item.muted_until),
        "enabled": item.enabled,
        "updated_at": iso(item.updated_at),
    }


RULE_FIELDS = {
    "id",
    "tenant",
    "name",
    "job",
    "group",
    "events",
    "channels",
    "missed_after_seconds",
    "late_after_seconds",
    "slow_after_seconds",
    "throttle_seconds",
    "digest",
    "muted_until",
    "enabled",
    "updated_at",
}


def _seconds(data: dict[str, Any], name: str, default: Any, *, whole: bool) -> Any:
    if name not in data:
        return default
    value = data[name]
    if value is None and name != "throttle_seconds":
        return None
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0 or value > 10**9:
        raise errors.FieldError([(name, _("a number of seconds from 0 to 1000000000"))])
    return value


@extend_schema_view(
    list=doc(
        summary="Alert rules",
        parameters=[OpenApiParameter("tenant", str, description="Tenant slug.")],
        responses={200: schemas.AlertRule},
    ),
    retrieve=doc(summary="An alert rule", responses={200: schemas.AlertRule}),
    create=doc(
        summary="Create an alert rule", request=schemas.AlertRuleWrite, responses={201: schemas.AlertRule}
    ),
    update=doc(
        summary="Change an alert rule", request=schemas.AlertRuleWrite, responses={200: schemas.AlertRule}
    ),
    partial_update=doc(
        summary="Change an alert rule", request=schemas.AlertRulePatch, responses={200: schemas.AlertRule}
    ),
    destroy=doc(summary="Delete an alert rule", responses={204: None}),
)
class AlertRuleViewSet(TenantScopedWrites):
    def base_queryset(self) -> QuerySet:
        return (
            AlertRule.objects.select_related("tenant", "scope_job", "scope_group")
            .prefetch_related("channels")
            .order_by("tenant__slug", "name", "pk")
        )

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        if request.query_params.get("tenant"):
            qs = qs.filter(tenant__slug=request.query_params["tenant"])
        return self.page(qs, lambda items: [rule(r) for r in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        item = self.get_object()
        self.require("view", item)
        return Response(rule(item))

    def create(self, request: Any) -> Response:
        return self._save(request, AlertRule(), status.HTTP_201_CREATED)

    def update(self, request: Any, pk: str) -> Response:
        item = self.get_object()
        self.require("change", item)
        return self._save(request, item, status.HTTP_200_OK)

    def partial_update(self, request: Any, pk: str) -> Response:
        return self.update(request, pk)

    def destroy(self, request: Any, pk: str) -> Response:
        item = self.get_object()
        self.require("delete", item)
        services.delete_alert_objects([item], actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _scoped_object(self, model: Any, data: dict[str, Any], name: str, current: Any) -> Any:
        if name not in data:
            return current
        raw = data[name]
        if raw is None:
            return None
        pk = whole_number(str(raw)) if isinstance(raw, int) and not isinstance(raw, bool) else None
        found = self.scoped(model.objects.filter(pk=pk)).first() if pk is not None else None
        if found is None:
            raise errors.FieldError([(name, _("no such %(what)s among your tenants'") % {"what": name})])
        return found

    def _channels(self, data: dict[str, Any]) -> Sequence[AlertChannel] | None:
        if "channels" not in data:
            return None
        raw = data["channels"]
        if not isinstance(raw, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in raw
        ):
            raise errors.FieldError([("channels", _("must be a list of channel ids"))])
        found = {c.pk: c for c in self.scoped(AlertChannel.objects.filter(pk__in=raw))}
        missing = [i for i in raw if i not in found]
        if missing:
            raise errors.FieldError([("channels", _("no such channel: %(id)s") % {"id": missing[0]})])
        return [found[i] for i in dict.fromkeys(raw)]

    def _save(self, request: Any, item: AlertRule, code: int) -> Response:
        data = body_object(request, RULE_FIELDS)
        new = item.pk is None
        tenant = self.tenant_from(data, None if new else item.tenant)
        if new:
            self.require("add", tenant_id=tenant.pk)
        item.tenant = tenant
        item.name = _text(data, "name", required=new, default=item.name)
        item.scope_job = self._scoped_object(Job, data, "job", item.scope_job if not new else None)
        item.scope_group = self._scoped_object(JobGroup, data, "group", item.scope_group if not new else None)
        if "events" in data:
            if not isinstance(data["events"], list) or not all(isinstance(e, str) for e in data["events"]):
                raise errors.FieldError([("events", _("must be a list of event names"))])
            item.events = data["events"]
        elif new:
            raise errors.FieldError([("events", _("required"))])
        item.missed_after_seconds = _seconds(
            data, "missed_after_seconds", item.missed_after_seconds, whole=True
        )
        item.late_after_seconds = _seconds(data, "late_after_seconds", item.late_after_seconds, whole=True)
        item.slow_after_seconds = _seconds(data, "slow_after_seconds", item.slow_after_seconds, whole=False)
        item.throttle_seconds = _seconds(data, "throttle_seconds", item.throttle_seconds, whole=True)
        item.digest = _bool(data, "digest", item.digest)
        item.enabled = _bool(data, "enabled", item.enabled)
        if "muted_until" in data:
            raw = data["muted_until"]
            item.muted_until = None if raw is None else aware_time("muted_until", raw)
        chosen = self._channels(data)
        if new and chosen is None:
            raise errors.FieldError([("channels", _("required, a list of channel ids"))])
        _unique_name(AlertRule, item)
        _call(lambda: services.save_rule(item, channels=chosen, actor=self.actor))
        return Response(rule(self.base_queryset().get(pk=item.pk)), status=code)


# -- dashboard ----------------------------------------------------------------------------


class DashboardViewSet(ApiViewSet):
    """``GET /api/dashboard/``: the figures of the admin's ``Scheduler › Dashboard``, the
    same JSON its page polls (:func:`scheduler_app.monitoring.dashboard.build`), scoped
    to the caller's tenants the same way (a key restricted to a tenant sees that
    tenant's figures; nodes are shared and shown to every member)."""

    @doc(
        summary="The dashboard's figures",
        parameters=[
            OpenApiParameter(
                "window", str, enum=list(stats.WINDOWS), description="The charts' time window (default 1h)."
            )
        ],
        responses={200: schemas.Dashboard},
        description="Totals now, held-back queued runs by reason, runs per bucket by state, "
        "failure rate, start lateness (overall and per bucket), the slowest and most failing "
        "jobs, running runs, recent failures, upcoming fires and nodes. 403 for a caller who "
        "is a member of no tenant (as the admin page).",
    )
    @action(detail=False, methods=["get"])
    def show(self, request: Any) -> Response:
        if not (permissions.sees_everything(self.actor) or permissions.member_tenant_ids(self.actor)):
            raise exceptions.PermissionDenied(_("you are not a member of any tenant"))
        window = request.query_params.get("window") or "1h"
        if window not in stats.WINDOWS:
            raise errors.FieldError(
                [("window", _("use one of %(names)s") % {"names": ", ".join(stats.WINDOWS)})]
            )
        return Response(dashboard.build(self.actor, window))
