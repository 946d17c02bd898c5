"""Backfill: queue one run of a job for every fire time of its trigger in a past (or
any) range, e.g. "every run of last week" after an outage or for a new job.

Bounded by ``SCHEDULER_APP["BACKFILL_MAX_RUNS"]``: a range with more fire times is refused
as a whole, naming the setting. Idempotent with the normal fires: a fire time the job
already has a run for (from its trigger, a misfire policy or an earlier backfill) is not
queued again, and the run queue's unique (job, scheduled_for, attempt) keeps a trigger
firing later from adding a second run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.conf import app_settings
from scheduler_app.models import Job, JobRun, RunReason
from scheduler_app.services import permissions
from scheduler_app.services.runs import enqueue_run

#: Called as ``progress(done, total)`` while runs are queued.
Progress = Callable[[int, int], None]


@dataclass
class BackfillPlan:
    """The fire times in the range: those to queue, and those that already have a run."""

    job: Job
    start: datetime
    end: datetime
    to_queue: list[datetime] = field(default_factory=list)
    existing: list[datetime] = field(default_factory=list)
    queued: list[JobRun] = field(default_factory=list)


def plan_backfill(job: Job, start: datetime, end: datetime, *, actor: Any = None) -> BackfillPlan:
    """The fire times of ``job``'s trigger in [start, end] (both inclusive), checked
    against the cap and the runs the job already has; queues nothing."""
    if not permissions.can(actor, "run", job):
        raise PermissionDenied(_("you may not run job %(name)s") % {"name": job.name})
    errors: dict[str, str] = {}
    for name, value in (("from", start), ("to", end)):
        if not isinstance(value, datetime):
            errors[name] = "must be a date-time"
        elif value.tzinfo is None:
            errors[name] = "needs a UTC offset, e.g. 2026-12-01T00:00:00+00:00"
    if errors:
        raise ValidationError(errors)
    if end < start:
        raise ValidationError(
            {
                "to": _("%(end)s is before from (%(start)s)")
                % {"end": end.isoformat(), "start": start.isoformat()}
            }
        )
    if not job.enabled:
        raise ValidationError({"job": _("job %(job)s is disabled") % {"job": job.name}})
    try:
        trigger = job.build_trigger()
    except ValueError as exc:
        raise ValidationError({"trigger": str(exc)}) from None
    if trigger is None:
        raise ValidationError(
            {"trigger": _("job %(job)s has a manual trigger: it has no fire times") % {"job": job.name}}
        )
    cap = app_settings.BACKFILL_MAX_RUNS
    times: list[datetime] = []
    previous: datetime | None = None
    now = start
    while True:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None or nxt > end:
            break
        if len(times) >= cap:
            raise ValidationError(
                {
                    "to": _(
                        "the range has more than %(cap)s fire times, the cap "
                        '(SCHEDULER_APP["BACKFILL_MAX_RUNS"] = %(cap)s); narrow the range'
                    )
                    % {"cap": cap}
                }
            )
        times.append(nxt)
        previous = nxt
        now = nxt + timedelta(microseconds=1)
    existing = set(
        JobRun.objects.filter(job=job, scheduled_for__gte=start, scheduled_for__lte=end).values_list(
            "scheduled_for", flat=True
        )
    )
    plan = BackfillPlan(job=job, start=start, end=end)
    for moment in times:
        (plan.existing if moment in existing else plan.to_queue).append(moment)
    return plan


def backfill_job(
    job: Job,
    start: datetime,
    end: datetime,
    *,
    actor: Any = None,
    priority: int | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BackfillPlan:
    """Queue a run for each fire time of ``job`` in [start, end] that has none yet, at
    ``priority`` (default: the job's); all or nothing, audited once. ``dry_run``: the
    plan only."""
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise ValidationError({"priority": _("must be a whole number")})
    if priority is not None and not -(2**31) <= priority < 2**31:
        raise ValidationError(
            {"priority": _("%(priority)s is out of range (a 32-bit whole number)") % {"priority": priority}}
        )
    plan = plan_backfill(job, start, end, actor=actor)
    if dry_run:
        return plan
    total = len(plan.to_queue)
    with transaction.atomic():
        for index, moment in enumerate(plan.to_queue, 1):
            run = enqueue_run(job, scheduled_for=moment, reason=RunReason.BACKFILL, priority=priority)
            if run is None:  # fired meanwhile
                plan.existing.append(moment)
            else:
                plan.queued.append(run)
            if progress is not None:
                progress(index, total)
        audit.record(
            job,
            "backfill",
            actor,
            start=start.isoformat(),
            end=end.isoformat(),
            queued=len(plan.queued),
            already=len(plan.existing),
            priority=job.priority if priority is None else priority,
        )
    return plan
