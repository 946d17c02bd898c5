"""Database trouble: a PostgreSQL outage during runs, and SQLite's "database is locked"."""

import glob
import sqlite3
import subprocess
import time
from datetime import timedelta

import pytest
from django.db import connection

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def pg_cluster(action: str) -> None:
    version = sorted(glob.glob("/etc/postgresql/*"))[-1].rsplit("/", 1)[-1]
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def pg_up() -> bool:
    return (
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode == 0
    )


def every_second(tenant):
    """A job firing every second whose every fire time must run (run_all, long grace):
    a gap in its fire times is a lost fire."""
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


@pytest.mark.postgres_only
def test_postgresql_outage_loses_and_duplicates_nothing(scheduler):
    assert connection.vendor == "postgresql"
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    tick = every_second(tenant)
    slow = services.save_job(
        Job(tenant=tenant, name="slow", task="demo.sleep", kwargs={"seconds": 3}, max_instances=10)
    )
    proc = scheduler()
    for _ in range(4):
        services.run_jobs_now([slow])
    wait_until(lambda: JobRun.objects.filter(job=slow, state="running").count() == 4, 15)
    connection.close()
    pg_cluster("stop")
    try:
        time.sleep(12)  # the slow runs finish and the tick job fires while the database is away
        assert proc.proc.poll() is None, proc.output
    finally:
        pg_cluster("start")
        wait_until(pg_up, 60)
    connection.close()
    wait_until(lambda: _safe_count(slow, "succeeded") == 4, 60, interval=0.5)
    wait_until(lambda: "database reachable again" in proc.output, 30)
    time.sleep(3)
    assert proc.stop() == 0
    assert "database unavailable" in proc.output
    runs = list(JobRun.objects.filter(job=slow))
    assert len(runs) == 4 and {r.state for r in runs} == {"succeeded"}
    times = sorted(JobRun.objects.filter(job=tick).values_list("scheduled_for", flat=True))
    assert len(times) == len(set(times))
    gaps = [(b - a) for a, b in zip(times, times[1:], strict=False)]
    # The fires taken while the database was away are written after it is back; the
    # trigger side, restarted when the node leads again, resumes after them.
    assert max(gaps) == timedelta(seconds=1), f"fire times lost during the outage: largest gap {max(gaps)}"
    assert "Traceback" not in proc.output, proc.output
    assert times[-1] - times[0] >= timedelta(seconds=14)


def _safe_count(job, state):
    try:
        return JobRun.objects.filter(job=job, state=state).count()
    except Exception:
        connection.close()
        return -1


@pytest.mark.sqlite_only
def test_sqlite_database_locked_is_survived(scheduler, tmp_path):
    assert connection.vendor == "sqlite"
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    tick = every_second(tenant)
    proc = scheduler()
    wait_until(lambda: JobRun.objects.filter(job=tick, state="succeeded").count() >= 2, 15)
    # Another process holds the write lock for longer than SQLite's busy timeout.
    locker = sqlite3.connect(connection.settings_dict["NAME"], timeout=1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    time.sleep(25)
    locker.execute("ROLLBACK")
    locker.close()
    before = JobRun.objects.filter(job=tick, state="succeeded").count()
    wait_until(lambda: JobRun.objects.filter(job=tick, state="succeeded").count() >= before + 3, 30)
    assert proc.proc.poll() is None
    assert proc.stop() == 0
    times = sorted(JobRun.objects.filter(job=tick).values_list("scheduled_for", flat=True))
    assert len(times) == len(set(times))
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) == timedelta(seconds=1)
