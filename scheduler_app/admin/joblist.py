"""The operator's job list and the chart on a job's page.

Columns: next fire time (in the job's zone, seconds and offset), last run (state and
time), successes and failures in the last 24 h (failures as the ``failed`` alert counts
them: :func:`~scheduler_app.models.failure_q`), p50/p95 duration over the last
:data:`DURATION_RUNS` finished runs.

Queries stay bounded whatever the page size: the last run, the 24 h counts and (on
PostgreSQL) the p50/p95 durations are subquery annotations of the list's one query, so
they sort in the database (PostgreSQL evaluates the ones the order does not need for
the page's rows only, after the LIMIT); the next fire times are computed once per page
by :class:`OperatorChangeList` for the page's rows only (one query for the calendars'
excluded dates, one for APScheduler's stored next run times when the Django job store is
in use; elsewhere one windowed query for the durations), never once per row.

Sorting: by last run, by failures in 24 h, by p95 (PostgreSQL: over at most
:data:`DURATION_RUNS` runs per job, one short backward index scan each) and by next
fire when APScheduler keeps its next run times in the database (``JOB_STORE =
"django"``). With the memory or Redis job store the next fire times live in the
scheduler process, the web process computes them from the triggers for the page shown,
and sorting would compute every job's trigger on every request: that column does not
sort there (nor p50/p95 on SQLite, which has no ``percentile_cont``).

Rendering: the page's per-row work that does not depend on the row (the change URL's
pattern, translated titles, state badges, trigger descriptions and zones of equal
triggers) is done once per page (:class:`PageCache`), and the rows are written by
:class:`RowRenderer` (through ``{% operator_result_list %}`` in the job's
``change_list.html``) instead of Django's ``items_for_result``: the same HTML, byte for
byte, with each column's kind decided once per page instead of once per cell."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    display_for_field,
    display_for_value,
    quote,
)
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import connection, models
from django.db.models import (
    CharField,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Cast, Coalesce, Concat
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
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
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def percentiles_in_database() -> bool:
    """p50/p95 are annotations (sortable) where the database has ``percentile_cont``."""
    return connection.vendor == "postgresql"


def next_fire_in_database() -> bool:
    """Next fire times sort where APScheduler stores them in the database."""
    return app_settings.JOB_STORE == "django"


def _recent_duration_percentile(fraction: float) -> Func:
    """``percentile_cont`` of the durations of the job's newest :data:`DURATION_RUNS`
    finished runs (NULL durations ignored): exactly what :func:`stats.durations_of`
    computes from :func:`stats.last_runs_per_job`'s rows (the same runs, linear
    interpolation)."""
    from django.contrib.postgres.expressions import ArraySubquery

    recent = (
        JobRun.objects.filter(job=OuterRef("pk"), finished_at__isnull=False)
        .order_by("-finished_at", "-pk")
        .values("duration")[:DURATION_RUNS]
    )
    return Func(
        ArraySubquery(recent),
        template="(SELECT percentile_cont(%(fraction)s) WITHIN GROUP (ORDER BY d) FROM unnest(%(expressions)s) AS d)",
        fraction=repr(float(fraction)),  # a number: part of the SQL text, not a parameter
        output_field=FloatField(),
    )


def annotate_jobs(queryset: QuerySet, now: datetime) -> QuerySet:
    """The job list's sortable figures as annotations of its one query."""
    last = JobRun.objects.filter(job=OuterRef("pk")).order_by("-queued_at", "-pk")
    since = now - timedelta(hours=24)
    figures: dict[str, Any] = {
        "_last_state": Subquery(last.values("state")[:1]),
        "_last_scheduled": Subquery(last.values("scheduled_for")[:1]),
        "_ok_24h": _count_since(since, Q(state=RunState.SUCCEEDED)),
        "_failed_24h": _count_since(since, failure_q()),
    }
    if percentiles_in_database():
        figures["_p50_db"] = _recent_duration_percentile(0.5)
        figures["_p95_db"] = _recent_duration_percentile(0.95)
    if next_fire_in_database():
        from django_apscheduler.models import DjangoJob

        aps_id = Concat(Value("job-"), Cast(OuterRef("pk"), CharField()))
        figures["_stored_next_fire"] = Subquery(
            DjangoJob.objects.filter(id=aps_id).values("next_run_time")[:1]
        )
    return queryset.annotate(**figures)


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
    """Set ``_next_fire``, ``_p50`` and ``_p95`` on each job of one page (the
    percentiles from the list's annotations when it has them)."""
    now = now or timezone.now()
    if all(hasattr(job, "_stored_next_fire") for job in jobs):
        stored = {job.pk: job._stored_next_fire for job in jobs}
    else:
        stored = stored_next_fire_times(jobs)
    missing = [job for job in jobs if stored.get(job.pk) is None]
    computed = computed_next_fire_times(missing, now) if missing else {}
    annotated = all(hasattr(job, "_p95_db") for job in jobs)
    recent = (
        {}
        if annotated
        else stats.last_runs_per_job(JobRun.objects.all(), [job.pk for job in jobs], DURATION_RUNS)
    )
    for job in jobs:
        job._next_fire = stored.get(job.pk) if job.is_schedulable else None
        if job._next_fire is None and job.is_schedulable:
            job._next_fire = computed.get(job.pk)
        if annotated:
            job._p50, job._p95 = job._p50_db, job._p95_db
        else:
            figures = stats.durations_of(recent.get(job.pk, []))
            job._p50, job._p95 = figures["p50"], figures["p95"]


