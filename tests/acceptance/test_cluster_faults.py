"""Two real nodes under contention and faults: max_instances across nodes (counted from
the task's own start/end times), drain, and a node killed with process runs in flight
(its workers die with it; each run executes exactly once after the crash)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Node, Tenant
from tests.acceptance.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


@pytest.fixture
def acme(transactional_db):
    return Tenant.objects.create(slug="acme", name="Acme")


def queue_runs(job, count, executor="thread"):
    now = timezone.now()
    for i in range(count):
        JobRun.objects.create(
            job=job, scheduled_for=now + timedelta(microseconds=i), reason="manual", executor=executor
        )


def spans(path):
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return sorted((float(start), float(end)) for _, start, end in rows)


def test_contention_drain_and_kill9_with_process_runs(acme, scheduler, tmp_path):
    one = services.save_job(
        Job(
            tenant=acme,
            name="one-at-a-time",
            task="tests.append",
            kwargs={"path": str(tmp_path / "one.txt"), "sleep": 0.05},
            trigger={"type": "manual"},
            max_instances=1,
            overlap_policy="queue",
        )
    )
    a = scheduler("node-a")
    b = scheduler("node-b")
    # max_instances=1 across two nodes claiming the same job's 30 queued runs at once
    queue_runs(one, 30)
    wait_until(lambda: JobRun.objects.filter(job=one, state="succeeded").count() == 30, 60)
    done = spans(tmp_path / "one.txt")
    assert len(done) == 30
    overlaps = sum(1 for (_, end), (start, _) in zip(done, done[1:], strict=False) if start < end)
    assert overlaps == 0, f"{overlaps} concurrent pairs"
    assert set(JobRun.objects.filter(job=one).values_list("node", flat=True)) <= {"node-a", "node-b"}

    # drain node-b: it claims nothing new, node-a does it all
    services.drain_nodes([Node.objects.get(name="node-b")])
    wait_until(lambda: "claiming paused" in b.output, 10)
    slow = services.save_job(
        Job(
            tenant=acme,
            name="slow",
            task="tests.append",
            executor="process",
            kwargs={"path": str(tmp_path / "slow.txt"), "sleep": 4},
            trigger={"type": "manual"},
            max_instances=10,
            retry_max_attempts=2,
            retry_backoff_seconds=0,
        )
    )
    queue_runs(slow, 3, executor="process")
    wait_until(lambda: JobRun.objects.filter(job=slow, state="running", node="node-a").count() == 3, 30)
    services.resume_nodes([Node.objects.get(name="node-b")])
    # kill -9 node-a with 3 process runs in flight: its workers die with it, node-b
    # declares it dead (NODE_DEAD_AFTER 4 s) and runs the retries, each exactly once.
    a.kill9()
    killed_at = time.time()
    wait_until(lambda: JobRun.objects.filter(job=slow, state="succeeded", attempt=2).count() == 3, 40)
    assert Node.objects.get(name="node-a").state == "dead"
    assert JobRun.objects.filter(job=slow, attempt=1, state="lost").count() == 3
    assert set(JobRun.objects.filter(job=slow, attempt=2).values_list("node", flat=True)) == {"node-b"}
    time.sleep(1)
    finished = spans(tmp_path / "slow.txt")
    # only the retries wrote their line: no orphaned worker of node-a finished its run
    assert len(finished) == 3 and all(start > killed_at for start, _ in finished)
    assert b.stop() == 0
