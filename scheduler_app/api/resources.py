"""Tenants (with members for tenant admins), job groups, calendars (with dates),
dependencies, and the cron preview."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from scheduler_app import services
from scheduler_app.api import errors, schemas
from scheduler_app.api import representations as rep
from scheduler_app.api.base import ApiViewSet, doc, id_param, whole_number
from scheduler_app.api.jobs import body_object, bulk_report
from scheduler_app.models import Calendar, Job, JobDependency, JobGroup, Membership, Role, Tenant
from scheduler_app.services import permissions, summaries


def _text(data: dict[str, Any], name: str, *, required: bool, default: str = "") -> str:
    if name not in data:
        if required:
            raise errors.FieldError([(name, _("required"))])
        return default
    value = data[name]
    if not isinstance(value, str) or (required and not value.strip()):
        raise errors.FieldError(
            [(name, _("must be a non-empty string") if required else _("must be a string"))]
        )
    return value


class TenantScopedWrites(ApiViewSet):
    """Create/change/delete for objects that belong to a tenant given by slug."""

    def tenant_from(self, data: dict[str, Any], current: Tenant | None) -> Tenant:
        if "tenant" not in data:
            if current is None:
                raise errors.FieldError([("tenant", _("required, a tenant slug"))])
            return current
        slug = data["tenant"]
        tenant = (
            self.scoped(Tenant.objects.filter(slug=slug), "pk").first() if isinstance(slug, str) else None
        )
        if tenant is None:
            raise errors.FieldError([("tenant", _("unknown tenant %(s)r") % {"s": slug})])
        return tenant


def scope_operation(view: ApiViewSet, request: Any, target: Any, operation: str) -> Response:
    """Run a group or tenant operation; each of its jobs is reported as in a bulk action."""
    body_object(request, set())
    view.require("view", target)
    if isinstance(target, JobGroup):
        result = services.operate_on_group(target, operation, actor=view.actor)
    else:
        result = services.operate_on_tenant(target, operation, actor=view.actor)
    jobs = [obj.job if operation == "run" else obj for obj in result.done]
    jobs += [job for job, _reason in result.refused]
    report = bulk_report(
        [j.pk for j in jobs], {j.pk: j for j in jobs}, result, runs_of_jobs=operation == "run"
    )
    return Response({"operation": operation, **report})


def _scope_doc(what: str, verb: str) -> Any:
    return doc(
        summary=f"{verb} every job of the {what}",
        request=None,
        responses={200: schemas.BulkResponse},
        description="One audit entry for the operation lists the jobs it touched; each job is "
        "checked on its own and reported `done` or `refused` (with the reason).",
    )


@extend_schema_view(
    list=doc(summary="Your tenants", responses={200: schemas.Tenant}),
    retrieve=doc(summary="A tenant", responses={200: schemas.Tenant}),
)
class TenantViewSet(ApiViewSet):
    tenant_field = "pk"

    def base_queryset(self) -> QuerySet:
        return Tenant.objects.order_by("slug")

    def _roles(self) -> dict[int, str]:
        if permissions.sees_everything(self.actor):
            return {}
        return permissions.roles(self.actor)

    def list(self, request: Any) -> Response:
        roles = self._roles()
        return self.page(self.get_queryset(), lambda items: [rep.tenant(t, roles) for t in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        return Response(rep.tenant(self.get_object(), self._roles()))

    @_scope_doc("tenant", "Pause")
    @action(detail=True, methods=["post"], url_path="pause")
    def pause_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "pause")

    @_scope_doc("tenant", "Resume")
    @action(detail=True, methods=["post"], url_path="resume")
    def resume_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "resume")

    @_scope_doc("tenant", "Enable")
    @action(detail=True, methods=["post"], url_path="enable")
    def enable_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "enable")

    @_scope_doc("tenant", "Disable")
    @action(detail=True, methods=["post"], url_path="disable")
    def disable_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "disable")

    @_scope_doc("tenant", "Queue a run now of")
    @action(detail=True, methods=["post"], url_path="run")
    def run_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "run")

    @doc(summary="The tenant's members and roles (tenant admins)", responses=schemas.paged(schemas.Member))
    @action(detail=True, methods=["get"])
    def members(self, request: Any, pk: str) -> Response:
        tenant = self.get_object()
        self.require("manage", tenant)
        qs = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
        return self.page(qs, lambda items: [rep.member(m) for m in items])

    @members.mapping.post
    @doc(
        summary="Add a member or change a member's role (tenant admins)",
        request=schemas.MemberWrite,
        responses={200: schemas.Member},
    )
    def set_member(self, request: Any, pk: str) -> Response:
        tenant = self.get_object()
        self.require("manage", tenant)
        data = body_object(request, {"user", "role"})
        username = _text(data, "user", required=True)
        role = _text(data, "role", required=True)
        if role not in Role.values:
            raise errors.FieldError(
                [("role", _("%(r)r is not a role; use %(all)s") % {"r": role, "all": ", ".join(Role.values)})]
            )
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise errors.FieldError([("user", _("unknown user %(u)r") % {"u": username})])
        membership = services.set_membership(tenant, user, role, actor=self.actor)
        return Response(rep.member(membership))

    @doc(
        summary="Remove a member (tenant admins)",
        responses={204: None},
        parameters=[OpenApiParameter("user_id", int, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<user_id>[0-9]+)")
    def remove_member(self, request: Any, pk: str, user_id: str) -> Response:
        tenant = self.get_object()
        self.require("manage", tenant)
        wanted = whole_number(user_id)
        membership = (
            None
            if wanted is None
            else Membership.objects.filter(tenant=tenant, user_id=wanted).select_related("user").first()
        )
        if membership is None:
            raise exceptions.NotFound(_("Not found."))
        services.remove_membership(membership, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=doc(
        summary="Job groups",
        parameters=[OpenApiParameter("tenant", str, description="Tenant slug.")],
        responses={200: schemas.Group},
    ),
    retrieve=doc(summary="A job group", responses={200: schemas.Group}),
    create=doc(summary="Create a job group", request=schemas.GroupWrite, responses={201: schemas.Group}),
    update=doc(summary="Change a job group", request=schemas.GroupWrite, responses={200: schemas.Group}),
    partial_update=doc(
        summary="Change a job group", request=schemas.GroupPatch, responses={200: schemas.Group}
    ),
    destroy=doc(summary="Delete a job group (its jobs stay, without a group)", responses={204: None}),
)
class GroupViewSet(TenantScopedWrites):
    def base_queryset(self) -> QuerySet:
        return JobGroup.objects.select_related("tenant").order_by("tenant__slug", "name", "pk")

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        if request.query_params.get("tenant"):
            qs = qs.filter(tenant__slug=request.query_params["tenant"])
        return self.page(qs, lambda items: [rep.group(g) for g in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        group = self.get_object()
        self.require("view", group)
        return Response(rep.group(group))

    def create(self, request: Any) -> Response:
        return self._save(request, JobGroup(), status.HTTP_201_CREATED)

    def update(self, request: Any, pk: str) -> Response:
        group = self.get_object()
        self.require("change", group)
        return self._save(request, group, status.HTTP_200_OK)

    def partial_update(self, request: Any, pk: str) -> Response:
        return self.update(request, pk)

    def _save(self, request: Any, group: JobGroup, code: int) -> Response:
        data = body_object(request, {"id", "tenant", "name", "description", "rate_limit"})
        tenant = self.tenant_from(data, group.tenant if group.pk else None)
        if group.pk is None:
            self.require("add", tenant_id=tenant.pk)
        group.tenant = tenant
        group.name = _text(data, "name", required=group.pk is None, default=group.name)
        group.description = _text(data, "description", required=False, default=group.description)
        group.rate_limit = _text(data, "rate_limit", required=False, default=group.rate_limit)
        if JobGroup.objects.filter(tenant=tenant, name=group.name).exclude(pk=group.pk).exists():
            raise errors.FieldError(
                [
                    (
                        "name",
                        _("a group named %(n)r already exists in %(t)s")
                        % {"n": group.name, "t": tenant.slug},
                    )
                ]
            )
        services.save_group(group, actor=self.actor)
        return Response(rep.group(group), status=code)

    def destroy(self, request: Any, pk: str) -> Response:
        group = self.get_object()
        self.require("delete", group)
        services.delete_groups([group], actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @_scope_doc("group", "Pause")
    @action(detail=True, methods=["post"], url_path="pause")
    def pause_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "pause")

    @_scope_doc("group", "Resume")
    @action(detail=True, methods=["post"], url_path="resume")
    def resume_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "resume")

    @_scope_doc("group", "Enable")
    @action(detail=True, methods=["post"], url_path="enable")
    def enable_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "enable")

    @_scope_doc("group", "Disable")
    @action(detail=True, methods=["post"], url_path="disable")
    def disable_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "disable")

    @_scope_doc("group", "Queue a run now of")
    @action(detail=True, methods=["post"], url_path="run")
    def run_all(self, request: Any, pk: str) -> Response:
        return scope_operation(self, request, self.get_object(), "run")


def _dates(value: Any) -> list[tuple[dt.date, str]]:
    if not isinstance(value, list):
        raise errors.FieldError([("dates", _("must be a list of {date, label} objects"))])
    out = []
    for index, item in enumerate(value):
        where = f"dates[{index}]"
        if not isinstance(item, dict) or set(item) - {"date", "label"}:
            raise errors.FieldError([(where, _("must be an object with 'date' and an optional 'label'"))])
        raw, label = item.get("date"), item.get("label", "")
        try:
            day = dt.date.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            day = None
        if day is None:
            raise errors.FieldError([(f"{where}.date", _("%(v)r is not a date (YYYY-MM-DD)") % {"v": raw})])
        if not isinstance(label, str) or len(label) > 200:
            raise errors.FieldError([(f"{where}.label", _("a string of at most 200 characters"))])
        out.append((day, label))
    return out


@extend_schema_view(
    list=doc(
        summary="Exclusion calendars",
        parameters=[OpenApiParameter("tenant", str, description="Tenant slug.")],
        responses={200: schemas.Calendar},
    ),
    retrieve=doc(summary="A calendar with its dates", responses={200: schemas.Calendar}),
    create=doc(summary="Create a calendar", request=schemas.CalendarWrite, responses={201: schemas.Calendar}),
    update=doc(summary="Change a calendar", request=schemas.CalendarWrite, responses={200: schemas.Calendar}),
    partial_update=doc(
        summary="Change a calendar", request=schemas.CalendarPatch, responses={200: schemas.Calendar}
    ),
    destroy=doc(summary="Delete a calendar", responses={204: None}),
)
class CalendarViewSet(TenantScopedWrites):
    def base_queryset(self) -> QuerySet:
        return (
            Calendar.objects.select_related("tenant")
            .prefetch_related("dates")
            .order_by("tenant__slug", "name", "pk")
        )

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        if request.query_params.get("tenant"):
            qs = qs.filter(tenant__slug=request.query_params["tenant"])
        return self.page(qs, lambda items: [rep.calendar(c) for c in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        calendar = self.get_object()
        self.require("view", calendar)
        return Response(rep.calendar(calendar))

    def create(self, request: Any) -> Response:
        return self._save(request, Calendar(), status.HTTP_201_CREATED)

    def update(self, request: Any, pk: str) -> Response:
        calendar = self.get_object()
        self.require("change", calendar)
        return self._save(request, calendar, status.HTTP_200_OK)

    def partial_update(self, request: Any, pk: str) -> Response:
        return self.update(request, pk)

    def _save(self, request: Any, calendar: Calendar, code: int) -> Response:
        data = body_object(request, {"id", "tenant", "name", "description", "dates"})
        tenant = self.tenant_from(data, calendar.tenant if calendar.pk else None)
        if calendar.pk is None:
            self.require("add", tenant_id=tenant.pk)
        calendar.tenant = tenant
        calendar.name = _text(data, "name", required=calendar.pk is None, default=calendar.name)
        calendar.description = _text(data, "description", required=False, default=calendar.description)
        dates = _dates(data["dates"]) if "dates" in data else None
        if Calendar.objects.filter(tenant=tenant, name=calendar.name).exclude(pk=calendar.pk).exists():
            raise errors.FieldError(
                [
                    (
                        "name",
                        _("a calendar named %(n)r already exists in %(t)s")
                        % {"n": calendar.name, "t": tenant.slug},
                    )
                ]
            )
        services.save_calendar(calendar, dates=dates, actor=self.actor)
        item = self.base_queryset().get(pk=calendar.pk)
        return Response(rep.calendar(item), status=code)

    def destroy(self, request: Any, pk: str) -> Response:
        calendar = self.get_object()
        self.require("delete", calendar)
        services.delete_calendars([calendar], actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=doc(
        summary="Dependencies (edges of the job DAG)",
        parameters=[
            OpenApiParameter("tenant", str, description="Tenant slug."),
            OpenApiParameter("job", int, description="Edges from or to this job."),
        ],
        responses={200: schemas.Dependency},
    ),
    retrieve=doc(summary="A dependency", responses={200: schemas.Dependency}),
    create=doc(
        summary="Make a job depend on another",
        request=schemas.DependencyWrite,
        responses={201: schemas.Dependency},
    ),
    destroy=doc(summary="Remove a dependency", responses={204: None}),
)
class DependencyViewSet(ApiViewSet):
    def base_queryset(self) -> QuerySet:
        return JobDependency.objects.select_related("tenant", "upstream", "downstream").order_by("pk")

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        params = request.query_params
        if params.get("tenant"):
            qs = qs.filter(tenant__slug=params["tenant"])
        if params.get("job"):
            job_id = id_param("job", params["job"])
            qs = qs.filter(Q(upstream_id=job_id) | Q(downstream_id=job_id))
        return self.page(qs, lambda items: [rep.dependency(d) for d in items])

    def retrieve(self, request: Any, pk: str) -> Response:
        edge = self.get_object()
        self.require("view", edge.downstream)
        return Response(rep.dependency(edge))

    def _job(self, data: dict[str, Any], name: str) -> Job:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.FieldError([(name, _("required, a job id"))])
        job = self.scoped(Job.objects.filter(pk=value)).select_related("tenant").first()
        if job is None:
            raise errors.FieldError([(name, _("unknown job %(id)s") % {"id": value})])
        return job

    def create(self, request: Any) -> Response:
        data = body_object(request, {"upstream", "downstream", "condition"})
        upstream, downstream = self._job(data, "upstream"), self._job(data, "downstream")
        condition = data.get("condition", "success")
        if not isinstance(condition, str) or condition not in JobDependency.Condition.values:
            raise errors.FieldError(
                [("condition", _("use one of %(all)s") % {"all": ", ".join(JobDependency.Condition.values)})]
            )
        self.require("change", downstream)
        if JobDependency.objects.filter(upstream=upstream, downstream=downstream).exists():
            raise errors.FieldError(
                [("upstream", _("%(u)s already precedes %(d)s") % {"u": upstream.name, "d": downstream.name})]
            )
        try:
            edge = services.add_dependency(upstream, downstream, condition, actor=self.actor)
        except ValidationError as exc:
            raise errors.FieldError(errors.validation_errors(exc)) from None
        return Response(rep.dependency(self.base_queryset().get(pk=edge.pk)), status=status.HTTP_201_CREATED)

    def destroy(self, request: Any, pk: str) -> Response:
        edge = self.get_object()
        downstream = edge.downstream
        self.require("change", downstream)
        keep = set(downstream.upstream_edges.exclude(pk=edge.pk).values_list("upstream_id", flat=True))
        with transaction.atomic():
            services.drop_dependencies(downstream, keep=keep, actor=self.actor)
            services.notify_job_changed(
                downstream,
                actor=self.actor,
                summary=summaries.english(summaries.NO_LONGER_DEPENDS_ON, job=edge.upstream.name),
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class CronViewSet(ApiViewSet):
    @doc(
        summary="Describe a cron expression and list its next fire times",
        parameters=[
            OpenApiParameter("expression", str, required=True),
            OpenApiParameter("dialect", str, enum=["crontab", "quartz"]),
            OpenApiParameter("timezone", str, description="IANA time zone (default UTC)."),
            OpenApiParameter("count", int, description="1 to 100 (default 10)."),
        ],
        responses={200: schemas.CronPreview},
    )
    @action(detail=False, methods=["get"])
    def preview(self, request: Any) -> Response:
        from datetime import datetime

        from scheduler_app.engine.cron import CronExpression, CronSyntaxError
        from scheduler_app.engine.triggerspec import TriggerSpecError, check_timezone

        params = request.query_params
        expression = params.get("expression", "")
        if not expression.strip():
            raise errors.FieldError([("expression", _("required"))])
        dialect = params.get("dialect") or "crontab"
        if dialect not in ("crontab", "quartz"):
            raise errors.FieldError([("dialect", _("use crontab or quartz"))])
        zone = params.get("timezone") or "UTC"
        try:
            check_timezone(zone, "timezone")
        except TriggerSpecError as exc:
            raise errors.FieldError([(exc.path, exc.message)]) from None
        raw_count = params.get("count") or "10"
        count = whole_number(raw_count)
        if count is None or not 1 <= count <= 100:
            raise errors.FieldError([("count", _("a whole number from 1 to 100"))])
        try:
            expr = CronExpression.parse(expression, dialect=dialect, timezone=zone)
        except CronSyntaxError as exc:
            raise errors.FieldError([("expression", str(exc))]) from None
        times = expr.fire_times(datetime.now(expr.zone), count)
        return Response(
            {
                "expression": " ".join(expression.split()),
                "dialect": dialect,
                "timezone": zone,
                "description": expr.describe(),
                "next": [t.isoformat() for t in times],
            }
        )

    def base_queryset(self) -> QuerySet:
        return Tenant.objects.none()
