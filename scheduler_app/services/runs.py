"""Runs: queue one now or at a time, the idempotent enqueue the scheduler uses, cancel
and stop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from scheduler_app import alerts, audit, signals
from scheduler_app.documents import limits
from scheduler_app.engine import triggerspec
from scheduler_app.models import Job, JobRun, RunReason, RunRequest, RunState
from scheduler_app.monitoring import counters
from scheduler_app.registry import TaskArgumentsError, TaskError, registry
from scheduler_app.services import permissions
from scheduler_app.services.bulk import CONFLICT, FORBIDDEN, INVALID, BulkResult


def run_jobs_now(
    jobs: Iterable[Job],
    *,
    actor: Any = None,
    kwargs_override: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    upstream_runs: list[int] | None = None,
    idempotency_key: str | None = None,
) -> BulkResult:
    """Queue one run of each job now (or at ``at``), optionally with kwargs overrides.

    Disabled jobs are refused; paused jobs may still be run by hand (pause stops the
    trigger, not the operator). ``upstream_runs``: the upstream runs whose results the
    run receives (a re-run of a dependency run); none otherwise.

    ``idempotency_key`` (one job only): a retried call with the same key for the same
    job queues nothing and answers the run the first call queued (``result.replayed``).
    The key is kept only when a run was queued, so a refused call may be retried."""
    if idempotency_key is not None:
        jobs = list(jobs)
        if len(jobs) != 1:
            raise ValueError("an idempotency key is for the run of one job")
        return _run_once(
            jobs[0],
            idempotency_key,
            actor=actor,
            kwargs_override=kwargs_override,
            at=at,
            upstream_runs=upstream_runs,
        )
    result = BulkResult()
    override = dict(kwargs_override or {})
    now = timezone.now()
    when = at or now
    if at is not None and timezone.is_naive(at):
        raise ValidationError({"at": _("The time needs a time zone.")})
    if at is not None and not triggerspec.EARLIEST <= at <= triggerspec.LATEST:
        raise ValidationError({"at": _("The time must lie between 1970 and 9000 (UTC).")})
    try:
        limits.check_value(override, "kwargs_override", max_bytes=limits.max_args_bytes())
    except limits.LimitError as exc:
        raise ValidationError({"kwargs_override": exc.message}) from None
    for job in jobs:
        if not permissions.can(actor, "run", job):
            result.refuse(job, _("you may not run this job"), FORBIDDEN)
            continue
        if not job.enabled:
            result.refuse(job, _("job is disabled"), CONFLICT)
            continue
        secret = sorted(set(override) & set(job.secret_names or []))
        if secret:
            # A run keeps its override in clear (the run page, backups with runs):
            # a secret's value may only come from the job's encrypted secret kwargs.
            error = _(
                "%(names)s: a secret of this job; a run cannot override it (change the job's secret kwargs)"
            ) % {"names": ", ".join(secret)}
            result.refuse(
                job,
                _("kwargs override: %(error)s") % {"error": error},
                INVALID,
                field="kwargs",
                message=error,
            )
            continue
        try:
            task = registry.get(job.task)
            # The job as stored first: if it no longer fits its task, the job is at fault
            # (a conflict), not the override the caller sent.
            task.check_call(job.args, {**job.kwargs, **job.secret_kwargs})
        except TaskArgumentsError as exc:
            result.refuse(job, _("the job's stored arguments: %(error)s") % {"error": exc}, CONFLICT)
            continue
        except TaskError as exc:
            result.refuse(job, str(exc), CONFLICT)
            continue
        try:
            task.check_call(job.args, {**job.kwargs, **job.secret_kwargs, **override})
        except TaskArgumentsError as exc:
            result.refuse(
                job,
                _("kwargs override: %(error)s") % {"error": exc},
                INVALID,
                field="kwargs",
                message=str(exc),
            )
            continue
        run = enqueue_run(
            job,
            scheduled_for=when,
            reason=RunReason.RUN_AT if at is not None else RunReason.MANUAL,
            kwargs_override=override,
            upstream_runs=upstream_runs,
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


def _run_once(job: Job, key: Any, *, actor: Any, **options: Any) -> BulkResult:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValidationError({"idempotency_key": _("a string of 1 to 200 characters")})
    result = BulkResult()
    if not permissions.can(actor, "run", job):
        result.refuse(job, _("you may not run this job"), FORBIDDEN)
        return result
    with transaction.atomic():
        claimed, earlier = _claim_key(job, key)
        if not claimed:
            if earlier is None:
                result.refuse(job, _("the run of that idempotency key was deleted"), CONFLICT)
            else:
                result.done.append(earlier)
                result.replayed = True
            return result
        result = run_jobs_now([job], actor=actor, **options)
        run = result.done[0] if result.done else None
        if run is None:  # refused, or that (job, time) is already queued: free the key
            RunRequest.objects.filter(job=job, key=key).delete()
        else:
            RunRequest.objects.filter(job=job, key=key).update(run=run)
    return result


def _claim_key(job: Job, key: str) -> tuple[bool, JobRun | None]:
    """``(True, None)`` after claiming ``key`` for this call, or ``(False, run)`` with
    the run an earlier call with ``key`` queued (None if that run was deleted). Two
    identical calls racing: the second waits on the unique index until the first
    commits, then finds its run."""
    for _attempt in range(2):
        existing = RunRequest.objects.filter(job=job, key=key).first()
        if existing is not None:
            earlier = JobRun.objects.filter(pk=existing.run_id).first() if existing.run_id else None
            return False, earlier
        try:
            with transaction.atomic():
                RunRequest.objects.create(job=job, key=key)
            return True, None
        except IntegrityError:
            continue
    raise IdempotencyConflict(_("another request with that idempotency key is in progress"))


class IdempotencyConflict(Exception):
    """Two calls with one idempotency key are both in progress (neither has committed)."""


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
    priority: int | None = None,
    upstream_runs: list[int] | None = None,
) -> JobRun | None:
    """Create the run for (job, scheduled_for, attempt); idempotent.

    Returns the new run, or None if that run already exists: a double fire can never
    create two runs for the same scheduled time."""
    run = JobRun.for_job(
        job,
        scheduled_for,
        reason=reason,
        state=state,
        attempt=attempt,
        not_before=not_before,
        error=error,
        priority=priority,
        kwargs_override=dict(kwargs_override or {}),
        triggered_by=triggered_by,
        upstream_runs=upstream_runs,
    )
    try:
        with transaction.atomic():
            run.save()
            counters.count_finished([run])  # metrics (only a skipped or cancelled run counts)
    except IntegrityError:
        if JobRun.objects.filter(job=job, scheduled_for=scheduled_for, attempt=attempt).exists():
            return None
        raise
    if state == RunState.QUEUED:
        signals.run_queued.send(sender=JobRun, run=run)
    return run


#: Why queued runs of a job that was disabled (or deleted) were cancelled.
JOB_DISABLED = "job disabled"


def cancel_queued_runs_of(jobs: Iterable[Job], *, reason: str = JOB_DISABLED) -> int:
    """Cancel every queued run of ``jobs`` (state ``cancelled``, ``error`` the reason),
    in the caller's transaction; how many. A disabled job's runs could never start: the
    claim skips them, and run-now refuses disabled jobs.

    Call it *before* writing the job row: like the claim (runs, then their jobs), so the
    two never wait on each other in opposite orders; a claim holding some of the runs
    finishes first, then those still queued are cancelled."""
    ids = [job.pk for job in jobs if job.pk is not None]
    if not ids:
        return 0
    with transaction.atomic():
        queued = JobRun.objects.filter(job_id__in=ids, state=RunState.QUEUED)
        pks = list(queued.values_list("pk", flat=True))
        if not pks:
            return 0
        updated = JobRun.objects.filter(pk__in=pks, state=RunState.QUEUED).update(
            state=RunState.CANCELLED, finished_at=timezone.now(), is_final=True, error=reason
        )
        counters.count_finished(JobRun.objects.filter(pk__in=pks, state=RunState.CANCELLED))
    return updated


def cancel_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Cancel queued runs; runs that already started are refused (stop them instead)."""
    result = BulkResult()
    for run in runs:
        if not permissions.can(actor, "run", run.job):
            result.refuse(run, _("you may not cancel runs of this job"), FORBIDDEN)
            continue
        with transaction.atomic():
            updated = JobRun.objects.filter(pk=run.pk, state=RunState.QUEUED).update(
                state=RunState.CANCELLED,
                finished_at=timezone.now(),
                is_final=True,
                error="cancelled by an operator",
            )
            if updated:
                run.refresh_from_db()
                counters.count_finished([run])  # metrics
                alerts.on_outcome([run])  # alert outbox rows, in this transaction
                audit.record(run.job, "cancel_run", actor, run_id=run.pk)
        if updated:
            signals.run_cancelled.send(sender=JobRun, run=run)
            result.done.append(run)
        else:
            result.refuse(run, _("run is %(state)s, not queued") % {"state": run.state}, CONFLICT)
    return result


