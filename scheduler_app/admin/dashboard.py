"""``Scheduler › Dashboard`` (``/admin/scheduler_app/dashboard/``): totals, charts,
running runs, upcoming fires, nodes and recent failures, from
:func:`scheduler_app.monitoring.dashboard.build` (tenant-scoped like the admin).

The page is complete without JavaScript; ``scheduler_app/dashboard.js`` polls
``dashboard/data/`` (JSON, with the panels' HTML under ``html``) every few seconds and
swaps the panels in place, saying when it last updated. The page is added to the
admin site's URLs and to the Scheduler section of its index (first entry)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

from scheduler_app import display
from scheduler_app.admin import charts
from scheduler_app.models import Job, RunState
from scheduler_app.monitoring import dashboard, stats
from scheduler_app.services import permissions

REFRESH_SECONDS = 5
WINDOW_CHOICES = [("1h", _("last hour")), ("24h", _("last 24 hours")), ("7d", _("last 7 days"))]
#: Held-back reasons (:data:`scheduler_app.monitoring.stats.HELD_BACK_REASONS`) as shown
HELD_BACK_LABELS = {
    "key": _("concurrency key"),
    "rate": _("rate limit"),
    "load_nodes": _("nodes overloaded"),
    "load_queue": _("queue overloaded"),
    "tags": _("node tags"),
    "other": _("other"),
}
LABEL_FORMATS = {"1h": "%H:%M", "24h": "%H:%M", "7d": "%m-%d", "30d": "%m-%d"}


def may_see(request: HttpRequest) -> bool:
    user = request.user
    return bool(
        user.is_active
        and user.is_staff
        and (permissions.sees_everything(user) or permissions.member_tenant_ids(user))
    )


def _window(request: HttpRequest) -> str:
    window = request.GET.get("window", "1h")
    return window if window in stats.WINDOWS else "1h"


def _moment(text: str | None) -> Any:
    return parse_datetime(text) if text else None


def panels_context(request: HttpRequest, data: dict[str, Any]) -> dict[str, Any]:
    tz = timezone.get_current_timezone()
    series = data["series"]
    buckets = [_moment(b) for b in series["buckets"]]
    labels = dict(RunState.choices)
    states = [s for s in charts.STATE_ORDER if s in series["counts"]]

    def when(text: str | None) -> str:
        return display.when(_moment(text), tz)

    def job_url(job_id: int) -> str:
        return reverse("admin:scheduler_app_job_change", args=[job_id])

    def run_url(run_id: int) -> str:
        return reverse("admin:scheduler_app_jobrun_change", args=[run_id])

    rate = data["totals"]["failure_rate_24h"]
    return {
        "data": data,
        "generated": when(data["generated_at"]),
        "failure_rate": "—" if rate is None else f"{rate * 100:.1f} %",
        "held_back": [
            (str(HELD_BACK_LABELS.get(code, code)), n) for code, n in data.get("held_back", {}).items() if n
        ],
        "lateness_p50": display.seconds(data["lateness"]["p50"]),
        "lateness_p95": display.seconds(data["lateness"]["p95"]),
        "runs_chart": charts.stacked_bars(
            buckets,
            series["counts"],
            tz,
            str(_("Finished runs per %(n)s s by outcome") % {"n": series["bucket_seconds"]}),
            LABEL_FORMATS.get(data["window"], "%H:%M"),
        ),
        "runs_legend": charts.legend(states, {k: str(v) for k, v in labels.items()}),
        "rate_chart": charts.line(series["failure_rate"], str(_("Failure rate"))),
        "lateness_chart": charts.percentile_lines(
            buckets,
            data["lateness_series"]["p50"],
            data["lateness_series"]["p95"],
            tz,
            str(
                _("Start lateness p50 and p95 of the runs finished per %(n)s s")
                % {"n": series["bucket_seconds"]}
            ),
            LABEL_FORMATS.get(data["window"], "%H:%M"),
        )
        if any(v is not None for v in data["lateness_series"]["p95"])
        else None,
        "slow_chart": charts.percentile_bars(
            [(f["job"], f["p50"], f["p95"]) for f in data["slowest_jobs"]],
            str(_("Slowest jobs: duration p50 and p95")),
        )
        if data["slowest_jobs"]
        else None,
        "slowest": [
            {
                **f,
                "url": job_url(f["job_id"]),
                "p50_text": display.seconds(f["p50"]),
                "p95_text": display.seconds(f["p95"]),
            }
            for f in data["slowest_jobs"]
        ],
        "failing": [{**f, "url": job_url(f["job_id"])} for f in data["failing_jobs"]],
        "running": [
            {
                **r,
                "url": run_url(r["run_id"]),
                "started": when(r["started_at"]),
                "elapsed": display.seconds(r["seconds"]),
            }
            for r in data["running"]
        ],
        "failures": [
            {
                **r,
                "url": run_url(r["run_id"]),
                "finished": when(r["finished_at"]),
                "state_label": labels.get(r["state"], r["state"]),
            }
            for r in data["recent_failures"]
        ],
        "upcoming": [
            {**u, "url": job_url(u["job_id"]), "at_text": display.when(_moment(u["at"]), u["timezone"])}
            for u in data["upcoming"]
        ],
        "nodes": [{**n, "heartbeat": when(n["heartbeat_at"])} for n in data["nodes"]],
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    if not may_see(request):
        raise PermissionDenied("you are not a member of any tenant")
    window = _window(request)
    data = dashboard.cached_build(request.user, window)
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "subtitle": None,
        "window": window,
        "windows": WINDOW_CHOICES,
        "refresh_seconds": REFRESH_SECONDS,
        "data_url": reverse("admin:scheduler_app_dashboard_data") + f"?window={window}",
        "opts": Job._meta,
        **panels_context(request, data),
    }
    return TemplateResponse(request, "admin/scheduler_app/dashboard.html", context)


def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The dashboard's figures as JSON; with ``?html=1`` also the panels' HTML."""
    if not may_see(request):
        raise PermissionDenied("you are not a member of any tenant")
    window = request.GET.get("window", "1h")
    if window not in stats.WINDOWS:
        return JsonResponse(
            {"error": f"window: {window!r} is not one of {', '.join(stats.WINDOWS)}"}, status=400
        )
    data = dashboard.cached_build(request.user, window)
    if request.GET.get("html"):
        data["html"] = render_to_string(
            "admin/scheduler_app/dashboard_panels.html", panels_context(request, data), request=request
        )
    return JsonResponse(data)


