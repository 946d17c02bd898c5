"""A new trigger side (leading again) resumes every job after its last fire time: the one
recorded in the database, or one taken by this node and not yet written (the database
was away), and also when the job store holds a later next-run time (a persistent store
that moved past fires the fire gate refused while the node was not leading)."""

from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from scheduler_app.backends import bridge
from scheduler_app.models import JobRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def aps():
    scheduler = BackgroundScheduler(
        timezone=UTC,
        jobstores={bridge.STORE_ALIAS: bridge.make_job_store("memory")},
        executors={bridge.EXECUTOR_ALIAS: bridge.EnqueueExecutor(lambda fire: None)},
    )
    scheduler.start(paused=True)
    yield scheduler
    scheduler.shutdown(wait=False)


def stored(scheduler, job):
    return scheduler.get_job(bridge.aps_job_id(job.pk), jobstore=bridge.STORE_ALIAS)


def a_fire_time(scheduler, job, hours_ago=2):
    """A fire time of the job's trigger some hours back."""
    trigger = stored(scheduler, job).trigger
    since = datetime.now(UTC) - timedelta(hours=hours_ago)
    return trigger.get_next_fire_time(None, since)


def record_fire(job, at):
    JobRun.objects.create(
        job=job, tenant=job.tenant, scheduled_for=at, not_before=at, state="succeeded", reason="schedule"
    )


def test_leading_again_rewinds_a_stored_next_run_time_past_the_recorded_fires(make_job, aps):
    job = make_job("every-minute")
    bridge.JobSync(aps).reconcile()
    last = a_fire_time(aps, job)
    record_fire(job, last)
    later = datetime.now(UTC) + timedelta(minutes=30)
    aps.modify_job(bridge.aps_job_id(job.pk), jobstore=bridge.STORE_ALIAS, next_run_time=later)

    routine = bridge.JobSync(aps)  # the periodic reconcile: the store's time stands
    assert routine.reconcile()["rewound"] == 0
    assert stored(aps, job).next_run_time == later

    leading = bridge.JobSync(aps)  # a new trigger side over the same (persistent) store
    counts = leading.reconcile(resume=True)
    assert counts["rewound"] == 1 and counts["added"] == counts["updated"] == 0
    assert stored(aps, job).next_run_time == last + timedelta(minutes=1)
    assert leading.reconcile(resume=True)["rewound"] == 0  # nothing to move twice


def test_a_stored_time_before_the_recorded_fires_is_kept(make_job, aps):
    job = make_job("every-minute")
    bridge.JobSync(aps).reconcile()
    earlier = a_fire_time(aps, job, hours_ago=3)
    record_fire(job, a_fire_time(aps, job, hours_ago=2))
    aps.modify_job(bridge.aps_job_id(job.pk), jobstore=bridge.STORE_ALIAS, next_run_time=earlier)
    assert bridge.JobSync(aps).reconcile(resume=True)["rewound"] == 0
    assert stored(aps, job).next_run_time == earlier


def test_fires_taken_but_not_written_count_as_the_last_fire(make_job, aps):
    """The database was away: the node holds fires it took before stepping down. The new
    trigger side resumes after them, not from now (nothing recorded) nor from an older
    recorded fire."""
    job = make_job("every-minute")
    other = make_job("other")
    bridge.JobSync(aps).reconcile()
    recorded = a_fire_time(aps, job, hours_ago=3)
    record_fire(job, recorded)
    taken = recorded + timedelta(minutes=5)
    for pk in (job.pk, other.pk):
        aps.remove_job(bridge.aps_job_id(pk), jobstore=bridge.STORE_ALIAS)

    sync = bridge.JobSync(aps, unwritten=lambda: {job.pk: taken, 10**9: taken})
    sync.reconcile(resume=True)
    assert stored(aps, job).next_run_time == taken + timedelta(minutes=1)
    assert stored(aps, other).next_run_time > datetime.now(UTC)  # nothing known: from now

    newer = recorded + timedelta(minutes=9)
    record_fire(job, newer)  # written meanwhile and later than the one in hand
    aps.remove_job(bridge.aps_job_id(job.pk), jobstore=bridge.STORE_ALIAS)
    bridge.JobSync(aps, unwritten=lambda: {job.pk: taken}).reconcile(resume=True)
    assert stored(aps, job).next_run_time == newer + timedelta(minutes=1)


