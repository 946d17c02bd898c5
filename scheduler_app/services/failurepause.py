"""Pause on failure: a job with ``pause_after_failures = N`` is paused after N
consecutive *final* failures (failed, timed out or lost with no retry to follow).

Wired as a receiver of the run-outcome signals (``run_failed``, ``run_timed_out``,
``run_lost``), which the run store sends after the outcome is committed, so the run
store's claim and record code knows nothing of it. The streak counts final outcomes
finished since the job was last changed (a resume by hand, an edit), so a job resumed by
hand gets N fresh attempts before it is paused again; a success breaks the streak and
skipped or cancelled runs leave it as it is. The pause is the system's: audited (operation
``pause_on_failure`` with the runs that failed), versioned, its reason stored in
``Job.paused_reason`` and shown by the admin. It resumes only by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction

from scheduler_app import audit
from scheduler_app.models import Job, JobRun, RunState
from scheduler_app.services import summaries

logger = logging.getLogger(__name__)

FAILED = (RunState.FAILED, RunState.TIMED_OUT, RunState.LOST)
OUTCOMES = (RunState.SUCCEEDED, *FAILED)


def on_run_outcome(sender: Any, run: JobRun, **kwargs: Any) -> None:
    """Signal receiver; never raises into the worker that recorded the run."""
    if not run.is_final or run.state not in FAILED:
        return
    if not getattr(run.job, "pause_after_failures", None):
        return
    try:
        pause_if_failing(run.job_id)
    except Exception:  # the run is recorded; a failed check must not stop the worker
        logger.exception("pause-on-failure check failed", extra={"job_id": run.job_id, "run_id": run.pk})


def pause_if_failing(job_id: int) -> bool:
    """Pause the job if its last ``pause_after_failures`` final outcomes since it was last
    changed are all failures; whether it paused it now."""
    with transaction.atomic():
        qs = Job.objects.filter(pk=job_id)
        if connection.vendor == "postgresql":
            qs = qs.select_for_update(of=("self",))  # two nodes recording failures at once
        job = qs.first()
        if job is None or job.paused or not job.pause_after_failures:
            return False
        limit = job.pause_after_failures
        recent = list(
            JobRun.objects.filter(
                job_id=job.pk, is_final=True, state__in=OUTCOMES, finished_at__gt=job.updated_at
            )
            .order_by("-finished_at", "-pk")
            .values_list("pk", "state", "error")[:limit]
        )
        if len(recent) < limit or any(state not in FAILED for _, state, _ in recent):
            return False
        last_id, last_state, last_error = recent[0]
        detail = (last_error or "").strip().splitlines()[0][:200] if (last_error or "").strip() else ""
        if detail:
            reason = summaries.english(
                summaries.PAUSE_REASON_DETAIL, n=limit, run=last_id, state=last_state, detail=detail
            )
        else:
            reason = summaries.english(summaries.PAUSE_REASON, n=limit, run=last_id, state=last_state)
        job.paused = True
        job.paused_reason = reason[:500]
        job.save(update_fields=["paused", "paused_reason", "updated_at"])
        from scheduler_app.services.jobs import notify_job_changed

        notify_job_changed(job, actor=None, summary=summaries.english(summaries.PAUSED_AFTER, n=limit))
        audit.record(
            job,
            "pause_on_failure",
            None,
            reason=job.paused_reason,
            failures=limit,
            runs=[pk for pk, _, _ in recent],
        )
    logger.warning(
        "job paused after consecutive failures",
        extra={"job_id": job.pk, "job": job.name, "failures": limit, "run_id": last_id},
    )
    return True


def connect() -> None:
    from scheduler_app import signals

    for signal in (signals.run_failed, signals.run_timed_out, signals.run_lost):
        signal.connect(on_run_outcome, dispatch_uid=f"scheduler_app.failurepause.{id(signal)}")
