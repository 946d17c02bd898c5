"""The APScheduler 3 bridge: job stores, the enqueue executor and the sync that keeps
APScheduler's jobs equal to the enabled, unpaused ``Job`` rows.

APScheduler evaluates triggers and keeps next-run state in the configured job store.
When a trigger fires, :class:`EnqueueExecutor` receives *all* due fire times (we keep
``coalesce`` off and the grace time unlimited in APScheduler) and hands them to the node,
which applies the job's misfire policy and writes queued runs. APScheduler itself never
executes task code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import BaseJobStore
from django.conf import settings
from django.db import connection
from django.db.models import Max

from scheduler_app.conf import app_settings
from scheduler_app.engine.interfaces import Fire
from scheduler_app.models import CalendarDate, ConfigVersion, Job, JobRun, RunReason

logger = logging.getLogger(__name__)

FIRE_REF = "scheduler_app.backends.bridge:fire"
EXECUTOR_ALIAS = "enqueue"
STORE_ALIAS = "default"


def fire(job_id: int, fingerprint: str = "") -> None:
    """APScheduler's job function. Never called: :class:`EnqueueExecutor` turns fires
    into queued runs instead of calling it. It exists so persistent stores can store a
    textual reference."""
    raise RuntimeError("scheduler_app jobs run through the run queue, not APScheduler")


def aps_job_id(job_pk: int) -> str:
    return f"job-{job_pk}"


class EnqueueExecutor(BaseExecutor):
    """An APScheduler executor that enqueues instead of executing."""

    def __init__(self, on_fire: Callable[[Fire], None]) -> None:
        super().__init__()
        self._on_fire = on_fire

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._on_fire(Fire(job_id=int(job.args[0]), run_times=tuple(run_times), noticed_at=datetime.now(UTC)))

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:  # pragma: no cover
        raise NotImplementedError


# -- job stores ---------------------------------------------------------------------------


def make_job_store(kind: str | None = None) -> BaseJobStore:
    kind = kind or app_settings.JOB_STORE
    if kind == "memory":
        from apscheduler.jobstores.memory import MemoryJobStore

        return MemoryJobStore()
    if kind == "django":
        from django_apscheduler.jobstores import DjangoJobStore

        class QuietDjangoJobStore(DjangoJobStore):
            """django-apscheduler's store without its execution log: every fire is a
            JobRun already, and DjangoJobExecution rows would grow by one per fire,
            never finished nor pruned."""

            def register_event_listeners(self) -> None:
                return None

        return QuietDjangoJobStore()
    if kind == "sqlalchemy":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        return SQLAlchemyJobStore(url=sqlalchemy_url(), tablename="scheduler_app_apscheduler_jobs")
    if kind == "redis":
        from apscheduler.jobstores.redis import RedisJobStore

        url = urlparse(app_settings.REDIS_URL)
        return RedisJobStore(
            jobs_key="scheduler_app.jobs",
            run_times_key="scheduler_app.run_times",
            host=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int((url.path or "/0").lstrip("/") or 0),
            password=url.password,
        )
    raise ValueError(f"unknown job store {kind!r}; use memory, django, sqlalchemy or redis")


def sqlalchemy_url() -> str:
    if app_settings.SQLALCHEMY_URL:
        return str(app_settings.SQLALCHEMY_URL)
    db = settings.DATABASES["default"]
    engine = db["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if engine.endswith("postgresql"):
        auth = db.get("USER") or ""
        if db.get("PASSWORD"):
            auth += f":{db['PASSWORD']}"
        host = db.get("HOST") or "localhost"
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgresql+psycopg://{auth}@{host}{port}/{db['NAME']}"
    raise ValueError(f"set SCHEDULER_APP['SQLALCHEMY_URL']: cannot derive it from {engine}")


# -- sync ----------------------------------------------------------------------------------

#: One digest of everything that shapes schedules: schedulable flags, triggers, identity
#: (H values) and calendar dates. Computed by PostgreSQL in one pass.
FINGERPRINT_SQL = """
SELECT md5(
  coalesce((SELECT string_agg(j.id::text || '|' || j.enabled::text || '|' || j.paused::text
                              || '|' || j.name || '|' || t.slug || '|' || j.trigger::text
                              || '|' || j.created_at::text, ',' ORDER BY j.id)
            FROM scheduler_app_job j JOIN scheduler_app_tenant t ON t.id = j.tenant_id), '')
  || '#' ||
  coalesce((SELECT string_agg(c.job_id::text || ':' || d.date::text, ',' ORDER BY c.job_id, d.date)
            FROM scheduler_app_job_calendars c
            JOIN scheduler_app_calendardate d ON d.calendar_id = c.calendar_id), '')
)
"""


class JobSync:
    """Keeps APScheduler's jobs equal to the schedulable ``Job`` rows.

    Each APScheduler job carries a fingerprint of what shapes its schedule (trigger,
    calendars, identity); unchanged jobs keep their stored next-run time, so restarts
    and reconciles never duplicate or drop fires. A job new to the store resumes from
    the last fire time recorded in the database, so fire times missed while the
    scheduler was down or the job was paused reach the misfire policy."""

    def __init__(
        self,
        scheduler: Any,
        unwritten: Callable[[], Mapping[int, datetime]] = dict,
        refused: Mapping[int, datetime] | None = None,
        catch_up: bool = False,
    ) -> None:
        self.scheduler = scheduler
        # A trigger side taking over from an earlier leader (catch_up): a job with no
        # fire recorded since its trigger was set may have had fire times that leader
        # died before writing; it resumes from its anchor (or the misfire grace before
        # now, whichever is later) instead of from now. Off for the first leader of an
        # installation: jobs made before any scheduler ran start from now, as always.
        self.catch_up = catch_up
        # The earliest fire time per job this node fired but could not write (it had
        # lost the lease meanwhile): a new trigger side starts there at the latest.
        self.refused = dict(refused or {})
        # The latest fire time per job taken by this node but not yet written (the
        # database was away): resuming must start after them too.
        self.unwritten = unwritten
        self.known: dict[int, str] = {}
        self.version = -1
        self.loaded = False
        self.last_digest: str | None = None

    def load_from_store(self) -> None:
        for aps_job in self.scheduler.get_jobs(jobstore=STORE_ALIAS):
            if aps_job.id.startswith("job-") and aps_job.args:
                self.known[int(aps_job.args[0])] = aps_job.kwargs.get("fingerprint", "")
        self.loaded = True

    def changed(self) -> bool:
        current = ConfigVersion.current()
        if current != self.version:
            self.version = current
            return True
        return False

    def digest(self) -> str | None:
        """One aggregate over everything that shapes schedules (PostgreSQL), so that
        the periodic reconcile of a large installation need not reload every job when
        nothing changed. Elsewhere None: always reconcile."""
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(FINGERPRINT_SQL)
            return str(cursor.fetchone()[0])

    def reconcile(self, resume: bool = False) -> dict[str, int]:
        """Make APScheduler's jobs equal to the schedulable rows. ``resume`` (a new
        trigger side, after leading again): jobs the store already holds unchanged also
        resume from the recorded fire times when those are earlier than the stored
        next-run time, since a persistent store may have moved past fires that the
        fire gate refused while this node was not leading."""
        if not self.loaded:
            self.load_from_store()
        desired = self._desired()
        counts = {"added": 0, "updated": 0, "removed": 0, "failed": 0, "rewound": 0}
        for pk in set(self.known) - set(desired):
            try:
                self.scheduler.remove_job(aps_job_id(pk), jobstore=STORE_ALIAS)
            except Exception:  # already gone
                pass
            del self.known[pk]
            counts["removed"] += 1
        todo = [pk for pk, (fp, _) in desired.items() if resume or self.known.get(pk) != fp]
        if todo:
            last_fires = self._last_fire_times(todo)
            for pk in todo:
                fp, job = desired[pk]
                if self.known.get(pk) == fp and self._rewind(job, last_fires.get(pk)):
                    counts["rewound"] += 1
                    continue
                if self.known.get(pk) == fp:
                    continue
                try:
                    self._schedule(job, fp, last_fires.get(pk))
                except (ValueError, OverflowError) as exc:
                    # An invalid stored trigger (old data): one warning naming the job, no
                    # traceback; not retried until its definition changes.
                    counts["failed"] += 1
                    with contextlib.suppress(Exception):
                        self.scheduler.remove_job(aps_job_id(pk), jobstore=STORE_ALIAS)
                    logger.warning(
                        "job %s/%s has an invalid trigger and is not scheduled: %s",
                        job.tenant.slug,
                        job.name,
                        exc,
                        extra={"job_id": pk, "job": job.name},
                    )
                    self.known[pk] = fp
                    continue
                except Exception:
                    counts["failed"] += 1
                    logger.exception("could not schedule job", extra={"job_id": pk, "job": job.name})
                    continue
                counts["updated" if pk in self.known else "added"] += 1
                self.known[pk] = fp
        if any(counts.values()):
            logger.info("job definitions synced", extra=counts)
        return counts

    def _desired(self) -> dict[int, tuple[str, Job]]:
        jobs = list(
            Job.objects.schedulable()
            .exclude(trigger__type="manual")
            .select_related("tenant")
            .only(
                "id",
                "name",
                "trigger",
                "created_at",
                "trigger_changed_at",
                "misfire_grace_seconds",
                "tenant__slug",
                "enabled",
                "paused",
            )
        )
        calendars: dict[int, list[str]] = defaultdict(list)
        through = Job.calendars.through
        links = through.objects.filter(job_id__in=[j.pk for j in jobs]).values_list("job_id", "calendar_id")
        by_calendar: dict[int, list[int]] = defaultdict(list)
        for job_id, calendar_id in links:
            by_calendar[calendar_id].append(job_id)
        if by_calendar:
            for calendar_id, day in CalendarDate.objects.filter(
                calendar_id__in=list(by_calendar)
            ).values_list("calendar_id", "date"):
                for job_id in by_calendar[calendar_id]:
                    calendars[job_id].append(day.isoformat())
        desired = {}
        for job in jobs:
            job._excluded = sorted(set(calendars.get(job.pk, ())))
            payload = json.dumps(
                [job.trigger, job._excluded, job.hash_key, job.created_at.isoformat()],
                sort_keys=True,
            )
            desired[job.pk] = (hashlib.sha256(payload.encode()).hexdigest()[:32], job)
        return desired

    def _last_fire_times(self, pks: list[int]) -> dict[int, datetime]:
        """The last fire time per job: taken but not yet written (read first, so that
        a fire written meanwhile is in the rows read next), or recorded."""
        latest = {pk: t for pk, t in self.unwritten().items() if pk in set(pks)}
        rows = (
            JobRun.objects.filter(job_id__in=pks, reason=RunReason.SCHEDULE)
            .values("job_id")
            .annotate(last=Max("scheduled_for"))
        )
        for row in rows:
            if row["job_id"] not in latest or row["last"] > latest[row["job_id"]]:
                latest[row["job_id"]] = row["last"]
        return latest

    @staticmethod
    def _trigger(job: Job) -> Any:
        from datetime import date

        from scheduler_app.engine import triggerspec

        return triggerspec.build_trigger(
            job.trigger_spec,
            hash_key=job.hash_key,
            anchor=job.created_at,
            excluded_dates=[date.fromisoformat(d) for d in job._excluded],
        )

    def _resume_after(self, job: Job, trigger: Any, last_fire: datetime | None) -> datetime | None:
        """The first fire time after the last one recorded, or the earliest one this
        node could not write, whichever comes first. With nothing recorded since the
        trigger last changed, and ``catch_up``: the first fire time after the job's
        anchor or after the misfire grace before now, whichever is later (the times
        between fire at once and meet the misfire policy). None: none of these (the
        caller starts from now), or the trigger has no more."""
        changed = job.trigger_changed_at
        candidates = []
        recorded = last_fire is not None and (changed is None or last_fire >= changed)
        if recorded:
            after = trigger.get_next_fire_time(last_fire, last_fire + timedelta(microseconds=1))
            if after is not None:
                candidates.append(after)
        elif self.catch_up:
            first = self._first_unrecorded(job, trigger)
            if first is not None:
                candidates.append(first)
        refused = self.refused.get(job.pk)
        if refused is not None and (changed is None or refused >= changed):
            candidates.append(refused)
        return min(candidates, default=None)

    @staticmethod
    def _first_unrecorded(job: Job, trigger: Any) -> datetime | None:
        """For a job with no fire recorded since its trigger was set: the first fire
        time strictly after max(anchor, now - misfire grace), where the anchor is when
        the job was created or its trigger last changed (a trigger's own start is the
        trigger's to respect). A fire time in the past means one an earlier leader may
        have taken and died before writing."""
        anchor = max(t for t in (job.created_at, job.trigger_changed_at) if t is not None)
        floor = max(anchor, datetime.now(UTC) - timedelta(seconds=job.misfire_grace_seconds))
        first: datetime | None = trigger.get_next_fire_time(None, floor + timedelta(microseconds=1))
        return first

    def _rewind(self, job: Job, last_fire: datetime | None) -> bool:
        """A stored job whose next-run time lies past the first fire time after the
        last recorded one: set it back there (the times between fire at once and meet
        the misfire policy). True when it was moved."""
        try:
            existing = self.scheduler.get_job(aps_job_id(job.pk), jobstore=STORE_ALIAS)
            if existing is None or existing.next_run_time is None:
                return False
            first = self._resume_after(job, self._trigger(job), last_fire)
        except (ValueError, OverflowError):
            return False
        if first is None or first >= existing.next_run_time:
            return False
        self.scheduler.modify_job(aps_job_id(job.pk), jobstore=STORE_ALIAS, next_run_time=first)
        logger.info(
            "job resumes from its last recorded fire time",
            extra={"job_id": job.pk, "job": job.name, "next_run_time": first.isoformat()},
        )
        return True

    def _schedule(self, job: Job, fingerprint: str, last_fire: datetime | None) -> None:
        trigger = self._trigger(job)
        now = datetime.now(UTC)
        # Resume after the last fire time we recorded: times missed while down or
        # paused fire at once and meet the misfire policy.
        next_run = self._resume_after(job, trigger, last_fire)
        if next_run is None:
            next_run = trigger.get_next_fire_time(None, now)
        existing = self.scheduler.get_job(aps_job_id(job.pk), jobstore=STORE_ALIAS)
        if existing is not None and existing.kwargs.get("fingerprint") == fingerprint:
            return
        self.scheduler.add_job(
            FIRE_REF,
            trigger=trigger,
            args=[job.pk],
            kwargs={"fingerprint": fingerprint},
            id=aps_job_id(job.pk),
            name=f"{job.tenant.slug}/{job.name}",
            jobstore=STORE_ALIAS,
            executor=EXECUTOR_ALIAS,
            coalesce=False,
            misfire_grace_time=None,
            max_instances=1,
            replace_existing=True,
            next_run_time=next_run,
        )
