"""The operator's job list, run list and run page through the test client, on real rows:
columns and their values, ordering, bounded queries per page, one time zone for the run
list, the timeline, the chain of runs, and re-run / retry through the services."""

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Membership

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: A time with seconds and an offset, as every time on these pages must be written.
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d")


def url(model, view="changelist", *args):
    return reverse(f"admin:scheduler_app_{model}_{view}", args=args)


def finished(job, state, minutes_ago, duration, error="", **fields):
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return JobRun.objects.create(
        job=job,
        scheduled_for=at - dt.timedelta(seconds=duration, milliseconds=250),
        started_at=at - dt.timedelta(seconds=duration),
        finished_at=at,
        duration=duration,
        state=state,
        error=error,
        is_final=True,
        **fields,
    )


def user_with(tenant, role, name="ann"):
    user = get_user_model().objects.create_user(name, password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


@pytest.fixture
def jobs(make_job):
    daily = make_job(
        "daily-report",
        trigger={"type": "cron", "expression": "0 9 * * *", "timezone": "Asia/Shanghai"},
    )
    flaky = make_job("flaky", task="demo.echo")
    idle = make_job("idle", trigger={"type": "manual"})
    for minutes, duration in ((50, 1.0), (40, 2.0), (30, 3.0), (20, 4.0)):
        finished(daily, "succeeded", minutes, duration)
    finished(daily, "succeeded", 60 * 30, 100.0)  # older than 24 h: not counted in "24 h"
    finished(flaky, "failed", 10, 0.5, error="ValueError: bad row 7\n  at line 2")
    finished(flaky, "timed_out", 5, 9.0, error="timed out after 9 s")
    finished(flaky, "succeeded", 3, 0.25)
    return {"daily": daily, "flaky": flaky, "idle": idle}


def rows_of(response):
    assert response.status_code == 200
    return {job.name: job for job in response.context["cl"].result_list}


# -- job list -------------------------------------------------------------------------


def test_job_list_columns_come_from_the_rows(admin_client, jobs):
    response = admin_client.get(url("job"))
    rows = rows_of(response)
    daily, flaky, idle = rows["daily-report"], rows["flaky"], rows["idle"]
    assert (daily._ok_24h, daily._failed_24h) == (4, 0)
    assert (flaky._ok_24h, flaky._failed_24h) == (1, 2)  # failed and timed out both count
    assert (idle._ok_24h, idle._failed_24h) == (0, 0)
    # p50 / p95 over the last runs, linear interpolation: 1, 2, 3, 4, 100
    assert daily._p50 == pytest.approx(3.0)
    assert daily._p95 == pytest.approx(4 + (100 - 4) * 0.8)
    assert idle._p50 is None and idle._next_fire is None
    # next fire: 09:00 in Shanghai, after now
    nxt = daily._next_fire.astimezone(SHANGHAI)
    assert (nxt.hour, nxt.minute, nxt.second) == (9, 0, 0) and daily._next_fire > timezone.now()
    html = response.content.decode()
    assert f"{nxt:%Y-%m-%d} 09:00:00 +08:00 (Asia/Shanghai)" in html
    assert "3.00 s / 80.80 s" in html
    assert ">succeeded</span>" in html  # flaky's last run


def test_job_list_sorts_by_failures_and_last_run(admin_client, jobs):
    changelist = admin_client.get(url("job")).context["cl"]
    columns = list(changelist.list_display)
    by_failures = columns.index("outcomes_24h")
    by_last = columns.index("last_run")
    failing_first = admin_client.get(url("job") + f"?o={by_failures}").context["cl"].result_list
    assert [j.name for j in failing_first][0] == "flaky"
    newest_last = admin_client.get(url("job") + f"?o={by_last}").context["cl"].result_list
    assert [j.name for j in newest_last] == ["idle", "daily-report", "flaky"]  # never ran: first
    newest_first = admin_client.get(url("job") + f"?o=-{by_last}").context["cl"].result_list
    assert [j.name for j in newest_first] == ["flaky", "daily-report", "idle"]


def sortable_columns(response):
    """list_display name -> the ?o= index of the columns with a sort link."""
    changelist = response.context["cl"]
    html = response.content.decode()
    columns = list(changelist.list_display)
    return {name: i for i, name in enumerate(columns) if f'class="sortable column-{name}' in html}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="p95 sorts where the database has percentile_cont"
)
def test_job_list_sorts_by_p95_duration_slowest_first(admin_client, jobs, make_job):
    quick = make_job("quick")
    for minutes in (9, 8, 7):
        finished(quick, "succeeded", minutes, 0.1)
    response = admin_client.get(url("job"))
    by_p95 = sortable_columns(response)["duration_percentiles"]
    slowest_first = rows_of(admin_client.get(url("job") + f"?o={by_p95}"))
    # daily 80.8 s, flaky 8.1 s, quick 0.1 s, idle never ran: last
    assert list(slowest_first) == ["daily-report", "flaky", "quick", "idle"]
    assert slowest_first["daily-report"]._p95 == pytest.approx(4 + (100 - 4) * 0.8)
    assert slowest_first["flaky"]._p50 == pytest.approx(0.5)
    fastest_first = rows_of(admin_client.get(url("job") + f"?o=-{by_p95}"))
    assert list(fastest_first) == ["idle", "quick", "flaky", "daily-report"]


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite has no percentile_cont")
def test_job_list_p95_does_not_sort_without_percentile_cont(admin_client, jobs):
    response = admin_client.get(url("job"))
    assert "duration_percentiles" not in sortable_columns(response)
    assert "outcomes_24h" in sortable_columns(response)


