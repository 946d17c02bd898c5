"""Jobs: save (create or change), enable, pause, move, delete, dependencies and
rollback to a version."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from scheduler_app import audit, signals
from scheduler_app.documents import job as job_document
from scheduler_app.models import ConfigVersion, Job, JobDependency, JobGroup
from scheduler_app.services import permissions, runs, summaries, versioning
from scheduler_app.services.bulk import FORBIDDEN, INVALID, BulkResult

logger = logging.getLogger(__name__)


# -- jobs -------------------------------------------------------------------------------


def save_job(
    job: Job,
    *,
    actor: Any = None,
    calendars: Iterable[Any] | None = None,
    notify: bool = True,
    summary: str = "",
) -> Job:
    """Validate and save a job (create or update); raises ValidationError and saves
    nothing on error, PermissionDenied if ``actor`` may not. ``notify=False`` lets a
    caller that saves related rows afterwards (the admin's inlines) call
    :func:`notify_job_changed` once they are saved."""
    check_job_save(job, actor)
    job.full_clean()
    with transaction.atomic(), audit.acting_as(actor):
        created = job.pk is None
        stored_tenant = (
            None if created else Job.objects.filter(pk=job.pk).values_list("tenant_id", flat=True).first()
        )
        moved = stored_tenant is not None and stored_tenant != job.tenant_id
        disabled = not created and not job.enabled and Job.objects.filter(pk=job.pk, enabled=True).exists()
        if disabled:
            runs.cancel_queued_runs_of([job])  # before the job row (see there)
        job.save()
        if moved:  # its history goes with it
            job.runs.update(tenant_id=job.tenant_id)
            job.versions.update(tenant_id=job.tenant_id)
            _cut_links_to(job, stored_tenant)
        if calendars is not None:
            job.calendars.set(list(calendars))
        if notify:
            notify_job_changed(job, actor=actor, created=created, summary=summary)
    logger.debug("job saved", extra={"job_id": job.pk, "job_created": created})
    return job


def _cut_links_to(job: Job, old_tenant_id: int) -> None:
    """A job moved to another tenant takes its runs along; the runs of other jobs stay.
    The links between the two (a run's cause, its upstream runs, a join round's ends)
    are cut, so that no run refers to another tenant's run (a backup of the database
    restores: restore refuses such references, which no face would show anyway)."""
    from scheduler_app.models import JobJoin, JobRun

    JobRun.objects.filter(triggered_by__job=job).exclude(job=job).update(triggered_by=None)
    JobRun.objects.filter(job=job, triggered_by__isnull=False).exclude(triggered_by__job=job).update(
        triggered_by=None
    )
    moved = set(job.runs.values_list("pk", flat=True))
    changed = []
    for run in (
        JobRun.objects.filter(tenant_id__in=[old_tenant_id, job.tenant_id])
        .exclude(upstream_runs=[])
        .only("pk", "job_id", "upstream_runs")
        .iterator(chunk_size=2000)
    ):
        mine = run.job_id == job.pk
        kept = [pk for pk in run.upstream_runs or [] if (pk in moved) == mine]
        if kept != list(run.upstream_runs or []):
            run.upstream_runs = kept
            changed.append(run)
    JobRun.objects.bulk_update(changed, ["upstream_runs"], batch_size=500)
    JobJoin.objects.filter(job=job).delete()  # its upstreams were removed before the move
    for join in JobJoin.objects.filter(ends__has_key=str(job.pk)):
        join.ends.pop(str(job.pk), None)
        join.save(update_fields=["ends"])


def check_job_save(job: Job, actor: Any) -> None:
    """Editors create and change; nobody moves a job into a tenant they cannot add to."""
    if job.pk is None:
        permissions.require(actor, "add", tenant_id=job.tenant_id)
        return
    stored = Job.objects.filter(pk=job.pk).first()
    if stored is None:
        return
    permissions.require(actor, "change", stored)
    from scheduler_app.services import codejobs

    codejobs.check_code_owned(job, stored)
    if stored.tenant_id != job.tenant_id:
        permissions.require(actor, "add", tenant_id=job.tenant_id)
        if JobDependency.objects.filter(Q(upstream=stored) | Q(downstream=stored)).exists():
            raise ValidationError(
                {"tenant": "The job has dependencies in its tenant; remove them before moving it."}
            )


def notify_job_changed(job: Job, *, actor: Any = None, created: bool = False, summary: str = "") -> None:
    """A job's definition (or something it uses) changed: record a version if its
    configuration differs from the last one, tell the scheduler (through the
    configuration version it polls) and, once committed, signal listeners."""
    versioning.record_version(
        job, actor=actor, summary=summary or (summaries.english(summaries.CREATED) if created else "")
    )
    ConfigVersion.bump()
    transaction.on_commit(lambda: signals.job_changed.send(sender=Job, job=job, created=created, actor=actor))


FLAG_ACTIONS = {"enabled": "change", "paused": "pause"}


def _update_flag(jobs: Iterable[Job], field_name: str, value: bool, actor: Any) -> BulkResult:
    result = BulkResult()
    action = FLAG_ACTIONS[field_name]
    verb = {
        ("enabled", True): summaries.ENABLED,
        ("enabled", False): summaries.DISABLED,
        ("paused", True): summaries.PAUSED,
        ("paused", False): summaries.RESUMED,
    }[(field_name, value)]
    with transaction.atomic(), audit.acting_as(actor):
        for job in jobs:
            if not permissions.can(actor, action, job):
                result.refuse(job, _("you may not %(action)s this job") % {"action": action}, FORBIDDEN)
                continue
            if getattr(job, field_name) == value:
                result.done.append(job)
                continue
            if field_name == "enabled" and not value:
                runs.cancel_queued_runs_of([job])  # before the job row (see there)
            setattr(job, field_name, value)
            fields = [field_name, "updated_at"]
            if field_name == "paused":  # a pause or resume by hand is not the scheduler's
                job.paused_reason = ""
                fields.append("paused_reason")
            job.save(update_fields=fields)
            result.done.append(job)
            notify_job_changed(job, actor=actor, summary=summaries.english(verb))
    return result


def enable_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    return _update_flag(jobs, "enabled", True, actor)


def disable_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    return _update_flag(jobs, "enabled", False, actor)


def pause_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    return _update_flag(jobs, "paused", True, actor)


def resume_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    return _update_flag(jobs, "paused", False, actor)


def move_jobs_to_group(jobs: Iterable[Job], group: JobGroup | None, *, actor: Any = None) -> BulkResult:
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for job in jobs:
            if not permissions.can(actor, "change", job):
                result.refuse(job, _("you may not change this job"), FORBIDDEN)
                continue
            if group is not None and group.tenant_id != job.tenant_id:
                result.refuse(
                    job,
                    _("group %(group)r belongs to another tenant") % {"group": group.name},
                    INVALID,
                    field="group",
                )
                continue
            job.group = group
            job.save(update_fields=["group", "updated_at"])
            result.done.append(job)
            notify_job_changed(
                job,
                actor=actor,
                summary=(
                    summaries.english(summaries.MOVED_TO, group=group.name)
                    if group
                    else summaries.english(summaries.REMOVED_FROM_GROUP)
                ),
            )
    return result


def delete_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for job in jobs:
            if not permissions.can(actor, "delete", job):
                result.refuse(job, _("you may not delete this job"), FORBIDDEN)
                continue
            pk = job.pk
            runs.cancel_queued_runs_of([job])  # a claim waiting on the job row sees them gone
            job.delete()
            job.pk = pk
            result.done.append(job)
    if result.done:
        ConfigVersion.bump()
    for job in result.done:
        transaction.on_commit(lambda pk=job.pk: signals.job_deleted.send(sender=Job, job_id=pk, actor=actor))
    return result


# -- dependencies -----------------------------------------------------------------------


def add_dependency(
    upstream: Job, downstream: Job, condition: str = "success", *, actor: Any = None
) -> JobDependency:
    permissions.require(actor, "change", downstream)
    edge = JobDependency(upstream=upstream, downstream=downstream, condition=condition)
    edge.full_clean()
    with transaction.atomic(), audit.acting_as(actor):
        edge.save()
        notify_job_changed(
            downstream, actor=actor, summary=summaries.english(summaries.DEPENDS_ON, job=upstream.name)
        )
    return edge


def check_dependency_save(edge: JobDependency, actor: Any = None) -> None:
    """Who changes an edge changes its downstream job (a stored edge moved to another
    downstream: both); the model checks tenants, cycles and conditions. Writes nothing."""
    permissions.require(actor, "change", edge.downstream)
    stored = (
        JobDependency.objects.filter(pk=edge.pk).select_related("downstream").first() if edge.pk else None
    )
    if stored is not None and stored.downstream_id != edge.downstream_id:
        permissions.require(actor, "change", stored.downstream)
    edge.full_clean()


def save_dependency(edge: JobDependency, *, actor: Any = None) -> JobDependency:
    """Create or change one edge (the dependency admin page); the downstream job (and a
    former downstream) gets a version and reaches the scheduler."""
    check_dependency_save(edge, actor)
    with transaction.atomic(), audit.acting_as(actor):
        stored = (
            JobDependency.objects.filter(pk=edge.pk).select_related("downstream").first() if edge.pk else None
        )
        edge.save()
        notify_job_changed(
            edge.downstream,
            actor=actor,
            summary=summaries.english(summaries.DEPENDS_ON, job=edge.upstream.name),
        )
        if stored is not None and stored.downstream_id != edge.downstream_id:
            notify_job_changed(
                stored.downstream,
                actor=actor,
                summary=summaries.english(summaries.NO_LONGER_DEPENDS_ON, job=stored.upstream.name),
            )
    return edge


def delete_dependencies(edges: Iterable[JobDependency], *, actor: Any = None) -> BulkResult:
    """Delete edges; each one's downstream job gets a version."""
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for edge in edges:
            if not permissions.can(actor, "change", edge.downstream):
                result.refused.append((edge, _("you may not change %(job)s") % {"job": edge.downstream}))
                continue
            pk = edge.pk
            edge.delete()
            edge.pk = pk
            notify_job_changed(
                edge.downstream,
                actor=actor,
                summary=summaries.english(summaries.NO_LONGER_DEPENDS_ON, job=str(edge.upstream)),
            )
            result.done.append(edge)
    return result


