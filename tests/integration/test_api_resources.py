"""Runs (filters, cursor pagination, cancel, stop), groups, calendars, dependencies, the
cron preview, and the audit entries the API's writes leave (the key's user and the key)."""

import datetime as dt

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import ApiKey, Calendar, Job, JobDependency, JobGroup, JobRun, Membership
from scheduler_app.services.runs import enqueue_run
from tests.integration.api_support import JOB, client_for, errors_of, key_for

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def operator(tenant):
    user = get_user_model().objects.create_user("op")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return user


@pytest.fixture
def api(operator):
    return client_for(key_for(operator))


@pytest.fixture
def runs(make_job):
    job, other = make_job("a"), make_job("b")
    made = []
    for i in range(6):
        run = services.enqueue_run(job if i % 2 else other, scheduled_for=T0 + dt.timedelta(minutes=i))
        made.append(run)
    JobRun.objects.filter(pk=made[1].pk).update(
        state="failed", finished_at=T0 + dt.timedelta(hours=1), node="n1"
    )
    JobRun.objects.filter(pk=made[3].pk).update(
        state="succeeded", finished_at=T0 + dt.timedelta(hours=2), node="n2"
    )
    JobRun.objects.filter(pk=made[5].pk).update(state="running", node="n1")
    return job, other, made


def ids(response):
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def test_run_filters(api, runs):
    job, other, made = runs
    assert ids(api.get("/api/runs/")) == sorted((r.pk for r in made), reverse=True)
    assert ids(api.get(f"/api/runs/?job={job.pk}")) == [made[5].pk, made[3].pk, made[1].pk]
    assert ids(api.get(f"/api/runs/?job={job.pk}&state=failed")) == [made[1].pk]
    assert ids(api.get("/api/runs/?state=failed&state=succeeded")) == [made[3].pk, made[1].pk]
    assert ids(api.get("/api/runs/?state=failed,running")) == [made[5].pk, made[1].pk]
    assert ids(api.get("/api/runs/?node=n1")) == [made[5].pk, made[1].pk]
    after = (T0 + dt.timedelta(minutes=4)).isoformat().replace("+", "%2B")
    assert ids(api.get(f"/api/runs/?scheduled_after={after}")) == [made[5].pk, made[4].pk]
    finished = (T0 + dt.timedelta(minutes=90)).isoformat().replace("+", "%2B")
    assert ids(api.get(f"/api/runs/?finished_before={finished}")) == [made[1].pk]
    assert ids(api.get("/api/runs/?tenant=acme&ordering=scheduled_for"))[:2] == [made[0].pk, made[1].pk]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "state=failed",
        "job={job}&state=failed",
        "group=etl",
        "scheduled_after=2026-03-01T00:00:00%2B00:00&scheduled_before=2026-03-02T00:00:00%2B00:00",
        "ordering=-scheduled_for",
        "ordering=queued_at",
    ],
    ids=["first page", "state", "job and state", "group", "time range", "by scheduled time", "by queue time"],
)
def test_a_run_page_reads_a_fixed_number_of_queries(api, make_job, query, django_assert_max_num_queries):
    """Job, tenant and group come with each run in the one query (no query per run),
    however many runs and jobs the page shows."""
    group = JobGroup.objects.create(tenant=make_job("x").tenant, name="etl")
    jobs = [make_job(f"j{i}", group=group) for i in range(8)]
    for i in range(40):
        services.enqueue_run(jobs[i % 8], scheduled_for=T0 + dt.timedelta(minutes=i))
    JobRun.objects.filter(
        pk__in=list(JobRun.objects.order_by("pk").values_list("pk", flat=True))[::3]
    ).update(state="failed")
    url = "/api/runs/?page_size=30&" + query.format(job=jobs[0].pk)
    api.get(url)  # the key's last-use write happens once a minute; leave it out of the count
    with django_assert_max_num_queries(3):  # the key, the caller's tenants, the page
        response = api.get(url)
    assert response.status_code == 200, response.content
    assert response.json()["results"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=done", "state"),
        ("job=abc", "job"),
        ("scheduled_after=yesterday", "scheduled_after"),
        ("finished_before=2026-01-01T00:00:00", "finished_before"),
        ("ordering=error", "ordering"),
        ("page_size=x", "page_size"),
    ],
)
def test_bad_run_filters_are_400(api, runs, query, field):
    response = api.get(f"/api/runs/?{query}")
    assert response.status_code == 400
    assert errors_of(response)[0][0] == field


