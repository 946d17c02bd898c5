"""What ``DjangoRunStore.record`` reads of the runs it ends: one statement for the runs
(locked) with what it needs of their jobs, tenants and groups, no full models per run;
and yet a signal receiver sees the run and its job whole (a column not read is read
when it is asked for)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler_app import signals
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.models import Job, JobGroup, JobRun, RunCounter, RunState

pytestmark = pytest.mark.django_db


def running(job, *, seconds_ago=5, node="n1", token="inc:1"):
    when = timezone.now() - timedelta(seconds=seconds_ago)
    return JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=when,
        not_before=when,
        executor="thread",
        state=RunState.RUNNING,
        node=node,
        claim_token=token,
        claimed_at=when,
        started_at=when,
        heartbeat_at=when,
        kwargs_override={"n": 1},
        upstream_runs=[7, 8],
    )


def finished(run, state=RunState.SUCCEEDED, **fields):
    now = timezone.now()
    return Outcome(
        run_id=run.pk,
        state=state,
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        claim_token=run.claim_token,
        **fields,
    )


def test_a_batch_is_read_in_one_statement_with_the_jobs_labels(tenant, make_job):
    group = JobGroup.objects.create(tenant=tenant, name="etl")
    jobs = [make_job(f"read-{i}", group=group if i % 2 else None) for i in range(6)]
    runs = [running(job) for job in jobs]
    with CaptureQueriesContext(connection) as ctx:
        DjangoRunStore().record([finished(run) for run in runs])
    selects = [q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    run_reads = [sql for sql in selects if '"scheduler_app_jobrun"' in sql.split(" WHERE ")[0]]
    assert len(run_reads) == 1, selects
    if connection.vendor == "postgresql":
        assert run_reads[0].rstrip().endswith("FOR UPDATE OF r")
    # Without a receiver of the signals, the columns nothing reads are not read.
    assert '"queued_at"' not in run_reads[0] and '"heartbeat_at"' not in run_reads[0]
    # No other read of jobs, tenants or groups (the metrics' labels came with the runs).
    assert not [sql for sql in selects if re.search(r'FROM "scheduler_app_(job|tenant|jobgroup)"', sql)], (
        selects
    )
    counted = {(c.tenant, c.group, c.task, c.state): c.count for c in RunCounter.objects.all()}
    assert counted == {
        (tenant.slug, "", "demo.noop", "succeeded"): 3,
        (tenant.slug, "etl", "demo.noop", "succeeded"): 3,
    }
    assert set(JobRun.objects.values_list("state", flat=True)) == {RunState.SUCCEEDED}


@pytest.mark.parametrize("state", [RunState.SUCCEEDED, RunState.FAILED])
def test_a_signal_receiver_sees_the_run_and_its_job_whole(tenant, make_job, state):
    group = JobGroup.objects.create(tenant=tenant, name="etl")
    job = make_job(
        "whole",
        group=group,
        description="every column",
        retry_max_attempts=1,
        pause_after_failures=3,
        trigger={"type": "interval", "seconds": 90},
    )
    run = running(job)
    seen = {}

    def receiver(sender, run, **kwargs):
        seen["deferred"] = run.get_deferred_fields()  # every column read with the run
        seen["run"] = {f.attname: getattr(run, f.attname) for f in JobRun._meta.concrete_fields}
        seen["job"] = {f.attname: getattr(run.job, f.attname) for f in Job._meta.concrete_fields}
        seen["tenant"] = (run.job.tenant.pk, run.job.tenant.slug, run.job.tenant.name)
        seen["group"] = (run.job.group.pk, run.job.group.name, run.job.group.description)

    signal = signals.run_succeeded if state == RunState.SUCCEEDED else signals.run_failed
    signal.connect(receiver, sender=JobRun, weak=False)
    try:
        DjangoRunStore().record([finished(run, state, error="boom", result=None)])
    finally:
        signal.disconnect(receiver, sender=JobRun)
    stored = JobRun.objects.get(pk=run.pk)
    assert seen["deferred"] == set()
    assert seen["run"] == {f.attname: getattr(stored, f.attname) for f in JobRun._meta.concrete_fields}
    assert seen["run"]["state"] == state and seen["run"]["kwargs_override"] == {"n": 1}
    fresh = Job.objects.get(pk=job.pk)
    assert seen["job"] == {f.attname: getattr(fresh, f.attname) for f in Job._meta.concrete_fields}
    assert seen["job"]["description"] == "every column" and seen["job"]["pause_after_failures"] == 3
    assert seen["tenant"] == (tenant.pk, tenant.slug, tenant.name)
    assert seen["group"] == (group.pk, "etl", group.description)


def test_only_running_runs_are_read_and_a_stale_token_is_refused(make_job):
    job = make_job("states", max_instances=3)
    done, current, stale = (
        running(job, seconds_ago=9),
        running(job, seconds_ago=8),
        running(job, seconds_ago=7),
    )
    JobRun.objects.filter(pk=done.pk).update(state=RunState.SUCCEEDED)
    store = DjangoRunStore()
    store.record(
        [
            finished(done, RunState.FAILED),
            finished(current, RunState.FAILED, error="x"),
            Outcome(stale.pk, RunState.FAILED, timezone.now(), timezone.now(), claim_token="old:1"),
        ]
    )
    states = dict(JobRun.objects.filter(attempt=1).values_list("pk", "state"))
    assert states == {done.pk: RunState.SUCCEEDED, current.pk: RunState.FAILED, stale.pk: RunState.RUNNING}


# -- the plain-row readers give what Django's own would -------------------------------------


def _as_django_reads(model, names, values):
    from scheduler_app.backends.runstore import _instance

    fast, django = _instance(model, "default", names, values), model.from_db("default", set(names), values)
    public = lambda obj: {k: v for k, v in vars(obj).items() if k != "_state"}  # noqa: E731
    assert public(fast) == public(django)
    assert (
        (fast._state.adding, fast._state.db) == (django._state.adding, django._state.db) == (False, "default")
    )
    assert fast.get_deferred_fields() == django.get_deferred_fields()
    return fast


def test_an_instance_made_from_a_row_is_the_one_django_makes(make_job):
    from scheduler_app.backends.runstore import RECORD_JOB_FIELDS

    job = make_job("row", description="deferred", trigger={"type": "interval", "seconds": 30})
    names = [f.attname for f in Job._meta.concrete_fields if f.attname in RECORD_JOB_FIELDS]
    values = [getattr(job, name) for name in names]
    light = _as_django_reads(Job, names, values)
    assert light.description == "deferred"  # a deferred column, read when asked for
    full = [f.attname for f in Job._meta.concrete_fields]
    whole = _as_django_reads(Job, full, [getattr(job, name) for name in full])
    assert whole._loaded_trigger == {"type": "interval", "seconds": 30}  # as Job.from_db keeps it
    run = running(job)
    run_names = [f.attname for f in JobRun._meta.concrete_fields]
    _as_django_reads(JobRun, run_names, [getattr(run, name) for name in run_names])


def test_a_receiver_of_post_init_gets_its_signal(make_job):
    from django.db.models.signals import post_init

    from scheduler_app.backends.runstore import _instance

    job = make_job("signalled")
    made = []

    def receiver(sender, instance, **kwargs):
        made.append(instance)

    post_init.connect(receiver, sender=Job, weak=False)
    try:
        obj = _instance(Job, "default", ["id", "tenant_id", "name"], [job.pk, job.tenant_id, job.name])
    finally:
        post_init.disconnect(receiver, sender=Job)
    assert made == [obj] and made[0] is obj


@pytest.mark.parametrize(
    "text",
    ["[]", "{}", "null", None, '{"a": [1, {"b": null}]}', "[1, 2]", '"text"', "3", "true", " [] ", "{ }"],
)
def test_json_columns_convert_as_django_converts_them(text):
    from scheduler_app.backends.runstore import _convert, _converters

    fields = [JobRun._meta.get_field("upstream_runs"), Job._meta.get_field("kwargs")]
    col = [f.get_col(f.model._meta.db_table) for f in fields]
    django = [
        _convert([(c, connection.ops.get_db_converters(c) + c.get_db_converters(connection))], [text])[0]
        for c in col
    ]
    fast = [_convert(_converters([f]), [text])[0] for f in fields]
    assert fast == django
    assert [type(v) for v in fast] == [type(v) for v in django]
    if isinstance(fast[0], list | dict):  # never one shared object between rows
        again = _convert(_converters([fields[0]]), [text])[0]
        assert again == fast[0] and again is not fast[0]


# -- what a signal receiver gets is the job as it was when recorded (review of burst2) ---


def test_a_receiver_that_saves_the_runs_job_keeps_its_schedule_anchor(make_job):
    """Pausing ``run.job`` from a receiver is not a trigger change: ``trigger_changed_at``
    anchors next fire times and catch-up, and moving it drops missed fires."""
    from scheduler_app import services

    job = make_job("anchor", retry_max_attempts=1)
    before = Job.objects.get(pk=job.pk).trigger_changed_at
    run = running(job)

    def receiver(sender, run, **kwargs):
        services.pause_jobs([run.job])

    signals.run_failed.connect(receiver, sender=JobRun, weak=False)
    try:
        DjangoRunStore().record([finished(run, RunState.FAILED, error="x")])
    finally:
        signals.run_failed.disconnect(receiver, sender=JobRun)
    after = Job.objects.get(pk=job.pk)
    assert after.paused
    assert after.trigger_changed_at == before


def test_a_job_read_with_deferred_columns_saves_without_moving_its_anchor(make_job):
    job = make_job("deferred", retry_max_attempts=1)
    before = Job.objects.get(pk=job.pk).trigger_changed_at
    partial = Job.objects.only("id", "name").get(pk=job.pk)
    partial.description = "changed"
    partial.save()
    assert Job.objects.get(pk=job.pk).trigger_changed_at == before
    moved = Job.objects.only("id", "name").get(pk=job.pk)
    moved.trigger = {"type": "interval", "seconds": 120}
    moved.save()
    assert Job.objects.get(pk=job.pk).trigger_changed_at > before


def test_a_receiver_reads_the_job_as_recorded_even_after_another_deleted_it(make_job):
    from scheduler_app import services

    job = make_job("oneshot", description="nightly export")
    run = running(job)
    seen = {}

    def cleanup(sender, run, **kwargs):
        services.delete_jobs([Job.objects.get(pk=run.job_id)])

    def describe(sender, run, **kwargs):
        seen["desc"] = (run.job.name, run.job.description, run.job.trigger)

    signals.run_succeeded.connect(cleanup, sender=JobRun, weak=False)
    signals.run_succeeded.connect(describe, sender=JobRun, weak=False)
    try:
        DjangoRunStore().record([finished(run)])
    finally:
        signals.run_succeeded.disconnect(cleanup, sender=JobRun)
        signals.run_succeeded.disconnect(describe, sender=JobRun)
    assert seen["desc"] == ("oneshot", "nightly export", job.trigger)


def test_a_receiver_reading_every_column_of_the_job_costs_no_query(make_job):
    job = make_job("costly", retry_max_attempts=1)
    run = running(job)
    counted = {}

    def receiver(sender, run, **kwargs):
        with CaptureQueriesContext(connection) as ctx:
            counted["read"] = (
                {f.attname: getattr(run.job, f.attname) for f in Job._meta.concrete_fields},
                run.job.tenant.name,
                run.job.tenant.rate_limit,
                run.job.group,
            )
        counted["n"] = len(ctx.captured_queries)

    signals.run_failed.connect(receiver, sender=JobRun, weak=False)
    try:
        DjangoRunStore().record([finished(run, RunState.FAILED, error="e")])
    finally:
        signals.run_failed.disconnect(receiver, sender=JobRun)
    assert counted["n"] == 0