def set_job_edges(
    job: Job,
    *,
    upstream: Mapping[int, str] | None = None,
    downstream: Mapping[int, str] | None = None,
    actor: Any = None,
) -> set[int]:
    """Make ``job``'s upstream edges exactly ``upstream`` ({upstream job id: condition})
    and/or its downstream edges exactly ``downstream`` ({downstream job id: condition}),
    as the job page's two dependency lists edit them (None: leave that side alone).
    Removals first, then additions and changes (so replacing an edge is not taken for a
    cycle). Needs the right to change ``job`` and every other job whose upstream edges
    change; each such job gets a version (``job``'s own is the caller's, with its other
    changes). Raises ValidationError (a cycle, another tenant) or PermissionDenied, in
    the caller's transaction. Returns the ids of the other jobs changed."""
    permissions.require(actor, "change", job)
    others: set[int] = set()
    with transaction.atomic(), audit.acting_as(actor):
        if upstream is not None:
            drop_dependencies(job, keep=set(upstream), actor=actor)
        current = {e.downstream_id: e for e in job.downstream_edges.select_related("downstream")}
        if downstream is not None:
            for other_id, edge in current.items():
                if other_id not in downstream:
                    permissions.require(actor, "change", edge.downstream)
                    edge.delete()
                    others.add(other_id)
        if upstream is not None:
            put_dependencies(job, upstream, actor=actor)
        if downstream is not None:
            for other_id, condition in downstream.items():
                edge = current.get(other_id) or JobDependency(upstream=job, downstream_id=other_id)
                if edge.pk and edge.condition == condition:
                    continue
                permissions.require(actor, "change", edge.downstream)
                edge.condition = condition
                edge.full_clean(exclude=["tenant"])
                edge.save()
                others.add(other_id)
        for other in Job.objects.filter(pk__in=others - {job.pk}):
            notify_job_changed(
                other, actor=actor, summary=summaries.english(summaries.UPSTREAM_EDGES_CHANGED, job=job.name)
            )
    return others