def test_fires_the_lease_guard_refused_are_fired_again(make_job, aps):
    """A lone leader back from an outage: its buffered fires were refused by the lease
    guard (the lease had lapsed) before it led again, and nothing recorded them. The new
    trigger side starts at the earliest refused fire time, unless the first fire after the
    last recorded one comes earlier."""
    job = make_job("every-minute")
    fresh = make_job("never-recorded")
    bridge.JobSync(aps).reconcile()
    refused = a_fire_time(aps, fresh, hours_ago=1)
    recorded = a_fire_time(aps, job, hours_ago=3)
    record_fire(job, recorded)
    for pk in (job.pk, fresh.pk):
        aps.remove_job(bridge.aps_job_id(pk), jobstore=bridge.STORE_ALIAS)
    sync = bridge.JobSync(aps, refused={fresh.pk: refused, job.pk: recorded + timedelta(minutes=30)})
    sync.reconcile(resume=True)
    assert stored(aps, fresh).next_run_time == refused
    assert stored(aps, job).next_run_time == recorded + timedelta(minutes=1)  # the recorded one is earlier


def created_ago(job, **ago):
    """The job as if created (and its trigger set) that long ago."""
    from scheduler_app.models import Job

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(**ago)
    Job.objects.filter(pk=job.pk).update(created_at=at, trigger_changed_at=at)
    return at


def test_taking_over_resumes_a_never_recorded_job_from_its_anchor(make_job, aps):
    """The previous leader died before writing a job's first fire: a trigger side that
    takes over (catch_up) resumes it from its creation, not from now; the first leader
    of an installation still starts such a job from now."""
    job = make_job("every-minute", misfire_grace_seconds=3600)
    created = created_ago(job, minutes=10)
    bridge.JobSync(aps, catch_up=True).reconcile(resume=True)
    assert stored(aps, job).next_run_time == created + timedelta(minutes=1)  # the first after creation

    aps.remove_job(bridge.aps_job_id(job.pk), jobstore=bridge.STORE_ALIAS)
    bridge.JobSync(aps).reconcile(resume=True)  # first leader: from now, as before
    assert stored(aps, job).next_run_time > datetime.now(UTC)


def test_the_catch_up_reaches_back_at_most_the_misfire_grace(make_job, aps):
    job = make_job("every-minute", misfire_grace_seconds=90)
    created_ago(job, hours=2)
    bridge.JobSync(aps, catch_up=True).reconcile(resume=True)
    first = stored(aps, job).next_run_time
    now = datetime.now(UTC)
    assert now - timedelta(seconds=90) < first <= now  # a missed time within the grace


def test_the_catch_up_starts_after_the_trigger_changed_and_not_before_a_recorded_fire(make_job, aps):
    from scheduler_app.models import Job

    changed = make_job("changed", misfire_grace_seconds=3600)
    created_ago(changed, hours=1)
    changed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=150)
    Job.objects.filter(pk=changed.pk).update(trigger_changed_at=changed_at)
    record_fire(changed, changed_at - timedelta(minutes=20))  # under the old trigger
    recorded = make_job("recorded", misfire_grace_seconds=3600)
    created_ago(recorded, hours=1)
    bridge.JobSync(aps).reconcile()
    last = a_fire_time(aps, recorded, hours_ago=0.5)
    record_fire(recorded, last)
    for pk in (changed.pk, recorded.pk):
        aps.remove_job(bridge.aps_job_id(pk), jobstore=bridge.STORE_ALIAS)

    bridge.JobSync(aps, catch_up=True).reconcile(resume=True)
    # the interval keeps the phase of its creation: the first fire after the change
    first = stored(aps, changed).next_run_time
    assert changed_at < first <= changed_at + timedelta(minutes=1)
    assert stored(aps, recorded).next_run_time == last + timedelta(minutes=1)  # the record wins


def test_a_persistent_store_past_a_never_recorded_fire_is_rewound_on_takeover(make_job, aps):
    """A shared job store whose next-run time the dead leader had moved past the first
    fire it never wrote: the new leader sets it back."""
    job = make_job("every-minute", misfire_grace_seconds=3600)
    created = created_ago(job, minutes=10)
    bridge.JobSync(aps).reconcile()
    assert stored(aps, job).next_run_time > datetime.now(UTC)  # as the first leader stored it
    counts = bridge.JobSync(aps, catch_up=True).reconcile(resume=True)
    assert counts["rewound"] == 1
    assert stored(aps, job).next_run_time == created + timedelta(minutes=1)
