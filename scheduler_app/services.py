"""The one write path. Admin actions, API views, commands and the engine change jobs
and runs only through these functions, so validation, transactions, permission checks,
audit and versions happen in one place.

``actor`` is the user acting; ``None`` means the system (the engine, or a management
command run by an operator with shell access), which is not permission-checked. Functions
that act on many objects check each one and return a :class:`BulkResult` listing what was
done and what was refused with the reason, so a face can report both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from scheduler_app import audit, permissions, signals, versioning
from scheduler_app.models import (
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    RunReason,
    RunState,
)
from scheduler_app.registry import TaskArgumentsError, TaskError, registry

logger = logging.getLogger(__name__)


@dataclass
class BulkResult:
    done: list[Any] = field(default_factory=list)
    refused: list[tuple[Any, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.done)


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
        moved = not created and Job.objects.filter(pk=job.pk).exclude(tenant_id=job.tenant_id).exists()
        job.save()
        if moved:  # its history goes with it
            job.runs.update(tenant_id=job.tenant_id)
            job.versions.update(tenant_id=job.tenant_id)
        if calendars is not None:
            job.calendars.set(list(calendars))
        if notify:
            notify_job_changed(job, actor=actor, created=created, summary=summary)
    logger.debug("job saved", extra={"job_id": job.pk, "job_created": created})
    return job


def check_job_save(job: Job, actor: Any) -> None:
    """Editors create and change; nobody moves a job into a tenant they cannot add to."""
    if job.pk is None:
        permissions.require(actor, "add", tenant_id=job.tenant_id)
        return
    stored = Job.objects.filter(pk=job.pk).first()
    if stored is None:
        return
    permissions.require(actor, "change", stored)
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
    versioning.record_version(job, actor=actor, summary=summary or ("created" if created else ""))
    ConfigVersion.bump()
    transaction.on_commit(lambda: signals.job_changed.send(sender=Job, job=job, created=created, actor=actor))


FLAG_ACTIONS = {"enabled": "change", "paused": "pause"}


def _update_flag(jobs: Iterable[Job], field_name: str, value: bool, actor: Any) -> BulkResult:
    result = BulkResult()
    action = FLAG_ACTIONS[field_name]
    verb = {
        ("enabled", True): "enabled",
        ("enabled", False): "disabled",
        ("paused", True): "paused",
        ("paused", False): "resumed",
    }[(field_name, value)]
    with transaction.atomic(), audit.acting_as(actor):
        for job in jobs:
            if not permissions.can(actor, action, job):
                result.refused.append((job, f"you may not {action} this job"))
                continue
            if getattr(job, field_name) == value:
                result.done.append(job)
                continue
            setattr(job, field_name, value)
            job.save(update_fields=[field_name, "updated_at"])
            result.done.append(job)
            notify_job_changed(job, actor=actor, summary=verb)
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
                result.refused.append((job, "you may not change this job"))
                continue
            if group is not None and group.tenant_id != job.tenant_id:
                result.refused.append((job, f"group {group.name!r} belongs to another tenant"))
                continue
            job.group = group
            job.save(update_fields=["group", "updated_at"])
            result.done.append(job)
            notify_job_changed(job, actor=actor, summary=f"moved to {group.name if group else 'no group'}")
    return result


def delete_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for job in jobs:
            if not permissions.can(actor, "delete", job):
                result.refused.append((job, "you may not delete this job"))
                continue
            pk = job.pk
            job.delete()
            job.pk = pk
            result.done.append(job)
    if result.done:
        ConfigVersion.bump()
    for job in result.done:
        transaction.on_commit(lambda pk=job.pk: signals.job_deleted.send(sender=Job, job_id=pk, actor=actor))
    return result


# -- runs -------------------------------------------------------------------------------


def run_jobs_now(
    jobs: Iterable[Job],
    *,
    actor: Any = None,
    kwargs_override: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> BulkResult:
    """Queue one run of each job now (or at ``at``), optionally with kwargs overrides.

    Disabled jobs are refused; paused jobs may still be run by hand (pause stops the
    trigger, not the operator)."""
    result = BulkResult()
    override = dict(kwargs_override or {})
    now = timezone.now()
    when = at or now
    if at is not None and timezone.is_naive(at):
        raise ValidationError({"at": "The time needs a time zone."})
    for job in jobs:
        if not permissions.can(actor, "run", job):
            result.refused.append((job, "you may not run this job"))
            continue
        if not job.enabled:
            result.refused.append((job, "job is disabled"))
            continue
        try:
            task = registry.get(job.task)
            task.check_call(job.args, {**job.kwargs, **job.secret_kwargs, **override})
        except TaskArgumentsError as exc:
            result.refused.append((job, f"kwargs override: {exc}"))
            continue
        except TaskError as exc:
            result.refused.append((job, str(exc)))
            continue
        run = enqueue_run(
            job,
            scheduled_for=when,
            reason=RunReason.RUN_AT if at is not None else RunReason.MANUAL,
            kwargs_override=override,
        )
        audit.record(
            job,
            "run_at" if at is not None else "run_now",
            actor,
            run_id=run.pk if run else None,
            kwargs_override=sorted(override),
        )
        result.done.append(run)
    return result


def enqueue_run(
    job: Job,
    *,
    scheduled_for: datetime,
    attempt: int = 1,
    reason: str = RunReason.SCHEDULE,
    not_before: datetime | None = None,
    kwargs_override: Mapping[str, Any] | None = None,
    triggered_by: JobRun | None = None,
    state: str = RunState.QUEUED,
    error: str = "",
) -> JobRun | None:
    """Create the run for (job, scheduled_for, attempt); idempotent.

    Returns the new run, or None if that run already exists: a double fire can never
    create two runs for the same scheduled time."""
    run = JobRun(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=scheduled_for,
        attempt=attempt,
        reason=reason,
        priority=job.priority,
        not_before=not_before or scheduled_for,
        kwargs_override=dict(kwargs_override or {}),
        triggered_by=triggered_by,
        state=state,
        error=error,
        executor=job.executor,
    )
    if state in (RunState.SKIPPED, RunState.CANCELLED):
        run.finished_at = timezone.now()
        run.is_final = True
    try:
        with transaction.atomic():
            run.save()
    except IntegrityError:
        if JobRun.objects.filter(job=job, scheduled_for=scheduled_for, attempt=attempt).exists():
            return None
        raise
    if state == RunState.QUEUED:
        signals.run_queued.send(sender=JobRun, run=run)
    return run


def cancel_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Cancel queued runs; runs that already started are refused (stop them instead)."""
    result = BulkResult()
    for run in runs:
        if not permissions.can(actor, "run", run.job):
            result.refused.append((run, "you may not cancel runs of this job"))
            continue
        updated = JobRun.objects.filter(pk=run.pk, state=RunState.QUEUED).update(
            state=RunState.CANCELLED,
            finished_at=timezone.now(),
            is_final=True,
            error="cancelled by an operator",
        )
        if updated:
            run.refresh_from_db()
            audit.record(run.job, "cancel_run", actor, run_id=run.pk)
            result.done.append(run)
        else:
            result.refused.append((run, f"run is {run.state}, not queued"))
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
        notify_job_changed(downstream, actor=actor, summary=f"depends on {upstream.name}")
    return edge