def test_cursor_pagination_is_stable_while_runs_are_added(api, runs, make_job):
    job, _, made = runs
    first = api.get("/api/runs/?page_size=4").json()
    assert "count" not in first
    services.enqueue_run(job, scheduled_for=T0 + dt.timedelta(days=1))  # newer, lands on page 1
    second = api.get(first["next"]).json()
    seen = [r["id"] for r in first["results"]] + [r["id"] for r in second["results"]]
    assert seen == sorted((r.pk for r in made), reverse=True)
    assert second["next"] is None


def test_run_detail_masks_overrides_of_secret_names(api, tenant):
    job = services.save_job(Job(tenant=tenant, name="s", task="demo.echo", trigger={"type": "manual"}))
    job.secret_kwargs = {"token": "real"}
    services.save_job(job)
    # a run queued before run-now refused overrides of secrets may hold one
    run = enqueue_run(job, scheduled_for=timezone.now(), kwargs_override={"token": "override-secret", "n": 1})
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert body["kwargs_override"] == {"token": "••••••", "n": 1}
    assert "override-secret" not in str(body)
    assert set(body) >= {"result", "traceback", "cpu_seconds"}


def test_runs_show_when_a_node_claimed_them(api, runs):
    _, _, made = runs
    claimed = T0 + dt.timedelta(minutes=3, seconds=7)
    JobRun.objects.filter(pk=made[5].pk).update(claimed_at=claimed)
    listed = {r["id"]: r for r in api.get("/api/runs/").json()["results"]}
    assert listed[made[5].pk]["claimed_at"] == claimed.isoformat()
    assert listed[made[0].pk]["claimed_at"] is None
    assert api.get(f"/api/runs/{made[5].pk}/").json()["claimed_at"] == claimed.isoformat()


def test_cancel_and_stop(api, runs):
    _, _, made = runs
    response = api.post(f"/api/runs/{made[0].pk}/cancel/")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    response = api.post(f"/api/runs/{made[1].pk}/cancel/")
    assert response.status_code == 409
    assert errors_of(response) == [(None, "run is failed, not queued")]
    response = api.post(f"/api/runs/{made[5].pk}/stop/")
    assert response.status_code == 200 and response.json()["stop_requested"] is True
    response = api.post("/api/runs/bulk/stop/", {"ids": [made[2].pk, made[3].pk]}, format="json")
    assert response.json()["results"] == [
        {"id": made[2].pk, "status": "done"},
        {
            "id": made[3].pk,
            "status": "refused",
            "reason": "run is succeeded, not queued or running",
            "kind": "conflict",
        },
    ]


def test_groups_crud(api, make_job, tenant):
    response = api.post(
        "/api/groups/", {"tenant": "acme", "name": "etl", "description": "pipelines"}, format="json"
    )
    assert response.status_code == 201
    group = response.json()
    job = make_job("j", group=JobGroup.objects.get())
    assert api.post("/api/groups/", {"tenant": "acme", "name": "etl"}, format="json").status_code == 400
    renamed = api.patch(f"/api/groups/{group['id']}/", {"name": "pipelines"}, format="json")
    assert renamed.json()["name"] == "pipelines"
    assert job.versions.order_by("-number").first().snapshot["group"] == "pipelines"  # a new version
    assert api.patch(f"/api/groups/{group['id']}/", {"name": 5}, format="json").status_code == 400
    assert api.delete(f"/api/groups/{group['id']}/").status_code == 204
    assert Job.objects.get(pk=job.pk).group is None