def test_job_list_p95_of_the_annotation_is_the_page_figure(admin_client, make_job):
    """The database's percentile (PostgreSQL) and the Python one over the newest 50
    finished runs agree, runs without a duration (skipped) left out."""
    from scheduler_app.admin import joblist
    from scheduler_app.monitoring import stats

    job = make_job("many")
    for i in range(60):
        finished(job, "succeeded", 120 - i, float(i % 17) + i / 100)
    skipped = finished(job, "skipped", 1, 0.0)
    JobRun.objects.filter(pk=skipped.pk).update(duration=None, started_at=None)
    row = rows_of(admin_client.get(url("job")))["many"]
    recent = stats.last_runs_per_job(JobRun.objects.all(), [job.pk], joblist.DURATION_RUNS)[job.pk]
    expected = stats.durations_of(recent)
    assert (row._p50, row._p95) == (pytest.approx(expected["p50"]), pytest.approx(expected["p95"]))


def test_next_fire_sorts_with_the_django_job_store_only(admin_client, jobs, settings):
    from django_apscheduler.models import DjangoJob

    assert "next_fire" not in sortable_columns(admin_client.get(url("job")))  # memory store
    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "JOB_STORE": "django"}
    soon, later = timezone.now() + dt.timedelta(minutes=5), timezone.now() + dt.timedelta(hours=5)
    DjangoJob.objects.create(id=f"job-{jobs['flaky'].pk}", next_run_time=soon, job_state=b"")
    DjangoJob.objects.create(id=f"job-{jobs['daily'].pk}", next_run_time=later, job_state=b"")
    by_next = sortable_columns(admin_client.get(url("job")))["next_fire"]
    soonest_first = rows_of(admin_client.get(url("job") + f"?o={by_next}"))
    assert list(soonest_first) == ["flaky", "daily-report", "idle"]  # idle: no next fire, last
    assert soonest_first["flaky"]._next_fire == soon
    assert list(rows_of(admin_client.get(url("job") + f"?o=-{by_next}"))) == ["idle", "daily-report", "flaky"]


@pytest.mark.parametrize("count", [5, 30])
def test_job_list_queries_are_bounded(admin_client, make_job, count):
    for i in range(count):
        job = make_job(f"job-{i:02d}", trigger={"type": "cron", "expression": f"{i % 60} * * * *"})
        finished(job, "succeeded", 5, 1.0 + i)
        finished(job, "failed", 4, 2.0, error="boom")
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url("job") + "?all=")
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == count
    assert len(captured) <= 20, [q["sql"][:120] for q in captured]


def test_job_list_query_count_is_the_same_for_5_and_30_jobs(admin_client, make_job):
    counts = {}
    made = 0
    for count in (5, 30):
        while made < count:
            job = make_job(f"job-{made:02d}", trigger={"type": "cron", "expression": f"{made % 60} * * * *"})
            finished(job, "succeeded", 5, 1.0 + made)
            finished(job, "failed", 4, 2.0, error="boom")
            made += 1
        admin_client.get(url("job") + "?all=")  # warm caches (sessions, content types)
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(url("job") + "?all=")
        assert len(response.context["cl"].result_list) == count
        counts[count] = len(captured)
    assert counts[5] == counts[30], counts


