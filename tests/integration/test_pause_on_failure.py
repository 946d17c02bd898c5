"""Pause on failure: after N consecutive final failures, recorded through the run
store's real ``record``, the job is paused with its reason, audited and versioned."""

import datetime as dt

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.interchange import jobsfile
from scheduler_app.models import Job, JobRun

pytestmark = pytest.mark.django_db


def finish(job, state, *, error="boom"):
    """Queue one scheduled run of ``job``, mark it running and record ``state`` for it
    the way a node does; returns the run's final row."""
    now = timezone.now()
    run = services.enqueue_run(job, scheduled_for=now - dt.timedelta(microseconds=JobRun.objects.count()))
    JobRun.objects.filter(pk=run.pk).update(state="running", started_at=now, node="n1")
    DjangoRunStore().record(
        [
            Outcome(
                run_id=run.pk,
                state=state,
                started_at=now,
                finished_at=now + dt.timedelta(milliseconds=5),
                error_type="" if state == "succeeded" else "RuntimeError",
                error="" if state == "succeeded" else error,
            )
        ]
    )
    return JobRun.objects.get(pk=run.pk)


def reload(job):
    return Job.objects.get(pk=job.pk)


def test_paused_after_n_consecutive_final_failures(make_job):
    job = make_job("nightly", pause_after_failures=3)
    finish(job, "failed")
    finish(job, "failed")
    finish(job, "succeeded")  # breaks the streak
    finish(job, "failed")
    finish(job, "timed_out")
    assert not reload(job).paused
    last = finish(job, "failed", error="ERP refused the login\nline two")
    job = reload(job)
    assert job.paused and job.enabled
    assert job.paused_reason == (
        f"paused after 3 consecutive failures; last: run {last.pk} failed: ERP refused the login"
    )
    entry = LogEntry.objects.get(additional_data__operation="pause_on_failure")
    assert entry.object_pk == str(job.pk)
    assert entry.additional_data["failures"] == 3
    assert len(entry.additional_data["runs"]) == 3 and last.pk in entry.additional_data["runs"]
    assert job.versions.order_by("-number").first().summary == "paused after 3 consecutive failures"
    assert job.versions.order_by("-number").first().snapshot["paused"] is True


def test_failures_followed_by_a_retry_do_not_count(make_job):
    job = make_job("retried", pause_after_failures=1, retry_max_attempts=2)
    run = finish(job, "failed")
    assert not run.is_final
    assert not reload(job).paused
    retry = JobRun.objects.get(job=job, attempt=2)
    now = timezone.now()
    JobRun.objects.filter(pk=retry.pk).update(state="running", started_at=now, node="n1")
    DjangoRunStore().record(
        [Outcome(run_id=retry.pk, state="failed", started_at=now, finished_at=now, error="again")]
    )
    job = reload(job)
    assert job.paused
    assert "paused after 1 consecutive failures" in job.paused_reason


def test_lost_runs_count_and_resume_by_hand_starts_a_new_streak(make_job):
    job = make_job("fragile", pause_after_failures=2)
    finish(job, "lost", error="no heartbeat")
    finish(job, "lost", error="no heartbeat")
    job = reload(job)
    assert job.paused and "run" in job.paused_reason and "lost" in job.paused_reason
    services.resume_jobs([job])
    job = reload(job)
    assert not job.paused and job.paused_reason == ""
    finish(job, "failed")  # one failure after the resume: not yet N
    assert not reload(job).paused
    finish(job, "failed")
    assert reload(job).paused


def test_jobs_without_the_setting_are_never_paused(make_job):
    job = make_job("plain")
    for _ in range(5):
        finish(job, "failed")
    assert not reload(job).paused


def test_jobs_file_field_round_trips_and_bad_values_are_named(tenant):
    doc = {
        "version": 1,
        "jobs": [
            {
                "tenant": "acme",
                "name": "j",
                "task": "demo.noop",
                "trigger": {"type": "manual"},
                "pause_after_failures": 4,
            }
        ],
    }
    jobsfile.import_document(doc)
    assert Job.objects.get(name="j").pause_after_failures == 4
    exported = jobsfile.export_document(tenant="acme")["jobs"][0]
    assert exported["pause_after_failures"] == 4
    assert not jobsfile.import_document(doc).has_changes
    for bad, message in [
        (0, "pause_after_failures: Ensure this value is greater than or equal to 1."),
        ("many", "pause_after_failures: “many” value must be an integer."),
    ]:
        doc["jobs"][0]["pause_after_failures"] = bad
        with pytest.raises(jobsfile.JobsFileError) as info:
            jobsfile.import_document(doc)
        assert str(info.value) == f"jobs[0] (acme/j): {message}"
    assert Job.objects.get(name="j").pause_after_failures == 4


def test_admin_shows_why_the_job_is_paused(admin_client, make_job):
    job = make_job("shown", pause_after_failures=1)
    finish(job, "failed", error="disk full")
    page = admin_client.get(f"/admin/scheduler_app/job/{job.pk}/change/").content.decode()
    assert "paused after 1 consecutive failures" in page and "disk full" in page
    listing = admin_client.get("/admin/scheduler_app/job/").content.decode()
    assert "disk full" in listing
