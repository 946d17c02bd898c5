"""Rate limits and concurrency keys with two real runscheduler processes on one
PostgreSQL: runs of two jobs sharing a key with limit 1 never overlap, whichever node
runs them; a tenant's rate lets exactly N runs start and the rest wait, saying why."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, RunReason, RunState, Tenant
from tests.acceptance.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


def job(tenant, name, **fields):
    fields.setdefault("trigger", {"type": "manual"})
    fields.setdefault("max_instances", 10)
    fields.setdefault("overlap_policy", "queue")
    return services.save_job(Job(tenant=tenant, name=name, **fields))


def queue(job, count):
    now = timezone.now()
    for i in range(count):
        services.enqueue_run(job, scheduled_for=now + timedelta(microseconds=i), reason=RunReason.MANUAL)


def test_two_nodes_share_a_key_and_a_tenant_rate(transactional_db, scheduler):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    beta = Tenant.objects.create(slug="beta", name="Beta", rate_limit="3/m")
    sleep = {"task": "demo.sleep", "kwargs": {"seconds": 0.4}}
    export = job(acme, "erp-export", concurrency_key="erp", **sleep)
    imports = job(acme, "erp-import", concurrency_key="erp", **sleep)
    ping = job(beta, "ping", task="demo.noop")
    scheduler("node-a", THREAD_POOL_SIZE=4)
    scheduler("node-b", THREAD_POOL_SIZE=4)
    queue(export, 4)
    queue(imports, 4)
    queue(ping, 6)

    erp = JobRun.objects.filter(job__in=[export, imports])
    wait_until(lambda: erp.filter(state=RunState.SUCCEEDED).count() == 8, 40, message="erp runs unfinished")
    runs = sorted(erp.values_list("started_at", "finished_at", "node"), key=lambda r: r[0])
    for (_, finished, _), (started, _, node) in zip(runs, runs[1:], strict=False):
        assert started >= finished, f"two runs holding the key overlapped (one on {node})"

    pings = JobRun.objects.filter(job=ping)
    wait_until(lambda: pings.filter(state=RunState.SUCCEEDED).count() == 3, 20, message="no 3 pings")
    time.sleep(2)  # both nodes poll several times meanwhile: still 3
    assert pings.filter(state=RunState.SUCCEEDED).count() == 3
    waiting = list(pings.filter(state=RunState.QUEUED))
    assert len(waiting) == 3
    assert {r.wait_reason for r in waiting} == {"waiting: rate limit 3/m of tenant beta reached"}
    first = pings.filter(state=RunState.SUCCEEDED).order_by("started_at").first()
    for run in waiting:
        assert abs((run.not_before - (first.started_at + timedelta(minutes=1))).total_seconds()) < 1
    assert not pings.filter(state=RunState.SKIPPED).exists()
