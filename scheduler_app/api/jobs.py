"""Jobs: CRUD on the job document, actions (run, pause, resume, enable, disable), bulk
actions, versions (list, detail, diff, rollback) and the audit trail."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from scheduler_app import services
from scheduler_app.api import errors, schemas
from scheduler_app.api import representations as rep
from scheduler_app.api.base import MAX_ID, ApiViewSet, aware_time, doc, whole_number
from scheduler_app.conf import app_settings
from scheduler_app.documents import job as job_document
from scheduler_app.documents import limits
from scheduler_app.models import Job, JobRun, Tenant
from scheduler_app.services import bulk, permissions, versioning
from scheduler_app.services.runs import IdempotencyConflict

#: Single-object actions: service, permission, verb.
FLAG_ACTIONS = {
    "pause": (services.pause_jobs, "pause"),
    "resume": (services.resume_jobs, "pause"),
    "enable": (services.enable_jobs, "change"),
    "disable": (services.disable_jobs, "change"),
}
BULK_JOB_ACTIONS = ("run", "pause", "resume", "enable", "disable", "delete")
MAX_BULK_IDS = 1000
#: An ``at`` this much in the past is still accepted (clock skew between client and server).
AT_TOLERANCE = timedelta(seconds=5)


def body_object(request: Any, allowed: set[str] | None = None) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise errors.FieldError([(None, _("The body must be a JSON object."))])
    if allowed is not None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise errors.FieldError([(unknown[0], _("unknown field"))])
    return data


def check_size(value: Any, field: str) -> None:
    limit = app_settings.API_MAX_KWARGS_BYTES
    if len(json.dumps(value, default=str)) > limit:
        raise errors.PayloadTooLarge(_("larger than %(n)s bytes as JSON") % {"n": limit}, field=field)


def if_match(request: Any) -> int | None:
    """The version number an ``If-Match`` header names (``"3"``, ``W/"3"``, ``3``)."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    number = whole_number(value)
    if number is None:
        raise errors.FieldError([("If-Match", _("must be the job's version number or its ETag"))])
    return number


def etag(version: int) -> str:
    return f'"{version}"'


def job_response(job: Job, status_code: int = status.HTTP_200_OK) -> Response:
    item = rep.jobs_queryset(Job.objects.filter(pk=job.pk)).get()
    data = rep.job(item)
    return Response(data, status=status_code, headers={"ETag": etag(data["version"])})


def bulk_report(
    ids: list[int], found: dict[int, Any], result: services.BulkResult, *, runs_of_jobs: bool = False
) -> dict[str, Any]:
    """Per id: done, refused (with the reason) or not found (among the caller's
    tenants). ``runs_of_jobs``: ``result.done`` holds the runs queued for the jobs."""

    def key(obj: Any) -> int:
        return obj.job_id if runs_of_jobs and isinstance(obj, JobRun) else obj.pk

    by_id: dict[int, dict[str, Any]] = {}
    for obj in result.done:
        by_id[key(obj)] = {"status": "done"} | ({"run": obj.pk} if runs_of_jobs else {})
    for refusal in map(bulk.refusal, result.refused):
        by_id[key(refusal.obj)] = {"status": "refused", "reason": refusal.reason, "kind": refusal.kind}
    results = []
    for pk in ids:
        if pk not in found:
            results.append({"id": pk, "status": "not found"})
        else:
            results.append(
                {
                    "id": pk,
                    **by_id.get(pk, {"status": "refused", "reason": "not done", "kind": bulk.CONFLICT}),
                }
            )
    return {"results": results}


def bulk_ids(request: Any) -> list[int]:
    data = body_object(request, {"ids"})
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids:
        raise errors.FieldError([("ids", _("a non-empty list of ids"))])
    if len(ids) > MAX_BULK_IDS:
        raise errors.FieldError([("ids", _("at most %(n)s ids") % {"n": MAX_BULK_IDS})])
    for index, pk in enumerate(ids):
        if isinstance(pk, bool) or not isinstance(pk, int) or not 1 <= pk <= MAX_ID:
            raise errors.FieldError([(f"ids[{index}]", _("must be a positive whole number"))])
    return list(dict.fromkeys(ids))