def test_job_page_has_a_chart_of_recent_runs(admin_client, jobs):
    html = admin_client.get(url("job", "change", jobs["flaky"].pk)).content.decode()
    chart = html[html.index('<svg class="sa-chart sa-chart-history"') :]
    chart = chart[: chart.index("</svg>")]
    # oldest first: failed, timed out, succeeded; colours are the state colours
    assert re.findall(r'data-state="(\w+)"', chart) == ["failed", "timed_out", "succeeded"]
    assert "currentColor" in chart
    assert "Duration and outcome of the last 3 finished runs" in html
    assert "p50 0.500 s, p95 8.15 s over 3 runs" in html


# -- run list -------------------------------------------------------------------------


@pytest.fixture
def runs(jobs):
    flaky = jobs["flaky"]
    failed = JobRun.objects.get(job=flaky, state="failed")
    JobRun.objects.filter(pk=failed.pk).update(node="node-a", cpu_seconds=0.000016044000000000214)
    running = JobRun.objects.create(
        job=jobs["daily"],
        scheduled_for=timezone.now() - dt.timedelta(seconds=3),
        started_at=timezone.now() - dt.timedelta(seconds=2),
        state="running",
        node="node-b",
    )
    return {"failed": JobRun.objects.get(pk=failed.pk), "running": running}


def _run_list_queries(client, expected_rows):
    client.get(url("jobrun"))  # warm caches (sessions, content types)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url("jobrun"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == expected_rows
    return len(captured), [q["sql"][:100] for q in captured]


def test_run_list_query_count_does_not_grow_with_rows(admin_client, client, tenant, other_tenant, make_job):
    """Every column (job, tenant, error, waiting, …) comes from the page's one query:
    the admin used to make one Tenant query per row."""
    client.force_login(user_with(tenant, "viewer"))
    mine = make_job("mine")
    theirs = make_job("theirs", tenant=other_tenant)
    counts = {}
    made = 0
    for per_tenant in (3, 20):
        while made < per_tenant:
            finished(mine, "failed", 50 - made, 1.0, error=f"boom {made}\nsecond line")
            finished(theirs, "succeeded", 50 - made, 2.0)
            made += 1
        counts[per_tenant] = (
            _run_list_queries(admin_client, 2 * per_tenant),
            _run_list_queries(client, per_tenant),
        )
    (admin_few, sqls), (member_few, _) = counts[3]
    (admin_many, more_sqls), (member_many, _) = counts[20]
    assert admin_many == admin_few, more_sqls
    assert member_many == member_few


def test_run_list_shows_every_time_in_the_admins_zone(admin_client, runs, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    response = admin_client.get(url("jobrun"))
    html = response.content.decode()
    failed = runs["failed"]
    local = failed.finished_at.astimezone(SHANGHAI)
    assert f"{local:%Y-%m-%d %H:%M:%S} +08:00 (Asia/Shanghai)" in html
    assert "Times in Asia/Shanghai (+08:00)." in html
    # started, finished, scheduled: all three columns in the one zone
    cells = re.findall(r'<td class="field-(?:scheduled|started|finished)_local[^"]*">([^<]*)</td>', html)
    assert cells and all(c == "—" or c.endswith("+08:00 (Asia/Shanghai)") for c in cells), cells
    assert "Asia/Shanghai" in html and "+00:00" not in "".join(cells)


def test_run_list_columns_and_error_first_line(admin_client, runs):
    html = admin_client.get(url("jobrun")).content.decode()
    assert 'title="ValueError: bad row 7\n  at line 2">ValueError: bad row 7</span>' in html
    assert '<td class="field-node">node-a</td>' in html
    assert '<td class="field-attempt">1</td>' in html
    assert "0.500 s" in html
    assert 'id="sa-runlist-auto"' in html and "scheduler_app/runlist.js" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state__exact=failed", {"flaky"}),
        ("node=node-b", {"daily-report"}),
        ("started_within=1h", {"daily-report", "flaky"}),
        ("started_within=24h&job__id__exact={flaky}", {"flaky"}),
    ],
)
def test_run_list_filters(admin_client, runs, jobs, query, expected):
    response = admin_client.get(url("jobrun") + "?" + query.format(flaky=jobs["flaky"].pk))
    assert {r.job.name for r in response.context["cl"].result_list} == expected


