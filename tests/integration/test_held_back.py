"""Held-back runs (queued, waiting for a rate limit, a concurrency key or a node with
the job's tags) are counted by reason on the dashboard (tenant-scoped) and in
/metrics, from real claims, in a bounded number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Capacity
from scheduler_app.models import Job, JobRun, Membership, Node, RunState
from scheduler_app.monitoring import metrics, stats, waiting

pytestmark = pytest.mark.django_db

ROOM = Capacity(per_executor={"thread": 50}, total=50)
DATA = "/admin/scheduler_app/dashboard/data/"


@pytest.fixture(autouse=True)
def fresh_caches():
    waiting.forget()
    metrics.collector.forget()
    yield
    waiting.forget()
    metrics.collector.forget()


def due(job, count, now):
    return [
        services.enqueue_run(job, scheduled_for=now - timedelta(seconds=5 - i * 0.001)) for i in range(count)
    ]


@pytest.fixture
def held(make_job, other_tenant):
    """In acme: 3 runs held by a rate limit, 1 by a concurrency key, 2 waiting for a
    gpu node, 1 tag-routed run a live node can take; in globex: 4 held by a rate limit."""
    now = timezone.now()
    common = {"max_instances": 100, "overlap_policy": "queue", "misfire_grace_seconds": 300}
    due(make_job("invoices", rate_limit="2/m", **common), 5, now)
    due(make_job("erp-a", concurrency_key="erp", concurrency_limit=1, **common), 1, now)
    due(make_job("erp-b", concurrency_key="erp", concurrency_limit=1, priority=-1, **common), 1, now)
    theirs = services.save_job(
        Job(name="their-invoices", tenant=other_tenant, task="demo.noop", rate_limit="1/m", **common)
    )
    due(theirs, 5, now)
    DjangoRunStore().claim("n1", ROOM, now)  # an untagged node: holds back what the limits say
    due(make_job("train", routing="tags", routing_tags=["gpu"], **common), 2, now)
    due(make_job("report", routing="tags", routing_tags=["eu"], **common), 1, now)
    Node.objects.create(name="eu-1", incarnation="eu-1", tags=["eu"], started_at=now, heartbeat_at=now)
    return now


def test_held_back_runs_are_counted_by_reason(held):
    counts = stats.held_back(JobRun.objects.all())
    assert counts == {"key": 1, "rate": 3 + 4, "load_nodes": 0, "load_queue": 0, "tags": 2, "other": 0}
    # what each run says of itself agrees
    reasons = [
        waiting.wait_reason(r) for r in JobRun.objects.filter(state=RunState.QUEUED).select_related("job")
    ]
    assert sum(1 for r in reasons if r) == sum(counts.values())


def test_a_stored_reason_of_no_known_form_counts_as_other(held):
    run = JobRun.objects.filter(state=RunState.QUEUED, job__name="train").first()
    JobRun.objects.filter(pk=run.pk).update(wait_reason="held by a plugin")
    counts = stats.held_back(JobRun.objects.all())
    assert counts["other"] == 1 and counts["tags"] == 1


def test_the_dashboard_shows_its_tenants_held_back_runs(client, held, tenant):
    user = get_user_model().objects.create_user("ann", password="x", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role="viewer")
    client.force_login(user)
    data = client.get(DATA, {"window": "1h", "html": "1"}).json()
    assert data["held_back"] == {"key": 1, "rate": 3, "load_nodes": 0, "load_queue": 0, "tags": 2, "other": 0}
    assert data["totals"]["held_back"] == 6
    assert 'data-figure="held_back"><span class="sa-tile-value">6</span>' in data["html"]
    assert "held back: concurrency key 1 · rate limit 3 · node tags 2</span>" in data["html"]


def test_metrics_count_held_back_runs_by_reason(client, held):
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").content.decode())}
    values = {s.labels["reason"]: s.value for s in families["scheduler_runs_held_back"].samples}
    assert values == {"key": 1, "rate": 7, "load_nodes": 0, "load_queue": 0, "tags": 2, "other": 0}


def test_the_count_takes_two_queries_however_many_tag_sets(make_job):
    now = timezone.now()
    for i in range(5):
        due(make_job(f"t{i}", routing="tags", routing_tags=[f"tag{i}"]), 2, now)
    with CaptureQueriesContext(connection) as captured:
        counts = stats.held_back(JobRun.objects.all(), live_tag_sets=())
    assert counts["tags"] == 10
    assert len(captured) == 2