@extend_schema_view(
    list=doc(
        summary="List jobs",
        parameters=[
            OpenApiParameter("tenant", str, description="Tenant slug."),
            OpenApiParameter("group", str, description="Group name."),
            OpenApiParameter("task", str, description="Task name."),
            OpenApiParameter("enabled", bool),
            OpenApiParameter("paused", bool),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses={200: schemas.Job},
    ),
    retrieve=doc(summary="A job", responses={200: schemas.Job}),
)
class JobViewSet(ApiViewSet):
    """Jobs as job documents (the jobs-file format) plus id, version and status."""

    def base_queryset(self) -> QuerySet:
        return Job.objects.all()

    def get_object(self) -> Job:
        return super().get_object()

    # -- reading -----------------------------------------------------------------------

    def list(self, request: Any) -> Response:
        qs = self.get_queryset()
        params = request.query_params
        if params.get("tenant"):
            qs = qs.filter(tenant__slug=params["tenant"])
        if params.get("group"):
            qs = qs.filter(group__name=params["group"])
        if params.get("task"):
            qs = qs.filter(task=params["task"])
        for flag in ("enabled", "paused"):
            if flag in params:
                value = params[flag].lower()
                if value not in ("true", "false", "1", "0"):
                    raise errors.FieldError([(flag, _("must be true or false"))])
                qs = qs.filter(**{flag: value in ("true", "1")})
        qs = rep.jobs_queryset(qs.order_by("tenant__slug", "name", "pk"))
        return self.page(qs, rep.jobs)

    def retrieve(self, request: Any, pk: str) -> Response:
        # The job's row read once, for the 404 (the caller's tenants only), the
        # permission and the representation alike.
        wanted = whole_number(pk)
        row = None if wanted is None else rep.jobs_queryset(self.get_queryset().filter(pk=wanted)).first()
        if row is None:
            raise exceptions.NotFound(_("Not found."))
        self.require("view", rep.job_of_row(row))
        data = rep.job(row)
        return Response(data, headers={"ETag": etag(data["version"])})

    # -- writing -----------------------------------------------------------------------

    @doc(
        summary="Create a job",
        request=schemas.JobWrite,
        responses={201: schemas.Job},
    )
    def create(self, request: Any) -> Response:
        data = body_object(request)
        job = self._write(Job(), data, created=True)
        return job_response(job, status.HTTP_201_CREATED)

    @doc(
        summary="Replace a job's document",
        request=schemas.JobWrite,
        responses={200: schemas.Job},
        parameters=[schemas.IF_MATCH],
        description="Keys left out keep their current values (as in a jobs file import). "
        "Send `If-Match` with the version (the ETag) you read: 409 if the job changed since.",
    )
    def update(self, request: Any, pk: str) -> Response:
        return self._update(request)

    @doc(
        summary="Change some fields of a job",
        request=schemas.JobPatch,
        responses={200: schemas.Job},
        parameters=[schemas.IF_MATCH],
    )
    def partial_update(self, request: Any, pk: str) -> Response:
        return self._update(request)

    def _update(self, request: Any) -> Response:
        job = self.get_object()
        self.require("change", job)
        data = body_object(request)
        if "id" in data and data["id"] != job.pk:
            raise errors.FieldError([("id", _("is %(id)s, not this job's id") % {"id": data["id"]})])
        expected = if_match(request)
        if "version" in data:
            if isinstance(data["version"], bool) or not isinstance(data["version"], int):
                raise errors.FieldError([("version", _("must be the job's version number"))])
            expected = data["version"] if expected is None else expected
        job = self._write(job, data, created=False, expected=expected)
        return job_response(job)

    def _write(self, job: Job, data: dict[str, Any], *, created: bool, expected: int | None = None) -> Job:
        doc = {k: v for k, v in data.items() if k not in rep.JOB_READ_ONLY}
        for key, value in doc.items():  # depth and NUL first: nothing below walks such values
            try:
                limits.check_value(value, key)
            except limits.LimitError as exc:
                raise errors.FieldError([(key, exc.message)]) from None
        for field in ("args", "kwargs", "secret_kwargs"):
            if field in doc:
                check_size(doc[field], field)
        tenant = self._tenant(doc, job, created)
        name = doc.get("name", job.name)
        if created and "name" not in doc:
            raise errors.FieldError([("name", _("required"))])
        if created and "task" not in doc:
            raise errors.FieldError([("task", _("required"))])
        if not isinstance(name, str) or not name.strip():
            raise errors.FieldError([("name", _("must be a non-empty string"))])
        if created:
            self.require("add", tenant_id=tenant.pk)
        elif tenant.pk != job.tenant_id:
            self.require("add", tenant_id=tenant.pk)
        entry = {k: v for k, v in doc.items() if k not in ("tenant", "name", "depends_on")}
        with transaction.atomic():
            if not created:
                job = (
                    Job.objects.select_for_update(of=("self",))
                    .select_related("tenant", "group")
                    .get(pk=job.pk)
                )
                current = rep.current_version(job)
                if expected is not None and expected != current:
                    raise errors.Conflict(
                        _(
                            "The job is at version %(now)s, not %(sent)s: read it again and reapply your change."
                        )
                        % {"now": current, "sent": expected}
                    )
            if Job.objects.filter(tenant=tenant, name=name).exclude(pk=job.pk).exists():
                raise errors.FieldError(
                    [("name", _("a job named %(n)r already exists in %(t)s") % {"n": name, "t": tenant.slug})]
                )
            job.tenant = tenant
            job.name = name
            calendars = job_document.apply_job_document(job, entry, where="")
            services.save_job(job, actor=self.actor, calendars=calendars, notify=False)
            if "depends_on" in doc:
                wanted = {
                    upstream.pk: condition
                    for upstream, condition in job_document.dependencies(job, doc["depends_on"], where="")
                }
                services.drop_dependencies(job, keep=wanted, actor=self.actor)
                try:
                    services.put_dependencies(job, wanted, actor=self.actor)
                except ValidationError as exc:
                    raise job_document.dependency_error(exc, where="") from None
            services.notify_job_changed(job, actor=self.actor, created=created)
        return job

    def _tenant(self, doc: dict[str, Any], job: Job, created: bool) -> Tenant:
        if "tenant" not in doc:
            if created:
                raise errors.FieldError([("tenant", _("required, a tenant slug"))])
            return job.tenant
        slug = doc["tenant"]
        tenant = None
        if isinstance(slug, str):
            tenant = self.scoped(Tenant.objects.filter(slug=slug), "pk").first()
        if tenant is None:
            raise errors.FieldError([("tenant", _("unknown tenant %(s)r") % {"s": slug})])
        return tenant

    @doc(summary="Delete a job", responses={204: None})
    def destroy(self, request: Any, pk: str) -> Response:
        job = self.get_object()
        self.require("delete", job)
        result = services.delete_jobs([job], actor=self.actor)
        if not result.done:
            raise errors.refused(result.refused[0])
        return Response(status=status.HTTP_204_NO_CONTENT)

    # -- actions -----------------------------------------------------------------------

    @doc(
        summary="Queue a run now or at a time",
        request=schemas.RunRequest,
        responses={201: schemas.RunDetail, 200: schemas.RunDetail},
        description="201 with the new run; 200 with the run an earlier request with the same "
        "`idempotency_key` queued (nothing new is queued).",
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Any, pk: str) -> Response:
        job = self.get_object()
        self.require("run", job)
        data = body_object(request, {"kwargs", "at", "idempotency_key"})
        override = data.get("kwargs") or {}
        if not isinstance(override, dict):
            raise errors.FieldError([("kwargs", _("must be an object"))])
        try:
            limits.check_value(override, "kwargs", max_bytes=limits.max_args_bytes())
        except limits.LimitError as exc:
            raise errors.FieldError([("kwargs", exc.message)]) from None
        check_size(override, "kwargs")
        at = self._at(data.get("at"))
        key = data.get("idempotency_key")
        try:
            result = services.run_jobs_now(
                [job], actor=self.actor, kwargs_override=override, at=at, idempotency_key=key
            )
        except ValidationError as exc:
            raise errors.FieldError(errors.validation_errors(exc)) from None
        except IdempotencyConflict as exc:
            raise errors.Conflict(str(exc)) from None
        if not result.done:
            raise errors.refused(result.refused[0])
        run = result.done[0]
        if run is None:  # that very (job, time) is already queued
            raise errors.Conflict(_("a run of this job at that time is already queued"))
        run = rep.runs_queryset(JobRun.objects.filter(pk=run.pk)).get()
        if result.replayed:
            return Response(
                rep.run(run, viewer=self.actor, detail=True), headers={"Idempotent-Replayed": "true"}
            )
        return Response(rep.run(run, viewer=self.actor, detail=True), status=status.HTTP_201_CREATED)

    @doc(
        summary="Queue a run per fire time of the trigger in a range (backfill)",
        request=schemas.BackfillRequest,
        responses={200: schemas.Backfill},
        description="Fire times that already have a run are not queued again; a range with more "
        "fire times than `BACKFILL_MAX_RUNS` is refused as a whole (400 naming the setting).",
    )
    @action(detail=True, methods=["post"])
    def backfill(self, request: Any, pk: str) -> Response:
        job = self.get_object()
        self.require("run", job)
        data = body_object(request, {"from", "to", "priority", "dry_run"})
        start, end = aware_time("from", data.get("from")), aware_time("to", data.get("to"))
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise errors.FieldError([("dry_run", _("must be true or false"))])
        plan = services.backfill_job(
            job, start, end, actor=self.actor, priority=data.get("priority"), dry_run=dry_run
        )
        queued = plan.to_queue if dry_run else [r.scheduled_for for r in plan.queued]
        return Response(
            {
                "job": job.pk,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "dry_run": dry_run,
                "queued": [t.isoformat() for t in queued],
                "existing": [t.isoformat() for t in sorted(plan.existing)],
                "runs": [r.pk for r in plan.queued],
            }
        )

    @staticmethod
    def _at(value: Any) -> datetime | None:
        if value is None:
            return None
        moment = aware_time("at", value)
        if moment < timezone.now() - AT_TOLERANCE:
            raise errors.FieldError([("at", _("%(v)s is in the past") % {"v": value})])
        return moment

    def _flag(self, request: Any, name: str) -> Response:
        job = self.get_object()
        service, needed = FLAG_ACTIONS[name]
        self.require(needed, job)
        body_object(request, set())
        result = service([job], actor=self.actor)
        if not result.done:
            raise errors.refused(result.refused[0])
        return job_response(job)

    @doc(summary="Pause the trigger", request=None, responses={200: schemas.Job})
    @action(detail=True, methods=["post"])
    def pause(self, request: Any, pk: str) -> Response:
        return self._flag(request, "pause")

    @doc(summary="Resume the trigger", request=None, responses={200: schemas.Job})
    @action(detail=True, methods=["post"])
    def resume(self, request: Any, pk: str) -> Response:
        return self._flag(request, "resume")

    @doc(summary="Enable the job", request=None, responses={200: schemas.Job})
    @action(detail=True, methods=["post"])
    def enable(self, request: Any, pk: str) -> Response:
        return self._flag(request, "enable")

    @doc(summary="Disable the job", request=None, responses={200: schemas.Job})
    @action(detail=True, methods=["post"])
    def disable(self, request: Any, pk: str) -> Response:
        return self._flag(request, "disable")

    @doc(
        summary="An action on many jobs",
        request=schemas.BulkRequest,
        responses={200: schemas.BulkResponse},
        parameters=[OpenApiParameter("bulk_action", str, OpenApiParameter.PATH, enum=[*BULK_JOB_ACTIONS])],
        description="Each id is reported: `done`, `refused` (with the reason) or `not found` "
        "(also for other tenants' jobs). Refusals do not stop the others.",
    )
    @action(detail=False, methods=["post"], url_path=r"bulk/(?P<bulk_action>[a-z]+)")
    def bulk(self, request: Any, bulk_action: str) -> Response:
        if bulk_action not in BULK_JOB_ACTIONS:
            raise exceptions.NotFound(_("Not found."))
        ids = bulk_ids(request)
        found = {j.pk: j for j in self.get_queryset().filter(pk__in=ids).select_related("tenant")}
        jobs = [found[pk] for pk in ids if pk in found]
        if bulk_action == "run":
            result = services.BulkResult()
            for job in jobs:  # each in its own transaction: nothing half-done per job
                with transaction.atomic():
                    one = services.run_jobs_now([job], actor=self.actor)
                result.done.extend(r for r in one.done if r is not None)
                result.refused.extend(one.refused)
            return Response(bulk_report(ids, found, result, runs_of_jobs=True))
        service = {
            "pause": services.pause_jobs,
            "resume": services.resume_jobs,
            "enable": services.enable_jobs,
            "disable": services.disable_jobs,
            "delete": services.delete_jobs,
        }[bulk_action]
        return Response(bulk_report(ids, found, service(jobs, actor=self.actor)))

    # -- versions ----------------------------------------------------------------------

    @doc(summary="The job's versions, newest first", responses=schemas.paged(schemas.Version))
    @action(detail=True, methods=["get"], url_path="versions")
    def versions(self, request: Any, pk: str) -> Response:
        job = self.get_object()
        self.require("view", job)
        qs = job.versions.select_related("author").order_by("-number")
        return self.page(qs, lambda items: [rep.version(v) for v in items])

    @doc(
        summary="One version of the job",
        operation_id="jobs_version_retrieve",
        responses={200: schemas.VersionDetail},
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[0-9]+)")
    def version(self, request: Any, pk: str, number: str) -> Response:
        job = self.get_object()
        self.require("view", job)
        wanted = whole_number(number)
        item = None if wanted is None else job.versions.select_related("author").filter(number=wanted).first()
        if item is None:
            raise exceptions.NotFound(_("Not found."))
        return Response(rep.version(item, detail=True))

    @doc(
        summary="What changed between two versions",
        parameters=[
            OpenApiParameter("from", int, required=True),
            OpenApiParameter("to", int, required=True),
        ],
        responses={200: schemas.VersionDiff},
    )
    @action(detail=True, methods=["get"], url_path="versions/diff")
    def diff(self, request: Any, pk: str) -> Response:
        job = self.get_object()
        self.require("view", job)
        numbers = {}
        for name in ("from", "to"):
            raw = request.query_params.get(name)
            value = whole_number(raw)
            if value is None:
                raise errors.FieldError([(name, _("required, a version number"))])
            numbers[name] = value
        found = {v.number: v for v in job.versions.filter(number__in=numbers.values())}
        for name, number in numbers.items():
            if number not in found:
                raise errors.FieldError(
                    [(name, _("job %(j)s has no version %(n)s") % {"j": job.name, "n": number})]
                )
        changes = versioning.diff(found[numbers["from"]].snapshot, found[numbers["to"]].snapshot)
        return Response(
            {
                "from": numbers["from"],
                "to": numbers["to"],
                "changes": [{"path": p, "old": old, "new": new} for p, old, new in changes],
            }
        )

    @doc(
        summary="Restore a version as a new version",
        request=None,
        responses={200: schemas.Job},
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["post"], url_path=r"versions/(?P<number>[0-9]+)/rollback")
    def rollback(self, request: Any, pk: str, number: str) -> Response:
        job = self.get_object()
        self.require("change", job)
        wanted = whole_number(number)
        if wanted is None or not job.versions.filter(number=wanted).exists():
            raise exceptions.NotFound(_("Not found."))
        services.rollback_job(job, wanted, actor=self.actor)
        return job_response(job)

    # -- audit -------------------------------------------------------------------------

    @doc(summary="The job's audit trail, newest first", responses=schemas.paged(schemas.AuditEntry))
    @action(detail=True, methods=["get"])
    def audit(self, request: Any, pk: str) -> Response:
        from auditlog.models import LogEntry
        from django.contrib.contenttypes.models import ContentType

        from scheduler_app.models import JobDependency

        job = self.get_object()
        self.require("view", job)
        dep_ids = [
            str(i)
            for i in JobDependency.objects.filter(Q(upstream=job) | Q(downstream=job)).values_list(
                "pk", flat=True
            )
        ]
        qs = (
            LogEntry.objects.filter(
                Q(content_type=ContentType.objects.get_for_model(Job), object_pk=str(job.pk))
                | Q(content_type=ContentType.objects.get_for_model(JobDependency), object_pk__in=dep_ids)
            )
            .select_related("actor", "content_type")
            .order_by("-timestamp", "-pk")
        )
        return self.page(qs, lambda items: [audit_entry(e) for e in items])


ACTIONS = {0: "create", 1: "update", 2: "delete", 3: "access"}


def audit_entry(entry: Any) -> dict[str, Any]:
    data = entry.additional_data if isinstance(entry.additional_data, dict) else {}
    changes = entry.changes if isinstance(entry.changes, dict) else {}
    return {
        "id": entry.pk,
        "time": rep.iso(entry.timestamp),
        "actor": entry.actor.get_username() if entry.actor_id else None,
        "action": ACTIONS.get(entry.action, str(entry.action)),
        "object": f"{entry.content_type.model} {entry.object_pk}",
        "operation": data.get("operation") or ACTIONS.get(entry.action, ""),
        "changes": {
            str(k): [str(v[0]), str(v[1])]
            for k, v in changes.items()
            if isinstance(v, list | tuple) and len(v) == 2
        },
        "details": {k: v for k, v in data.items() if k != "operation"},
        "remote_addr": entry.remote_addr,
    }


__all__ = ["JobViewSet", "permissions"]
