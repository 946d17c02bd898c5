"""``GET /api/dashboard/``: the admin dashboard's JSON (held-back counts by reason and
the lateness series included), scoped to the key's tenants like the admin page."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Membership
from scheduler_app.monitoring import dashboard, stats
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


def job_of(tenant, name):
    return services.save_job(
        Job(tenant=tenant, name=name, task="demo.noop", trigger={"type": "interval", "seconds": 60})
    )


@pytest.fixture
def world(tenant, other_tenant):
    now = timezone.now()
    mine, theirs = job_of(tenant, "mine"), job_of(other_tenant, "theirs")
    for job, late in ((mine, 4), (theirs, 40)):
        run = services.enqueue_run(job, scheduled_for=now - dt.timedelta(minutes=2))
        JobRun.objects.filter(pk=run.pk).update(
            state="succeeded",
            started_at=run.scheduled_for + dt.timedelta(seconds=late),
            finished_at=now - dt.timedelta(seconds=30),
        )
        held = services.enqueue_run(job, scheduled_for=now - dt.timedelta(seconds=5))
        JobRun.objects.filter(pk=held.pk).update(wait_reason="waiting: concurrency key erp (2 of 2 running)")
    user = get_user_model().objects.create_user("viewer")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    return user


def test_the_dashboard_is_the_admins_json_for_the_keys_tenants(world):
    response = client_for(key_for(world)).get("/api/dashboard/?window=1h")
    assert response.status_code == 200, response.content
    body = response.json()
    expected = dashboard.build(world, "1h")
    assert set(body) == set(expected)
    assert body["held_back"] == {**{code: 0 for code in stats.HELD_BACK_REASONS}, "key": 1}
    assert body["totals"]["held_back"] == 1 and body["totals"]["succeeded_24h"] == 1
    assert body["lateness"] == {"p50": 4.0, "p95": 4.0}
    assert 4.0 in body["lateness_series"]["p95"] and 40.0 not in body["lateness_series"]["p95"]
    assert len(body["lateness_series"]["p50"]) == len(body["series"]["buckets"])
    assert {f["job"] for f in body["slowest_jobs"]} <= {"mine"}


def test_a_superuser_key_restricted_to_a_tenant_sees_that_tenant(world, tenant):
    root = get_user_model().objects.create_superuser("root")
    everything = client_for(key_for(root)).get("/api/dashboard/").json()
    assert everything["held_back"]["key"] == 2 and everything["window"] == "1h"
    restricted = client_for(key_for(root, tenant=tenant)).get("/api/dashboard/").json()
    assert restricted["held_back"]["key"] == 1


def test_bad_window_and_non_members(world):
    response = client_for(key_for(world)).get("/api/dashboard/?window=2h")
    assert response.status_code == 400
    assert errors_of(response) == [("window", "use one of 1h, 24h, 7d, 30d")]
    stranger = get_user_model().objects.create_user("stranger")
    session = client_for(None)
    session.force_login(stranger)
    assert session.get("/api/dashboard/").status_code == 403
    assert client_for(None).get("/api/dashboard/").status_code == 401