def install(site: admin.AdminSite) -> None:
    """Add the dashboard's URLs to ``site`` and list it first in the Scheduler section."""
    if getattr(site, "_scheduler_dashboard", False):
        return
    site._scheduler_dashboard = True  # type: ignore[attr-defined]
    original_urls = site.get_urls
    original_app_list = site.get_app_list

    def get_urls() -> list[Any]:
        return [
            path("scheduler_app/dashboard/", site.admin_view(dashboard_view), name="scheduler_app_dashboard"),
            path(
                "scheduler_app/dashboard/data/",
                site.admin_view(dashboard_data),
                name="scheduler_app_dashboard_data",
            ),
            *original_urls(),
        ]

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = original_app_list(request, app_label)
        if may_see(request):
            for app in apps:
                if app["app_label"] == "scheduler_app":
                    app["models"].insert(
                        0,
                        {
                            "model": None,
                            "name": _("Dashboard"),
                            "object_name": "Dashboard",
                            "perms": {"view": True},
                            "admin_url": reverse("admin:scheduler_app_dashboard"),
                            "add_url": None,
                            "view_only": True,
                        },
                    )
        return apps

    site.get_urls = get_urls  # type: ignore[method-assign]
    site.get_app_list = get_app_list  # type: ignore[method-assign]
