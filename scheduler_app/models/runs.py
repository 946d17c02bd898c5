from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from scheduler_app import display


class RunState(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    TIMED_OUT = "timed_out", _("timed out")
    CANCELLED = "cancelled", _("cancelled")
    SKIPPED = "skipped", _("skipped")
    LOST = "lost", _("lost")
    INTERRUPTED = "interrupted", _("interrupted")


FINISHED_STATES = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.TIMED_OUT,
        RunState.CANCELLED,
        RunState.SKIPPED,
        RunState.LOST,
        RunState.INTERRUPTED,
    }
)


#: States a run fails in. Such a run is a *failure* when it is final (no retry follows):
#: what the ``failed`` alert fires on, and what the dashboard, the operator job list and
#: the run statistics count as failed. A non-final one is a retried attempt (the
#: ``retrying`` alert); an interrupted run is re-queued when its node starts again, and
#: cancelled and skipped runs did not fail, so none of these counts as a failure.
FAILURE_STATES = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST})


def failure_q() -> models.Q:
    """The runs that count as failures (see :data:`FAILURE_STATES`), as a filter."""
    return models.Q(state__in=sorted(FAILURE_STATES), is_final=True)


class RunReason(models.TextChoices):
    SCHEDULE = "schedule", _("trigger fired")
    MANUAL = "manual", _("run now")
    RUN_AT = "run_at", _("run at a given time")
    RETRY = "retry", _("retry")
    DEPENDENCY = "dependency", _("upstream finished")
    MISFIRE = "misfire", _("missed fire time")
    RECOVERY = "recovery", _("re-queued after interruption")
    BACKFILL = "backfill", _("backfill of a past range")


class JobRunQuerySet(models.QuerySet):
    def queued(self) -> JobRunQuerySet:
        return self.filter(state=RunState.QUEUED)

    def running(self) -> JobRunQuerySet:
        return self.filter(state=RunState.RUNNING)

    def due(self, now: datetime) -> JobRunQuerySet:
        """Queued runs whose ``not_before`` has passed, in claim order."""
        return self.filter(state=RunState.QUEUED, not_before__lte=now).order_by(
            "-priority", "not_before", "id"
        )

    def finished(self) -> JobRunQuerySet:
        return self.filter(state__in=FINISHED_STATES)