def test_started_within_leaves_out_older_runs(admin_client, runs, jobs):
    response = admin_client.get(url("jobrun") + f"?started_within=1h&job__id__exact={jobs['daily'].pk}")
    durations = sorted(r.duration for r in response.context["cl"].result_list if r.duration)
    assert durations == [1.0, 2.0, 3.0, 4.0]  # the run 30 hours ago is left out


# -- run page -------------------------------------------------------------------------


def test_run_page_timeline_resources_and_traceback(admin_client, runs, jobs):
    failed = runs["failed"]
    JobRun.objects.filter(pk=failed.pk).update(
        peak_memory_mb=12.345678,
        traceback='Traceback (most recent call last):\n  File "t.py", line 2, in f\n    raise ValueError',
    )
    html = admin_client.get(url("jobrun", "change", failed.pk)).content.decode()
    assert "0.000 s" in html and "0.000016044" not in html
    assert "12.3 MB" in html
    assert '<pre class="sa-traceback">Traceback (most recent call last):\n  File &quot;t.py&quot;' in html
    timeline = html[html.index('<table class="sa-timeline">') :]
    timeline = timeline[: timeline.index("</table>")]
    assert len(TIME.findall(timeline)) >= 5  # scheduled, queued, not before, started, finished
    assert "+0.250 s" in timeline  # started 0.25 s after its scheduled time... after not before
    assert "+0.500 s" in timeline  # finished after started
    assert "The job&#x27;s zone: UTC" in html or "The job's zone: UTC" in html
    assert 'http-equiv="refresh"' not in html  # finished: no reload


def test_running_run_page_reloads_itself(admin_client, runs):
    html = admin_client.get(url("jobrun", "change", runs["running"].pk)).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert "running for" in html
    assert "Asia/Shanghai" in html  # the job's zone is named on the page


def test_run_page_shows_upstream_and_downstream_runs(admin_client, jobs):
    root = finished(jobs["daily"], "succeeded", 9, 1.0)
    middle = finished(jobs["flaky"], "succeeded", 8, 1.0, triggered_by=root)
    leaf = finished(jobs["idle"], "failed", 7, 1.0, triggered_by=middle)
    html = admin_client.get(url("jobrun", "change", middle.pk)).content.decode()
    upstream = html[html.index("field-upstream_chain") :]
    upstream = upstream[: upstream.index("</div>\n")]
    assert url("jobrun", "change", root.pk) in upstream
    downstream = html[html.index("field-downstream_runs") :]
    assert url("jobrun", "change", leaf.pk) in downstream[: downstream.index("</ul>")]
    leaf_html = admin_client.get(url("jobrun", "change", leaf.pk)).content.decode()
    chain = leaf_html[leaf_html.index("field-upstream_chain") :]
    chain = chain[: chain.index("</div>\n")]
    assert chain.index(url("jobrun", "change", middle.pk)) < chain.index(url("jobrun", "change", root.pk))


def upstream_dag(make_job, param="upstream"):
    """B (succeeded, a masked secret in its result) and C (failed) queued D."""
    b, c = make_job("B"), make_job("C")
    d = make_job(
        "D", task="tests.give", trigger_rule="all_done", upstream_param=param, overlap_policy="queue"
    )
    services.add_dependency(b, d)
    services.add_dependency(c, d)
    b_run = finished(b, "succeeded", 3, 1.0, result={"rows": 7, "token": "••••••"})
    c_run = finished(c, "failed", 2, 1.0, error="x")
    gone = c_run.pk + 1000  # deleted by retention since
    d_run = finished(d, "succeeded", 1, 1.0, reason="dependency", upstream_runs=[b_run.pk, c_run.pk, gone])
    return d_run, b_run, c_run, gone


def field_of(html, name):
    part = html[html.index(f"field-{name}") :]
    return part[: part.index("</div>\n")]


def test_run_page_shows_the_upstream_runs_and_what_each_passed(admin_client, make_job):
    d_run, b_run, c_run, gone = upstream_dag(make_job)
    shown = field_of(
        admin_client.get(url("jobrun", "change", d_run.pk)).content.decode(), "upstream_runs_display"
    )
    assert url("jobrun", "change", b_run.pk) in shown and url("jobrun", "change", c_run.pk) in shown
    assert "succeeded" in shown and "failed" in shown
    assert shown.index(f"#{b_run.pk} B") < shown.index(f"#{c_run.pk} C")
    # as D received it: B's result (masked as stored), null for the failed C
    assert (
        "passed upstream = <code class='sa-passed'>{&quot;rows&quot;: 7, &quot;token&quot;: &quot;••••••&quot;}"
        in shown
    )
    assert shown.count("passed upstream =") == 2 and "null</code>" in shown
    assert f"#{gone} (deleted by retention)" in shown
    assert TIME.search(shown)


