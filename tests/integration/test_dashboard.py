"""Scheduler › Dashboard through the test client: figures computed from real rows,
tenant scoping (a member sees only his tenants' runs), the JSON endpoint."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from scheduler_app.models import JobRun, Membership

pytestmark = pytest.mark.django_db

URL = "/admin/scheduler_app/dashboard/"
DATA = "/admin/scheduler_app/dashboard/data/"


def finished(job, state, minutes_ago, duration, error=""):
    now = timezone.now()
    at = now - dt.timedelta(minutes=minutes_ago)
    return JobRun.objects.create(
        job=job,
        scheduled_for=at - dt.timedelta(seconds=duration),
        started_at=at - dt.timedelta(seconds=duration),
        finished_at=at,
        duration=duration,
        state=state,
        error=error,
        is_final=True,
    )


@pytest.fixture
def rows(make_job, other_tenant):
    from scheduler_app import services
    from scheduler_app.models import Job

    mine = make_job("billing")
    theirs = services.save_job(Job(name="secret-job", tenant=other_tenant, task="demo.noop"))
    finished(mine, "succeeded", 5, 2.0)
    finished(mine, "succeeded", 4, 4.0)
    finished(mine, "failed", 3, 1.0, error="ValueError: bad invoice\n  more")
    finished(theirs, "failed", 2, 9.0, error="globex broke")
    JobRun.objects.create(job=mine, scheduled_for=timezone.now(), state="running", started_at=timezone.now())
    return mine, theirs


def member(tenant):
    user = get_user_model().objects.create_user("ann", password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="viewer")
    return user


def test_json_figures_come_from_the_rows_and_are_scoped(client, rows, tenant):
    client.force_login(member(tenant))
    data = client.get(DATA, {"window": "1h"}).json()
    assert data["totals"]["running"] == 1
    assert data["totals"]["failed_24h"] == 1 and data["totals"]["succeeded_24h"] == 2
    assert sum(sum(v) for v in data["series"]["counts"].values()) == 3
    assert [f["error"] for f in data["recent_failures"]] == ["ValueError: bad invoice"]
    assert [f["job"] for f in data["failing_jobs"]] == ["billing"]
    slow = data["slowest_jobs"][0]
    assert slow["job"] == "billing" and slow["p50"] == pytest.approx(2.0)
    assert "secret-job" not in str(data) and "globex" not in str(data)


def test_superuser_sees_every_tenant(admin_client, rows):
    data = admin_client.get(DATA).json()
    assert data["totals"]["failed_24h"] == 2


def test_page_renders_charts_and_is_listed_in_the_index(client, rows, tenant):
    client.force_login(member(tenant))
    page = client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html and 'data-state="failed"' in html and "secret-job" not in html
    assert "bad invoice" in html
    assert URL in client.get("/admin/").content.decode()
    assert URL in client.get("/admin/scheduler_app/").content.decode()


def test_unknown_window_is_a_clear_error(admin_client, rows):
    response = admin_client.get(DATA, {"window": "2y"})
    assert response.status_code == 400 and "window" in response.json()["error"]


def test_html_fragment_for_live_updates(admin_client, rows):
    data = admin_client.get(DATA, {"html": "1"}).json()
    assert "sa-tiles" in data["html"] and "<svg" in data["html"]


def test_non_member_is_refused(client, rows):
    user = get_user_model().objects.create_user("bob", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(DATA).status_code == 403


# Each run of its own job (an open incident would fold a job's later failures into one
# alert): (state, final, counted as a failure).
OUTCOMES = [
    ("failed", True, True),
    ("timed_out", True, True),
    ("lost", True, True),
    ("failed", False, False),  # retried: a `retrying` alert, not `failed`
    ("timed_out", False, False),
    ("lost", False, False),
    ("interrupted", False, False),  # re-queued when its node starts again
    ("cancelled", True, False),
    ("skipped", True, False),
    ("succeeded", True, False),
]


def test_dashboard_and_job_list_count_failures_as_the_failed_alert_fires(admin_client, make_job, tenant):
    from scheduler_app import services
    from scheduler_app.alerts import evaluate
    from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule

    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="hook", type="webhook", config={"url": "http://127.0.0.1:9/x"})
    )
    services.save_rule(AlertRule(tenant=tenant, name="all failures", events=["failed"]), channels=[channel])
    runs = []
    for i, (state, final, _counted) in enumerate(OUTCOMES):
        run = finished(make_job(f"job-{i}-{state}"), state, 15 - i, 1.0, error=f"{state} {i}")
        JobRun.objects.filter(pk=run.pk).update(is_final=final)
        run.refresh_from_db()
        runs.append(run)
    evaluate.on_outcome(runs)
    alerted = set(AlertOutbox.objects.filter(event="failed").values_list("run_id", flat=True))
    expected = {run.pk for run, (_s, _f, counted) in zip(runs, OUTCOMES, strict=True) if counted}
    assert alerted == expected

    data = admin_client.get(DATA, {"window": "1h"}).json()
    assert {f["run_id"] for f in data["recent_failures"]} == expected
    assert data["totals"]["failed_24h"] == len(expected)
    assert data["totals"]["failure_rate_24h"] == pytest.approx(len(expected) / (len(expected) + 1))
    assert sum(f["failures"] for f in data["failing_jobs"]) == len(expected)
    assert sum(data["series"]["failures"]) == len(expected)
    assert data["series"]["failure_rate"].count(1.0) == len(expected)  # one run a bucket at most

    listed = admin_client.get("/admin/scheduler_app/job/").context["cl"].result_list
    failed_jobs = {job.name for job in listed if job._failed_24h}
    assert failed_jobs == {run.job.name for run in runs if run.pk in expected}


def test_upcoming_fires_are_reused_between_polls_but_follow_job_changes(admin_client, make_job):
    from scheduler_app import services

    every_minute = {"type": "cron", "expression": "* * * * *"}
    first = make_job("first", trigger=every_minute)

    def upcoming():
        return {u["job"] for u in admin_client.get(DATA, {"window": "1h"}).json()["upcoming"]}

    assert upcoming() == {"first"}
    make_job("second", trigger=every_minute)
    assert upcoming() == {"first", "second"}
    services.pause_jobs([first])
    assert upcoming() == {"second"}


def test_a_reused_upcoming_list_still_shows_a_job_that_fires_every_few_seconds(make_job):
    """The list reused for 30 s used to keep five fire times per job: a job every 2 s
    vanished from it after ten seconds while slower jobs' later fires stayed (found by
    review)."""
    from scheduler_app.monitoring import dashboard

    dashboard._upcoming_cache.clear()
    make_job("fast", trigger={"type": "interval", "seconds": 2})
    make_job("slow", trigger={"type": "interval", "seconds": 600})
    root = get_user_model().objects.create_superuser("root-up", "root@example.com", "pw")
    t0 = timezone.now()
    dashboard.cached_upcoming_fires(root, dashboard.scoped_jobs(root), t0)  # fills the cache
    later = t0 + dt.timedelta(seconds=15)
    reused = dashboard.cached_upcoming_fires(root, dashboard.scoped_jobs(root), later)
    fresh = dashboard.upcoming_fires(dashboard.scoped_jobs(root), later)
    # The next five are the fast job's, exactly as a fresh computation finds them.
    assert [(u["job"], u["at"]) for u in reused][:5] == [(u["job"], u["at"]) for u in fresh][:5]
    assert [u["job"] for u in fresh][:5] == ["fast"] * 5


def test_reused_upcoming_fires_follow_a_calendar_date_change(admin_client, make_job, tenant):
    """A calendar's new excluded date changes no job row: the reused list kept showing
    the excluded day's fires for up to 30 s (the key ignored the calendars)."""
    from scheduler_app import services
    from scheduler_app.models import Calendar
    from scheduler_app.monitoring import dashboard

    dashboard._upcoming_cache.clear()
    today = timezone.now().astimezone(dt.UTC).date()
    calendar = services.save_calendar(Calendar(tenant=tenant, name="holidays"), dates=[])
    job = make_job("hourly", trigger={"type": "interval", "seconds": 60})
    job.calendars.add(calendar)
    services.notify_job_changed(job)

    def upcoming():
        return [u["job"] for u in admin_client.get(DATA, {"window": "1h"}).json()["upcoming"]]

    assert "hourly" in upcoming()
    tomorrow = today + dt.timedelta(days=1)
    services.save_calendar(calendar, dates=[(today, "closed"), (tomorrow, "closed")])
    assert "hourly" not in upcoming()


