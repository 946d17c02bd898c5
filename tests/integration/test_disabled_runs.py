"""Queued runs of disabled, deleted and paused jobs (hardening #6): disabling or deleting
a job cancels its queued runs ("job disabled"); the claim never starts a run of a
disabled job, even one disabled between queueing and claiming; a paused job's manual
runs start, its scheduled ones wait."""

import datetime as dt

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Capacity
from scheduler_app.models import Job, JobRun, RunReason, RunState

pytestmark = pytest.mark.django_db

CAPACITY = Capacity(per_executor={"thread": 10, "asyncio": 10, "process": 10}, total=30)


def queue(job, n=3, reason=RunReason.SCHEDULE):
    base = timezone.now() - dt.timedelta(seconds=1)
    return [
        services.enqueue_run(job, scheduled_for=base - dt.timedelta(microseconds=i + 1), reason=reason)
        for i in range(n)
    ]


def claimed_ids():
    result = DjangoRunStore().claim("n1", CAPACITY, timezone.now())
    return {c.run_id for c in result.runs}


@pytest.fixture
def job(make_job):
    return make_job(
        "nightly", trigger={"type": "interval", "seconds": 60}, misfire_grace_seconds=3600, max_instances=10
    )


def test_disable_cancels_queued_runs(job, make_job):
    other = make_job("other")
    runs = queue(job) + queue(job, 1, RunReason.MANUAL)
    kept = queue(other, 1)
    services.disable_jobs([job])
    states = set(JobRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", "error"))
    assert states == {(RunState.CANCELLED, "job disabled")}
    assert JobRun.objects.get(pk=kept[0].pk).state == RunState.QUEUED
    assert claimed_ids() == {kept[0].pk}


def test_disable_through_save_cancels_queued_runs(job):
    runs = queue(job)
    job.enabled = False
    services.save_job(job)
    assert set(JobRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)) == {
        RunState.CANCELLED
    }


def test_claim_never_starts_a_run_of_a_disabled_job(job):
    runs = queue(job)
    # Disabled behind the services' back (another process, old code): the claim skips them.
    Job.objects.filter(pk=job.pk).update(enabled=False)
    assert claimed_ids() == set()
    assert set(JobRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)) == {
        RunState.QUEUED
    }
    Job.objects.filter(pk=job.pk).update(enabled=True)
    assert claimed_ids() == {r.pk for r in runs}


def test_delete_leaves_no_queued_run(job):
    queue(job)
    services.delete_jobs([job])
    assert not JobRun.objects.filter(state=RunState.QUEUED).exists()
    assert claimed_ids() == set()


def test_paused_job_starts_manual_runs_only(job):
    scheduled = queue(job, 2)
    manual = queue(job, 1, RunReason.MANUAL) + queue(job, 1, RunReason.RUN_AT)
    services.pause_jobs([job])
    assert claimed_ids() == {r.pk for r in manual}
    assert set(JobRun.objects.filter(pk__in=[r.pk for r in scheduled]).values_list("state", flat=True)) == {
        RunState.QUEUED
    }
    services.resume_jobs([job])
    assert claimed_ids() == {r.pk for r in scheduled}