def test_run_page_without_upstream_param_lists_the_runs_only(admin_client, make_job):
    d_run, b_run, _c_run, _gone = upstream_dag(make_job, param="")
    shown = field_of(
        admin_client.get(url("jobrun", "change", d_run.pk)).content.decode(), "upstream_runs_display"
    )
    assert url("jobrun", "change", b_run.pk) in shown and "passed upstream" not in shown


def test_rerun_from_the_run_page_keeps_the_upstream_runs(admin_client, make_job):
    d_run, *_ = upstream_dag(make_job)
    before = set(JobRun.objects.values_list("pk", flat=True))
    admin_client.post(url("jobrun", "rerun", d_run.pk))
    new = JobRun.objects.exclude(pk__in=before).get()
    assert (new.reason, new.upstream_runs) == ("manual", d_run.upstream_runs)


def open_round(job, minutes_ago, **ends):
    """A round of ``job`` opened ``minutes_ago``, with ends {upstream: (run, kind)}."""
    from scheduler_app.models import JobJoin

    return JobJoin.objects.create(
        job=job,
        opened_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
        ends={
            str(run.job_id): {"run": run.pk, "ok": kind == "success", "end": kind}
            for run, kind in ends.values()
        },
    )


def test_join_rounds_list_is_read_only_and_scoped(client, tenant, other_tenant, make_job, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    b, c, g = make_job("B"), make_job("C"), make_job("G")
    d = make_job("D", trigger_rule="all_done")
    for up in (b, c, g):
        services.add_dependency(up, d)
    b_run, c_run = finished(b, "succeeded", 9, 1.0), finished(c, "skipped", 8, 0.0)
    first = open_round(d, 10, b=(b_run, "success"), c=(c_run, "skipped"))
    second = open_round(d, 5, b=(finished(b, "failed", 4, 1.0), "failed"))
    theirs_job = services.save_job(Job(name="theirs", tenant=other_tenant, task="demo.noop"))
    theirs = open_round(theirs_job, 3, x=(finished(theirs_job, "succeeded", 3, 1.0), "success"))
    client.force_login(user_with(tenant, "operator"))
    response = client.get(url("jobjoin"))
    assert response.status_code == 200
    assert sorted(r.pk for r in response.context["cl"].result_list) == [first.pk, second.pk]  # not theirs
    html = response.content.decode()
    assert "theirs" not in html
    first_row = html[html.index(f"/jobjoin/{first.pk}/change/") :]
    first_row = first_row[: first_row.index("</tr>")]
    assert '<td class="field-round_number">1</td>' in first_row
    assert f"{url('jobrun', 'change', b_run.pk)}'>B #{b_run.pk}</a> (succeeded)" in first_row
    assert f"C #{c_run.pk}</a> (skipped)" in first_row
    assert '<td class="field-waiting_for">G</td>' in first_row
    assert TIME.search(first_row) and "+08:00" in first_row  # seconds and offset
    second_row = html[html.index(f"/jobjoin/{second.pk}/change/") :]
    second_row = second_row[: second_row.index("</tr>")]
    assert '<td class="field-round_number">2</td>' in second_row and "(failed)" in second_row
    assert '<td class="field-waiting_for">C, G</td>' in second_row
    page = client.get(url("jobjoin", "change", first.pk))
    assert page.status_code == 200 and "B #" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # read-only
    assert client.get(url("jobjoin", "change", theirs.pk)).status_code == 404
    assert client.get(url("jobjoin", "delete", first.pk)).status_code == 403
    assert client.get(url("jobjoin", "add")).status_code == 403
    client.force_login(user_with(other_tenant, "operator", name="bo"))
    assert client.get(url("jobjoin", "change", first.pk)).status_code == 404


# -- re-run and retry -----------------------------------------------------------------


def test_rerun_queues_a_run_with_the_same_inputs(client, tenant, jobs):
    flaky = jobs["flaky"]
    source = finished(flaky, "failed", 2, 1.0, kwargs_override={"rows": 7})
    client.force_login(user_with(tenant, "operator"))
    page = client.get(url("jobrun", "change", source.pk)).content.decode()
    assert "Re-run (same inputs)" in page and "Retry" in page and "csrfmiddlewaretoken" in page
    assert client.get(url("jobrun", "rerun", source.pk)).status_code == 405  # POST only
    before = set(JobRun.objects.values_list("pk", flat=True))
    response = client.post(url("jobrun", "rerun", source.pk), follow=True)
    new = JobRun.objects.exclude(pk__in=before).get()
    assert (new.job, new.state, new.reason, new.kwargs_override) == (flaky, "queued", "manual", {"rows": 7})
    assert [str(m) for m in response.context["messages"]] == [
        f"Queued a new run with the same inputs: #{new.pk}."
    ]
    from auditlog.models import LogEntry

    entry = LogEntry.objects.filter(object_pk=str(flaky.pk)).order_by("-pk").first()
    assert entry.additional_data["operation"] == "run_now" and entry.actor.username == "ann"


def test_retry_queues_the_next_attempt(admin_client, jobs):
    flaky = jobs["flaky"]
    source = JobRun.objects.get(job=flaky, state="timed_out")
    JobRun.objects.filter(pk=source.pk).update(kwargs_override={"rows": 1})
    response = admin_client.post(url("jobrun", "retry", source.pk), follow=True)
    retry = JobRun.objects.get(job=flaky, scheduled_for=source.scheduled_for, attempt=2)
    assert (retry.state, retry.reason, retry.kwargs_override) == ("queued", "retry", {"rows": 1})
    assert retry.not_before <= timezone.now()
    assert [str(m) for m in response.context["messages"]] == [f"Queued attempt 2: #{retry.pk}."]
    response = admin_client.post(url("jobrun", "retry", source.pk), follow=True)
    third = JobRun.objects.get(job=flaky, scheduled_for=source.scheduled_for, attempt=3)
    assert [str(m) for m in response.context["messages"]] == [f"Queued attempt 3: #{third.pk}."]
    succeeded = JobRun.objects.filter(job=flaky, state="succeeded").first()
    response = admin_client.post(url("jobrun", "retry", succeeded.pk), follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Refused: run is succeeded; only runs that ended without success are retried."
    ]


def test_viewer_may_not_rerun_or_retry(client, tenant, jobs):
    source = JobRun.objects.get(job=jobs["flaky"], state="failed")
    client.force_login(user_with(tenant, "viewer"))
    page = client.get(url("jobrun", "change", source.pk)).content.decode()
    assert "Re-run (same inputs)" not in page
    count = JobRun.objects.count()
    assert client.post(url("jobrun", "rerun", source.pk)).status_code == 403
    assert client.post(url("jobrun", "retry", source.pk)).status_code == 403
    assert JobRun.objects.count() == count


def test_another_tenants_run_is_404(client, tenant, other_tenant, jobs):
    theirs = services.save_job(Job(name="theirs", tenant=other_tenant, task="demo.noop"))
    run = finished(theirs, "failed", 1, 1.0)
    client.force_login(user_with(tenant, "operator"))
    count = JobRun.objects.count()
    assert client.get(url("jobrun", "change", run.pk)).status_code == 404
    assert client.post(url("jobrun", "rerun", run.pk)).status_code == 404
    assert client.post(url("jobrun", "retry", run.pk)).status_code == 404
    assert JobRun.objects.count() == count


def test_retry_service_refuses_without_run_permission(tenant, jobs):
    source = JobRun.objects.get(job=jobs["flaky"], state="failed")
    viewer = user_with(tenant, "viewer")
    result = services.retry_runs([source], actor=viewer)
    assert result.done == [] and result.refused == [(source, "you may not run this job")]
    result = services.rerun_runs([source], actor=viewer)
    assert result.done == [] and result.refused == [(source, "you may not run this job")]


def test_next_fire_comes_from_the_django_job_store_when_it_holds_one(admin_client, jobs, settings):
    from django_apscheduler.models import DjangoJob

    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "JOB_STORE": "django"}
    stored = dt.datetime(2030, 1, 2, 1, 0, 5, tzinfo=dt.UTC)
    DjangoJob.objects.create(id=f"job-{jobs['daily'].pk}", next_run_time=stored, job_state=b"")
    with CaptureQueriesContext(connection) as captured:
        rows = rows_of(admin_client.get(url("job")))
    sqls = [q["sql"] for q in captured]  # before the next request resets the query log
    assert rows["daily-report"]._next_fire == stored
    assert "2030-01-02 09:00:05 +08:00 (Asia/Shanghai)" in admin_client.get(url("job")).content.decode()
    assert rows["flaky"]._next_fire > timezone.now()  # not in the store: computed from its trigger
    assert sum(DjangoJob._meta.db_table in sql for sql in sqls) == 1  # one query for the page


