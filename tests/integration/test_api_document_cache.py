"""Job documents are kept per process between requests, keyed by everything a document
is made of: whatever changes a job's document (an update, a rollback, a rename of its
tenant, group, calendar or upstream job, a new dependency, a move to another tenant --
through the services or straight in the database) shows on the next request, and who
may see a job is decided on every request, never by the cache."""

import pytest
from django.contrib.auth import get_user_model

from scheduler_app import services
from scheduler_app.api import representations
from scheduler_app.documents import job as job_document
from scheduler_app.models import Calendar, Job, JobGroup, Membership, Tenant
from scheduler_app.monitoring import nextfire
from tests.integration.api_support import JOB, client_for, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_caches():
    representations.forget_documents()
    nextfire.forget()
    yield
    representations.forget_documents()


@pytest.fixture
def root():
    return client_for(key_for(get_user_model().objects.create_superuser("root-cache")))


def page(api) -> dict[str, dict]:
    response = api.get("/api/jobs/?page_size=100")
    assert response.status_code == 200, response.content
    return {item["name"]: item for item in response.json()["results"]}


def assert_fresh(api) -> dict[str, dict]:
    """Every job of the page and its detail show the document read afresh from the
    database (and the detail what the page shows)."""
    items = page(api)
    for name, item in items.items():
        job = Job.objects.select_related("tenant", "group").get(pk=item["id"])
        document = job_document.export_job(job)
        assert {k: item[k] for k in document} == document, name
        assert item["secret_kwarg_names"] == sorted(job.secret_names or [])
        assert api.get(f"/api/jobs/{job.pk}/").json() == item
    return items


def test_a_kept_document_is_reused_only_while_nothing_it_is_made_of_changed(root, tenant, other_tenant):
    group = JobGroup.objects.create(tenant=tenant, name="etl")
    cal = Calendar.objects.create(tenant=tenant, name="holidays")
    up = root.post("/api/jobs/", {**JOB, "name": "up"}, format="json").json()
    body = {**JOB, "name": "down", "group": "etl", "calendars": ["holidays"], "depends_on": [{"job": "up"}]}
    down = root.post("/api/jobs/", body, format="json")
    assert down.status_code == 201, down.json()
    down = down.json()
    assert_fresh(root)
    kept = dict(representations._documents)
    assert set(kept) == {up["id"], down["id"]}

    # A page with nothing changed builds no document: the kept ones are shown.
    calls = []
    real = job_document.export_job

    def counting(*args, **kwargs):
        calls.append(args[0].pk)
        return real(*args, **kwargs)

    job_document.export_job = counting
    try:
        assert page(root) == page(root)
        assert calls == []
    finally:
        job_document.export_job = real

    def changed(**expect):
        items = assert_fresh(root)
        for key, value in expect.items():
            assert items["down"][key] == value, key
        return items

    # Through the API: an update, then a rollback to version 1.
    r = root.patch(f"/api/jobs/{down['id']}/", {"description": "second", "kwargs": {"n": 2}}, format="json")
    assert r.status_code == 200, r.json()
    changed(description="second", kwargs={"n": 2})
    r = root.post(f"/api/jobs/{down['id']}/versions/1/rollback/")
    assert r.status_code == 200, r.json()
    changed(description="", kwargs={"n": 1})
    # Straight in the database (no service, no signal): seen all the same.
    Job.objects.filter(pk=down["id"]).update(description="by hand", paused=True)
    changed(description="by hand", paused=True)
    Job.objects.filter(pk=down["id"]).update(trigger={"type": "interval", "seconds": 90})
    assert changed(trigger={"type": "interval", "seconds": 90})["down"]["next_fire_time"] is None  # paused
    # What the document names by name: group, calendar, upstream job, tenant.
    group.name = "etl-2"
    services.save_group(group)
    changed(group="etl-2")
    Calendar.objects.filter(pk=cal.pk).update(name="days-off")
    changed(calendars=["days-off"])
    Job.objects.filter(pk=up["id"]).update(name="upstream")
    changed(depends_on=[{"job": "upstream", "condition": "success"}])
    third = services.save_job(Job(tenant=tenant, name="another", task="demo.noop"))
    services.add_dependency(third, Job.objects.get(pk=down["id"]))
    changed(
        depends_on=[{"job": "another", "condition": "success"}, {"job": "upstream", "condition": "success"}]
    )
    Tenant.objects.filter(pk=tenant.pk).update(slug="acme-2")
    changed(tenant="acme-2")
    # A move to another tenant (its group and calendars left behind, as a jobs file would).
    Job.objects.filter(pk=down["id"]).update(tenant=other_tenant, group=None)
    Job.calendars.through.objects.filter(job_id=down["id"]).delete()
    changed(tenant="globex", group=None, calendars=[])


