"""Issue 12, point 9: with the leader alone firing, a follower's database load is only
claims, outcomes and heartbeats. Two real runscheduler processes on PostgreSQL with the
django job store (APScheduler's tables in the same database); each logs every SQL
statement it runs (tests/sqllog.py), and the statements say who did what."""

import re
import time
from collections import Counter

import pytest
from django.db import connection

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until
from tests.acceptance.test_cluster import leader

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]

TABLE = re.compile(r'(?:FROM|JOIN|UPDATE|INTO)\s+"([a-z_]+)"')
JOBS = 60


def statements(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def tables(lines: list[str]) -> Counter:
    return Counter(table for line in lines for table in TABLE.findall(line))


def fire_inserts(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith('INSERT INTO "scheduler_app_jobrun"')]


def test_the_follower_only_claims_records_and_heartbeats(transactional_db, scheduler, tmp_path):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    for i in range(JOBS):
        services.save_job(
            Job(
                tenant=acme,
                name=f"tick-{i:02d}",
                # 0.5 s of sleep a second per job, 60 jobs: 30 threads' worth, more than
                # the leader's 10, so the follower gets its share however fast the
                # leader claims (with no-op runs a fast leader could take nearly all).
                task="demo.sleep",
                kwargs={"seconds": 0.5},
                trigger={"type": "interval", "seconds": 1},
            )
        )
    leader_log, follower_log = tmp_path / "leader.sql", tmp_path / "follower.sql"
    scheduler("node-a", store="django", extra_env={"SCHEDULER_TEST_SQL_LOG": str(leader_log)})
    wait_until(lambda: leader() == "node-a", 10, message="node-a did not lead")
    b = scheduler("node-b", store="django", extra_env={"SCHEDULER_TEST_SQL_LOG": str(follower_log)})
    follower_start = len(statements(follower_log))

    # Every node works: wait until the follower has run a good share of the fires.
    def follower_ran():
        return JobRun.objects.filter(node="node-b", state="succeeded").count()

    wait_until(lambda: follower_ran() >= 20, 60, message="the follower ran fewer than 20 runs in 60 s")
    time.sleep(5)  # and a few more seconds of claims, outcomes and heartbeats
    # Each node's connections carry its name, so pg_stat_activity says whose they are.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )
        names = {row[0] for row in cursor.fetchall()}
    assert {"scheduler_app node node-a", "scheduler_app node node-b"} <= names, names
    b.stop()
    assert leader() == "node-a", "the lease moved: the test is about a stable leader"

    ours = statements(follower_log)[follower_start:]
    theirs = statements(leader_log)
    # The detector sees the trigger side where it is: the leader writes fires and keeps
    # APScheduler's job store.
    assert fire_inserts(theirs), "the leader's log shows no fire written: the SQL log is broken"
    assert any("django_apscheduler" in t for t in tables(theirs)), tables(theirs)

    touched = tables(ours)
    assert touched, "the follower ran no SQL"
    assert not [t for t in touched if t.startswith("django_apscheduler")], (
        f"the follower touched APScheduler's job store: {touched}"
    )
    assert not fire_inserts(ours), f"the follower wrote runs: {fire_inserts(ours)[:3]}"
    # What it did touch: runs (claims, outcomes), its node row and the lease (heartbeats,
    # the leader check), jobs and the configuration version (what a claim needs to know),
    # and what an outcome writes beside it.
    allowed = {
        "scheduler_app_jobrun",
        "scheduler_app_job",
        "scheduler_app_node",
        "scheduler_app_lease",
        "scheduler_app_configversion",
        "scheduler_app_tenant",
        "scheduler_app_jobgroup",
        "scheduler_app_jobrunlog",
        "scheduler_app_runcounter",  # the outcome's counters, in its transaction (metrics)
        "scheduler_app_alertoutbox",
        "scheduler_app_alertrule",
        "scheduler_app_jobdependency",
    }
    assert set(touched) <= allowed, f"the follower touched more than claims need: {set(touched) - allowed}"