def stop_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Ask the nodes running these runs to stop them (within a heartbeat); queued runs
    are cancelled at once."""
    result = BulkResult()
    for run in runs:
        if not permissions.can(actor, "run", run.job):
            result.refused.append((run, "you may not stop runs of this job"))
            continue
        if JobRun.objects.filter(pk=run.pk, state=RunState.RUNNING).update(stop_requested=True):
            run.refresh_from_db()
            audit.record(run.job, "stop_run", actor, run_id=run.pk)
            result.done.append(run)
            continue
        cancelled = cancel_runs([run], actor=actor)
        if cancelled.done:
            result.done.extend(cancelled.done)
        else:
            result.refused.append((run, f"run is {run.state}, not queued or running"))
    return result


# -- versions ---------------------------------------------------------------------------


def rollback_job(job: Job, number: int, *, actor: Any = None) -> Job:
    """Restore version ``number`` of ``job`` as a new version (fields, trigger, group,
    calendars, dependencies). Secret values are not versioned, so the current secrets
    stay; the new version's fingerprints show whether they differ from the old ones."""
    from scheduler_app.interchange import jobsfile

    permissions.require(actor, "change", job)
    version = job.versions.filter(number=number).first()
    if version is None:
        raise ValidationError({"version": f"job {job.name} has no version {number}"})
    entry = {k: v for k, v in version.snapshot.items() if k != "secret_fingerprints"}
    entry["tenant"], entry["name"] = job.tenant.slug, job.name
    with transaction.atomic(), audit.acting_as(actor):
        try:
            imported = jobsfile.import_document(
                {"version": jobsfile.FORMAT_VERSION, "jobs": [entry]},
                actor=actor,
                summary=f"rollback to version {number}",
                source=f"rollback of {job.tenant.slug}/{job.name} to version {number}",
            )
        except jobsfile.JobsFileError as exc:
            raise ValidationError({"version": f"cannot restore version {number}: {exc}"}) from None
        job.refresh_from_db()
        if not imported.has_changes:  # the import recorded the version when something changed
            versioning.record_version(job, actor=actor, summary=f"rollback to version {number}", force=True)
        audit.record(job, "rollback", actor, to_version=number)
    return job


# -- object permissions -----------------------------------------------------------------

GRANTABLE = ("view", "change", "delete", "run", "pause")


def set_object_permissions(
    obj: Job | JobGroup, holder: Any, actions: Iterable[str], *, actor: Any = None
) -> tuple[list[str], list[str]]:
    """Make ``holder`` (a user or a Django group) have exactly ``actions`` on ``obj``
    (a job, or a group, whose grants apply to its jobs). Only tenant admins may.
    Returns (granted, revoked)."""
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm, get_group_perms, get_user_perms, remove_perm

    permissions.require(actor, "manage", obj)
    wanted = set(actions)
    unknown = sorted(wanted - set(GRANTABLE))
    if unknown:
        raise ValidationError({"actions": f"{unknown[0]!r} cannot be granted; use {', '.join(GRANTABLE)}"})
    suffix = "job" if isinstance(obj, Job) else "jobgroup"
    is_group = isinstance(holder, Group)
    if not is_group:
        from scheduler_app.models import Membership

        if not Membership.objects.filter(user=holder, tenant_id=obj.tenant_id).exists():
            raise ValidationError({"user": f"{holder} is not a member of {obj.tenant}; add them first"})
    current_codenames = get_group_perms(holder, obj) if is_group else get_user_perms(holder, obj)
    current = {c.rsplit("_", 1)[0] for c in current_codenames if c.endswith(f"_{suffix}")}
    granted, revoked = sorted(wanted - current), sorted(current & set(GRANTABLE) - wanted)
    with transaction.atomic(), audit.acting_as(actor):
        for action in granted:
            assign_perm(f"scheduler_app.{action}_{suffix}", holder, obj)
        for action in revoked:
            remove_perm(f"scheduler_app.{action}_{suffix}", holder, obj)
        if granted or revoked:
            audit.record(
                obj,
                "permissions",
                actor,
                holder=str(holder),
                holder_type="group" if is_group else "user",
                granted=granted,
                revoked=revoked,
            )
    return granted, revoked
