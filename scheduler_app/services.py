"""The one write path. Admin actions, API views, commands and the engine change jobs
and runs only through these functions, so validation, transactions, audit and (later)
permission checks happen in one place.

Functions that act on many jobs return a :class:`BulkResult` listing what was done and
what was refused with the reason, so a face can report both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduler_app import signals
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
) -> Job:
    """Validate and save a job (create or update); raises ValidationError and saves
    nothing on error. ``notify=False`` lets a caller that saves related rows afterwards
    (the admin's inlines) call :func:`notify_job_changed` once they are saved."""
    job.full_clean()
    with transaction.atomic():
        created = job.pk is None
        job.save()
        if calendars is not None:
            job.calendars.set(list(calendars))
    logger.info("job saved", extra={"job_id": job.pk, "job_created": created})
    if notify:
        notify_job_changed(job, actor=actor, created=created)
    return job


def notify_job_changed(job: Job, *, actor: Any = None, created: bool = False) -> None:
    """Tell the scheduler (through the configuration version it polls) and signal
    listeners that a job's definition changed, once the change has committed."""
    ConfigVersion.bump()
    transaction.on_commit(
        lambda: signals.job_changed.send(sender=Job, job=job, created=created, actor=actor)
    )


def _update_flag(jobs: Iterable[Job], field_name: str, value: bool, actor: Any) -> BulkResult:
    result = BulkResult()
    with transaction.atomic():
        for job in jobs:
            if getattr(job, field_name) == value:
                result.done.append(job)
                continue
            setattr(job, field_name, value)
            job.save(update_fields=[field_name, "updated_at"])
            result.done.append(job)
    for job in result.done:
        notify_job_changed(job, actor=actor)
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
    with transaction.atomic():
        for job in jobs:
            if group is not None and group.tenant_id != job.tenant_id:
                result.refused.append((job, f"group {group.name!r} belongs to another tenant"))
                continue
            job.group = group
            job.save(update_fields=["group", "updated_at"])
            result.done.append(job)
    for job in result.done:
        notify_job_changed(job, actor=actor)
    return result


def delete_jobs(jobs: Iterable[Job], *, actor: Any = None) -> BulkResult:
    result = BulkResult()
    with transaction.atomic():
        for job in jobs:
            pk = job.pk
            job.delete()
            job.pk = pk
            result.done.append(job)
    if result.done:
        ConfigVersion.bump()
    for job in result.done:
        transaction.on_commit(
            lambda pk=job.pk: signals.job_deleted.send(sender=Job, job_id=pk, actor=actor)
        )
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
        updated = JobRun.objects.filter(pk=run.pk, state=RunState.QUEUED).update(
            state=RunState.CANCELLED, finished_at=timezone.now(), is_final=True
        )
        if updated:
            run.refresh_from_db()
            result.done.append(run)
        else:
            result.refused.append((run, f"run is {run.state}, not queued"))
    return result


# -- dependencies -----------------------------------------------------------------------


def add_dependency(
    upstream: Job, downstream: Job, condition: str = "success", *, actor: Any = None
) -> JobDependency:
    edge = JobDependency(upstream=upstream, downstream=downstream, condition=condition)
    edge.full_clean()
    with transaction.atomic():
        edge.save()
    notify_job_changed(downstream, actor=actor)
    return edge


def stop_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Ask the nodes running these runs to stop them (within a heartbeat); queued runs
    are cancelled at once."""
    result = BulkResult()
    for run in runs:
        if JobRun.objects.filter(pk=run.pk, state=RunState.RUNNING).update(stop_requested=True):
            run.refresh_from_db()
            result.done.append(run)
            continue
        cancelled = cancel_runs([run], actor=actor)
        if cancelled.done:
            result.done.extend(cancelled.done)
        else:
            result.refused.append((run, f"run is {run.state}, not queued or running"))
    return result