def drop_dependencies(job: Job, *, keep: Collection[int], actor: Any = None) -> bool:
    """Delete ``job``'s upstream edges except those from the jobs ``keep`` (ids); whether
    any was deleted. For a caller that then calls :func:`put_dependencies` and
    :func:`notify_job_changed` in its transaction (removals first, so replacing an edge
    that a new one would close into a cycle is not mistaken for a cycle)."""
    permissions.require(actor, "change", job)
    dropped = False
    for edge in job.upstream_edges.all():
        if edge.upstream_id not in keep:
            edge.delete()
            dropped = True
    return dropped


def put_dependencies(job: Job, wanted: Mapping[int, str], *, actor: Any = None) -> bool:
    """Add or update ``job``'s upstream edges to ``wanted`` (upstream id -> condition);
    whether any changed. Raises ValidationError at the first edge the model refuses (a
    cycle, a bad condition): run it in a transaction the caller rolls back."""
    permissions.require(actor, "change", job)
    current = {e.upstream_id: e for e in job.upstream_edges.all()}
    changed = False
    for upstream_id, condition in wanted.items():
        edge = current.get(upstream_id) or JobDependency(upstream_id=upstream_id, downstream=job)
        if edge.pk and edge.condition == condition:
            continue
        edge.condition = condition
        edge.full_clean(exclude=["tenant"])
        edge.save()
        changed = True
    return changed