def test_who_may_see_a_job_is_decided_on_every_request_not_by_the_kept_document(root, tenant, other_tenant):
    ours = root.post("/api/jobs/", JOB, format="json").json()
    theirs = root.post("/api/jobs/", {**JOB, "tenant": "globex", "name": "theirs"}, format="json").json()
    assert set(page(root)) == {"nightly", "theirs"}  # both documents kept
    viewer = get_user_model().objects.create_user("viewer-cache")
    membership = Membership.objects.create(tenant=tenant, user=viewer, role="viewer")
    api = client_for(key_for(viewer))
    assert set(page(api)) == {"nightly"}
    assert api.get(f"/api/jobs/{theirs['id']}/").status_code == 404
    restricted = client_for(key_for(get_user_model().objects.get(username="root-cache"), tenant=other_tenant))
    assert set(page(restricted)) == {"theirs"}
    assert restricted.get(f"/api/jobs/{ours['id']}/").status_code == 404
    # The viewer loses the membership: nothing kept shows the job any more.
    membership.delete()
    assert page(api) == {}
    assert api.get(f"/api/jobs/{ours['id']}/").status_code == 404
    # The job moves to the other tenant: the restricted key sees it at once, as a globex job.
    Job.objects.filter(pk=ours["id"]).update(tenant=other_tenant)
    items = page(restricted)
    assert set(items) == {"nightly", "theirs"} and items["nightly"]["tenant"] == "globex"


def test_the_kept_documents_are_bounded(root, tenant, monkeypatch):
    monkeypatch.setattr(representations, "MAX_CACHED_DOCUMENTS", 3)
    for i in range(5):
        services.save_job(Job(tenant=tenant, name=f"j{i}", task="demo.noop"))
    assert len(page(root)) == 5
    assert len(representations._documents) <= 3
    assert_fresh(root)


def test_a_run_page_built_from_rows_shows_what_each_runs_detail_shows(root, tenant, other_tenant):
    """Run lists build their runs from rows (no model ``__init__``), the runs of one job
    sharing its instance: across tenants, groups (and none), routing tags and masked
    secrets each item is the detail's view of its run, in one query of the runs."""
    import datetime as dt

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from scheduler_app.engine.results import MASK
    from scheduler_app.models import JobRun

    now = timezone.now()
    jobs = [
        services.save_job(
            Job(
                tenant=tenant,
                name="a",
                task="demo.noop",
                group=JobGroup.objects.create(tenant=tenant, name="g"),
            )
        ),
        services.save_job(
            Job(tenant=other_tenant, name="b", task="demo.noop", routing="tags", routing_tags=["gpu"])
        ),
        services.save_job(Job(tenant=tenant, name="c", task="demo.noop")),
    ]
    Job.objects.filter(pk=jobs[2].pk).update(secret_names=["token"])  # what a secret kwarg stores
    for i in range(12):
        job = jobs[i % 3]
        JobRun.objects.create(
            job=job,
            tenant=job.tenant,
            scheduled_for=now + dt.timedelta(seconds=i),
            not_before=now,
            state="queued" if i % 2 else "failed",
            kwargs_override={"token": "y", "n": i},
            error="boom" if i % 2 == 0 else "",
        )
    with CaptureQueriesContext(connection) as queries:
        response = root.get("/api/runs/?page_size=5")
    assert response.status_code == 200
    assert len([q for q in queries.captured_queries if 'FROM "scheduler_app_jobrun"' in q["sql"]]) == 1
    items = response.json()["results"]
    following = root.get(response.json()["next"]).json()["results"]
    assert [i["id"] for i in items + following] == sorted((r.pk for r in JobRun.objects.all()), reverse=True)[
        :10
    ]
    for item in items + following:
        detail = root.get(f"/api/runs/{item['id']}/").json()
        assert {k: detail[k] for k in item} == item
    shown = {(i["job_name"], i["tenant"], i["group"]) for i in items + following}
    assert shown == {("a", "acme", "g"), ("b", "globex", None), ("c", "acme", None)}
    assert {i["kwargs_override"]["token"] for i in items + following if i["job_name"] == "c"} == {MASK}
    assert {
        i["wait_reason"] for i in items + following if i["job_name"] == "b" and i["state"] == "queued"
    } == {"waiting for a node with tags gpu"}


def test_past_the_bound_the_least_recently_used_is_dropped_not_the_whole_cache(root, tenant, monkeypatch):
    monkeypatch.setattr(representations, "MAX_CACHED_DOCUMENTS", 3)
    jobs = [services.save_job(Job(tenant=tenant, name=f"j{i}", task="demo.noop")) for i in range(5)]
    assert len(page(root)) == 5
    kept = dict(representations._documents)
    assert len(kept) == 3
    # A detail of a kept job reuses it and makes it the most recently used.
    hot = next(iter(kept))
    assert root.get(f"/api/jobs/{hot}/").status_code == 200
    assert representations._documents[hot] is kept[hot]
    assert list(representations._documents)[-1] == hot
    # A job not kept pushes out the least recently used one, not everything.
    cold = next(j.pk for j in jobs if j.pk not in kept)
    assert root.get(f"/api/jobs/{cold}/").status_code == 200
    assert hot in representations._documents and cold in representations._documents
    assert len(representations._documents) == 3
    assert_fresh(root)


def test_a_job_with_large_stored_text_is_not_kept(root, tenant, monkeypatch):
    monkeypatch.setattr(representations, "MAX_CACHED_DOCUMENT_TEXT", 1_000)
    big = services.save_job(Job(tenant=tenant, name="big", task="demo.echo", kwargs={"text": "x" * 2_000}))
    small = services.save_job(Job(tenant=tenant, name="small", task="demo.noop"))
    items = page(root)
    assert items["big"]["kwargs"] == {"text": "x" * 2_000}
    assert big.pk not in representations._documents and small.pk in representations._documents