class JobRun(models.Model):
    """One execution (or one recorded non-execution) of a job for one scheduled time."""

    State = RunState
    Reason = RunReason

    job = models.ForeignKey(
        "scheduler_app.Job", on_delete=models.CASCADE, related_name="runs", verbose_name=_("job")
    )
    tenant = models.ForeignKey(
        "scheduler_app.Tenant",
        on_delete=models.CASCADE,
        related_name="runs",
        editable=False,
        verbose_name=_("tenant"),
    )
    scheduled_for = models.DateTimeField(_("scheduled for"))
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    state = models.CharField(_("state"), max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    reason = models.CharField(
        _("reason"), max_length=16, choices=RunReason.choices, default=RunReason.SCHEDULE
    )
    priority = models.IntegerField(_("priority"), default=0)
    not_before = models.DateTimeField(_("not before"))
    kwargs_override = models.JSONField(_("kwargs override"), default=dict, blank=True)
    triggered_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="triggered_runs",
        verbose_name=_("triggered by"),
    )
    node = models.CharField(_("node"), max_length=200, blank=True)
    # Broadcast copies name the node that must run them; empty: any node may.
    target_node = models.CharField(_("for node"), max_length=200, blank=True, default="")
    # The claim that runs it: "<node incarnation>:<claim number>". Outcomes and
    # heartbeats carrying another token are refused (fencing).
    claim_token = models.CharField(_("claim token"), max_length=80, blank=True, default="")
    executor = models.CharField(_("executor"), max_length=16, blank=True)
    queued_at = models.DateTimeField(_("queued at"), auto_now_add=True)
    # When a node's claim took it (the run's start until its outcome says when the task
    # really started); None for runs claimed before this was recorded.
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("heartbeat"), null=True, blank=True)
    duration = models.FloatField(_("duration (s)"), null=True, blank=True)
    cpu_seconds = models.FloatField(_("CPU (s)"), null=True, blank=True)
    peak_memory_mb = models.FloatField(_("peak memory (MB)"), null=True, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    error_type = models.CharField(_("error type"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    stop_requested = models.BooleanField(
        _("stop requested"), default=False, help_text=_("An operator asked to stop this run.")
    )
    is_final = models.BooleanField(
        _("final"), default=False, help_text=_("No further retry will follow this run.")
    )
    # Why a queued run has not started yet (a rate limit, a concurrency key); cleared
    # when it starts.
    wait_reason = models.CharField(_("waiting because"), max_length=300, blank=True, default="")
    # The upstream runs whose ends queued this dependency run (ids): what the job's
    # ``upstream_param`` receives the results of. Copied to its retries.
    upstream_runs = models.JSONField(_("upstream runs"), default=list, blank=True)
    # A skip not yet fed to its downstream jobs' joins (an outbox mark): set by whatever
    # writes a skip outside the transaction that feeds the joins (the claim, the shed),
    # in the same statement as the skip; cleared in the transaction that feeds them.
    join_pending = models.BooleanField(_("join pending"), default=False, db_default=False)

    objects = JobRunQuerySet.as_manager()

    class Meta:
        ordering = ["-scheduled_for", "-attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "scheduled_for", "attempt", "target_node"], name="jobrun_unique_attempt_node"
            )
        ]
        indexes = [
            # Serves "claim the highest-priority due run": a partial index holding only
            # queued runs, in claim order, so claiming never scans finished history.
            models.Index(
                models.F("priority").desc(),
                "not_before",
                "id",
                condition=models.Q(state="queued"),
                name="jobrun_claim_idx",
            ),
            models.Index(fields=["job", "state"], name="jobrun_job_state_idx"),
            models.Index(fields=["state", "heartbeat_at"], name="jobrun_state_heartbeat_idx"),
            # Runs finished in a window (the dashboard's counts, series and samples,
            # retention); on PostgreSQL covering what those counts read, so a week of a
            # busy installation is counted from the index alone.
            models.Index(
                fields=["finished_at"],
                include=["state", "is_final", "job_id", "tenant_id", "id"],
                name="jobrun_finished_cover_idx",
            ),
            # Serves the rate limits' "runs of these jobs started since t".
            models.Index(fields=["job", "started_at"], name="jobrun_job_started_idx"),
            # The run lists' time filters and orderings (API scheduled_after/before,
            # ordering=[-]scheduled_for or [-]queued_at with id as tie-breaker, the
            # admin's default order): without them each is a sort of the whole table.
            models.Index(fields=["scheduled_for", "id"], name="jobrun_scheduled_idx"),
            models.Index(fields=["queued_at", "id"], name="jobrun_queued_at_idx"),
            # The operator job list: a job's last run (newest queued first) and its
            # finished runs newest first (24 h counts, last N durations, the job's chart),
            # each an index range scan per job instead of a sort of all its runs; on
            # PostgreSQL state and duration ride along so those reads never touch the table.
            models.Index(fields=["job", "queued_at", "id"], name="jobrun_job_queued_idx"),
            models.Index(
                fields=["job", "finished_at"],
                include=["state", "duration", "id"],
                name="jobrun_job_finished_idx",
            ),
            # The job list sorted by failures in 24 h probes every job: only the final
            # failures (few), so a job without any costs a look at a tiny index.
            models.Index(
                fields=["job", "finished_at"],
                condition=failure_q(),
                name="jobrun_job_failed_idx",
            ),
            # The skips waiting for their joins (a handful at most): what the sweep reads.
            models.Index(
                fields=["id"], condition=models.Q(join_pending=True), name="jobrun_join_pending_idx"
            ),
        ]
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")

    def __str__(self) -> str:
        return f"{self.job} @ {display.when(self.scheduled_for)} #{self.attempt} ({self.state})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.tenant_id and self.job_id:
            self.tenant_id = self.job.tenant_id
        if self.not_before is None:
            self.not_before = self.scheduled_for
        super().save(*args, **kwargs)

    @classmethod
    def for_job(
        cls,
        job: Any,
        scheduled_for: datetime,
        *,
        reason: str,
        state: str = RunState.QUEUED,
        attempt: int = 1,
        not_before: datetime | None = None,
        error: str = "",
        target_node: str = "",
        priority: int | None = None,
        kwargs_override: dict[str, Any] | None = None,
        triggered_by: JobRun | None = None,
        upstream_runs: list[int] | None = None,
    ) -> JobRun:
        """A new (unsaved) run of ``job``: the one way the scheduler, the services and
        the joins build a run. A skipped or cancelled run is born finished and final."""
        from django.utils import timezone

        run = cls(
            job=job,
            tenant_id=job.tenant_id,
            scheduled_for=scheduled_for,
            attempt=attempt,
            reason=reason,
            priority=job.priority if priority is None else priority,
            not_before=not_before or scheduled_for,
            kwargs_override=dict(kwargs_override or {}),
            triggered_by=triggered_by,
            upstream_runs=list(upstream_runs or ()),
            executor=job.executor,
            target_node=target_node,
            state=state,
            error=error,
        )
        if state in (RunState.SKIPPED, RunState.CANCELLED):
            run.finished_at = timezone.now()
            run.is_final = True
        return run

    @classmethod
    def check(cls, **kwargs: Any) -> list:
        # The covering indexes' INCLUDE columns are a PostgreSQL speed-up; SQLite builds
        # the same indexes without them, which Django warns about on every command
        # (models.W040). Nothing to fix there, so the warning is left out.
        return [error for error in super().check(**kwargs) if error.id != "models.W040"]

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES


class JobJoin(models.Model):
    """One open round of a join whose job has a trigger rule other than all_success:
    the upstream ends collected so far (at most one per upstream job), and whether the
    round already queued the job's run. Deleted when every upstream has ended in it;
    at most ``JOIN_OPEN_ROUNDS_MAX`` per job (the oldest are dropped)."""

    job = models.ForeignKey(
        "scheduler_app.Job", on_delete=models.CASCADE, related_name="join_rounds", verbose_name=_("job")
    )
    opened_at = models.DateTimeField(_("opened at"))
    # upstream job id (text) -> {"run": run id, "ok": succeeded, "end": success/failed/skipped}
    ends = models.JSONField(_("upstream ends"), default=dict)
    fired = models.BooleanField(_("fired"), default=False)

    class Meta:
        ordering = ["job", "opened_at", "id"]
        verbose_name = _("join round")
        verbose_name_plural = _("join rounds")

    def __str__(self) -> str:
        return f"join of {self.job} opened {display.when(self.opened_at)}"


class JobRunLog(models.Model):
    """What a run logged (and printed, on the process and isolated executors) while it
    executed: captured by its executor with the secrets masked, capped by
    ``MAX_RUN_LOG_BYTES`` (oldest lines dropped), written while it runs and with its
    outcome. A table of its own, one row per run that logged anything, so that the run
    table's rows stay small for the claim and list queries that read them by the
    thousand, and live writes touch only this row."""

    run = models.OneToOneField(
        JobRun,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="captured_log",
        verbose_name=_("job run"),
    )
    text = models.TextField(_("log"), blank=True)
    # Every line ever written, and how many of the oldest were dropped: the kept lines
    # are numbers lines_dropped .. lines_total - 1 (the API's ?log_offset= counts so).
    lines_total = models.PositiveBigIntegerField(_("lines written"), default=0)
    lines_dropped = models.PositiveBigIntegerField(_("lines dropped"), default=0)
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("run log")
        verbose_name_plural = _("run logs")

    def __str__(self) -> str:
        return f"log of run {self.run_id}"

    def lines_from(self, offset: int) -> tuple[list[str], int]:
        """(the kept lines numbered ``offset`` and after, the number of the first one).
        Dropped lines are gone: an offset before them starts at the first kept line."""
        lines = self.text.split("\n") if self.text else []
        if self.lines_dropped and lines:
            lines = lines[1:]  # the marker
        first = max(int(offset), self.lines_dropped)
        return lines[first - self.lines_dropped :], first


class ConfigVersion(models.Model):
    """A single counter bumped whenever job definitions change through services, so a
    running scheduler notices changes within a second without re-reading every job."""

    version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("configuration version")

    def __str__(self) -> str:
        return f"configuration version {self.version}"

    @classmethod
    def bump(cls) -> None:
        if not cls.objects.filter(pk=1).update(version=models.F("version") + 1):
            cls.objects.get_or_create(pk=1, defaults={"version": 1})

    @classmethod
    def current(cls) -> int:
        return cls.objects.filter(pk=1).values_list("version", flat=True).first() or 0
