"""Overloading a real node: a backlog of slow runs far beyond its slots makes the cluster
overloaded; meanwhile a high-priority job on the default load policy keeps its every-
second schedule, a sheddable job's fires are recorded skipped with reason load, and once
the backlog has drained the sheddable job runs again by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until

pytestmark = [pytest.mark.slow]


def test_a_backlog_sheds_the_sheddable_and_spares_the_rest(transactional_db, scheduler):
    acme = Tenant.objects.create(slug="acme", name="Acme")

    def every_second(name, **fields):
        return services.save_job(
            Job(
                tenant=acme, name=name, task="demo.noop", trigger={"type": "interval", "seconds": 1}, **fields
            )
        )

    vip = every_second("vip", priority=10, max_instances=3, overlap_policy="queue")
    shed = every_second("shed", priority=-10, load_policy="shed", max_instances=3, overlap_policy="queue")
    backlog = services.save_job(
        Job(
            tenant=acme,
            name="backlog",
            task="demo.sleep",
            kwargs={"seconds": 0.5},
            trigger={"type": "manual"},
            max_instances=10,
        )
    )
    node = scheduler(
        "busy",
        THREAD_POOL_SIZE=2,
        PROCESS_POOL_SIZE=1,
        ASYNCIO_CONCURRENCY=1,
        LOAD_QUEUE_FACTOR=2.0,  # 4 slots: overloaded beyond 8 due runs
        LOAD_CHECK_INTERVAL=0.5,
    )
    wait_until(lambda: JobRun.objects.filter(job=shed, state="succeeded").exists(), 20)
    loaded_at = timezone.now()
    for _ in range(40):
        services.run_jobs_now([backlog])
    wait_until(
        lambda: JobRun.objects.filter(job=shed, state="skipped", error__startswith="load:").count() >= 3, 30
    )
    wait_until(lambda: not JobRun.objects.filter(job=backlog, state__in=["queued", "running"]).exists(), 90)
    drained_at = timezone.now()
    wait_until(
        lambda: (
            JobRun.objects.filter(
                job=shed, state="succeeded", scheduled_for__gt=drained_at + timedelta(seconds=1)
            ).count()
            >= 2
        ),
        30,
        message="the sheddable job did not come back after the backlog drained",
    )
    assert node.stop() == 0

    shed_skips = JobRun.objects.filter(job=shed, state="skipped")
    assert shed_skips.count() >= 3
    assert all(r.error.startswith("load: the cluster is overloaded") for r in shed_skips), [
        r.error for r in shed_skips
    ]
    # Shed only during the overload: none before the backlog, none after it drained.
    assert all(
        loaded_at - timedelta(seconds=1) <= r.scheduled_for <= drained_at + timedelta(seconds=2)
        for r in shed_skips
    )
    # The high-priority job kept its schedule through the overload: every fire time ran.
    vip_runs = list(JobRun.objects.filter(job=vip).order_by("scheduled_for"))
    assert {r.state for r in vip_runs} == {"succeeded"}, {r.state for r in vip_runs}
    times = [r.scheduled_for for r in vip_runs]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) == timedelta(seconds=1)
    during = [r for r in vip_runs if loaded_at < r.scheduled_for < drained_at]
    assert during and max((r.started_at - r.scheduled_for).total_seconds() for r in during) < 2.0