def stop_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Ask the nodes running these runs to stop them (within a heartbeat); queued runs
    are cancelled at once."""
    result = BulkResult()
    for run in runs:
        if not permissions.can(actor, "run", run.job):
            result.refuse(run, _("you may not stop runs of this job"), FORBIDDEN)
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
            result.refuse(run, _("run is %(state)s, not queued or running") % {"state": run.state}, CONFLICT)
    return result


#: States a run may be retried from by hand: it ended without success.
RETRYABLE_STATES = frozenset(
    {RunState.FAILED, RunState.TIMED_OUT, RunState.LOST, RunState.INTERRUPTED, RunState.CANCELLED}
)


def rerun_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Queue a new run now of each run's job with the same inputs (the run's kwargs
    override, and the upstream runs whose results it received), through
    :func:`run_jobs_now` (permission-checked and audited there)."""
    result = BulkResult()
    for run in runs:
        queued = run_jobs_now(
            [run.job], actor=actor, kwargs_override=run.kwargs_override, upstream_runs=run.upstream_runs
        )
        result.done.extend(queued.done)
        result.refused.extend(refusal.about(run) for refusal in queued.refused)
    return result


def retry_runs(runs: Iterable[JobRun], *, actor: Any = None) -> BulkResult:
    """Queue the next attempt of each run that ended without success: same scheduled
    time and inputs, attempt number one above the highest so far, reason ``retry``,
    due now. Runs still queued or running, or that succeeded, are refused."""
    result = BulkResult()
    for run in runs:
        if not permissions.can(actor, "run", run.job):
            result.refuse(run, _("you may not run this job"), FORBIDDEN)
            continue
        if run.state not in RETRYABLE_STATES:
            result.refuse(
                run,
                _("run is %(state)s; only runs that ended without success are retried")
                % {"state": run.get_state_display()},
                CONFLICT,
            )
            continue
        if not run.job.enabled:
            result.refuse(run, _("job is disabled"), CONFLICT)
            continue
        with transaction.atomic():
            highest = (
                JobRun.objects.filter(job=run.job, scheduled_for=run.scheduled_for)
                .order_by("-attempt")
                .values_list("attempt", flat=True)
                .first()
            ) or run.attempt
            retry = enqueue_run(
                run.job,
                scheduled_for=run.scheduled_for,
                attempt=highest + 1,
                reason=RunReason.RETRY,
                not_before=timezone.now(),
                kwargs_override=run.kwargs_override,
                triggered_by=run.triggered_by,
                priority=run.priority,
                upstream_runs=run.upstream_runs,  # the same upstream results
            )
            if retry is None:
                result.refuse(run, "a retry of this run was queued at the same moment", CONFLICT)
                continue
            audit.record(run.job, "retry_run", actor, run_id=retry.pk, retry_of=run.pk)
        result.done.append(retry)
    return result
