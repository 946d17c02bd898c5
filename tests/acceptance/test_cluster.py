"""Several real runscheduler processes on one PostgreSQL: the node registry, the
leader lease and its failover, routing by tags and broadcast. Runs are counted from
the database, executions from the task's side effects (lines in a file)."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Lease, Node, Tenant
from tests.acceptance.conftest import ROOT, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


@pytest.fixture
def acme(transactional_db):
    return Tenant.objects.create(slug="acme", name="Acme")


def job(tenant, name, **fields):
    fields.setdefault("task", "demo.noop")
    fields.setdefault("trigger", {"type": "manual"})
    return services.save_job(Job(tenant=tenant, name=name, **fields))


def leader() -> str | None:
    from django.db.models.functions import Now

    return Lease.objects.filter(expires_at__gt=Now()).values_list("holder", flat=True).first()


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from tests.acceptance.conftest import database_url

    full = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )


def test_registry_names_tags_and_leader_failover(acme, scheduler, tmp_path):
    out = tmp_path / "ticks.txt"
    tick = job(
        acme,
        "tick",
        task="tests.append",
        kwargs={"path": str(out), "text": "t"},
        trigger={"type": "interval", "seconds": 1},
    )
    a = scheduler("node-a")
    b = scheduler("node-b", extra_args=["--tags", "gpu,eu"])
    nodes = {n.name: n for n in Node.objects.all()}
    assert set(nodes) == {"node-a", "node-b"}
    assert nodes["node-b"].tags == ["eu", "gpu"] and nodes["node-a"].state == "active"
    first = wait_until(leader, 10, message="no leader")
    assert first in ("node-a", "node-b")

    # A second live node with a taken name is refused, naming the live one.
    dup = run_command("runscheduler", "--node", "node-a")
    assert dup.returncode != 0
    assert "a live node is already called 'node-a' (host" in dup.stderr and "pid" in dup.stderr

    # Only the leader fires: nobody else logged a trigger side.
    wait_until(lambda: JobRun.objects.filter(job=tick, state="succeeded").count() >= 3, 15)
    procs = {"node-a": a, "node-b": b}
    follower = "node-b" if first == "node-a" else "node-a"
    assert "trigger side started" not in procs[follower].output

    # Freeze the leader (SIGSTOP) past LEADER_LEASE and NODE_DEAD_AFTER: the other node
    # takes over; woken up, the old leader fires no stale time, rejoins as a follower.
    procs[first].signal(signal.SIGSTOP)
    wait_until(lambda: leader() == follower, 3 + 2, message="no failover within the lease")
    wait_until(lambda: Node.objects.get(name=first).state == "dead", 10)
    procs[first].signal(signal.SIGCONT)
    procs[first].wait_for("declared dead by the cluster; rejoining", 10)
    wait_until(lambda: Node.objects.get(name=first).state == "active", 10)
    assert leader() == follower

    # kill -9 the new leader: the first node takes the lease back within LEADER_LEASE
    # (3 s) plus a heartbeat, and fires resume from the last recorded fire time.
    procs[follower].kill9()
    wait_until(lambda: leader() == first, 3 + 2, message="no failover within the lease")
    before = JobRun.objects.filter(job=tick).count()
    wait_until(lambda: JobRun.objects.filter(job=tick).count() >= before + 3, 10)
    wait_until(lambda: Node.objects.get(name=follower).state == "dead", 10)
    procs[first].stop()
    runs = list(JobRun.objects.filter(job=tick, attempt=1).order_by("scheduled_for"))
    times = [r.scheduled_for for r in runs]
    assert len(times) == len(set(times)), "a fire time was enqueued twice"
    gaps = {(y - x).total_seconds() for x, y in zip(times, times[1:], strict=False)}
    assert gaps == {1.0}, f"fire times lost around the failover: {gaps}"
    done = JobRun.objects.filter(job=tick, state="succeeded")
    # every success executed once (a run the dead node held is lost, then retried)
    assert len(lines(out)) >= done.count()
    assert Counter(r.state for r in JobRun.objects.filter(job=tick)).get("running", 0) == 0


def test_routing_tags_and_broadcast(acme, scheduler, tmp_path):
    gpu_out, bc_out = tmp_path / "gpu.txt", tmp_path / "bc.txt"
    gpu = job(
        acme,
        "gpu",
        task="tests.append",
        kwargs={"path": str(gpu_out)},
        routing="tags",
        routing_tags=["gpu"],
        max_instances=10,
    )
    tpu = job(acme, "tpu", routing="tags", routing_tags=["tpu"])
    bc = job(
        acme,
        "everywhere",
        task="tests.append",
        kwargs={"path": str(bc_out)},
        routing="broadcast",
        trigger={"type": "interval", "seconds": 1},
    )
    a = scheduler("node-a")
    b = scheduler("node-b", extra_args=["--tags", "gpu"])
    now = timezone.now()
    for i in range(6):
        JobRun.objects.create(
            job=gpu, scheduled_for=now + timedelta(microseconds=i), reason="manual", executor="thread"
        )
    JobRun.objects.create(job=tpu, scheduled_for=now, reason="manual", executor="thread")
    try:
        wait_until(lambda: JobRun.objects.filter(job=gpu, state="succeeded").count() == 6, 15)
    except AssertionError:
        print(list(JobRun.objects.filter(job=gpu).values_list("state", "node", "error")))
        print(a.output[-3000:], b.output[-3000:])
        raise
    assert set(JobRun.objects.filter(job=gpu).values_list("node", flat=True)) == {"node-b"}
    assert len(lines(gpu_out)) == 6
    # no node has tpu: its run waits, queued
    assert list(JobRun.objects.filter(job=tpu).values_list("state", flat=True)) == ["queued"]

    # broadcast: one run per live node per fire time, each on its own node (a node
    # that joined later got no copies of earlier fires)
    def per_time() -> Counter:
        seen: Counter = Counter()
        for when, target, node in JobRun.objects.filter(job=bc, state="succeeded").values_list(
            "scheduled_for", "target_node", "node"
        ):
            assert target == node
            seen[when] += 1
        return seen

    wait_until(lambda: sum(1 for n in per_time().values() if n == 2) >= 3, 20)
    assert max(per_time().values()) == 2
    assert len(lines(bc_out)) == JobRun.objects.filter(job=bc, state="succeeded").count()


def test_a_fire_the_killed_leader_never_wrote_for_a_new_job_is_fired_by_the_next_one(
    acme, scheduler, tmp_path
):
    """A job created just before the leader is killed -9, before its first fire: nothing
    is recorded for it, so the node taking over resumes it from its creation (within the
    misfire grace) instead of from now, and its first fire time runs once."""
    from datetime import UTC, datetime

    from scheduler_app.engine import triggerspec

    a = scheduler("node-a")
    wait_until(lambda: leader() == "node-a", 10, message="no leader")
    b = scheduler("node-b")
    out = tmp_path / "ticks.txt"
    tick = job(
        acme,
        "every-2s",
        task="tests.append",
        kwargs={"path": str(out)},
        trigger={"type": "interval", "seconds": 2},
        misfire_policy="run_all",
        misfire_grace_seconds=60,
        overlap_policy="queue",
        max_instances=5,
    )
    tick.refresh_from_db()
    trigger = triggerspec.build_trigger(tick.trigger_spec, hash_key=tick.hash_key, anchor=tick.created_at)
    first = trigger.get_next_fire_time(None, tick.created_at + timedelta(microseconds=1))
    time.sleep(0.5)  # node-a has seen the job (its sync runs every 0.25 s)
    a.kill9()
    # Its last renewal was at most a heartbeat (0.5 s) ago, so the lease (3 s) lasts
    # past the first fire time: node-b cannot lead before it.
    assert datetime.now(UTC) < first - timedelta(seconds=1), "killed too late to test anything"
    wait_until(lambda: leader() == "node-b", 10, message="no failover")
    assert datetime.now(UTC) > first, "node-b led before the first fire time"
    wait_until(lambda: JobRun.objects.filter(job=tick, state="succeeded").count() >= 3, 20)
    assert b.stop() == 0
    runs = list(JobRun.objects.filter(job=tick, attempt=1).order_by("scheduled_for"))
    times = [r.scheduled_for for r in runs]
    assert times[0] == first, f"the first fire time {first} was lost: runs start at {times[0]}"
    assert len(times) == len(set(times))
    assert {(y - x).total_seconds() for x, y in zip(times, times[1:], strict=False)} == {2.0}
    assert runs[0].state == "succeeded"
    # each executed once (a run fired while node-b stopped may stay queued)
    assert len(lines(out)) == JobRun.objects.filter(job=tick, state="succeeded").count()
