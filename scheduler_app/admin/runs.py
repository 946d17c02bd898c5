"""The operator's run list and run page.

List: every time in one zone (the admin's current time zone, with its offset), columns
started, finished, duration, node, attempt and the error's first line; filters by state,
job, group, node and time range; ``scheduler_app/runlist.js`` reloads the result table
every few seconds while "auto-refresh" is ticked. Its pager counts exactly up to 10,000
runs and says "about" PostgreSQL's estimate beyond (:class:`BoundedCountPaginator`).

Page: a timeline with seconds, offsets and the durations between steps, the job's zone,
CPU and memory rounded, the traceback in monospace, the chain of upstream and downstream
runs, and POST buttons "Re-run (same inputs)" and "Retry" that go through
:mod:`scheduler_app.services`. A running or queued run's page reloads itself."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from scheduler_app import display, services
from scheduler_app.backends import joins
from scheduler_app.engine.results import MASK
from scheduler_app.models import JobRun, RunState
from scheduler_app.monitoring import stats
from scheduler_app.services import permissions

REFRESH_SECONDS = 5
#: Downstream runs listed on a run's page at most.
DOWNSTREAM_LIMIT = 50
#: Upstream steps followed at most.
UPSTREAM_LIMIT = 20
#: Characters of an upstream result shown on the run page at most.
PASSED_SHOWN_CHARS = 2000


def list_zone() -> Any:
    """The one zone of the whole run list: the admin's current time zone."""
    return timezone.get_current_timezone()


def in_list_zone(moment: datetime | None) -> str:
    return display.when(moment, list_zone())


def job_zone(run: JobRun) -> Any:
    try:
        return display.zone(run.job.trigger_spec.timezone_name)
    except Exception:  # an invalid stored trigger still gets a page
        return display.zone("UTC")


