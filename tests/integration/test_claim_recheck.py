"""What a claim decides on the locked job row, and outcomes the database would refuse
(found by review of the single-statement claim): a job moved into a rate-limited group
or paused while the claim waited for its lock; a re-routed job does not end the claim;
runs routed elsewhere do not crowd out the rest; a NUL in a task's output does not hold
up the node's recorder."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection  # noqa: F401 - read by the skipif conditions
from django.utils import timezone

from scheduler_app.backends.runstore import NUL_REPLACEMENT, DjangoRunStore
from scheduler_app.engine.interfaces import Capacity, Outcome, RunLog
from scheduler_app.models import Job, JobGroup, JobRun, RunReason, RunState
from tests.integration.sessions import while_held

pytestmark = pytest.mark.django_db
ROOM = Capacity(per_executor={"thread": 4}, total=4)
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'")


def queue(job, count, *, now, since=5):
    for i in range(count):
        when = now - timedelta(seconds=since) + timedelta(microseconds=i)
        JobRun.objects.create(
            job=job,
            tenant_id=job.tenant_id,
            scheduled_for=when,
            reason=RunReason.SCHEDULE,
            not_before=when,
            priority=job.priority,
            executor=job.executor,
        )


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_job_moved_into_a_rate_limited_group_while_the_claim_waits_is_limited(make_job, tenant):
    g1 = JobGroup.objects.create(tenant=tenant, name="g1")
    g2 = JobGroup.objects.create(tenant=tenant, name="g2", rate_limit="1/h")
    other = make_job("other", group=g2)
    now = timezone.now()
    JobRun.objects.create(  # g2's one start of the hour is used
        job=other,
        tenant_id=other.tenant_id,
        scheduled_for=now - timedelta(minutes=1),
        reason=RunReason.SCHEDULE,
        not_before=now - timedelta(minutes=1),
        executor="thread",
        state=RunState.SUCCEEDED,
        started_at=now - timedelta(minutes=1),
    )
    job = make_job("a", group=g1)
    queue(job, 1, now=now)
    result = while_held(
        lambda: Job.objects.filter(pk=job.pk).update(group=g2),
        lambda: DjangoRunStore().claim("n2", ROOM, now),
    )
    assert result.runs == (), "g2's 1/h limit, used already, was bypassed"
    assert JobRun.objects.get(job=job).state == RunState.QUEUED


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_job_paused_while_the_claim_waits_does_not_start(make_job):
    job = make_job("a")
    now = timezone.now()
    queue(job, 1, now=now)
    result = while_held(
        lambda: Job.objects.filter(pk=job.pk).update(paused=True),
        lambda: DjangoRunStore().claim("n2", ROOM, now),
    )
    assert result.runs == ()
    assert JobRun.objects.get(job=job).state == RunState.QUEUED  # runs when resumed


def test_a_paused_jobs_manual_run_still_starts(make_job):
    job = make_job("a", paused=True)
    now = timezone.now()
    when = now - timedelta(seconds=1)
    JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=when,
        reason=RunReason.MANUAL,
        not_before=when,
        executor=job.executor,
    )
    assert [r.job_id for r in DjangoRunStore().claim("n1", ROOM, now).runs] == [job.pk]


def test_a_run_rerouted_after_the_filter_cache_does_not_end_the_claim(make_job):
    a = make_job("a", priority=9)
    b = make_job("b", priority=0)
    now = timezone.now()
    store = DjangoRunStore()
    store.claim("n1", ROOM, now)  # warms the job filters' cache
    Job.objects.filter(pk=a.pk).update(routing="tags", routing_tags=["gpu"])  # beside the services
    queue(a, 1, now=now)
    queue(b, 1, now=now)
    assert [r.job_id for r in store.claim("n1", ROOM, now).runs] == [b.pk]


def test_runs_routed_to_tags_this_node_lacks_do_not_crowd_out_the_rest(make_job):
    gpu = make_job("gpu", routing="tags", routing_tags=["gpu"], priority=9)
    plain = make_job("plain", priority=0)
    now = timezone.now()
    queue(gpu, 20, now=now)
    queue(plain, 1, now=now)
    result = DjangoRunStore().claim("n1", Capacity(per_executor={"thread": 1}, total=1), now)
    assert [r.job_id for r in result.runs] == [plain.pk]


def test_a_nul_in_a_tasks_output_is_recorded_and_does_not_hold_up_the_next_outcome(make_job):
    now = timezone.now()
    queue(make_job("a"), 1, now=now)
    queue(make_job("b"), 1, now=now)
    store = DjangoRunStore()
    first, second = store.claim("n1", ROOM, now).runs
    outcome = Outcome(
        run_id=first.run_id,
        state=RunState.FAILED,
        started_at=now,
        finished_at=now,
        claim_token=first.claim_token,
        error="bad\x00byte",
        error_type="Err\x00or",
        traceback="Traceback\x00",
        result={"k\x00": ["v\x00", 1, None]},
        log=RunLog(text="line\x00\n", lines_total=1, lines_dropped=0),
    )
    ok = Outcome(
        run_id=second.run_id,
        state=RunState.SUCCEEDED,
        started_at=now,
        finished_at=now,
        claim_token=second.claim_token,
    )
    store.record([outcome, ok])
    run = JobRun.objects.get(pk=first.run_id)
    assert run.state == RunState.FAILED
    assert run.error.startswith(f"bad{NUL_REPLACEMENT}byte") and run.error_type == f"Err{NUL_REPLACEMENT}or"
    assert run.traceback == f"Traceback{NUL_REPLACEMENT}"
    assert run.result == {f"k{NUL_REPLACEMENT}": [f"v{NUL_REPLACEMENT}", 1, None]}
    assert run.captured_log.text == f"line{NUL_REPLACEMENT}\n"
    assert JobRun.objects.get(pk=second.run_id).state == RunState.SUCCEEDED