def test_lateness_is_charted_per_bucket(admin_client, make_job):
    """p50/p95 start lateness per minute of the last hour, from the runs' own times
    (same figures on PostgreSQL's percentile_cont and the Python fallback)."""
    job = make_job("late-job")
    now = timezone.now().replace(second=30, microsecond=0) - dt.timedelta(minutes=2)

    def run(minutes_ago, late):
        at = now - dt.timedelta(minutes=minutes_ago)
        JobRun.objects.create(
            job=job,
            scheduled_for=at - dt.timedelta(seconds=late + 1),
            started_at=at - dt.timedelta(seconds=1),
            finished_at=at,
            duration=1.0,
            state="succeeded",
            is_final=True,
        )

    for late in (1.0, 2.0, 3.0):
        run(5, late)
    run(3, 10.0)
    data = admin_client.get(DATA, {"window": "1h", "html": "1"}).json()
    buckets = [dt.datetime.fromisoformat(b) for b in data["series"]["buckets"]]
    series = data["lateness_series"]
    assert len(series["p50"]) == len(series["p95"]) == len(buckets) == 60

    def at(minutes_ago):
        moment = (now - dt.timedelta(minutes=minutes_ago)).replace(second=0)
        return buckets.index(moment)

    assert series["p50"][at(5)] == pytest.approx(2.0)
    assert series["p95"][at(5)] == pytest.approx(2.9)
    assert series["p50"][at(3)] == pytest.approx(10.0) == series["p95"][at(3)]
    assert sum(v is not None for v in series["p95"]) == 2
    html = data["html"]
    chart = html[html.index('<svg class="sa-chart sa-chart-lateness"') :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count('data-series="p95"') == 2 and chart.count('data-series="p50"') == 2
    assert "currentColor" in chart and "http" not in chart.replace("http://www.w3.org/2000/svg", "")


def test_no_lateness_chart_without_started_runs(admin_client):
    html = admin_client.get(DATA, {"window": "1h", "html": "1"}).json()["html"]
    assert "sa-chart-lateness" not in html
    assert "No started runs finished in this window." in html


# -- figures reused between polls -------------------------------------------------------


def test_figures_are_reused_for_a_few_seconds_per_scope_with_their_time(admin_client, rows, monkeypatch):
    """A second poll within BUILD_CACHE_SECONDS gets the same figures (with the time
    they were computed, which the page shows as "updated") in two queries; a new run
    shows once the time is up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduler_app.monitoring import dashboard

    clock = [1000.0]
    monkeypatch.setattr(dashboard.time, "monotonic", lambda: clock[0])
    first = admin_client.get(DATA, {"window": "1h"}).json()
    mine, _theirs = rows
    finished(mine, "failed", 1, 1.0, error="new failure")
    clock[0] += dashboard.BUILD_CACHE_SECONDS - 1
    with CaptureQueriesContext(connection) as captured:
        again = admin_client.get(DATA, {"window": "1h"}).json()
    assert again == first  # reused: same generated_at, the new failure not yet counted
    built = [q for q in captured if "scheduler_app_jobrun" in q["sql"]]
    assert built == []  # nothing of the runs was read again
    page = admin_client.get(URL).content.decode()
    assert "new failure" not in page
    clock[0] += 2
    fresh = admin_client.get(DATA, {"window": "1h"}).json()
    assert fresh["generated_at"] > first["generated_at"]
    assert fresh["totals"]["failed_24h"] == first["totals"]["failed_24h"] + 1
    assert "new failure" in str(fresh["recent_failures"])
    # Another window is computed on its own.
    day = admin_client.get(DATA, {"window": "24h"}).json()
    assert day["window"] == "24h" and day["totals"]["failed_24h"] == fresh["totals"]["failed_24h"]


def test_reused_figures_follow_configuration_changes_at_once(admin_client, rows, monkeypatch):
    from scheduler_app import services
    from scheduler_app.monitoring import dashboard

    monkeypatch.setattr(dashboard.time, "monotonic", lambda: 1000.0)  # never expires
    mine, _theirs = rows
    before = admin_client.get(DATA).json()
    services.pause_jobs([mine])
    after = admin_client.get(DATA).json()
    assert after["totals"]["jobs_paused"] == before["totals"]["jobs_paused"] + 1


def test_reused_figures_never_cross_tenant_scopes(
    client, admin_client, rows, tenant, other_tenant, monkeypatch
):
    """A member of one tenant never gets the figures computed for a superuser or for
    another tenant's member, and a member who loses a tenant stops seeing its runs at once."""
    from scheduler_app.monitoring import dashboard

    monkeypatch.setattr(dashboard.time, "monotonic", lambda: 1000.0)
    assert admin_client.get(DATA).json()["totals"]["failed_24h"] == 2
    ann = member(tenant)
    client.force_login(ann)
    mine = client.get(DATA).json()
    assert mine["totals"]["failed_24h"] == 1 and "globex" not in str(mine)
    bob = get_user_model().objects.create_user("bob", password="x", is_staff=True)
    Membership.objects.create(user=bob, tenant=other_tenant, role="viewer")
    client.force_login(bob)
    theirs = client.get(DATA).json()
    assert theirs["totals"]["failed_24h"] == 1 and "bad invoice" not in str(theirs)
    assert "globex broke" in str(theirs)
    Membership.objects.create(user=ann, tenant=other_tenant, role="viewer")
    client.force_login(ann)
    assert client.get(DATA).json()["totals"]["failed_24h"] == 2
    Membership.objects.filter(user=ann, tenant=other_tenant).delete()
    assert "globex" not in str(client.get(DATA).json())
