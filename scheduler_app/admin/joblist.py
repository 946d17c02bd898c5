"""The operator's job list and the chart on a job's page.

Columns: next fire time (in the job's zone, seconds and offset), last run (state and
time), successes and failures in the last 24 h (failures as the ``failed`` alert counts
them: :func:`~scheduler_app.models.failure_q`), p50/p95 duration over the last
:data:`DURATION_RUNS` finished runs.

Queries stay bounded whatever the page size: the last run and the 24 h counts are
subquery annotations of the list's one query (so they sort in the database); the
percentiles and next fire times are computed once per page by :class:`OperatorChangeList`
for the page's rows only (one windowed query for the durations, one for the calendars'
excluded dates, one for APScheduler's stored next run times when the Django job store is
in use), never once per row."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from scheduler_app import display
from scheduler_app.admin import charts
from scheduler_app.conf import app_settings
from scheduler_app.engine import triggerspec
from scheduler_app.models import CalendarDate, Job, JobRun, RunState, failure_q
from scheduler_app.monitoring import stats

#: Finished runs per job the p50/p95 duration columns are computed over.
DURATION_RUNS = 50
#: Runs drawn in the chart on a job's page.
CHART_RUNS = 50


def _count_since(since: datetime, which: Q) -> Coalesce:
    rows = (
        JobRun.objects.filter(which, job=OuterRef("pk"), finished_at__gte=since)
        .order_by()
        .values("job")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def annotate_jobs(queryset: QuerySet, now: datetime) -> QuerySet:
    """The job list's sortable figures as annotations of its one query."""
    last = JobRun.objects.filter(job=OuterRef("pk")).order_by("-queued_at", "-pk")
    since = now - timedelta(hours=24)
    return queryset.annotate(
        _last_state=Subquery(last.values("state")[:1]),
        _last_scheduled=Subquery(last.values("scheduled_for")[:1]),
        _ok_24h=_count_since(since, Q(state=RunState.SUCCEEDED)),
        _failed_24h=_count_since(since, failure_q()),
    )


def job_zone(job: Job) -> Any:
    try:
        return display.zone(job.trigger_spec.timezone_name)
    except Exception:  # an invalid stored trigger still gets a row
        return display.zone("UTC")


def stored_next_fire_times(jobs: list[Job]) -> dict[int, datetime | None]:
    """APScheduler's next run times, when they are kept in the Django job store (one
    query); empty for the memory and Redis stores, which the web process cannot see."""
    if app_settings.JOB_STORE != "django" or not jobs:
        return {}
    try:
        from django_apscheduler.models import DjangoJob

        from scheduler_app.backends.bridge import aps_job_id
    except ImportError:  # pragma: no cover - django-apscheduler is a dependency
        return {}
    ids = {aps_job_id(job.pk): job.pk for job in jobs}
    return {
        ids[aps_id]: when
        for aps_id, when in DjangoJob.objects.filter(id__in=list(ids)).values_list("id", "next_run_time")
    }


def computed_next_fire_times(jobs: list[Job], now: datetime) -> dict[int, datetime | None]:
    """Next fire times from the triggers of ``jobs`` (one query for calendar dates)."""
    schedulable = [job for job in jobs if job.is_schedulable]
    excluded: dict[int, list] = defaultdict(list)
    if schedulable:
        for job_id, day in CalendarDate.objects.filter(calendar__jobs__in=schedulable).values_list(
            "calendar__jobs", "date"
        ):
            excluded[job_id].append(day)
    out: dict[int, datetime | None] = {}
    for job in schedulable:
        try:
            trigger = triggerspec.build_trigger(
                job.trigger_spec,
                hash_key=job.hash_key,
                anchor=job.created_at,
                excluded_dates=excluded[job.pk],
            )
            times = triggerspec.fire_times(trigger, now, 1)
        except Exception:  # an invalid stored trigger does not break the list
            continue
        out[job.pk] = times[0] if times else None
    return out


def attach_page_figures(jobs: list[Job], now: datetime | None = None) -> None:
    """Set ``_next_fire``, ``_p50`` and ``_p95`` on each job of one page."""
    now = now or timezone.now()
    stored = stored_next_fire_times(jobs)
    missing = [job for job in jobs if stored.get(job.pk) is None]
    computed = computed_next_fire_times(missing, now) if missing else {}
    recent = stats.last_runs_per_job(JobRun.objects.all(), [job.pk for job in jobs], DURATION_RUNS)
    for job in jobs:
        job._next_fire = stored.get(job.pk) if job.is_schedulable else None
        if job._next_fire is None and job.is_schedulable:
            job._next_fire = computed.get(job.pk)
        figures = stats.durations_of(recent.get(job.pk, []))
        job._p50, job._p95 = figures["p50"], figures["p95"]