def test_calendars_with_dates(api, make_job):
    body = {"tenant": "acme", "name": "holidays", "dates": [{"date": "2030-12-25", "label": "Christmas"}]}
    response = api.post("/api/calendars/", body, format="json")
    assert response.status_code == 201
    cal = response.json()
    assert cal["dates"] == [{"date": "2030-12-25", "label": "Christmas"}]
    job = make_job("j")
    services.save_job(job, calendars=[Calendar.objects.get()])
    from scheduler_app.models import ConfigVersion

    before = ConfigVersion.current()
    response = api.patch(f"/api/calendars/{cal['id']}/", {"dates": [{"date": "2030-01-01"}]}, format="json")
    assert response.json()["dates"] == [{"date": "2030-01-01", "label": ""}]
    assert ConfigVersion.current() > before  # the scheduler rereads the job's schedule
    assert job.excluded_dates() == [dt.date(2030, 1, 1)]
    bad = api.patch(f"/api/calendars/{cal['id']}/", {"dates": [{"date": "2030-02-30"}]}, format="json")
    assert errors_of(bad) == [("dates[0].date", "'2030-02-30' is not a date (YYYY-MM-DD)")]
    twice = api.patch(
        f"/api/calendars/{cal['id']}/",
        {"dates": [{"date": "2030-01-01"}, {"date": "2030-01-01"}]},
        format="json",
    )
    assert errors_of(twice) == [("dates[1].date", "2030-01-01 is listed twice")]
    assert api.delete(f"/api/calendars/{cal['id']}/").status_code == 204


def test_dependencies_create_and_delete(api, make_job):
    a, b, c = make_job("a"), make_job("b"), make_job("c")
    response = api.post("/api/dependencies/", {"upstream": a.pk, "downstream": b.pk}, format="json")
    assert response.status_code == 201
    edge = response.json()
    assert (edge["upstream_name"], edge["downstream_name"], edge["condition"]) == ("a", "b", "success")
    api.post(
        "/api/dependencies/", {"upstream": b.pk, "downstream": c.pk, "condition": "failure"}, format="json"
    )
    cycle = api.post("/api/dependencies/", {"upstream": c.pk, "downstream": a.pk}, format="json")
    assert cycle.status_code == 400
    assert errors_of(cycle) == [("downstream", "This dependency would create a cycle: c → a → b → c.")]
    assert ids(api.get(f"/api/dependencies/?job={b.pk}")) == sorted(
        JobDependency.objects.values_list("pk", flat=True)
    )
    assert api.delete(f"/api/dependencies/{edge['id']}/").status_code == 204
    assert not JobDependency.objects.filter(downstream=b).exists()
    assert "no longer depends on a" in b.versions.order_by("-number").first().summary


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("expression=0+0+32+*+*", "expression", "field 3 (day of month): '32' is outside 1-31"),
        ("expression=0+2+*+*+*&timezone=Nowhere/City", "timezone", "unknown time zone 'Nowhere/City'"),
        ("expression=0+2+*+*+*&count=0", "count", "a whole number from 1 to 100"),
        ("expression=0+2+*+*+*&dialect=vixie", "dialect", "use crontab or quartz"),
        ("", "expression", "required"),
    ],
)
def test_cron_preview_errors(api, query, field, message):
    response = api.get(f"/api/cron/preview?{query}")
    assert response.status_code == 400
    assert errors_of(response) == [(field, message)]


def test_cron_preview(api):
    response = api.get(
        "/api/cron/preview?expression=0+0+12+%3F+*+FRI%233&dialect=quartz&timezone=America/New_York&count=3"
    )
    body = response.json()
    assert response.status_code == 200
    assert body["description"].startswith("At 12:00")
    times = [dt.datetime.fromisoformat(t) for t in body["next"]]
    assert len(times) == 3 and all(t.weekday() == 4 and 15 <= t.day <= 21 for t in times)


