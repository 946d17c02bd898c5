"""Misfire policies across a real scheduler restart, with every job store, and across
a pause."""

import time

import pytest
import redis
from django.conf import settings

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def clean_redis():
    client = redis.Redis.from_url(settings.SCHEDULER_APP["REDIS_URL"])
    client.delete("scheduler_app.jobs", "scheduler_app.run_times")
    yield
    client.delete("scheduler_app.jobs", "scheduler_app.run_times")


def make_jobs():
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    return {
        policy: services.save_job(
            Job(
                tenant=tenant,
                name=policy,
                task="demo.noop",
                misfire_policy=policy,
                overlap_policy="queue",  # missed runs released together wait for each other
                misfire_grace_seconds=1,
                trigger={"type": "interval", "seconds": 1},
            )
        )
        for policy in ("skip", "coalesce", "run_all")
    }


@pytest.mark.parametrize("store", ["memory", "django", "sqlalchemy", "redis"])
def test_misfire_policies_across_a_restart(scheduler, clean_redis, store):
    jobs = make_jobs()
    proc = scheduler(store=store)
    for j in jobs.values():
        wait_until(lambda j=j: JobRun.objects.filter(job=j, state="succeeded").exists(), 15)
    assert proc.stop() == 0
    last_before = {
        p: JobRun.objects.filter(job=j).latest("scheduled_for").scheduled_for for p, j in jobs.items()
    }
    time.sleep(5)  # about five fire times pass while no scheduler runs
    proc2 = scheduler(store=store)
    restarted = time.time()
    for j in jobs.values():
        wait_until(
            lambda j=j: (
                JobRun.objects.filter(job=j, scheduled_for__gt=last_before[j.name])
                .filter(state__in=["succeeded", "skipped"])
                .count()
                >= 4
            ),
            15,
        )
    # Every fire time missed while down has been dealt with before the node stops.
    wait_until(
        lambda: (
            not JobRun.objects.filter(
                job__in=jobs.values(), state__in=["queued", "running"], scheduled_for__lt=_dt(restarted - 1.5)
            ).exists()
        ),
        15,
    )
    proc2.stop()

    def window(policy):
        """Runs for fire times missed while down (older than the grace at restart)."""
        return list(
            JobRun.objects.filter(
                job=jobs[policy],
                scheduled_for__gt=last_before[policy],
                scheduled_for__lt=_dt(restarted - 1.5),
            ).order_by("scheduled_for")
        )

    skip = window("skip")
    assert len(skip) >= 3
    assert {r.state for r in skip} == {"skipped"}
    assert "misfire policy: skip" in skip[0].error

    coalesce = first_batch(jobs["coalesce"], last_before["coalesce"])
    assert len(coalesce) >= 4
    assert [r.state for r in coalesce].count("succeeded") == 1  # once for all missed times
    assert coalesce[-1].state == "succeeded"  # the latest of them
    assert all("coalesced" in r.error for r in coalesce[:-1])
    assert all(coalesce[-1].scheduled_for.isoformat() in r.error for r in coalesce[:-1])

    run_all = window("run_all")
    assert len(run_all) >= 3
    assert {r.state for r in run_all} == {"succeeded"}, [
        (r.scheduled_for, r.state, r.error, r.queued_at, r.started_at) for r in run_all
    ]

    for j in jobs.values():  # never two runs for one fire time
        times = list(JobRun.objects.filter(job=j, attempt=1).values_list("scheduled_for", flat=True))
        assert len(times) == len(set(times))


def test_pause_beyond_grace_follows_the_policy(scheduler):
    jobs = make_jobs()
    proc = scheduler()
    for j in jobs.values():
        wait_until(lambda j=j: JobRun.objects.filter(job=j, state="succeeded").exists(), 15)
    services.pause_jobs(Job.objects.all())
    time.sleep(1.0)
    paused_at = {
        p: JobRun.objects.filter(job=j).latest("scheduled_for").scheduled_for for p, j in jobs.items()
    }
    time.sleep(4)
    services.resume_jobs(Job.objects.all())
    time.sleep(2.5)
    proc.stop()
    skipped = JobRun.objects.filter(job=jobs["skip"], scheduled_for__gt=paused_at["skip"], state="skipped")
    assert skipped.count() >= 3
    coalesced = JobRun.objects.filter(
        job=jobs["coalesce"], scheduled_for__gt=paused_at["coalesce"], state="skipped"
    )
    assert coalesced.count() >= 2 and "coalesced" in coalesced.first().error
    ran_all = JobRun.objects.filter(job=jobs["run_all"], scheduled_for__gt=paused_at["run_all"])
    assert ran_all.filter(state="skipped").count() == 0 and ran_all.count() >= 4


def first_batch(job, after):
    """The runs for the fire times that were due together at the first fire after a
    restart: up to the latest one a coalesced run names."""
    later = list(JobRun.objects.filter(job=job, scheduled_for__gt=after).order_by("scheduled_for"))
    named = [r for r in later if "coalesced into the run for " in r.error]
    if not named:
        return later[:1]
    last = max(r.error.split("coalesced into the run for ")[1].split(" ")[0] for r in named)
    return [r for r in later if r.scheduled_for.isoformat() <= last]


def _dt(ts):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)
