"""migratejobs: moving APScheduler's job state between the persistent job stores with
real runscheduler processes before and after, without losing or repeating a fire time."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from apscheduler.schedulers.background import BackgroundScheduler
from django.conf import settings

from scheduler_app import services
from scheduler_app.backends import bridge, storemigration
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import ROOT, database_url, wait_until

pytestmark = pytest.mark.slow

REDIS_KEYS = ("scheduler_app.jobs", "scheduler_app.run_times")


@pytest.fixture
def clean_stores(transactional_db):
    """Empty redis and sqlalchemy stores (the django store is a Django table, flushed
    after each test like the others)."""

    def clean():
        redis.Redis.from_url(settings.SCHEDULER_APP["REDIS_URL"]).delete(*REDIS_KEYS)
        with storemigration.opened("sqlalchemy") as store:
            if storemigration.read_jobs("sqlalchemy", store):
                store.remove_all_jobs()

    clean()
    yield
    clean()


def migratejobs(*args):
    """The command as an operator runs it: its own process, exit status, stdout/stderr."""
    env = os.environ.copy()
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=database_url())
    return subprocess.run(
        [sys.executable, "manage.py", "migratejobs", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tick_job():
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    return services.save_job(
        Job(
            tenant=tenant,
            name="tick",
            task="demo.noop",
            misfire_policy="run_all",
            misfire_grace_seconds=3600,
            overlap_policy="queue",
            trigger={"type": "interval", "seconds": 1},
        )
    )


def seed(kind):
    """Fill a store the way runscheduler does (JobSync), without running anything."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        jobstores={bridge.STORE_ALIAS: bridge.make_job_store(kind)},
        executors={bridge.EXECUTOR_ALIAS: bridge.EnqueueExecutor(lambda fire: None)},
    )
    scheduler.start(paused=True)  # paused: its thread never touches the store
    try:
        bridge.JobSync(scheduler).reconcile()
    finally:
        scheduler.shutdown(wait=False)


def scheduled_times(job):
    return list(
        JobRun.objects.filter(job=job, attempt=1)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )


@pytest.mark.parametrize(
    ("source", "destination"),
    [("django", "sqlalchemy"), ("sqlalchemy", "redis"), ("redis", "django")],
)
def test_move_keeps_every_fire_time_exactly_once(scheduler, clean_stores, source, destination):
    job = tick_job()
    job_id = f"job-{job.pk}"
    proc = scheduler(store=source)
    wait_until(lambda: JobRun.objects.filter(job=job, state="succeeded").count() >= 3, 20)
    assert proc.stop() == 0
    last_fire = scheduled_times(job)[-1]
    before = storemigration.read_entries(source)
    assert list(before) == [job_id]
    # The store continues right after the last recorded fire time.
    assert before[job_id].next_run_time == last_fire + timedelta(seconds=1)
    assert storemigration.read_entries(destination) == {}

    result = migratejobs("--from", source, "--to", destination)
    assert result.returncode == 0, result.stderr
    when = before[job_id].next_run_time.astimezone(UTC).isoformat()
    assert result.stdout.splitlines() == [
        f"moved {job_id} acme/tick next run {when}",
        f"Moved 1 job(s) from {source} to {destination} (verified). Now run the scheduler with "
        f"the {destination} store: SCHEDULER_APP['JOB_STORE'] = '{destination}' or "
        f"runscheduler --job-store {destination}.",
    ]
    assert storemigration.read_entries(destination) == before  # same next run, trigger, kwargs
    assert storemigration.read_entries(source) == {}

    time.sleep(2)  # fire times pass while no scheduler runs: the new one must catch them up
    proc2 = scheduler(store=destination, node="node-b")
    wait_until(
        lambda: JobRun.objects.filter(
            job=job, state="succeeded", scheduled_for__gt=last_fire + timedelta(seconds=4)
        ).exists(),
        20,
    )
    # The caught-up fire times run before the node stops (a run fired while it stops stays
    # queued, durably, for the next node: only those may be left).
    wait_until(
        lambda: (
            not JobRun.objects.filter(
                job=job,
                state__in=["queued", "running"],
                scheduled_for__lt=datetime.now(UTC) - timedelta(seconds=1),
            ).exists()
        ),
        20,
    )
    stopping = datetime.now(UTC)
    assert proc2.stop() == 0
    # The sync found the job in the new store (same fingerprint) instead of re-adding it.
    assert "added=1" not in proc2.output, proc2.output

    times = scheduled_times(job)
    assert len(times) == len(set(times)), "a fire time ran twice"
    gaps = [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a != timedelta(seconds=1)]
    assert not gaps, f"fire times lost across the switch: {gaps}"
    assert times[0] < last_fire < times[-1]
    settled = stopping - timedelta(seconds=1.5)  # older than what fired while it stopped
    states = set(JobRun.objects.filter(job=job, scheduled_for__lt=settled).values_list("state", flat=True))
    assert states == {"succeeded"}


