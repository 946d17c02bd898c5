"""Rendering lists cheaply without changing a byte: job pages read calendars, dates and
dependencies in a bounded number of queries, next fire times are reused across requests
only while they still hold, run pages read only the columns they show."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler_app.documents.job import export_job
from scheduler_app.engine.results import MASK
from scheduler_app.models import Calendar, CalendarDate, Job, JobRun, Membership
from scheduler_app.monitoring import nextfire
from tests.integration.api_support import JOB, client_for, key_for

pytestmark = pytest.mark.django_db

UTC = dt.UTC


@pytest.fixture(autouse=True)
def fresh_cache():
    nextfire.forget()
    yield
    nextfire.forget()


@pytest.fixture
def api(tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return client_for(key_for(user))


def create(api, **fields):
    response = api.post("/api/jobs/", {**JOB, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


TRIGGERS = {
    "cron": {"type": "cron", "expression": "*/7 * * * *", "timezone": "Europe/Berlin"},
    "hashed": {"type": "cron", "expression": "H */2 * * *", "timezone": "UTC"},
    "interval": {"type": "interval", "seconds": 90},
    "date": {"type": "date", "run_at": "2030-12-25T09:00:00+01:00"},
    "interval-null-jitter": {"type": "interval", "seconds": 600, "jitter": None},
    "manual": {"type": "manual"},
    "combined": {
        "type": "any",
        "triggers": [
            {"type": "cron", "expression": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
            {"type": "interval", "seconds": 3600},
        ],
    },
}


@pytest.mark.parametrize("kind", sorted(TRIGGERS))
def test_a_reused_next_fire_time_equals_a_fresh_computation_at_every_moment(tenant, kind):
    cal = Calendar.objects.create(tenant=tenant, name="days-off")
    job = Job.objects.create(tenant=tenant, name=f"j-{kind}", task="demo.noop", trigger=TRIGGERS[kind])
    job.calendars.add(cal)
    start = dt.datetime(2030, 12, 24, 23, 50, tzinfo=UTC)
    CalendarDate.objects.create(calendar=cal, date=dt.date(2030, 12, 25))
    excluded = [dt.date(2030, 12, 25)]
    now, checked = start, 0
    while now < start + dt.timedelta(days=2):
        want = nextfire.compute(job, excluded, now)
        assert nextfire.next_fire_time(job, excluded, now) == want, now
        # Exactly at the fire time and just before it: the boundaries of reuse.
        if want is not None and want < start + dt.timedelta(days=2):
            for moment in (want - dt.timedelta(microseconds=1), want):
                assert nextfire.next_fire_time(job, excluded, moment) == nextfire.compute(
                    job, excluded, moment
                ), moment
        checked += 1
        now += dt.timedelta(minutes=13, seconds=7)
    # An earlier moment than the one an answer was kept for is computed again.
    assert nextfire.next_fire_time(job, excluded, start) == nextfire.compute(job, excluded, start)
    assert checked > 200


def test_what_a_next_fire_time_depends_on_is_seen_at_once(api, tenant):
    body = create(api, name="n1", trigger={"type": "cron", "expression": "0 9 * * *", "timezone": "UTC"})
    first = api.get(f"/api/jobs/{body['id']}/").json()["next_fire_time"]
    assert first == body["next_fire_time"]
    changed = api.patch(
        f"/api/jobs/{body['id']}/",
        {"trigger": {"type": "cron", "expression": "30 9 * * *", "timezone": "UTC"}},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    fire = dt.datetime.fromisoformat(changed.json()["next_fire_time"])
    assert (fire.hour, fire.minute) == (9, 30)
    # A calendar date written behind the API's back (another process, the admin) counts.
    cal = Calendar.objects.create(tenant=tenant, name="off")
    Job.objects.get(pk=body["id"]).calendars.add(cal)
    CalendarDate.objects.create(calendar=cal, date=fire.date())
    moved = dt.datetime.fromisoformat(
        api.get("/api/jobs/?page_size=100").json()["results"][0]["next_fire_time"]
    )
    assert moved == fire + dt.timedelta(days=1)
    # Paused: no next fire; resumed: the same as computed afresh.
    Job.objects.filter(pk=body["id"]).update(paused=True)
    assert api.get(f"/api/jobs/{body['id']}/").json()["next_fire_time"] is None
    Job.objects.filter(pk=body["id"]).update(paused=False)
    job = Job.objects.get(pk=body["id"])
    assert (
        dt.datetime.fromisoformat(api.get(f"/api/jobs/{body['id']}/").json()["next_fire_time"])
        == (job.upcoming_fire_times(timezone.now(), 1)[0])
    )


def test_a_trigger_with_jitter_is_computed_every_time(tenant):
    job = Job.objects.create(
        tenant=tenant,
        name="jit",
        task="demo.noop",
        trigger={"type": "interval", "seconds": 600, "jitter": 300},
    )
    assert nextfire.signature(job, []) is None
    now = timezone.now()
    nextfire.next_fire_time(job, [], now)
    assert job.pk not in nextfire._entries


def test_no_next_fire_is_not_reused(tenant, monkeypatch):
    """A search that gave up at one time (an all-of trigger's rounds, a calendar's
    horizon) may find a fire later: "none" is asked again (found by review)."""
    job = Job.objects.create(
        tenant=tenant, name="j", task="demo.noop", trigger={"type": "interval", "seconds": 60}
    )
    now = timezone.now()
    answers = iter([None, now + dt.timedelta(minutes=5)])
    monkeypatch.setattr(nextfire, "compute", lambda job, excluded, at: next(answers))
    assert nextfire.next_fire_time(job, [], now) is None
    assert nextfire.next_fire_time(job, [], now + dt.timedelta(seconds=1)) == now + dt.timedelta(minutes=5)


def test_a_page_of_jobs_with_different_calendars_renders_as_each_jobs_document(api, tenant):
    cals = [Calendar.objects.create(tenant=tenant, name=f"cal{i}") for i in range(3)]
    for i, cal in enumerate(cals):
        CalendarDate.objects.create(calendar=cal, date=dt.date(2031, 1, 1 + i))
    names = [[], ["cal0"], ["cal1", "cal2"], ["cal0", "cal1", "cal2"], ["cal2"]]
    for i, chosen in enumerate(names):
        create(api, name=f"job{i}", calendars=chosen, depends_on=[{"job": "job0"}] if i else [])
    with CaptureQueriesContext(connection) as five:
        page = api.get("/api/jobs/?page_size=100").json()["results"]
    for i in range(5, 25):
        create(api, name=f"job{i}", calendars=["cal1"], depends_on=[{"job": "job1"}])
    with CaptureQueriesContext(connection) as many:
        assert len(api.get("/api/jobs/?page_size=100").json()["results"]) == 25
    assert len(many) == len(five)  # bounded: not one query per job or calendar
    now = timezone.now()
    for item in page:
        job = Job.objects.get(pk=item["id"])
        document = export_job(job)
        assert {k: item[k] for k in document} == document
        fresh = nextfire.compute(job, job.excluded_dates(), now)
        assert item["next_fire_time"] == fresh.isoformat()
        # What a detail (one job) shows is what the page shows.
        assert api.get(f"/api/jobs/{job.pk}/").json() == item


def test_a_run_page_reads_only_what_it_shows_and_shows_what_the_detail_shows(api, tenant):
    body = create(api, name="gpu", routing={"mode": "tags", "tags": ["gpu"]}, secret_kwargs={"token": "x"})
    job = Job.objects.get(pk=body["id"])
    now = timezone.now()
    JobRun.objects.create(
        job=job,
        tenant=tenant,
        scheduled_for=now,
        not_before=now,
        state="failed",
        traceback="Traceback (most recent call last): boom",
        result={"rows": 3},
        error="boom",
        kwargs_override={"token": "y", "n": 2},
    )
    JobRun.objects.create(job=job, tenant=tenant, scheduled_for=now + dt.timedelta(seconds=1), not_before=now)
    with CaptureQueriesContext(connection) as queries:
        items = api.get("/api/runs/").json()["results"]
    page_sql = [q["sql"] for q in queries.captured_queries if 'FROM "scheduler_app_jobrun"' in q["sql"]]
    assert len(page_sql) == 1
    assert '"traceback"' not in page_sql[0] and '"result"' not in page_sql[0]
    assert '"scheduler_app_job"."trigger"' not in page_sql[0]
    assert [i["state"] for i in items] == ["queued", "failed"]
    assert items[0]["wait_reason"] == "waiting for a node with tags gpu"
    assert items[1]["kwargs_override"] == {"token": MASK, "n": 2}
    for item in items:
        detail = api.get(f"/api/runs/{item['id']}/").json()
        assert {k: detail[k] for k in item} == item


def test_a_page_across_tenants_and_groups_shows_each_jobs_document_and_last_run(other_tenant, tenant):
    """A page's jobs are built from rows (no model ``__init__``), sharing one tenant and
    one group instance per object: each still shows its own document, version and last
    run, and more tenants or groups cost no more queries."""
    from scheduler_app import services
    from scheduler_app.models import JobGroup, RunState, Tenant

    admin = get_user_model().objects.create_superuser("root-lists")
    api = client_for(key_for(admin))

    def make(t, index):
        group = JobGroup.objects.get_or_create(tenant=t, name=f"g{index % 2}")[0] if index % 3 else None
        job = services.save_job(Job(tenant=t, name=f"j{index}", task="demo.noop", group=group))
        now = timezone.now()
        for minutes, state in ((30, RunState.FAILED), (20, RunState.SUCCEEDED), (10, RunState.QUEUED)):
            JobRun.objects.create(
                job=job,
                tenant=t,
                scheduled_for=now - dt.timedelta(minutes=minutes + index),
                not_before=now,
                state=state,
                finished_at=None if state == RunState.QUEUED else now,
            )
        return job

    for index in range(6):
        make(tenant if index % 2 else other_tenant, index)
    api.get("/api/tenants/")  # the key's first use writes its last-used time
    with CaptureQueriesContext(connection) as two:
        page = api.get("/api/jobs/?page_size=100").json()["results"]
    for index in range(6, 12):
        make(Tenant.objects.create(slug=f"t{index}", name=f"T{index}"), index)
    with CaptureQueriesContext(connection) as eight:
        assert len(api.get("/api/jobs/?page_size=100").json()["results"]) == 12
    assert len(eight) == len(two)
    assert len(page) == 6
    for item in page:
        job = Job.objects.select_related("tenant", "group").get(pk=item["id"])
        document = export_job(job)
        assert {k: item[k] for k in document} == document
        assert item["tenant"] == job.tenant.slug and item["group"] == (job.group.name if job.group else None)
        last = job.runs.exclude(state=RunState.QUEUED).order_by("-scheduled_for").first()
        assert item["last_run"] == {
            "id": last.pk,
            "state": "succeeded",
            "scheduled_for": last.scheduled_for.isoformat(),
            "finished_at": last.finished_at.isoformat(),
        }
        assert item["version"] == job.versions.count() >= 1
        assert api.get(f"/api/jobs/{job.pk}/").json() == item