class OperatorChangeList(ChangeList):
    """Django's change list, plus the page's figures computed once for its rows."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        attach_page_figures(self.result_list)


class OperatorJobListMixin:
    """Columns and chart for JobAdmin (kept here so the admin module stays small)."""

    operator_columns = ["next_fire", "last_run", "outcomes_24h", "duration_percentiles"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return OperatorChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return annotate_jobs(super().get_queryset(request), timezone.now())  # type: ignore[misc]

    @admin.display(description=_("next fire"))
    def next_fire(self, obj: Job) -> str:
        if not hasattr(obj, "_next_fire"):  # outside the change list (one job)
            attach_page_figures([obj])
        if obj._next_fire is None:
            return display.EMPTY
        return display.when(obj._next_fire, job_zone(obj))

    # Jobs that never ran sort before the oldest last run on either database.
    @admin.display(description=_("last run"), ordering=F("_last_scheduled").asc(nulls_first=True))
    def last_run(self, obj: Job) -> str:
        from scheduler_app.admin import state_badge

        state = getattr(obj, "_last_state", None)
        if state is None:
            return display.EMPTY
        return format_html(
            '<span class="sa-nowrap">{} {}</span>',
            state_badge(state),
            display.when(obj._last_scheduled, job_zone(obj)),
        )

    @admin.display(description=_("24 h: succeeded / failed"), ordering="-_failed_24h")
    def outcomes_24h(self, obj: Job) -> str:
        failed = getattr(obj, "_failed_24h", 0)
        return format_html(
            '<span class="sa-ok" title="{}">{}</span> / <span class="{}" title="{}">{}</span>',
            gettext("succeeded in the last 24 hours"),
            getattr(obj, "_ok_24h", 0),
            "sa-failed" if failed else "",
            gettext("failed in the last 24 hours"),
            failed,
        )

    @admin.display(description=_("duration p50 / p95"))
    def duration_percentiles(self, obj: Job) -> str:
        if not hasattr(obj, "_p50"):
            attach_page_figures([obj])
        if obj._p50 is None:
            return display.EMPTY
        return format_html(
            '<span title="{}">{} / {}</span>',
            gettext("over the last %(n)s finished runs") % {"n": DURATION_RUNS},
            display.seconds(obj._p50),
            display.seconds(obj._p95),
        )

    @admin.display(description=_("recent durations and outcomes"))
    def run_chart(self, obj: Job) -> SafeString | str:
        if obj.pk is None:
            return display.EMPTY
        return job_run_chart(obj)


def job_run_chart(job: Job, limit: int = CHART_RUNS) -> SafeString | str:
    """An SVG bar per finished run (oldest left): height the duration, colour the
    outcome, with a legend and a link per run in the tooltip text. One query."""
    rows = stats.last_runs_per_job(JobRun.objects.all(), [job.pk], limit)[job.pk]
    if not rows:
        return gettext("No finished runs yet.")
    rows.reverse()  # oldest first
    tz = timezone.get_current_timezone()
    labels = dict(RunState.choices)
    bars = [
        (
            state,
            duration,
            f"#{pk} {display.when(finished_at, tz)} {labels.get(state, state)} {display.seconds(duration)}",
        )
        for finished_at, state, duration, pk in rows
    ]
    chart = charts.run_history(
        bars,
        gettext("Duration and outcome of the last %(n)s finished runs") % {"n": len(rows)},
    )
    states = [s for s in charts.STATE_ORDER if any(r[1] == s for r in rows)]
    figures = stats.durations_of(rows)
    summary = gettext("p50 %(p50)s, p95 %(p95)s over %(n)s runs; from %(first)s to %(last)s") % {
        "p50": display.seconds(figures["p50"]),
        "p95": display.seconds(figures["p95"]),
        "n": len(rows),
        "first": display.when(rows[0][0], tz),
        "last": display.when(rows[-1][0], tz),
    }
    link = reverse("admin:scheduler_app_jobrun_changelist") + f"?job__id__exact={job.pk}"
    return format_html(
        '<div class="sa-job-chart">{}{}<p>{} <a href="{}">{}</a></p></div>',
        chart,
        charts.legend(states, {k: str(v) for k, v in labels.items()}),
        summary,
        link,
        gettext("All runs of this job"),
    )