def test_run_list_job_filter_offers_scoped_jobs_by_name_up_to_a_cap(
    client, tenant, other_tenant, make_job, monkeypatch
):
    from scheduler_app.admin.base import ScopedChoicesFilter

    monkeypatch.setattr(ScopedChoicesFilter, "cap", 3)
    client.force_login(user_with(tenant, "viewer"))
    mine = [make_job(f"job-{i}") for i in range(5)]
    make_job("theirs", tenant=other_tenant)
    for job in mine:
        finished(job, "succeeded", 5, 1.0)
    response = client.get(url("jobrun") + f"?job__id__exact={mine[4].pk}")
    assert [r.job.name for r in response.context["cl"].result_list] == ["job-4"]
    (spec,) = [f for f in response.context["cl"].filter_specs if getattr(f, "field_path", "") == "job"]
    offered = [label for _pk, label in spec.lookup_choices]
    assert offered == ["job-0", "job-1", "job-2", "job-4"]  # the cap by name, plus the chosen one


def test_job_list_shortcuts_render_what_django_renders(admin_client, jobs, make_job):
    """The per-page shortcuts (checkbox markup, change URL from one reverse, trigger
    descriptions shared by equal triggers) give Django's own output for every row."""
    from django.contrib import admin as django_admin
    from django.contrib.admin.views.main import ChangeList

    hashed = {"type": "cron", "expression": "H 9 * * *"}
    make_job("hashed-a", trigger=hashed)
    make_job("hashed-b", trigger=hashed)
    response = admin_client.get(url("job"))
    changelist = response.context["cl"]
    model_admin = changelist.model_admin
    html = response.content.decode()
    for job in changelist.result_list:
        assert model_admin.action_checkbox(job) == django_admin.ModelAdmin.action_checkbox(model_admin, job)
        assert changelist.url_for_result(job) == ChangeList.url_for_result(changelist, job)
        assert model_admin.trigger_text(job) == Job.objects.get(pk=job.pk).describe_trigger()
        assert f'<td class="field-trigger_text">{model_admin.trigger_text(job)}</td>' in html
    rows = rows_of(response)
    assert model_admin.trigger_text(rows["hashed-a"]) != model_admin.trigger_text(rows["hashed-b"])