def test_audit_entries_name_the_keys_user_and_the_key_across_requests(tenant):
    """Several requests in one thread (auditlog's context stays behind after each), with
    two users' keys in turn: every entry names the right user and key."""
    User = get_user_model()
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    for user in (alice, bob):
        Membership.objects.create(tenant=tenant, user=user, role="editor")
    tokens = {"alice": key_for(alice), "bob": key_for(bob)}
    prefix = {k.user.username: k.prefix for k in ApiKey.objects.select_related("user")}
    body = client_for(tokens["alice"]).post("/api/jobs/", JOB, format="json").json()
    job_id = body["id"]
    steps = [
        ("bob", "patch", f"/api/jobs/{job_id}/", {"priority": 2}),
        ("alice", "post", f"/api/jobs/{job_id}/pause/", None),
        ("bob", "post", f"/api/jobs/{job_id}/run/", {}),
        ("alice", "patch", f"/api/jobs/{job_id}/", {"priority": 3}),
    ]
    marks = []
    for who, method, url, data in steps:
        marks.append((who, LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first()))
        response = getattr(client_for(tokens[who]), method)(url, data, format="json")
        assert response.status_code in (200, 201), response.content
    marks.append((None, LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first()))
    job_ct = ContentType.objects.get_for_model(Job)
    for (who, start), (_, end) in zip(marks, marks[1:], strict=False):
        entries = LogEntry.objects.filter(pk__gt=start, pk__lte=end, content_type=job_ct)
        assert entries.exists()
        for entry in entries:
            assert entry.actor.username == who
            assert entry.additional_data["api_key"] == prefix[who]
    created = LogEntry.objects.filter(content_type=job_ct, action=LogEntry.Action.CREATE).get()
    assert (created.actor, created.additional_data["api_key"]) == (alice, prefix["alice"])


def test_run_detail_lists_the_upstream_runs_and_what_each_passed(api, make_job):
    b, c = make_job("B"), make_job("C")
    d = make_job("D", task="tests.give", trigger_rule="all_done", upstream_param="upstream")
    services.add_dependency(b, d)
    services.add_dependency(c, d)
    b_run = enqueue_run(b, scheduled_for=T0)
    c_run = enqueue_run(c, scheduled_for=T0)
    JobRun.objects.filter(pk=b_run.pk).update(state="succeeded", finished_at=T0, result={"token": "••••••"})
    JobRun.objects.filter(pk=c_run.pk).update(state="skipped", finished_at=T0)
    gone = c_run.pk + 1000
    d_run = enqueue_run(d, scheduled_for=T0, reason="dependency", upstream_runs=[b_run.pk, c_run.pk, gone])
    body = api.get(f"/api/runs/{d_run.pk}/").json()
    assert body["upstream_runs"] == [b_run.pk, c_run.pk, gone]
    assert body["upstream"] == [
        {
            "id": b_run.pk,
            "job": b.pk,
            "job_name": "B",
            "state": "succeeded",
            "finished_at": "2026-03-01T00:00:00+00:00",
            "passed": {"token": "••••••"},
        },
        {
            "id": c_run.pk,
            "job": c.pk,
            "job_name": "C",
            "state": "skipped",
            "finished_at": "2026-03-01T00:00:00+00:00",
            "passed": None,
        },
        {"id": gone, "job": None, "job_name": None, "state": None, "finished_at": None, "passed": None},
    ]
    assert api.get(f"/api/runs/{b_run.pk}/").json()["upstream"] == []


def test_run_detail_never_shows_another_tenants_run_as_upstream(api, make_job, other_tenant):
    theirs = services.save_job(
        Job(tenant=other_tenant, name="theirs", task="demo.noop", trigger={"type": "manual"})
    )
    their_run = enqueue_run(theirs, scheduled_for=T0)
    JobRun.objects.filter(pk=their_run.pk).update(state="succeeded", result={"secret": "globex-data"})
    d = make_job("D", task="tests.give", trigger_rule="all_done", upstream_param="upstream")
    d_run = enqueue_run(d, scheduled_for=T0, reason="dependency", upstream_runs=[their_run.pk])
    body = api.get(f"/api/runs/{d_run.pk}/").json()
    # left out altogether, its id too (not shown as a run retention deleted)
    assert body["upstream"] == [] and body["upstream_runs"] == []
    assert "globex-data" not in str(body) and "theirs" not in str(body)