class PageCache:
    """What the rows of one page share, computed once: translated titles, state
    badges, and per distinct stored trigger its description and zone (a page of jobs
    has few distinct triggers; the description also depends on the job's hash key
    only for hashed ``H`` cron fields)."""

    def __init__(self) -> None:
        self.badges: dict[str, str] = {}
        self.triggers: dict[tuple[str, str], tuple[str, Any]] = {}
        self.ok_title = gettext("succeeded in the last 24 hours")
        self.failed_title = gettext("failed in the last 24 hours")
        self.duration_title = gettext("over the last %(n)s finished runs") % {"n": DURATION_RUNS}

    def badge(self, state: str) -> str:
        badge = self.badges.get(state)
        if badge is None:
            from scheduler_app.admin import state_badge

            badge = self.badges[state] = state_badge(state)
        return badge

    def trigger(self, job: Job) -> tuple[str, Any]:
        """(description, zone) of the job's trigger (looked up once per row: three
        columns ask)."""
        import json

        mine = job.__dict__.get("_page_trigger")
        if mine is not None:
            return mine
        text = json.dumps(job.trigger, sort_keys=True, default=str)
        key = (text, job.hash_key if "H" in text else "")
        found = self.triggers.get(key)
        if found is None:
            found = self.triggers[key] = (job.describe_trigger(), job_zone(job))
        job._page_trigger = found
        return found


class OperatorChangeList(ChangeList):
    """Django's change list, plus the page's figures computed once for its rows."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        attach_page_figures(self.result_list)
        page = PageCache()
        for job in self.result_list:
            job._page = page

    def url_for_result(self, result: Any) -> str:
        """Django's (a ``reverse`` per row), from the pattern reversed once."""
        parts = getattr(self, "_change_url_parts", None)
        if parts is None:
            marker = "9081726354"
            url = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=(marker,),
                current_app=self.model_admin.admin_site.name,
            )
            parts = self._change_url_parts = tuple(url.split(marker)) if url.count(marker) == 1 else ()
        if not parts:
            return super().url_for_result(result)
        return f"{parts[0]}{quote(getattr(result, self.pk_attname))}{parts[1]}"


class _Unusual(Exception):
    """A cell the shortcut does not render: the row goes to Django's own code."""