def test_dry_run_prints_and_changes_nothing(clean_stores):
    job = tick_job()
    paused = services.save_job(
        Job(
            tenant=job.tenant,
            name="paused",
            task="demo.noop",
            trigger={"type": "interval", "seconds": 60},
        )
    )
    seed("django")
    # scheduler_app takes paused jobs out of the store, but an entry paused the
    # APScheduler way (no next run time) must move as it is too.
    with storemigration.opened("django") as store:
        aps_job = storemigration.read_jobs("django", store)[f"job-{paused.pk}"]
        aps_job._modify(next_run_time=None)
        store.update_job(aps_job)
    before = storemigration.read_entries("django")
    assert len(before) == 2
    result = migratejobs("--from", "django", "--to", "redis", "--dry-run")
    assert result.returncode == 0, result.stderr
    tick = before[f"job-{job.pk}"]
    assert result.stdout.splitlines() == [
        f"would move job-{job.pk} acme/tick next run {tick.next_run_time.astimezone(UTC).isoformat()}",
        f"would move job-{paused.pk} acme/paused next run none (paused)",
        "Dry run: would move 2 job(s) from django to redis; nothing was changed.",
    ]
    assert storemigration.read_entries("django") == before
    assert storemigration.read_entries("redis") == {}
    client = redis.Redis.from_url(settings.SCHEDULER_APP["REDIS_URL"])
    assert not client.exists(*REDIS_KEYS)

    # For real, the paused entry stays paused in the destination.
    result = migratejobs("--from", "django", "--to", "redis")
    assert result.returncode == 0, result.stderr
    assert storemigration.read_entries("redis") == before
    assert client.zcard("scheduler_app.run_times") == 1  # only the unpaused job is due ever


def test_existing_destination_entries_are_replaced_and_others_left(clean_stores):
    job = tick_job()
    other = services.save_job(
        Job(
            tenant=job.tenant,
            name="other",
            task="demo.noop",
            trigger={"type": "interval", "seconds": 60},
        )
    )
    seed("redis")  # both jobs in redis (an earlier use of that store)
    services.pause_jobs([other])
    seed("sqlalchemy")  # only tick in sqlalchemy, the store in use
    stale = storemigration.read_entries("redis")
    current = storemigration.read_entries("sqlalchemy")
    assert list(current) == [f"job-{job.pk}"]
    result = migratejobs("--from", "sqlalchemy", "--to", "redis")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("(replacing the redis entry)")
    assert lines[1].startswith(f"note: redis also holds 1 job(s) that sqlalchemy does not (job-{other.pk})")
    after = storemigration.read_entries("redis")
    assert after[f"job-{job.pk}"] == current[f"job-{job.pk}"]
    assert after[f"job-{other.pk}"] == stale[f"job-{other.pk}"]


def test_refusals(clean_stores):
    for args, message in [
        (
            ("--from", "django", "--to", "django"),
            "--from and --to are both django: nothing to move",
        ),
        (
            ("--from", "memory", "--to", "redis"),
            "--from memory: the memory job store is not persistent",
        ),
        (
            ("--from", "redis", "--to", "memory"),
            "--to memory: the memory job store is not persistent",
        ),
        (
            ("--from", "mongo", "--to", "redis"),
            "--from mongo: unknown job store; use one of django, sqlalchemy, redis",
        ),
    ]:
        result = migratejobs(*args)
        assert result.returncode == 1, result
        assert f"CommandError: {message}" in result.stderr
        assert result.stdout == ""


def test_refused_while_a_scheduler_runs(scheduler, clean_stores, tmp_path):
    job = tick_job()
    long = services.save_job(
        Job(
            tenant=job.tenant,
            name="long",
            task="demo.sleep",
            kwargs={"seconds": 60},
            trigger={"type": "manual"},
        )
    )
    proc = scheduler(store="django")
    services.run_jobs_now([long])
    wait_until(lambda: JobRun.objects.filter(job=long, state="running").exists(), 20)
    before = storemigration.read_entries("django")
    result = migratejobs("--from", "django", "--to", "sqlalchemy")
    assert result.returncode == 1
    assert (
        "CommandError: a scheduler is running against this database: live node(s) node-a (host "
        in result.stderr
    )
    assert "stop every runscheduler first" in result.stderr and "--force" in result.stderr
    # Nothing moved (the running scheduler itself keeps advancing the next run time).
    assert list(storemigration.read_entries("django")) == list(before) == [f"job-{job.pk}"]
    assert storemigration.read_entries("sqlalchemy") == {}
    proc.stop()


def test_force_overrides_the_live_scheduler_check(clean_stores):
    job = tick_job()
    seed("django")
    now = datetime.now(UTC)
    JobRun.objects.create(
        job=job, scheduled_for=now, state="running", node="gone:1", started_at=now, heartbeat_at=now
    )
    assert migratejobs("--from", "django", "--to", "redis").returncode == 1
    result = migratejobs("--from", "django", "--to", "redis", "--force")
    assert result.returncode == 0, result.stderr
    assert list(storemigration.read_entries("redis")) == [f"job-{job.pk}"]
    assert storemigration.read_entries("django") == {}


def test_nothing_to_move(clean_stores):
    result = migratejobs("--from", "redis", "--to", "django")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Nothing to move: the redis job store holds no scheduler_app jobs."]
