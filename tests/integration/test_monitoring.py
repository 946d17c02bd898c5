"""Health endpoints, the run counters and /metrics (real rows; the scheduler side in
tests/acceptance/test_monitoring_process.py)."""

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.models import JobGroup, JobRun, Membership, RunCounter
from scheduler_app.monitoring import health, metrics
from tests.integration.api_support import client_for, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_caches():
    metrics.collector.forget()
    health.forget_migrations()
    yield
    metrics.collector.forget()


def scrape(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    return families


def value(families, name, **labels):
    base = name.removesuffix("_total")
    for suffix in ("_bucket", "_count", "_sum"):
        if base not in families:
            base = base.removesuffix(suffix)
    family = families[base]
    for sample in family.samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


# -- health -----------------------------------------------------------------------------


def test_live_and_ready_need_no_key(client):
    assert client.get("/api/health/live").json() == {"status": "ok"}
    response = client.get("/api/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == {"ok": True}
    assert response.json()["checks"]["migrations"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_naming_unapplied_migrations(client):
    from django.core.management import call_command

    call_command("migrate", "scheduler_app", "0001", verbosity=0)
    try:
        health.forget_migrations()
        response = client.get("/api/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        # Every migration after 0001 (other branches add theirs).
        unapplied = body["checks"]["migrations"]["unapplied"]
        assert unapplied[0] == "scheduler_app.0003_apikeys"
        count = body["checks"]["migrations"]["unapplied_count"]
        assert count >= len(unapplied) and len(unapplied) == min(count, 20)  # the list is capped at 20
        assert f"{count} unapplied migration(s)" in body["checks"]["migrations"]["error"]
    finally:
        call_command("migrate", "scheduler_app", verbosity=0)
        health.forget_migrations()
    assert client.get("/api/health/ready").status_code == 200


def test_the_migration_check_is_cached(client, django_assert_max_num_queries):
    client.get("/api/health/ready")
    with django_assert_max_num_queries(1):  # only SELECT 1; the migration state is reused
        assert client.get("/api/health/ready").status_code == 200


def test_scheduler_health_follows_the_nodes_heartbeats(client, make_job):
    response = client.get("/api/health/scheduler")
    assert response.status_code == 503
    assert response.json()["problems"] == ["no scheduler node has shown a heartbeat within 30 s"]
    from scheduler_app.models import Lease, Node

    now = timezone.now()
    Node.objects.create(
        name="host-1:42", incarnation="i1", started_at=now, heartbeat_at=now, used={"thread": 1}, tags=["gpu"]
    )
    body = client.get("/api/health/scheduler").json()
    assert body["problems"] == ["no node holds the leader lease"]
    Lease.objects.create(
        name="triggers/0", holder="host-1:42", incarnation="i1", expires_at=now + dt.timedelta(seconds=10)
    )
    body = client.get("/api/health/scheduler").json()
    assert body["status"] == "ok" and body["leader"] == "host-1:42"
    assert [(n["name"], n["fresh"], n["running"]) for n in body["nodes"]] == [("host-1:42", True, 1)]
    Node.objects.update(heartbeat_at=now - dt.timedelta(minutes=5))
    response = client.get("/api/health/scheduler")
    assert response.status_code == 503
    assert response.json()["nodes"][0]["fresh"] is False


@override_settings(SCHEDULER_APP={"HEALTH_SCHEDULER_REQUIRES_KEY": True})
def test_scheduler_health_can_require_a_key(client, tenant):
    assert client.get("/api/health/scheduler").status_code == 401
    user = get_user_model().objects.create_user("mon")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    assert client_for(key_for(user)).get("/api/health/scheduler").status_code == 503  # allowed; no node
    assert client.get("/api/health/live").status_code == 200


# -- counters ---------------------------------------------------------------------------


def finish(runs, state="succeeded", duration=0.2, late=0.03):
    """Record outcomes the way the scheduler does (the run store's ``record``)."""
    store = DjangoRunStore()
    outcomes = []
    for run in runs:
        started = run.not_before + dt.timedelta(seconds=late)
        JobRun.objects.filter(pk=run.pk).update(state="running", started_at=started, node="n1")
        outcomes.append(
            Outcome(
                run_id=run.pk,
                state=state,
                started_at=started,
                finished_at=started + dt.timedelta(seconds=duration),
            )
        )
    store.record(outcomes)


def test_recorded_outcomes_are_counted_and_survive_pruning(client, tenant, make_job):
    group = JobGroup.objects.create(tenant=tenant, name="etl")
    job = make_job("j", group=group, task="demo.noop")
    t0 = timezone.now() - dt.timedelta(days=40)
    runs = [services.enqueue_run(job, scheduled_for=t0 + dt.timedelta(minutes=i)) for i in range(3)]
    finish(runs[:2])
    finish(runs[2:], state="failed", duration=20.0, late=2.0)
    labels = {"tenant": "acme", "group": "etl", "task": "demo.noop"}
    families = scrape(client)
    assert value(families, "scheduler_runs_total", state="succeeded", **labels) == 2
    assert value(families, "scheduler_runs_total", state="failed", **labels) == 1
    assert value(families, "scheduler_run_duration_seconds_count", **labels) == 3
    assert value(families, "scheduler_run_duration_seconds_sum", **labels) == pytest.approx(20.4)
    assert value(families, "scheduler_run_duration_seconds_bucket", le="0.5", **labels) == 2
    assert value(families, "scheduler_run_duration_seconds_bucket", le="30", **labels) == 3
    assert value(families, "scheduler_run_lateness_seconds_bucket", le="0.05", **labels) == 2
    assert value(families, "scheduler_run_lateness_seconds_bucket", le="2.5", **labels) == 3
    # pruning the runs does not make the counter go backwards
    DjangoRunStore().prune(timezone.now(), 1)
    assert not JobRun.objects.exists()
    metrics.collector.forget()
    assert value(scrape(client), "scheduler_runs_total", state="succeeded", **labels) == 2


def test_skipped_and_cancelled_runs_are_counted(client, make_job):
    job = make_job("j")
    services.enqueue_run(job, scheduled_for=timezone.now(), state="skipped", error="overlap")
    queued = services.enqueue_run(job, scheduled_for=timezone.now() + dt.timedelta(seconds=1))
    services.cancel_runs([queued])
    families = scrape(client)
    assert value(families, "scheduler_runs_total", state="skipped", tenant="acme") == 1
    assert value(families, "scheduler_runs_total", state="cancelled", tenant="acme") == 1


def test_retries_are_counted(client, make_job):
    job = make_job("j")
    job.retry_max_attempts = 3
    services.save_job(job)
    first = services.enqueue_run(job, scheduled_for=timezone.now())
    finish([first], state="failed")
    retry = JobRun.objects.get(attempt=2)
    JobRun.objects.filter(pk=retry.pk).update(not_before=timezone.now())
    retry.refresh_from_db()
    finish([retry])
    families = scrape(client)
    assert value(families, "scheduler_run_retries_total", tenant="acme") == 1


def test_counters_group_by_label_set_not_by_job(client, tenant, make_job):
    a, b = make_job("a"), make_job("b")
    finish([services.enqueue_run(j, scheduled_for=timezone.now()) for j in (a, b)])
    assert RunCounter.objects.count() == 1
    with override_settings(SCHEDULER_APP={"METRICS_JOB_LABELS": True}):
        finish([services.enqueue_run(a, scheduled_for=timezone.now() + dt.timedelta(seconds=5))])
        assert set(RunCounter.objects.values_list("job", flat=True)) == {"", "a"}
        metrics.collector.forget()
        families = scrape(client)
        assert value(families, "scheduler_runs_total", job="a", state="succeeded") == 1


# -- gauges and the endpoint ------------------------------------------------------------


def test_gauges(client, make_job):
    job = make_job("j")
    now = timezone.now()
    services.enqueue_run(job, scheduled_for=now - dt.timedelta(seconds=30))
    services.enqueue_run(job, scheduled_for=now + dt.timedelta(hours=1))
    running = services.enqueue_run(job, scheduled_for=now - dt.timedelta(seconds=60))
    JobRun.objects.filter(pk=running.pk).update(state="running", node="n1", heartbeat_at=now)
    from scheduler_app.models import Node

    Node.objects.create(
        name="n1", incarnation="i1", started_at=now, heartbeat_at=now, used={"thread": 1}, clock_offset=-1.25
    )
    families = scrape(client)
    assert value(families, "scheduler_queue_depth", kind="due") == 1
    assert value(families, "scheduler_queue_depth", kind="delayed") == 1
    assert value(families, "scheduler_runs_running") == 1
    assert 29 < value(families, "scheduler_loop_lag_seconds") < 120
    assert value(families, "scheduler_nodes_alive") == 1
    assert value(families, "scheduler_node_used_slots", node="n1") == 1
    assert value(families, "scheduler_node_clock_offset_seconds", node="n1") == -1.25
    assert value(families, "scheduler_cluster_overloaded") == 0
    Node.objects.filter(name="n1").update(overloaded=True)
    metrics.collector.forget()
    assert value(scrape(client), "scheduler_cluster_overloaded") == 1
    assert value(families, "scheduler_jobs", status="active") == 1


def test_scrapes_are_cached_briefly(client, make_job, django_assert_max_num_queries):
    scrape(client)
    with django_assert_max_num_queries(0):
        scrape(client)


def test_the_rendered_text_is_reused_within_the_cache_time(client, make_job):
    job = make_job("j")
    services.enqueue_run(job, scheduled_for=timezone.now() - dt.timedelta(seconds=5))
    first = client.get("/metrics").content
    services.enqueue_run(job, scheduled_for=timezone.now() - dt.timedelta(seconds=1))
    assert client.get("/metrics").content == first  # cached: the second run is not seen yet
    metrics.collector.forget()
    fresh = scrape(client)
    assert value(fresh, "scheduler_queue_depth", kind="due") == 2
    # the cached rendering is exactly what prometheus-client renders from the registry
    from prometheus_client import generate_latest

    assert client.get("/metrics").content == generate_latest(metrics.registry)


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (Debian: apt-get install prometheus)",
)
def test_live_metrics_pass_promtool_check_metrics(live_server, transactional_db, tenant, make_job):
    """The real /metrics of a running server, with counters, histograms, gauges and nodes
    from real rows, checked by Prometheus' own promtool (format and lint). Skipped only
    on a developer machine without promtool; in CI (CI set) a missing promtool fails."""
    assert PROMTOOL, "promtool is missing: .ci/run installs Debian's prometheus package for it"
    from scheduler_app.models import Node

    group = JobGroup.objects.create(tenant=tenant, name="etl")
    etl = make_job("etl-job", group=group, task="demo.noop")
    echo = make_job("echo-job", task="demo.echo")
    t0 = timezone.now() - dt.timedelta(hours=2)
    runs = [services.enqueue_run(etl, scheduled_for=t0 + dt.timedelta(minutes=i)) for i in range(5)]
    finish(runs[:3])
    finish(runs[3:], state="failed", duration=20.0, late=2.0)
    finish([services.enqueue_run(echo, scheduled_for=t0)], state="timed_out", duration=61.0)
    services.enqueue_run(echo, scheduled_for=t0 + dt.timedelta(minutes=1), state="skipped", error="overlap")
    services.enqueue_run(echo, scheduled_for=timezone.now() - dt.timedelta(seconds=30))
    services.enqueue_run(echo, scheduled_for=timezone.now() + dt.timedelta(hours=1))
    now = timezone.now()
    Node.objects.create(
        name="n1",
        incarnation="i1",
        started_at=now,
        heartbeat_at=now,
        capacity={"thread": 4},
        used={"thread": 1},
    )
    with urllib.request.urlopen(f"{live_server.url}/metrics", timeout=30) as response:
        body = response.read()
        assert response.headers["Content-Type"].startswith("text/plain; version=")
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert not (checked.stdout + checked.stderr).strip(), (checked.stdout + checked.stderr).decode()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    etl_labels = {"tenant": "acme", "group": "etl", "task": "demo.noop"}
    assert value(families, "scheduler_runs_total", state="failed", **etl_labels) == 2
    assert value(families, "scheduler_run_duration_seconds_count", **etl_labels) == 5
    assert value(families, "scheduler_queue_depth", kind="delayed") == 1
    assert value(families, "scheduler_node_capacity_slots", node="n1") == 4


@override_settings(SCHEDULER_APP={"METRICS_AUTH": {"username": "prom", "password": "s3cret"}})
def test_metrics_basic_auth(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics")["WWW-Authenticate"].startswith("Basic")
    good = base64.b64encode(b"prom:s3cret").decode()
    bad = base64.b64encode(b"prom:wrong").decode()
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {bad}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {good}").status_code == 200


@override_settings(SCHEDULER_APP={"METRICS_AUTH": "key"})
def test_metrics_key_auth(client, tenant):
    user = get_user_model().objects.create_user("prom")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    token = key_for(user)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_metrics_use_their_own_registry():
    from prometheus_client import REGISTRY

    assert metrics.collector not in REGISTRY._collector_to_names


def test_probe_of_a_service_that_has_not_started_is_not_ready():
    from scheduler_app.backends.service import SchedulerService
    from scheduler_app.monitoring.probe import HealthProbe

    probe = HealthProbe(SchedulerService("probe-test"), 0, host="127.0.0.1").start()
    try:
        base = f"http://127.0.0.1:{probe.port}"
        assert json.load(urllib.request.urlopen(f"{base}/live")) == {"status": "ok"}
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/ready")
        assert info.value.code == 503
        body = json.load(info.value)
        assert body["problems"] == ["not started", "the database has not answered yet"]
    finally:
        probe.stop()
