"""A lone leader cut off from its database longer than LEADER_LEASE (a TCP proxy in
front of PostgreSQL is black-holed, then restored): it steps down, leads again when the
database is back, and every fire time of an every-second job runs exactly once, with the
memory job store and with a persistent one (the stored next-run time must not win over
the fire times recorded in the database)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until
from tests.netfaults import CuttableProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


def every_second(tenant):
    return services.save_job(
        Job(
            tenant=tenant,
            name="tick",
            task="demo.noop",
            trigger={"type": "interval", "seconds": 1},
            misfire_policy="run_all",
            misfire_grace_seconds=3600,
            overlap_policy="queue",
            max_instances=5,
        )
    )


def fire_times(job):
    return sorted(JobRun.objects.filter(job=job).values_list("scheduled_for", flat=True))


@pytest.mark.parametrize("store", ["memory", "django"])
@pytest.mark.parametrize("mode", ["blackhole", "cut"])
def test_a_lone_leader_cut_off_past_its_lease_loses_and_doubles_no_fire(scheduler, store, mode):
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    tick = every_second(tenant)
    proxy = CuttableProxy.for_test_database()
    try:
        node = scheduler("lone", store=store, extra_env={"DATABASE_URL": proxy.database_url()})
        wait_until(lambda: JobRun.objects.filter(job=tick, state="succeeded").count() >= 3, 20)
        if mode == "blackhole":
            proxy.blackhole(detect_after=5.0)  # LEADER_LEASE is 3 s in these tests
        else:
            proxy.cut()
        time.sleep(9)
        proxy.restore()
        wait_until(lambda: "this node now leads" in node.output.rsplit("stopped leading", 1)[-1], 40)
        cut_at = time.time()
        wait_until(
            lambda: (
                JobRun.objects.filter(job=tick, state="succeeded").count() >= len(fire_times(tick)) > 0
                and fire_times(tick)[-1].timestamp() > cut_at + 2
            ),
            40,
        )
        assert node.stop() == 0
    finally:
        proxy.close()
    assert "stopped leading" in node.output
    times = fire_times(tick)
    assert len(times) == len(set(times)), "a fire time ran twice"
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) == timedelta(seconds=1), f"fire times lost: largest gap {max(gaps)}"
    assert times[-1] - times[0] >= timedelta(seconds=14)
