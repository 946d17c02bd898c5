"""A run's page and API show the runs around it (the run that caused it, the upstream
runs whose results it received, the runs it started): only those the viewer may view.

Dependencies never cross tenants, but ``triggered_by`` is a plain link (a restored or
edited history is not trusted for it): a run of another tenant in the chain is shown as
"a run you may not view" on the page and left out of the API, never its job, state,
result or error."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from scheduler_app.models import JobRun, Membership
from tests.integration.api_support import client_for, key_for

pytestmark = pytest.mark.django_db

SECRET_NAME = "globex-payroll"


def finished(job, minutes_ago, **fields):
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return JobRun.objects.create(
        job=job, scheduled_for=at, started_at=at, finished_at=at, duration=0.1, is_final=True, **fields
    )


@pytest.fixture
def chain(make_job, tenant, other_tenant):
    """Globex's run X caused acme's run D, which caused Globex's run Y."""
    d = make_job("acme-report", task="tests.give", upstream_param="upstream")
    x = make_job(SECRET_NAME, tenant=other_tenant)
    x_run = finished(x, 3, state="failed", error="globex-error-text", result={"salary": 123456})
    d_run = finished(d, 2, state="succeeded", triggered_by=x_run, upstream_runs=[x_run.pk])
    y_run = finished(x, 1, state="succeeded", triggered_by=d_run)
    user = get_user_model().objects.create_user("ann", password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="viewer")
    return {"d": d_run, "x": x_run, "y": y_run, "user": user}


def page(client, run):
    return client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk])).content.decode()


def test_run_page_does_not_show_another_tenants_runs_of_the_chain(client, chain):
    client.force_login(chain["user"])
    html = page(client, chain["d"])
    assert "acme-report" in html
    for leaked in (SECRET_NAME, "globex-error-text", "123456"):
        assert leaked not in html
    for other in (chain["x"], chain["y"]):
        assert reverse("admin:scheduler_app_jobrun_change", args=[other.pk]) not in html
    assert html.count("a run you may not view") == 2  # caused by X, started Y


def test_superuser_sees_the_whole_chain(admin_client, chain):
    html = page(admin_client, chain["d"])
    assert SECRET_NAME in html and "a run you may not view" not in html
    assert reverse("admin:scheduler_app_jobrun_change", args=[chain["x"].pk]) in html


def test_run_api_leaves_out_another_tenants_runs_of_the_chain(chain):
    body = client_for(key_for(chain["user"])).get(f"/api/runs/{chain['d'].pk}/")
    assert body.status_code == 200
    data = body.json()
    assert data["triggered_by"] is None
    assert data["upstream"] == [] and data["upstream_runs"] == []
    text = body.content.decode()
    for leaked in (SECRET_NAME, "globex-error-text", "123456"):
        assert leaked not in text
    listed = client_for(key_for(chain["user"])).get("/api/runs/").json()
    (shown,) = [r for r in listed["results"] if r["id"] == chain["d"].pk]
    assert shown["triggered_by"] is None


def test_run_detail_reads_the_upstream_runs_once(make_job, tenant):
    """The detail's upstream ids and upstream entries come from one reading of the
    run's upstream runs (the dependency and the runs: one query each, not two)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduler_app import services

    up = make_job("extract")
    down = make_job("load")
    services.add_dependency(up, down)
    up_run = finished(up, 2, state="succeeded")
    down_run = finished(down, 1, state="succeeded", triggered_by=up_run, upstream_runs=[up_run.pk])
    user = get_user_model().objects.create_user("ed", password="x")
    Membership.objects.create(user=user, tenant=tenant, role="viewer")
    api = client_for(key_for(user))
    with CaptureQueriesContext(connection) as ctx:
        data = api.get(f"/api/runs/{down_run.pk}/").json()
    assert data["upstream_runs"] == [up_run.pk]
    assert [u["id"] for u in data["upstream"]] == [up_run.pk]
    sql = [q["sql"] for q in ctx.captured_queries]
    edges = [s for s in sql if 'FROM "scheduler_app_jobdependency"' in s]
    assert len(edges) == 1, edges