# -- versions ---------------------------------------------------------------------------


def rollback_job(job: Job, number: int, *, actor: Any = None) -> Job:
    """Restore version ``number`` of ``job`` as a new version (fields, trigger, group,
    calendars, dependencies). Secret values are not versioned, so the current secrets
    stay; the new version's fingerprints show whether they differ from the old ones."""
    permissions.require(actor, "change", job)
    version = job.versions.filter(number=number).first()
    if version is None:
        raise ValidationError(
            {"version": _("job %(job)s has no version %(number)s") % {"job": job.name, "number": number}}
        )
    # The job keeps its tenant and name; secret values are not in a version.
    entry = {k: v for k, v in version.snapshot.items() if k not in ("tenant", "name", "secret_fingerprints")}
    summary = summaries.english(summaries.ROLLBACK, number=number)
    with transaction.atomic(), audit.acting_as(actor):
        try:
            changed = _apply_job_document(job, entry, actor=actor)
        except job_document.DocumentError as exc:
            raise ValidationError(
                {
                    "version": _("cannot restore version %(number)s: %(error)s")
                    % {"number": number, "error": exc}
                }
            ) from None
        job.refresh_from_db()
        if changed:
            notify_job_changed(job, actor=actor, summary=summary)
        else:  # nothing to change, but the rollback is still a version
            versioning.record_version(job, actor=actor, summary=summary, force=True)
        audit.record(job, "rollback", actor, to_version=number)
    return job


def _apply_job_document(job: Job, entry: Mapping[str, Any], *, actor: Any) -> bool:
    """Make the stored ``job`` what the job document ``entry`` says (fields, group,
    calendars, ``depends_on``), inside the caller's transaction; whether anything
    changed. Versions and notification are the caller's."""
    stored = Job.objects.select_related("tenant", "group").get(pk=job.pk)
    # Messages name the entry as a one-job jobs file would, as rollbacks always have.
    where = f"jobs[0] ({stored.tenant.slug}/{stored.name})"
    before = job_document.export_job(stored, secrets="fingerprints")
    calendars = job_document.apply_job_document(stored, entry, where=where)
    after = job_document.export_job(stored, secrets="fingerprints", calendars=calendars)
    before.pop("depends_on", None)
    after.pop("depends_on", None)
    changed = before != after
    if changed:
        save_job(stored, actor=actor, calendars=calendars, notify=False)
    if "depends_on" in entry:
        wanted = {
            upstream.pk: condition
            for upstream, condition in job_document.dependencies(stored, entry["depends_on"], where=where)
        }
        changed = drop_dependencies(stored, keep=wanted, actor=actor) or changed
        try:
            changed = put_dependencies(stored, wanted, actor=actor) or changed
        except ValidationError as exc:
            raise job_document.dependency_error(exc, where=where) from None
    return changed