def _django_rows(changelist):
    from django.contrib.admin.templatetags.admin_list import items_for_result

    return [
        "<tr>" + "".join(items_for_result(changelist, job, None)) + "</tr>" for job in changelist.result_list
    ]


@pytest.mark.parametrize(
    "query",
    ["", "?o=-14", "?o=3.-1", "?enabled__exact=1&q=a", "?paused__exact=1", "?_popup=1"],
    ids=["plain", "by-failures", "by-tenant", "filtered", "paused", "popup"],
)
def test_job_list_rows_are_byte_for_byte_djangos(admin_client, jobs, make_job, tenant, query):
    """The rows RowRenderer writes (one string per row, decided once per column) are
    exactly the cells Django's items_for_result renders: links with the preserved
    filters, an empty group, the code badge, booleans, choices, the operator columns,
    an escaped name; a popup goes to Django's own code."""
    from scheduler_app.models import JobGroup

    group = JobGroup.objects.create(tenant=tenant, name="billing & <ops>")
    make_job("a-coded", managed_by="jobs.billing", group=group, executor="process")
    make_job("a-paused <b>", paused=True, paused_reason="paused after 3 failures", enabled=True)
    make_job("a-disabled", enabled=False, priority=-5)
    response = admin_client.get(url("job") + query)
    changelist = response.context["cl"]
    assert len(changelist.result_list) >= 1
    html = response.content.decode()
    expected = _django_rows(changelist)
    for row in expected:
        assert row in html
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert re.findall(r"<tr>.*?</tr>", body, re.S) == expected
    if query == "?enabled__exact=1&q=a":
        assert "_changelist_filters=" in expected[0]  # the link keeps the filters
    if query == "":
        assert "&lt;b&gt;" in body and "<b>" not in body


