"""One node of two cut off from PostgreSQL (a TCP proxy in front of the database for
that process only is black-holed for 20 s, as a dropped route would be) while the other
keeps its connection: the cut-off leader stops firing and the other takes over with no
fire time lost or run twice; a cut-off worker stops its in-flight runs itself before the
other node declares it dead and retries them, so each run completes exactly once
(counted from the task's side effects, not from rows alone)."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Node, Tenant
from tests.acceptance.conftest import wait_until
from tests.acceptance.test_cluster import leader, lines
from tests.acceptance.test_cluster_faults import queue_runs, spans
from tests.netfaults import CuttableProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


@pytest.fixture
def acme(transactional_db):
    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def proxy():
    p = CuttableProxy.for_test_database()
    yield p
    p.close()


def test_a_leader_cut_off_for_20_s_is_replaced_and_no_fire_is_lost_or_doubled(
    acme, scheduler, proxy, tmp_path
):
    out = tmp_path / "ticks.txt"
    tick = services.save_job(
        Job(
            tenant=acme,
            name="tick",
            task="tests.append",
            kwargs={"path": str(out)},
            trigger={"type": "interval", "seconds": 1},
            misfire_policy="run_all",
            misfire_grace_seconds=3600,
            overlap_policy="queue",
            max_instances=5,
        )
    )
    a = scheduler("node-a", extra_env={"DATABASE_URL": proxy.database_url()})
    wait_until(lambda: leader() is not None, 10)
    b = scheduler("node-b")
    assert "this node now leads" in a.output and "this node now leads" not in b.output
    wait_until(lambda: JobRun.objects.filter(job=tick, state="succeeded").count() >= 3, 20)

    proxy.blackhole(detect_after=5.0)
    cut_at = time.time()
    wait_until(lambda: "this node now leads" in b.output, 15, message="node-b did not take over")
    took_over = time.time() - cut_at
    wait_until(lambda: "stopped leading" in a.output, 15)
    time.sleep(max(0.0, 20 - (time.time() - cut_at)))
    proxy.restore()
    wait_until(lambda: "heartbeat written again" in a.output or "rejoining" in a.output, 30)
    time.sleep(4)
    assert a.stop() == 0 and b.stop() == 0

    assert took_over <= 3.0 + 5.0, f"took {took_over:.1f} s"  # LEADER_LEASE 3 s, detected within 5 s
    # Leading again was not node-a's to do while node-b held the lease.
    assert a.output.count("this node now leads") == 1, a.output
    times = sorted(JobRun.objects.filter(job=tick).values_list("scheduled_for", flat=True))
    assert len(times) == len(set(times))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps).total_seconds() == 1.0, f"fire times lost: largest gap {max(gaps)}"
    assert times[-1].timestamp() - times[0].timestamp() >= 22
    # Every run executed exactly once: one line per run, as many as rows; but for the
    # last fire or two, written while both nodes were stopping (queued, not started: the
    # next start runs them; neither lost nor doubled).
    succeeded = JobRun.objects.filter(job=tick, state="succeeded").count()
    waiting = JobRun.objects.filter(job=tick, state="queued", started_at=None).count()
    others = list(
        JobRun.objects.filter(job=tick)
        .exclude(state__in=["succeeded", "queued"])
        .values_list("state", "error")
    )
    assert not others, others
    assert len(lines(out)) == succeeded and succeeded + waiting == len(times) and waiting <= 2, (
        succeeded,
        waiting,
    )


def test_a_worker_cut_off_stops_its_runs_before_the_other_node_retries_them(acme, scheduler, proxy, tmp_path):
    slow = services.save_job(
        Job(
            tenant=acme,
            name="slow",
            task="tests.append",
            executor="process",
            kwargs={"path": str(tmp_path / "slow.txt"), "sleep": 8},
            trigger={"type": "manual"},
            max_instances=10,
            retry_max_attempts=2,
            retry_backoff_seconds=0,
        )
    )
    b = scheduler("node-b")  # leads, and stays connected
    a = scheduler("node-a", extra_env={"DATABASE_URL": proxy.database_url()})
    services.drain_nodes([Node.objects.get(name="node-b")])
    wait_until(lambda: "claiming paused" in b.output, 10)
    queue_runs(slow, 4, executor="process")
    wait_until(lambda: JobRun.objects.filter(job=slow, state="running", node="node-a").count() == 4, 30)
    services.resume_nodes([Node.objects.get(name="node-b")])

    proxy.blackhole(detect_after=5.0)
    cut_at = time.time()
    wait_until(lambda: "self-fencing" in a.output, 15, message="node-a did not fence itself")
    wait_until(lambda: JobRun.objects.filter(job=slow, state="succeeded", attempt=2).count() == 4, 40)
    assert JobRun.objects.filter(job=slow, attempt=1, state="lost").count() == 4
    assert set(JobRun.objects.filter(job=slow, attempt=2).values_list("node", flat=True)) == {"node-b"}
    time.sleep(max(0.0, 20 - (time.time() - cut_at)))
    proxy.restore()
    wait_until(lambda: "rejoining" in a.output or "heartbeat written again" in a.output, 30)
    time.sleep(2)
    assert a.stop() == 0 and b.stop() == 0
    finished = spans(tmp_path / "slow.txt")
    # Only the retries wrote their line: the cut-off node's runs were stopped, not
    # finished behind the retries' backs, and its late outcomes changed nothing.
    assert len(finished) == 4 and all(start > cut_at for start, _ in finished), finished
    assert JobRun.objects.filter(job=slow, attempt=1, state="lost").count() == 4
    assert JobRun.objects.filter(job=slow).count() == 8


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def test_a_node_whose_clock_is_30_s_ahead_follows_the_database_clock(acme, scheduler, tmp_path):
    """node-b's wall clock runs 30 s ahead (libfaketime; its monotonic clock is left
    alone, as NTP would). Nobody is declared dead and leadership does not flap (leases
    and heartbeats use the database's clock); when node-b leads after node-a's kill -9,
    its trigger side fires 30 s of fire times early, but no run starts before its time
    by the database's clock, and the times node-b records are on that clock too."""
    if not os.path.exists(FAKETIME_LIB):
        pytest.fail("libfaketime is missing: apt-get install faketime (.ci/run installs it)")
    tick = services.save_job(
        Job(
            tenant=acme,
            name="tick",
            task="tests.append",
            kwargs={"path": str(tmp_path / "ticks.txt")},
            trigger={"type": "interval", "seconds": 1},
            misfire_policy="run_all",
            misfire_grace_seconds=3600,
            overlap_policy="queue",
            max_instances=50,
        )
    )
    a = scheduler("node-a")
    skewed = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": "+30s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    b = scheduler("node-b", extra_env=skewed)
    b.wait_for("this node's clock is +", 10)  # +29.9 or +30.0: measured mid round trip
    wait_until(lambda: abs((Node.objects.get(name="node-b").clock_offset or 0) - 30) < 1, 10)
    assert abs(Node.objects.get(name="node-a").clock_offset) < 1
    time.sleep(6)  # longer than NODE_DEAD_AFTER (4 s) and LEADER_LEASE (3 s)
    assert set(Node.objects.values_list("state", flat=True)) == {"active"}
    assert leader() == "node-a" and "now leads" not in b.output
    assert "declared dead" not in a.output + b.output

    a.kill9()
    wait_until(lambda: leader() == "node-b", 3 + 3, message="no failover within the lease")
    killed_at = timezone.now()
    wait_until(
        lambda: JobRun.objects.filter(job=tick, state="succeeded", started_at__gt=killed_at).count() >= 5, 20
    )
    assert b.stop() == 0
    runs = list(JobRun.objects.filter(job=tick, state="succeeded", node="node-b"))
    early = [r for r in runs if r.started_at < r.scheduled_for - timedelta(milliseconds=100)]
    assert not early, (
        f"{len(early)} runs started before their time, e.g. {early[0].started_at} < {early[0].scheduled_for}"
    )
    late = max(
        ((r.started_at - r.scheduled_for).total_seconds() for r in runs if r.scheduled_for < killed_at),
        default=0.0,
    )
    assert late < 5, f"a run of node-b started {late:.1f} s late"  # its times are not 30 s off
    times = sorted(JobRun.objects.filter(job=tick).values_list("scheduled_for", flat=True))
    assert len(times) == len(set(times))


def test_max_instances_holds_over_1000_contended_claims_and_an_outage(acme, scheduler, proxy, tmp_path):
    """Two nodes claim the 1,000 queued runs of ten max_instances=1 jobs as fast as they
    can; node-a is cut off for 8 s half-way (its runs are lost and retried by node-b). No
    two executions of a job ever overlap (spans from the task's side effects), and every
    run ends succeeded."""
    jobs = [
        services.save_job(
            Job(
                tenant=acme,
                name=f"one-at-a-time-{i}",
                task="tests.append",
                kwargs={"path": str(tmp_path / f"one-{i}.txt")},
                trigger={"type": "manual"},
                max_instances=1,
                overlap_policy="queue",
                retry_max_attempts=3,
                retry_backoff_seconds=0,
            )
        )
        for i in range(10)
    ]
    a = scheduler("node-a", extra_env={"DATABASE_URL": proxy.database_url()})
    b = scheduler("node-b")
    for job in jobs:
        queue_runs(job, 100)
    succeeded = JobRun.objects.filter(job__in=jobs, state="succeeded")
    wait_until(lambda: succeeded.count() >= 300, 180)
    assert succeeded.filter(node="node-a").exists() and succeeded.filter(node="node-b").exists()
    proxy.blackhole(detect_after=3.0)
    time.sleep(8)
    proxy.restore()
    wait_until(
        lambda: not JobRun.objects.filter(job__in=jobs, state__in=["queued", "running"]).exists(),
        300,
        interval=0.5,
    )
    assert a.stop() == 0 and b.stop() == 0
    for i, job in enumerate(jobs):
        done = spans(tmp_path / f"one-{i}.txt")
        overlaps = sum(1 for (_, end), (start, _) in zip(done, done[1:], strict=False) if start < end)
        assert overlaps == 0, f"{job.name}: {overlaps} concurrent pairs"
        assert len(done) >= 100
    # Each of the 1,000 runs ended succeeded (in its first attempt or a retry).
    assert succeeded.count() == 1000
    assert not JobRun.objects.filter(job__in=jobs, state="failed").exists()


def test_a_leader_frozen_for_30_s_fires_nothing_stale_and_records_over_nothing(acme, scheduler, tmp_path):
    """SIGSTOP the leader for 30 s while it runs slow thread runs, then SIGCONT: the other
    node took the lease and retried the frozen node's runs; the woken node writes no fire
    (its trigger side wakes up past its lease), its late outcomes are refused, and it
    rejoins as a follower."""
    tick = services.save_job(
        Job(
            tenant=acme,
            name="tick",
            task="demo.noop",
            trigger={"type": "interval", "seconds": 1},
            misfire_policy="run_all",
            misfire_grace_seconds=3600,
            overlap_policy="queue",
            max_instances=5,
        )
    )
    slow = services.save_job(
        Job(
            tenant=acme,
            name="slow",
            task="tests.append",
            kwargs={"path": str(tmp_path / "slow.txt"), "sleep": 3},
            trigger={"type": "manual"},
            max_instances=10,
            retry_max_attempts=2,
            retry_backoff_seconds=0,
        )
    )
    a = scheduler("node-a")
    wait_until(lambda: leader() == "node-a", 10)
    b = scheduler("node-b")
    services.drain_nodes([Node.objects.get(name="node-b")])
    wait_until(lambda: "claiming paused" in b.output, 10)
    queue_runs(slow, 3)
    wait_until(lambda: JobRun.objects.filter(job=slow, state="running", node="node-a").count() == 3, 20)
    services.resume_nodes([Node.objects.get(name="node-b")])

    a.signal(signal.SIGSTOP)
    frozen_at = timezone.now()
    wait_until(lambda: leader() == "node-b", 10, message="no failover from the frozen leader")
    wait_until(lambda: JobRun.objects.filter(job=slow, state="succeeded", attempt=2).count() == 3, 30)
    time.sleep(max(0.0, 30 - (timezone.now() - frozen_at).total_seconds()))
    a.signal(signal.SIGCONT)
    a.wait_for("declared dead by the cluster; rejoining", 20)
    wait_until(lambda: Node.objects.get(name="node-a").state == "active", 15)
    time.sleep(5)
    assert leader() == "node-b"
    assert a.stop() == 0 and b.stop() == 0

    # The frozen node's runs stay lost (its outcomes refused); the retries stand.
    assert JobRun.objects.filter(job=slow, attempt=1, state="lost").count() == 3
    assert JobRun.objects.filter(job=slow, attempt=2, state="succeeded", node="node-b").count() == 3
    assert "outcomes not recorded: the runs are no longer running here" in a.output, a.output[-3000:]
    assert "fire dropped: not the leader" in a.output  # the stale fires, refused at the gate
    # No stale fire: every fire time once, none lost, and node-a led only before the freeze.
    times = sorted(JobRun.objects.filter(job=tick).values_list("scheduled_for", flat=True))
    assert len(times) == len(set(times))
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) == timedelta(seconds=1)
    assert a.output.count("this node now leads") == 1