class RowRenderer:
    """The cells of the change list's rows, exactly as Django's ``items_for_result``
    renders them (same markup, byte for byte), with what is the same for every row
    decided once per page: each column's kind, classes and empty text, the choices'
    labels, the boolean icons, the change URL with the preserved filters (Django parses
    and rebuilds it per row). Rows are joined into one string per row, which the
    results template writes out as it would the list of cells. Anything this does not
    know (a popup, ``to_field``, an editable list, a model property) goes to Django's
    own code."""

    def __init__(self, cl: ChangeList) -> None:
        from django.contrib.admin.templatetags.admin_list import _coerce_field_name

        self.cl = cl
        self.model_admin = cl.model_admin
        self.empty = cl.model_admin.get_empty_value_display()
        self.columns: list[tuple[str, Any, Any, str, str | None]] = []
        self.link = self._link_parts()
        opts = cl.model._meta
        first = True
        for index, name in enumerate(cl.list_display):
            classes = f"field-{_coerce_field_name(name, index)}"
            links = cl.list_display_links
            link = links is not None and ((first and not links) or name in links)
            tag = None
            if link:
                tag = "th" if first else "td"
                first = False
            # The same order of lookups as Django's lookup_field: a model field first.
            try:
                field = _get_non_gfk_field(opts, name)
            except (FieldDoesNotExist, FieldIsAForeignKeyColumnName):
                field = None
            except Exception:  # a callable in list_display, or anything unusual
                field = False
            if field is False:
                self.columns.append(("django", name, None, classes, tag))
            elif field is not None:
                plain = not field.auto_created and not field.is_relation
                foreign = isinstance(field.remote_field, models.ManyToOneRel) and not field.auto_created
                kind = "field" if plain or foreign else "django"
                if field.auto_created and not field.is_relation:
                    kind = "value"  # the automatic primary key: shown as a plain value
                self.columns.append((kind, name, field, classes, tag))
            elif isinstance(name, str) and hasattr(self.model_admin, name) and name != "__str__":
                self.columns.append(("method", name, getattr(self.model_admin, name), classes, tag))
            else:
                self.columns.append(("django", name, None, classes, tag))
        self.choices: dict[str, dict] = {}
        self.icons: dict[Any, str] = {}
        self.kinds: dict[str, str] = {}

    def _link_parts(self) -> tuple[str, str] | None:
        """The row link's text before and after the pk, preserved filters included."""
        from django.contrib.admin.templatetags.admin_urls import add_preserved_filters

        cl = self.cl
        if cl.is_popup or cl.to_field or cl.formset is not None:
            return None
        marker = "9081726354"
        try:
            url = reverse(
                f"admin:{cl.opts.app_label}_{cl.opts.model_name}_change",
                args=(marker,),
                current_app=cl.model_admin.admin_site.name,
            )
        except NoReverseMatch:
            return None
        url = add_preserved_filters({"preserved_filters": cl.preserved_filters, "opts": cl.opts}, url)
        if url.count(marker) != 1:
            return None
        before, after = url.split(marker)
        return conditional_escape(before), conditional_escape(after)

    def row(self, result: Any) -> SafeString:
        """One row's cells (``<td>``/``<th>`` elements, no ``<tr>``)."""
        if self.link is None or any(kind == "django" for kind, *_rest in self.columns):
            return self.django_row(result)
        try:
            return self._row(result)
        except _Unusual:
            return self.django_row(result)

    def django_row(self, result: Any) -> SafeString:
        return mark_safe("".join(items_for_result(self.cl, result, None)))

    def _row(self, result: Any) -> SafeString:
        cells = []
        for kind, name, thing, classes, tag in self.columns:
            if kind == "method":
                try:
                    value = thing(result)
                except ObjectDoesNotExist:
                    raise _Unusual from None
                if not isinstance(value, str) or getattr(thing, "boolean", False):
                    raise _Unusual
                if name == "action_checkbox":
                    classes = "action-checkbox"
                if value.strip() == "":
                    text = conditional_escape(getattr(thing, "empty_value_display", self.empty))
                else:
                    text = conditional_escape(value)
            elif kind == "value":
                value = getattr(result, name)
                if not isinstance(value, (int, str)) or isinstance(value, bool):
                    raise _Unusual
                if isinstance(value, str) and value.strip() == "":
                    value = ""
                text = conditional_escape(display_for_value(value, self.empty))
            else:
                text = self._field(result, name, thing, tag is not None)
                if isinstance(thing, (models.DateField, models.TimeField, models.ForeignKey)):
                    classes += " nowrap"
            if tag is None:
                cells.append(f'<td class="{classes}">{text}</td>')
            else:
                pk = getattr(result, self.cl.pk_attname)
                if not isinstance(pk, int):  # reverse() would encode other keys
                    raise _Unusual
                cells.append(
                    f'<{tag} class="{classes}"><a href="{self.link[0]}{pk}{self.link[1]}">{text}</a></{tag}>'
                )
        return mark_safe("".join(cells))

    def _field_kind(self, name: str, field: Any) -> str:
        """How display_for_field treats the field (it reads ``flatchoices`` per call,
        which for callable choices calls them)."""
        kind = self.kinds.get(name)
        if kind is None:
            if isinstance(field.remote_field, models.ManyToOneRel):
                kind = "foreign"
            elif getattr(field, "flatchoices", None):
                try:
                    self.choices[name] = dict(field.flatchoices)
                    kind = "choices"
                except TypeError:  # list-like choices: Django's code
                    kind = "other"
            elif isinstance(field, models.BooleanField):
                kind = "boolean"
            elif type(field) in (models.CharField, models.TextField):
                kind = "text"  # display_for_value: the text itself
            else:
                kind = "other"
            self.kinds[name] = kind
        return kind

    def _field(self, result: Any, name: str, field: Any, link: bool) -> str:
        kind = self._field_kind(name, field)
        if kind == "foreign":
            try:
                related = getattr(result, field.name)
            except ObjectDoesNotExist:
                raise _Unusual from None
            return conditional_escape(self.empty if related is None else related)
        value = getattr(result, name)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        if kind == "choices":
            return conditional_escape(self.choices[name].get(value, self.empty))
        if kind == "boolean":
            icon = self.icons.get(value)
            if icon is None:
                icon = self.icons[value] = conditional_escape(display_for_field(value, field, self.empty))
            return icon
        if kind == "text" and isinstance(value, str):
            return conditional_escape(self.empty if value in field.empty_values else value)
        return conditional_escape(display_for_field(value, field, self.empty, avoid_link=link))