def test_job_list_row_renderer_falls_back_to_django_for_what_it_does_not_know(
    admin_client, jobs, monkeypatch
):
    """A column the shortcut does not handle (a method returning a number) gets
    Django's own cells for the row."""
    from scheduler_app.admin.joblist import RowRenderer

    changelist = admin_client.get(url("job")).context["cl"]
    renderer = RowRenderer(changelist)
    job = changelist.result_list[0]
    assert renderer.row(job) == _django_rows(changelist)[0][4:-5]
    monkeypatch.setattr(type(changelist.model_admin), "outcomes_24h", lambda self, obj: 7)
    renderer = RowRenderer(changelist)
    assert renderer.row(job) == _django_rows(changelist)[0][4:-5]
    assert '<td class="field-outcomes_24h">7</td>' in renderer.row(job)


# -- run list pager -------------------------------------------------------------------


def test_run_list_counts_exactly_below_the_cap(admin_client, jobs):
    from scheduler_app.admin.runs import BoundedCountPaginator

    response = admin_client.get(url("jobrun"))
    changelist = response.context["cl"]
    assert isinstance(changelist.paginator, BoundedCountPaginator)
    assert changelist.result_count == JobRun.objects.count() == 8
    assert not changelist.paginator.estimated
    html = response.content.decode()
    assert "8 job runs" in html and "about" not in html.split('class="paginator"')[1]


def test_run_list_above_the_cap_estimates_instead_of_counting_the_history(admin_client, jobs, monkeypatch):
    """Past ``exact_up_to`` rows the pager stops counting (no COUNT over the whole
    table) and says "about" the planner's estimate; a filter narrowing the list below
    the cap gets its exact count again."""
    from scheduler_app.admin.runs import BoundedCountPaginator

    monkeypatch.setattr(BoundedCountPaginator, "exact_up_to", 3)
    monkeypatch.setattr(type(admin_client.get(url("jobrun")).context["cl"].model_admin), "list_per_page", 2)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url("jobrun"))
    changelist = response.context["cl"]
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"] and "scheduler_app_jobrun" in q["sql"]]
    if connection.vendor != "postgresql":  # no planner estimate: Django's exact count
        assert changelist.result_count == 8 and not changelist.paginator.estimated
        return
    assert counts and all("LIMIT 4" in sql for sql in counts)  # never the whole table
    assert changelist.paginator.estimated
    assert changelist.result_count >= 4
    pager = response.content.decode().split('class="paginator"')[1]
    assert f"about {changelist.result_count}" in pager
    assert changelist.paginator.num_pages >= 2
    # Filtered to one job's three runs: exact again.
    flaky = admin_client.get(url("jobrun") + f"?job__id__exact={jobs['flaky'].pk}").context["cl"]
    assert flaky.result_count == 3 and not flaky.paginator.estimated
    # Filtered but still past the cap: counted exactly (the planner's guess for combined
    # conditions can be far too low, leaving the rows past it unreachable).
    from django.db.models import Count

    common = JobRun.objects.values("state").annotate(n=Count("id")).order_by("-n").first()
    assert common["n"] > 3
    wide = admin_client.get(url("jobrun") + f"?state__exact={common['state']}").context["cl"]
    assert wide.result_count == common["n"] and not wide.paginator.estimated


@pytest.mark.parametrize("model,query", [("jobrun", "?state__exact=%00"), ("job", "?executor__exact=%00")])
def test_a_nul_in_a_list_filter_is_an_error_flag_not_a_500(admin_client, jobs, model, query):
    response = admin_client.get(url(model) + query)
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
    assert admin_client.get(response["Location"]).status_code == 200


@pytest.mark.parametrize("query", ["", "?state__exact=failed", "?o=-4", "?_popup=1"])
def test_run_list_rows_are_byte_for_byte_djangos(admin_client, jobs, query):
    """The run list's rows come from RowRenderer too (the id column, the job and tenant
    links, choices, the times in one zone, the error line): Django's cells exactly."""
    from scheduler_app.admin.joblist import RowRenderer

    response = admin_client.get(url("jobrun") + query)
    changelist = response.context["cl"]
    assert changelist.result_list
    body = response.content.decode().split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert re.findall(r"<tr>.*?</tr>", body, re.S) == _django_rows(changelist)
    if query != "?_popup=1":  # the shortcut itself, not Django's fallback, wrote them
        renderer = RowRenderer(changelist)
        assert renderer.link is not None
        assert all(kind != "django" for kind, *_rest in renderer.columns)
