"""Runs: list with filters (cursor pagination: no COUNT(*) over the run table, stable
while runs are added), detail, cancel, stop, and their bulk versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.response import Response

from scheduler_app import services
from scheduler_app.api import errors, schemas
from scheduler_app.api import representations as rep
from scheduler_app.api.base import (
    ApiViewSet,
    RunCursorPagination,
    aware_time,
    doc,
    id_param,
    whole_number,
)
from scheduler_app.api.jobs import body_object, bulk_ids, bulk_report
from scheduler_app.models import JobRun, RunState

TIME_FILTERS = {
    "scheduled_after": "scheduled_for__gte",
    "scheduled_before": "scheduled_for__lt",
    "finished_after": "finished_at__gte",
    "finished_before": "finished_at__lt",
}
RUN_ACTIONS = {"cancel": services.cancel_runs, "stop": services.stop_runs}


def _time(name: str, raw: str) -> datetime:
    return aware_time(name, raw)


def _id(name: str, raw: str) -> int:
    return id_param(name, raw)


@extend_schema_view(
    list=doc(
        summary="List runs, newest first",
        parameters=[
            OpenApiParameter("tenant", str, description="Tenant slug."),
            OpenApiParameter("job", int, description="Job id."),
            OpenApiParameter("group", str, description="Group name."),
            OpenApiParameter(
                "state", str, many=True, enum=list(RunState.values), description="One or more states."
            ),
            OpenApiParameter("node", str),
            *(OpenApiParameter(name, str, description="ISO 8601 time with offset.") for name in TIME_FILTERS),
            OpenApiParameter("ordering", str, enum=list(RunCursorPagination.ORDERINGS)),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        responses={200: schemas.Run},
    ),
    retrieve=doc(
        summary="A run with its result, traceback and captured log",
        parameters=[
            OpenApiParameter(
                "log_offset",
                int,
                description="Only the log lines numbered from this one (0 is the first line "
                "ever written); to follow a running run, pass the log_next_offset of the "
                "previous answer.",
            )
        ],
        responses={200: schemas.RunDetail},
    ),
)
class RunViewSet(ApiViewSet):
    pagination_class = RunCursorPagination

    def base_queryset(self) -> QuerySet:
        return JobRun.objects.all()

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        params = request.query_params
        if params.get("tenant"):
            qs = qs.filter(tenant__slug=params["tenant"])
        if params.get("job"):
            qs = qs.filter(job_id=_id("job", params["job"]))
        if params.get("group"):
            qs = qs.filter(job__group__name=params["group"])
        states = [s for value in params.getlist("state") for s in value.split(",") if s]
        if states:
            unknown = sorted(set(states) - set(RunState.values))
            if unknown:
                raise errors.FieldError(
                    [
                        (
                            "state",
                            _("%(s)r is not a state; use %(all)s")
                            % {"s": unknown[0], "all": ", ".join(RunState.values)},
                        )
                    ]
                )
            qs = qs.filter(state__in=states)
        if params.get("node"):
            qs = qs.filter(node=params["node"])
        for name, lookup in TIME_FILTERS.items():
            if params.get(name):
                qs = qs.filter(**{lookup: _time(name, params[name])})
        return self.page(rep.runs_list_rows(qs), self._render_list)

    def _render_list(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = rep.runs_from_rows(rows)
        causes = rep.viewable_causes(items, self.actor)
        return [rep.run(r, viewer=self.actor, causes=causes) for r in items]

    def retrieve(self, request: Any, pk: str) -> Response:
        run = self.get_object()
        self.require("view", run)
        raw = request.query_params.get("log_offset")
        offset = None
        if raw is not None:
            offset = whole_number(raw)
            if offset is None:
                raise errors.FieldError([("log_offset", _("must be a whole number (a line number)"))])
        return Response(rep.run(run, viewer=self.actor, detail=True, log_offset=offset))

    def get_object(self) -> JobRun:
        obj = super().get_object()
        return rep.runs_queryset(JobRun.objects.filter(pk=obj.pk)).select_related("captured_log").get()

    def _act(self, request: Any, name: str) -> Response:
        run = self.get_object()
        self.require("run", run)
        body_object(request, set())
        result = RUN_ACTIONS[name]([run], actor=self.actor)
        if not result.done:
            raise errors.refused(result.refused[0])
        return Response(rep.run(self.get_object(), viewer=self.actor, detail=True))

    @doc(summary="Cancel a queued run", request=None, responses={200: schemas.RunDetail})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Any, pk: str) -> Response:
        return self._act(request, "cancel")

    @doc(
        summary="Stop a running run (or cancel a queued one)",
        request=None,
        responses={200: schemas.RunDetail},
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Any, pk: str) -> Response:
        return self._act(request, "stop")

    @doc(
        summary="Cancel or stop many runs",
        request=schemas.BulkRequest,
        responses={200: schemas.BulkResponse},
        parameters=[OpenApiParameter("bulk_action", str, OpenApiParameter.PATH, enum=[*RUN_ACTIONS])],
    )
    @action(detail=False, methods=["post"], url_path=r"bulk/(?P<bulk_action>[a-z]+)")
    def bulk(self, request: Any, bulk_action: str) -> Response:
        if bulk_action not in RUN_ACTIONS:
            raise exceptions.NotFound(_("Not found."))
        ids = bulk_ids(request)
        found = {r.pk: r for r in rep.runs_queryset(self.get_queryset().filter(pk__in=ids))}
        result = RUN_ACTIONS[bulk_action]([found[pk] for pk in ids if pk in found], actor=self.actor)
        return Response(bulk_report(ids, found, result))