class OperatorJobListMixin:
    """Columns and chart for JobAdmin (kept here so the admin module stays small)."""

    operator_columns = ["next_fire", "last_run", "outcomes_24h", "duration_percentiles"]
    # Django's change list with the rows from RowRenderer (templatetags/scheduler_joblist.py).
    change_list_template = "admin/scheduler_app/job/change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return OperatorChangeList

    def get_sortable_by(self, request: HttpRequest) -> Any:
        """Every column but the ones the database cannot sort here (see the module)."""
        unsortable = set()
        if not next_fire_in_database():
            unsortable.add("next_fire")
        if not percentiles_in_database():
            unsortable.add("duration_percentiles")
        return [name for name in super().get_sortable_by(request) if name not in unsortable]  # type: ignore[misc]

    def action_checkbox(self, obj: Job) -> str:
        """Django's checkbox (same markup), without a widget rendered per row."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return annotate_jobs(super().get_queryset(request), timezone.now())  # type: ignore[misc]

    # Soonest first; jobs without a stored next fire (paused, never) last. Sortable only
    # with the Django job store (get_sortable_by).
    @admin.display(description=_("next fire"), ordering=F("_stored_next_fire").asc(nulls_last=True))
    def next_fire(self, obj: Job) -> str:
        if not hasattr(obj, "_next_fire"):  # outside the change list (one job)
            attach_page_figures([obj])
        if obj._next_fire is None:
            return display.EMPTY
        return display.when(obj._next_fire, _page(obj).trigger(obj)[1])

    # Jobs that never ran sort before the oldest last run on either database.
    @admin.display(description=_("last run"), ordering=F("_last_scheduled").asc(nulls_first=True))
    def last_run(self, obj: Job) -> str:
        state = getattr(obj, "_last_state", None)
        if state is None:
            return display.EMPTY
        page = _page(obj)
        return format_html(
            '<span class="sa-nowrap">{} {}</span>',
            page.badge(state),
            display.when(obj._last_scheduled, page.trigger(obj)[1]),
        )

    @admin.display(description=_("24 h: succeeded / failed"), ordering="-_failed_24h")
    def outcomes_24h(self, obj: Job) -> str:
        failed = getattr(obj, "_failed_24h", 0)
        page = _page(obj)
        return format_html(
            '<span class="sa-ok" title="{}">{}</span> / <span class="{}" title="{}">{}</span>',
            page.ok_title,
            getattr(obj, "_ok_24h", 0),
            "sa-failed" if failed else "",
            page.failed_title,
            failed,
        )

    # Slowest first, jobs without finished runs last; PostgreSQL only (get_sortable_by).
    @admin.display(description=_("duration p50 / p95"), ordering=F("_p95_db").desc(nulls_last=True))
    def duration_percentiles(self, obj: Job) -> str:
        if not hasattr(obj, "_p50"):
            attach_page_figures([obj])
        if obj._p50 is None:
            return display.EMPTY
        return format_html(
            '<span title="{}">{} / {}</span>',
            _page(obj).duration_title,
            display.seconds(obj._p50),
            display.seconds(obj._p95),
        )

    @admin.display(description=_("recent durations and outcomes"))
    def run_chart(self, obj: Job) -> SafeString | str:
        if obj.pk is None:
            return display.EMPTY
        return job_run_chart(obj)


def _page(job: Job) -> PageCache:
    """The page's shared values (a fresh set for a job shown outside the list)."""
    page = getattr(job, "_page", None)
    if page is None:
        page = job._page = PageCache()
    return page


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
