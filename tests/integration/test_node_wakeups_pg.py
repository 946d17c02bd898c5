"""Runs left queued for lack of total room start when their executor frees up (real node loop, PostgreSQL run store; found by review of the claim-linger work)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.executors import ThreadExecutor
from scheduler_app.engine.node import Node, NodeConfig
from scheduler_app.models import JobRun
from tests.integration.sessions import until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL"),
]


def sleep_task(seconds: float) -> str:
    time.sleep(seconds)
    return "ok"


def test_thread_runs_left_for_lack_of_total_room_start_when_thread_workers_free_up(make_job):
    def queue(name, seconds, executor, priority=0):
        job = make_job(name, task="demo.sleep", kwargs={"seconds": seconds}, trigger={"type": "manual"})
        return JobRun.objects.create(
            job=job,
            scheduled_for=timezone.now() - timedelta(seconds=1),
            reason="manual",
            executor=executor,
            priority=priority,
        )

    first = [queue(f"long-{i}", 0.6, "thread") for i in range(3)]
    node = Node(NodeConfig(name="total-node", poll_interval=30.0, max_concurrent=4), DjangoRunStore(), {})
    node.executors = {
        "thread": ThreadExecutor(4, lambda name: sleep_task, node.outcome, 1000),
        "other": ThreadExecutor(1, lambda name: sleep_task, node.outcome, 1000),
    }
    node.prefetch = False  # other live nodes
    node.start()
    node.wake()
    try:
        assert until(lambda: JobRun.objects.filter(state="running").count() == 3, 5)
        queue("other", 5.0, "other", priority=10)  # first in claim order
        later = [queue(f"short-{i}", 0.05, "thread") for i in range(2)]
        node.wake()  # as the enqueuer does after writing runs
        assert until(
            lambda: JobRun.objects.filter(pk__in=[r.pk for r in first], state="succeeded").count() == 3, 5
        )
        until(lambda: JobRun.objects.filter(pk=later[0].pk).exclude(claimed_at=None).exists(), 8)
        freed = max(JobRun.objects.filter(pk__in=[r.pk for r in first]).values_list("finished_at", flat=True))
        claimed = JobRun.objects.get(pk=later[0].pk).claimed_at
        assert claimed is not None, "not claimed in 8 s"
        delay = (claimed - freed).total_seconds()
        assert delay < 1.0, (
            f"queued thread run claimed {delay:.2f} s after 3 of 4 thread workers freed up (poll 30 s)"
        )
    finally:
        node.shutdown(2)