class StartedWithinFilter(admin.SimpleListFilter):
    title = _("started")
    parameter_name = "started_within"
    WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("1h", _("in the last hour")),
            ("24h", _("in the last 24 hours")),
            ("7d", _("in the last 7 days")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(started_at__gte=timezone.now() - window)


class NodeFilter(admin.SimpleListFilter):
    """The registered nodes and those of the newest :attr:`recent` runs of the
    (tenant-scoped) list: a bounded read, never a ``DISTINCT`` over the whole history."""

    title = _("node")
    parameter_name = "node"
    recent = 5000

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from scheduler_app.models import Node

        newest = (
            model_admin.get_queryset(request).order_by("-pk").values_list("node", flat=True)[: self.recent]
        )
        names = {n for n in newest if n} | set(Node.objects.values_list("name", flat=True))
        return [(n, n) for n in sorted(names)[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(node=self.value())
        return queryset


class ExecutorFilter(admin.SimpleListFilter):
    """The executors there are (built-in and plugins'), not a ``DISTINCT`` over every run."""

    title = _("executor")
    parameter_name = "executor__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        from scheduler_app.models.jobs import executor_choices

        return list(executor_choices())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(executor=self.value())
        return queryset


def _step_rows(run: JobRun) -> list[tuple[str, datetime | None, str, bool]]:
    """(label, moment, note, is a step) of the run's timeline, in order; the heartbeat
    is shown but the next step's delta is measured from the step before it."""
    who = {"node": run.node, "token": run.claim_token or display.EMPTY}
    claimed_at = getattr(run, "claimed_at", None)
    started_note = ""
    if not run.node:
        claimed_note = ""
    elif claimed_at is None:  # claimed before claim times were recorded
        claimed_note = gettext("by %(node)s (claim %(token)s); the claim is recorded as the start") % who
    else:
        claimed_note = gettext("by %(node)s (claim %(token)s)") % who
        if run.state == RunState.RUNNING and run.started_at == claimed_at:
            started_note = gettext("the claim's time until the run reports when it started")
    return [
        (gettext("scheduled for"), run.scheduled_for, "", True),
        (gettext("queued"), run.queued_at, "", True),
        (gettext("not before"), run.not_before, "", True),
        (gettext("claimed"), claimed_at, claimed_note, True),
        (gettext("started"), run.started_at, started_note, True),
        (gettext("last heartbeat"), run.heartbeat_at, "", False),
        (gettext("finished"), run.finished_at, "", True),
    ]


def _between(earlier: datetime | None, later: datetime | None) -> str:
    if earlier is None or later is None:
        return ""
    delta = (later - earlier).total_seconds()
    if delta < 0:
        return gettext("%(d)s earlier") % {"d": display.seconds(-delta)}
    return "+" + display.seconds(delta)


def timeline(run: JobRun) -> SafeString:
    tz = list_zone()
    rows = []
    previous: datetime | None = None
    for label, moment, note, step in _step_rows(run):
        rows.append(
            (
                label,
                in_list_zone(moment) if moment is not None else display.EMPTY,
                _between(previous, moment),
                note,
            )
        )
        if moment is not None and step:
            previous = moment
    summary = []
    if run.started_at and run.scheduled_for:
        summary.append(
            gettext("started %(d)s after its scheduled time")
            % {"d": display.seconds(max((run.started_at - run.scheduled_for).total_seconds(), 0))}
        )
    if run.started_at and run.queued_at:
        summary.append(
            gettext("waited %(d)s in the queue")
            % {"d": display.seconds(max((run.started_at - run.queued_at).total_seconds(), 0))}
        )
    if run.duration is not None:
        summary.append(gettext("ran %(d)s") % {"d": display.seconds(run.duration)})
    elif run.state == RunState.RUNNING and run.started_at:
        summary.append(
            gettext("running for %(d)s")
            % {"d": display.seconds((timezone.now() - run.started_at).total_seconds())}
        )
    body = format_html_join(
        "",
        '<tr><th scope="row">{}</th><td class="sa-time">{}</td><td class="sa-delta">{}</td><td>{}</td></tr>',
        rows,
    )
    return format_html(
        '<table class="sa-timeline"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead>'
        "<tbody>{}</tbody></table><p>{}</p><p>{}</p>",
        gettext("step"),
        gettext("time (%(zone)s)") % {"zone": display.zone_name(tz) or str(tz)},
        gettext("since the step before"),
        body,
        "; ".join(summary),
        gettext("The job's zone: %(zone)s; scheduled for %(when)s there.")
        % {
            "zone": display.zone_name(job_zone(run)) or "UTC",
            "when": display.when(run.scheduled_for, job_zone(run)),
        },
    )


def _run_link(run: JobRun) -> tuple[str, str, str, str]:
    return (
        reverse("admin:scheduler_app_jobrun_change", args=[run.pk]),
        f"#{run.pk} {run.job.name}",
        in_list_zone(run.scheduled_for),
        RunState(run.state).label if run.state in RunState.values else run.state,
    )


def _run_item(run: JobRun, viewable: bool) -> SafeString:
    """A link to a run with its job, time and state; for a run the viewer may not view,
    only that (not its job, time, state, result or error)."""
    if not viewable:
        return format_html("<span class='sa-hidden-run'>{}</span>", gettext("a run you may not view"))
    return format_html("<a href='{}'>{}</a> <span class='sa-nowrap'>{} ({})</span>", *_run_link(run))


def planned_rows(queryset: QuerySet) -> int:
    """PostgreSQL's estimate of the number of rows of ``queryset`` (EXPLAIN, nothing
    read: for an unfiltered list the table's statistics, kept by ANALYZE/autovacuum)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class BoundedCountPaginator(Paginator):
    """The run list's pager without a ``COUNT(*)`` over the whole history (at 1,000,000
    runs that count cost as much as the rest of the page): it counts exactly up to
    :attr:`exact_up_to` rows (``COUNT`` of a ``LIMIT`` subquery, an index-only scan of
    that many entries at most), and beyond that, on PostgreSQL, takes the planner's
    estimate (at least the rows counted), marked :attr:`estimated` so the page says
    "about". The same idea as Django's ``show_full_result_count = False`` for the
    "(N total)" figure, applied to the pager's own count. The last pages of an estimate
    may be empty or a few rows may lie past the last page link; the sort and filters
    narrow any list to an exact count. Other databases count exactly."""

    exact_up_to = 10_000
    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or connections[queryset.db].vendor != "postgresql":
            return super().count
        if queryset.query.where:
            # A filtered or searched list is counted exactly: the planner's guess for
            # combined conditions can be far too low, and the rows past it unreachable.
            return super().count
        counted = queryset.order_by()[: self.exact_up_to + 1].count()
        if counted <= self.exact_up_to:
            return counted
        self.estimated = True
        return max(planned_rows(queryset), counted)


class OperatorRunAdminMixin:
    """Columns, filters, the run page and its buttons for JobRunAdmin."""

    operator_columns = [
        "id",
        "job",
        "tenant",
        "scheduled_local",
        "started_local",
        "finished_local",
        "duration_display",
        "state_display",
        "reason",
        "attempt",
        "node",
        "error_line",
    ]
    operator_filters = [
        "state",
        "reason",
        StartedWithinFilter,
        NodeFilter,
        ExecutorFilter,
    ]
    #: Read-only displays of the run page (added to the admin's readonly_fields).
    panel_fields = [
        "state_display",
        "timeline_panel",
        "duration_display",
        "cpu_display",
        "memory_display",
        "traceback_display",
        "upstream_chain",
        "upstream_runs_display",
        "downstream_runs",
        "kwargs_override_display",
    ]
    refresh_seconds = REFRESH_SECONDS
    paginator = BoundedCountPaginator
    change_list_template = "admin/scheduler_app/jobrun/change_list.html"
    change_form_template = "admin/scheduler_app/jobrun/change_form.html"
    #: Model fields the run page shows in its own panels instead of raw.
    shown_in_panels = {
        "scheduled_for",
        "queued_at",
        "not_before",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "duration",
        "cpu_seconds",
        "peak_memory_mb",
        "traceback",
        "error",
        "error_type",
        "triggered_by",
        "upstream_runs",
    }

    # -- list columns -----------------------------------------------------------------

    @property
    def zone_label(self) -> str:
        """The list's zone as people read it: ``Asia/Shanghai (+08:00)``."""
        tz = list_zone()
        return f"{display.zone_name(tz) or tz} ({display.offset(timezone.now().astimezone(tz))})"

    @admin.display(description=_("scheduled for"), ordering="scheduled_for")
    def scheduled_local(self, obj: JobRun) -> str:
        return in_list_zone(obj.scheduled_for)

    @admin.display(description=_("started"), ordering="started_at")
    def started_local(self, obj: JobRun) -> str:
        return in_list_zone(obj.started_at)

    @admin.display(description=_("finished"), ordering="finished_at")
    def finished_local(self, obj: JobRun) -> str:
        return in_list_zone(obj.finished_at)

    @admin.display(description=_("error"))
    def error_line(self, obj: JobRun) -> str:
        if not obj.error:
            return ""
        return format_html(
            '<span class="sa-error-line" title="{}">{}</span>', obj.error, stats.first_line(obj.error, 80)
        )

    # -- the run page -----------------------------------------------------------------

    #: What an operator reads first on a run's page.
    summary_fields = ["job", "tenant", "state_display", "reason", "attempt", "node", "executor"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Every other model field (including ones added later) under "Details".
        placed = self.shown_in_panels | set(self.summary_fields) | {"id", "state"}
        details = [
            "kwargs_override_display" if f.name == "kwargs_override" else f.name
            for f in JobRun._meta.fields
            if f.name not in placed
        ]
        return [
            (None, {"fields": self.summary_fields}),
            (_("Timeline"), {"fields": ["timeline_panel"]}),
            (_("Error"), {"fields": ["error_type", "error", "traceback_display"]}),
            (_("Resources"), {"fields": ["duration_display", "cpu_display", "memory_display"]}),
            (_("Chain"), {"fields": ["upstream_chain", "upstream_runs_display", "downstream_runs"]}),
            (_("Details"), {"fields": details}),
        ]

    @admin.display(description=_("timeline"))
    def timeline_panel(self, obj: JobRun) -> SafeString:
        return timeline(obj)

    @admin.display(description=_("CPU"))
    def cpu_display(self, obj: JobRun) -> str:
        return display.seconds(obj.cpu_seconds)

    @admin.display(description=_("peak memory"))
    def memory_display(self, obj: JobRun) -> str:
        return display.megabytes(obj.peak_memory_mb)

    @admin.display(description=_("kwargs override"))
    def kwargs_override_display(self, obj: JobRun) -> str:
        """The run's override with the values of the job's secret names masked (a run
        cannot override a secret any more; older runs may hold one)."""
        secret = set(obj.job.secret_names or [])
        shown = {k: (MASK if k in secret else v) for k, v in (obj.kwargs_override or {}).items()}
        return json.dumps(shown, ensure_ascii=False, sort_keys=True)

    @admin.display(description=_("traceback"))
    def traceback_display(self, obj: JobRun) -> str:
        if not obj.traceback:
            return display.EMPTY
        return format_html('<pre class="sa-traceback">{}</pre>', obj.traceback)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is not None:
            # The runs shown around this one are filtered for the viewer (see _viewable).
            obj._viewer = request.user
        return obj

    @staticmethod
    def _viewable(obj: JobRun, runs: list[JobRun]) -> set[int]:
        """Which of the runs around ``obj`` its page's viewer may view (nobody's when
        the page did not say who views it)."""
        return permissions.viewable(getattr(obj, "_viewer", AnonymousUser()), runs)

    @admin.display(description=_("upstream (caused by)"))
    def upstream_chain(self, obj: JobRun) -> str:
        links = []
        current = obj.triggered_by
        while current is not None and len(links) < UPSTREAM_LIMIT:
            links.append(current)
            current = current.triggered_by
        if not links:
            return display.EMPTY
        shown = self._viewable(obj, links)
        # The chain stops at the first run the viewer may not view: what caused that
        # one is its tenant's business.
        if len(shown) < len(links):
            links = links[: next(i for i, r in enumerate(links) if r.pk not in shown) + 1]
        return format_html_join(" ← ", "{}", ((_run_item(r, r.pk in shown),) for r in links))

    @admin.display(description=_("upstream runs (results passed)"))
    def upstream_runs_display(self, obj: JobRun) -> str:
        """The upstream runs whose ends queued this run, and what each passed in the
        job's upstream_param: masked and capped as the run received it."""
        entries = joins.upstream_of(obj)
        if not entries:
            return display.EMPTY
        shown = self._viewable(obj, [e["run"] for e in entries if e["run"] is not None])
        items = []
        for entry in entries:
            up = entry["run"]
            if up is None:
                items.append(format_html("<li>#{} {}</li>", entry["id"], gettext("(deleted by retention)")))
                continue
            if up.pk not in shown:
                items.append(format_html("<li>{}</li>", _run_item(up, False)))
                continue
            link, name, when, state = _run_link(up)
            passed = ""
            if "passed" in entry:
                text = json.dumps(entry["passed"], ensure_ascii=False, sort_keys=True)
                if len(text) > PASSED_SHOWN_CHARS:
                    text = (
                        text[:PASSED_SHOWN_CHARS]
                        + "… "
                        + gettext("(%(n)s characters in all)") % {"n": len(text)}
                    )
                passed = format_html(
                    " {} <code class='sa-passed'>{}</code>",
                    gettext("passed %(param)s =") % {"param": obj.job.upstream_param},
                    text,
                )
            items.append(
                format_html(
                    "<li><a href='{}'>{}</a> <span class='sa-nowrap'>{} ({})</span>{}</li>",
                    link,
                    name,
                    when,
                    state,
                    passed,
                )
            )
        return format_html(
            "<ul class='sa-plain-list'>{}</ul>", format_html_join("", "{}", ((i,) for i in items))
        )

    @admin.display(description=_("downstream (started by this run)"))
    def downstream_runs(self, obj: JobRun) -> str:
        runs = list(
            JobRun.objects.filter(triggered_by=obj)
            .select_related("job")
            .order_by("scheduled_for", "pk")[:DOWNSTREAM_LIMIT]
        )
        if not runs:
            return display.EMPTY
        shown = self._viewable(obj, runs)
        return format_html(
            "<ul class='sa-plain-list'>{}</ul>",
            format_html_join("", "<li>{}</li>", ((_run_item(r, r.pk in shown),) for r in runs)),
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        run = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        extra = dict(extra_context or {})
        if run is not None:
            extra.update(
                run_is_live=run.state in (RunState.QUEUED, RunState.RUNNING),
                refresh_seconds=REFRESH_SECONDS,
                may_run=permissions.can(request.user, "run", run.job),
                may_retry=run.state in services.runs.RETRYABLE_STATES,
            )
        return super().change_view(request, object_id, form_url, extra)  # type: ignore[misc]

    def get_urls(self) -> list[Any]:
        site = self.admin_site  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/rerun/", site.admin_view(self.rerun_view), name="scheduler_app_jobrun_rerun"
            ),
            path(
                "<path:object_id>/retry/", site.admin_view(self.retry_view), name="scheduler_app_jobrun_retry"
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def _run_or_404(self, request: HttpRequest, object_id: str) -> JobRun:
        run = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if run is None:
            raise Http404("job run not found")
        return run

    def _act(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        run = self._run_or_404(request, object_id)
        if not permissions.can(request.user, "run", run.job):
            raise PermissionDenied("you may not run this job")
        try:
            if verb == "rerun":
                result = services.rerun_runs([run], actor=request.user)
            else:
                result = services.retry_runs([run], actor=request.user)
        except ValidationError as exc:
            result = services.BulkResult()
            result.refused.append((run, "; ".join(exc.messages)))
        target = reverse("admin:scheduler_app_jobrun_change", args=[run.pk])
        for new in result.done:
            text = (
                gettext("Queued a new run with the same inputs: %(run)s.")
                if verb == "rerun"
                else gettext("Queued attempt %(attempt)s: %(run)s.")
            ) % {"run": f"#{new.pk}", "attempt": new.attempt}
            self.message_user(request, text, messages.SUCCESS)  # type: ignore[attr-defined]
            target = reverse("admin:scheduler_app_jobrun_change", args=[new.pk])
        for _obj, reason in result.refused:
            self.message_user(  # type: ignore[attr-defined]
                request, gettext("Refused: %(reason)s.") % {"reason": reason}, messages.WARNING
            )
        return HttpResponseRedirect(target)

    def rerun_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(lambda r: self._act(r, object_id, "rerun"))(request)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(lambda r: self._act(r, object_id, "retry"))(request)

    class Media:
        js = ["scheduler_app/runlist.js"]
        css = {"all": ["scheduler_app/scheduler.css"]}
