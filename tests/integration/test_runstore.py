"""The run store on the real database (PostgreSQL and SQLite): ``enqueue``, ``claim``,
``record`` and the dependency join, with a case at each boundary.

Written against single-line bugs a mutation run planted (issue 11): every backoff
factor, the exact grace boundary at enqueue and at claim, the claim-time misfire path
of a busy node, a join of a ``success`` and a ``failure`` edge, secrets that occur more
than once or in a result. Times are built around the real clock, because the store
stamps ``queued_at`` and the retries' ``not_before`` with it."""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.backends.service import resolve_task
from scheduler_app.engine.executors import ThreadExecutor
from scheduler_app.engine.interfaces import Capacity, ClaimResult, Fire, Outcome
from scheduler_app.engine.redaction import MASK
from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule, Job, JobRun, RunReason, RunState
from scheduler_app.services.runs import enqueue_run

pytestmark = pytest.mark.django_db

US = timedelta(microseconds=1)
ROOM = Capacity(per_executor={"thread": 8}, total=8)


@pytest.fixture
def store():
    return DjangoRunStore()


def queued(job, scheduled_for, *, queued_at=None, attempt=1, reason=RunReason.SCHEDULE, executor="thread"):
    """A queued run of ``job`` as the store leaves it, ``queued_at`` as given."""
    run = JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=scheduled_for,
        attempt=attempt,
        reason=reason,
        priority=job.priority,
        not_before=scheduled_for,
        executor=executor,
    )
    JobRun.objects.filter(pk=run.pk).update(queued_at=queued_at or scheduled_for)
    return JobRun.objects.get(pk=run.pk)


def running(job, *, attempt=1, scheduled_for=None):
    when = scheduled_for or timezone.now() - timedelta(seconds=5)
    return JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=when,
        attempt=attempt,
        reason=RunReason.SCHEDULE if attempt == 1 else RunReason.RETRY,
        not_before=when,
        executor="thread",
        state=RunState.RUNNING,
        node="n1",
        started_at=when,
    )


def outcome(run, state, **fields):
    now = timezone.now()
    return Outcome(
        run_id=run.pk, state=state, started_at=now - timedelta(seconds=1), finished_at=now, **fields
    )


def states(job):
    return list(
        JobRun.objects.filter(job=job).order_by("scheduled_for", "attempt").values_list("state", flat=True)
    )


# -- (a) retries: the backoff through rules.retry_delay, every factor, the cap ----------


@pytest.mark.parametrize(
    ("factor", "cap", "delays"),
    [
        pytest.param(3, 100, [10, 30, 90, 100, 100], id="factor-3-capped"),
        pytest.param(1.5, 30, [10, 15, 22.5, 30, 30], id="factor-1.5-capped"),
        pytest.param(1, 3600, [10, 10, 10, 10, 10], id="factor-1-constant"),
        pytest.param(2, 15, [10, 15, 15, 15, 15], id="cap-below-second-delay"),
    ],
)
def test_each_retry_waits_the_backoff_times_the_factor_up_to_the_cap(store, make_job, factor, cap, delays):
    job = make_job(
        retry_max_attempts=len(delays) + 1,
        retry_backoff_seconds=10,
        retry_backoff_factor=factor,
        retry_max_backoff_seconds=cap,
    )
    run = running(job)
    for attempt, delay in enumerate(delays, start=1):
        before = timezone.now()
        assert store.record([outcome(run, RunState.FAILED, error="boom")]) == 1
        after = timezone.now()
        retry = JobRun.objects.get(job=job, attempt=attempt + 1)
        assert (retry.reason, retry.state, retry.scheduled_for) == (
            RunReason.RETRY,
            "queued",
            run.scheduled_for,
        )
        assert before + timedelta(seconds=delay) <= retry.not_before <= after + timedelta(seconds=delay), (
            f"attempt {attempt + 1}: waited {(retry.not_before - before).total_seconds()} s, not {delay} s"
        )
        assert JobRun.objects.get(pk=run.pk).is_final is False
        JobRun.objects.filter(pk=retry.pk).update(state=RunState.RUNNING, started_at=after)
        run = JobRun.objects.get(pk=retry.pk)
    # the last attempt fails for good: no further retry, and it says so
    assert store.record([outcome(run, RunState.FAILED, error="boom")]) == 0
    last = JobRun.objects.get(pk=run.pk)
    assert last.is_final is True
    assert last.error == f"boom (final: attempt {len(delays) + 1} of {len(delays) + 1})"
    assert JobRun.objects.filter(job=job).count() == len(delays) + 1


@pytest.mark.parametrize("state", [RunState.TIMED_OUT, RunState.LOST])
def test_timeouts_and_lost_runs_are_retried_like_failures(store, make_job, state):
    job = make_job(retry_max_attempts=2, retry_backoff_seconds=7, retry_backoff_factor=3)
    store.record([outcome(running(job), state)])
    retry = JobRun.objects.get(job=job, attempt=2)
    assert 6 < (retry.not_before - timezone.now()).total_seconds() <= 7


def test_a_success_is_not_retried_and_a_single_attempt_says_no_retries(store, make_job):
    job = make_job(retry_max_attempts=3)
    ok = running(job)
    assert store.record([outcome(ok, RunState.SUCCEEDED, result={"n": 1})]) == 0
    assert JobRun.objects.get(pk=ok.pk).is_final is True and JobRun.objects.filter(job=job).count() == 1
    once = make_job("once", retry_max_attempts=1)
    run = running(once)
    assert store.record([outcome(run, RunState.FAILED, error="boom")]) == 0
    stored = JobRun.objects.get(pk=run.pk)
    assert (stored.error, stored.is_final) == ("boom (final: no retries configured)", True)


def test_an_outcome_is_recorded_once(store, make_job):
    job = make_job(retry_max_attempts=3)
    run = running(job)
    assert store.record([outcome(run, RunState.FAILED, error="first")]) == 1
    assert store.record([outcome(run, RunState.SUCCEEDED)]) == 0
    stored = JobRun.objects.get(pk=run.pk)
    assert (stored.state, stored.error) == ("failed", "first")
    assert JobRun.objects.filter(job=job).count() == 2


def test_a_batch_of_outcomes_writes_each_runs_own_fields_in_one_statement(store, make_job):
    """Mixed outcomes (results of every JSON kind, NULLs beside values, quotes, NaN-free
    floats, failures with tracebacks) each land on their own run; on PostgreSQL in one
    UPDATE for the whole batch."""
    from django.test.utils import CaptureQueriesContext

    from scheduler_app.models import RunCounter

    now = timezone.now()
    jobs = [make_job(f"batch-{i}") for i in range(6)]
    runs = [running(job) for job in jobs]
    given = [
        dict(state=RunState.SUCCEEDED, result={"n": 1, "s": "it's"}, cpu_seconds=0.125),
        dict(state=RunState.SUCCEEDED, result=None, cpu_seconds=None),
        dict(state=RunState.SUCCEEDED, result=[1, "two", None], cpu_seconds=3.0, peak_memory_mb=12.5),
        dict(state=RunState.SUCCEEDED, result="text", cpu_seconds=0.0),
        dict(
            state=RunState.FAILED,
            error_type="ValueError",
            error='bad "input"\nline two',
            traceback="Traceback (most recent call last):\n  ...",
            peak_memory_mb=7.0,
        ),
        dict(state=RunState.TIMED_OUT, error_type="Timeout", error="exceeded its timeout of 1 s"),
    ]
    outcomes = [
        Outcome(
            run_id=run.pk,
            started_at=now - timedelta(seconds=10 + i),
            finished_at=now - timedelta(seconds=i),
            **fields,
        )
        for i, (run, fields) in enumerate(zip(runs, given, strict=True))
    ]
    with CaptureQueriesContext(connection) as ctx:
        store.record(outcomes)
    updates = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('UPDATE "scheduler_app_jobrun"')]
    if connection.vendor == "postgresql":
        assert len(updates) == 1, updates
    # The metrics' labels come from the jobs read with the runs, not from a query per job:
    # at most one more read of the batch's jobs, whole, for the signal receivers (the
    # failure in this batch has one: pause on failure).
    job_reads = [
        q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "scheduler_app_job"."id"')
    ]
    assert len(job_reads) <= 1, job_reads
    for i, (run, fields) in enumerate(zip(runs, given, strict=True)):
        stored = JobRun.objects.get(pk=run.pk)
        assert stored.state == fields["state"]
        assert stored.started_at == now - timedelta(seconds=10 + i)
        assert stored.finished_at == now - timedelta(seconds=i)
        assert stored.result == fields.get("result")
        assert stored.duration == 10.0
        for name in ("cpu_seconds", "peak_memory_mb"):
            assert getattr(stored, name) == fields.get(name), name
        assert stored.error_type == fields.get("error_type", "")
        assert stored.error.startswith(fields.get("error", "")), stored.error
        assert stored.traceback == fields.get("traceback", "")
        assert stored.is_final is True
    counted = {(c.tenant, c.task, c.state): c.count for c in RunCounter.objects.all()}
    slug, task = jobs[0].tenant.slug, jobs[0].task
    assert counted == {(slug, task, "succeeded"): 4, (slug, task, "failed"): 1, (slug, task, "timed_out"): 1}


def test_a_released_run_goes_back_to_the_queue_unchanged(store, make_job):
    job = make_job(retry_max_attempts=3)
    run = running(job)
    JobRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now(), claim_token="i1:1")
    assert store.record([outcome(run, "released", claim_token="i1:1")]) == 1
    stored = JobRun.objects.get(pk=run.pk)
    assert (stored.state, stored.node, stored.started_at, stored.attempt) == ("queued", "", None, 1)
    # nothing of the claim it came back from is left on it
    assert (stored.heartbeat_at, stored.claim_token) == (None, "")
    assert JobRun.objects.filter(job=job).count() == 1


def test_an_interrupted_run_is_not_final_and_triggers_nothing(store, make_job):
    up, down = make_job("up"), make_job("down")
    services.add_dependency(up, down, condition="completion")
    run = running(up)
    assert store.record([outcome(run, RunState.INTERRUPTED)]) == 0
    assert JobRun.objects.get(pk=run.pk).is_final is False
    assert not JobRun.objects.filter(job=down).exists()


# -- (b) the grace boundary at enqueue ---------------------------------------------------


@pytest.mark.parametrize(
    ("late", "runs"),
    [
        pytest.param(timedelta(0), True, id="on-time"),
        pytest.param(timedelta(seconds=30) - US, True, id="grace-minus-1us"),
        pytest.param(timedelta(seconds=30), True, id="exactly-grace"),
        pytest.param(timedelta(seconds=30) + US, False, id="grace-plus-1us"),
        pytest.param(timedelta(seconds=31), False, id="grace-plus-1s"),
    ],
)
def test_enqueue_runs_a_fire_exactly_grace_seconds_late(store, make_job, late, runs):
    job = make_job(misfire_policy="skip", misfire_grace_seconds=30)
    noticed = timezone.now()
    when = noticed - late
    assert store.enqueue([Fire(job.pk, (when,), noticed)]) == (1 if runs else 0)
    run = JobRun.objects.get(job=job)
    assert run.scheduled_for == when
    if runs:
        assert (run.state, run.is_final, run.error) == ("queued", False, "")
    else:
        assert (run.state, run.is_final) == ("skipped", True)
        assert run.error == "missed by more than the 30 s grace period (misfire policy: skip)"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # fire times 31 s, exactly 30 s and 5 s late (grace 30 s)
        ("skip", ["skipped", "queued", "queued"]),
        ("coalesce", ["skipped", "skipped", "queued"]),
        ("run_all", ["queued", "queued", "queued"]),
    ],
)
def test_enqueue_applies_the_policy_to_missed_times_only(store, make_job, policy, expected):
    job = make_job(misfire_policy=policy, misfire_grace_seconds=30)
    noticed = timezone.now()
    times = (noticed - timedelta(seconds=31), noticed - timedelta(seconds=30), noticed - timedelta(seconds=5))
    assert store.enqueue([Fire(job.pk, times, noticed)]) == expected.count("queued")
    assert states(job) == expected
    # the same fire again creates nothing (idempotent on job, time, attempt)
    store.enqueue([Fire(job.pk, times, noticed)])
    assert states(job) == expected


def test_enqueue_caps_run_all_and_records_what_it_dropped(store, make_job, settings):
    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "MISFIRE_RUN_ALL_CAP": 3}
    job = make_job(misfire_policy="run_all", misfire_grace_seconds=10)
    noticed = timezone.now()
    times = tuple(noticed - timedelta(minutes=m) for m in range(6, 0, -1))
    assert store.enqueue([Fire(job.pk, times, noticed)]) == 3
    assert states(job) == ["skipped"] * 3 + ["queued"] * 3
    skipped = JobRun.objects.filter(job=job, state="skipped").first()
    assert "over the cap of 3 missed runs" in skipped.error


def test_enqueued_runs_carry_the_jobs_queue_fields_and_can_be_claimed(store, make_job):
    job = make_job(priority=5, executor="asyncio", misfire_policy="skip", misfire_grace_seconds=30)
    noticed = timezone.now()
    missed, due = noticed - timedelta(minutes=5), noticed - timedelta(seconds=1)
    before = timezone.now()
    assert store.enqueue([Fire(job.pk, (missed, due), noticed)]) == 1
    run = JobRun.objects.get(job=job, state="queued")
    assert (run.attempt, run.reason, run.priority, run.executor, run.not_before, run.tenant_id) == (
        1,
        RunReason.SCHEDULE,
        5,
        "asyncio",
        due,
        job.tenant_id,
    )
    assert (run.finished_at, run.is_final) == (None, False)
    skipped = JobRun.objects.get(job=job, state="skipped")
    assert skipped.attempt == 1 and skipped.is_final is True
    assert before <= skipped.finished_at <= timezone.now()
    room = Capacity(per_executor={"asyncio": 1}, total=1)
    assert [r.run_id for r in store.claim("n1", room, noticed).runs] == [run.pk]


def test_a_written_fire_has_every_column_a_model_save_would_give_it(store, make_job):
    """enqueue writes its rows by hand on PostgreSQL (arrays of values, one statement):
    each column must hold what saving the model would have stored, defaults included."""
    job = make_job(priority=3, executor="asyncio", misfire_policy="skip", misfire_grace_seconds=30)
    noticed = timezone.now()
    missed, due = noticed - timedelta(minutes=5), noticed - timedelta(seconds=1)
    assert store.enqueue([Fire(job.pk, (missed, due), noticed)]) == 1
    written = {r.state: r for r in JobRun.objects.filter(job=job)}
    for state, when in (("queued", due), ("skipped", missed)):
        run = written[state]
        made = JobRun.objects.create(
            job=job,
            tenant_id=job.tenant_id,
            scheduled_for=when - timedelta(days=1),
            priority=3,
            executor="asyncio",
            state=state,
            error=run.error,
            finished_at=run.finished_at,
            is_final=run.is_final,
        )
        fields = [f.attname for f in JobRun._meta.concrete_fields if f.attname not in ("id", "queued_at")]
        got = {f: getattr(run, f) for f in fields}
        want = {f: getattr(JobRun.objects.get(pk=made.pk), f) for f in fields}
        want["scheduled_for"] = want["not_before"] = when
        assert got == want
        assert noticed <= run.queued_at <= timezone.now()
    assert "misfire policy: skip" in written["skipped"].error


def test_enqueue_writes_a_large_batch_in_several_statements_and_never_twice(store, make_job, monkeypatch):
    from scheduler_app.backends import runstore

    monkeypatch.setattr(runstore, "FIRE_STATEMENT_ROWS", 3)
    jobs = [make_job(f"j{i}", misfire_grace_seconds=3600) for i in range(4)]
    base = timezone.now().replace(microsecond=0) - timedelta(seconds=10)
    fires = [Fire(j.pk, (base, base + timedelta(seconds=1)), timezone.now()) for j in jobs]
    assert store.enqueue(fires) == 8
    assert JobRun.objects.filter(state="queued").count() == 8
    assert store.enqueue(fires[1:3]) == 4  # fired again: counted, not written again
    assert JobRun.objects.count() == 8
    assert sorted(JobRun.objects.values_list("job_id", "scheduled_for")) == sorted(
        (j.pk, base + timedelta(seconds=s)) for j in jobs for s in (0, 1)
    )


def test_the_fire_path_refreshes_the_planner_statistics_once_it_wrote_many_runs(store, make_job, monkeypatch):
    """The claim's plan depends on the run table's statistics: the fires' writer
    refreshes them once it wrote many runs since the last refresh (not at every batch)."""
    if connection.vendor != "postgresql":
        pytest.skip("planner statistics: PostgreSQL")
    from scheduler_app.backends import runstore

    monkeypatch.setattr(runstore, "FIRE_ANALYZE_MIN_ROWS", 30)
    monkeypatch.setattr(runstore, "FIRE_ANALYZE_INTERVAL", 0.0)

    def rows_known():
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'scheduler_app_jobrun'::regclass")
            return cursor.fetchone()[0]

    store.refresh_statistics()
    assert rows_known() in (0, -1)
    jobs = [make_job(f"j{i}", misfire_grace_seconds=3600) for i in range(4)]
    base = timezone.now().replace(microsecond=0) - timedelta(seconds=60)

    def write(first, count):
        times = tuple(base + timedelta(seconds=s) for s in range(first, first + count))
        return store.enqueue([Fire(j.pk, times, timezone.now()) for j in jobs])

    assert write(0, 5) == 20  # 20 runs written: below the 30
    assert rows_known() in (0, -1)
    assert write(5, 5) == 20  # 40 since the refresh
    assert rows_known() == 40
    assert write(10, 5) == 20  # 20 since: below max(30, 10% of 40)
    assert rows_known() == 40


@pytest.mark.django_db(transaction=True)
def test_a_vacuum_holding_the_run_table_never_holds_up_the_fires(store, make_job, monkeypatch, caplog):
    """The statistics refresh waits at most FIRE_ANALYZE_LOCK_WAIT_MS for the lock a
    VACUUM (or another ANALYZE) holds, then gives up: the fires are written regardless,
    and the refresh is tried again later."""
    import threading

    if connection.vendor != "postgresql":
        pytest.skip("locks between sessions: PostgreSQL")
    from django.db import connections, transaction

    from scheduler_app.backends import runstore

    monkeypatch.setattr(runstore, "FIRE_ANALYZE_MIN_ROWS", 10)
    monkeypatch.setattr(runstore, "FIRE_ANALYZE_INTERVAL", 0.0)
    jobs = [make_job(f"j{i}", misfire_grace_seconds=3600) for i in range(4)]
    base = timezone.now().replace(microsecond=0) - timedelta(seconds=60)
    locked, release = threading.Event(), threading.Event()

    def vacuum_like():  # what VACUUM takes: SHARE UPDATE EXCLUSIVE, in another session
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE scheduler_app_jobrun IN SHARE UPDATE EXCLUSIVE MODE")
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=vacuum_like, daemon=True)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        times = tuple(base + timedelta(seconds=s) for s in range(5))
        assert store.enqueue([Fire(j.pk, times, timezone.now()) for j in jobs]) == 20
        assert time.monotonic() - started < 5  # the wait is 0.2 s, not until the vacuum ends
        assert JobRun.objects.count() == 20
        assert "could not refresh the run table's statistics" in caplog.text
    finally:
        release.set()
        holder.join(10)
    times = tuple(base + timedelta(seconds=s) for s in range(5, 6))
    assert store.enqueue([Fire(j.pk, times, timezone.now()) for j in jobs]) == 4
    with connection.cursor() as cursor:  # tried again (24 written since), now it went through
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'scheduler_app_jobrun'::regclass")
        assert cursor.fetchone()[0] == 24


@pytest.mark.parametrize("change", [{"enabled": False}, {"paused": True}])
def test_enqueue_ignores_jobs_that_cannot_be_scheduled(store, make_job, change):
    job = make_job(**change)
    assert store.enqueue([Fire(job.pk, (timezone.now(),), timezone.now())]) == 0
    assert not JobRun.objects.filter(job=job).exists()


# -- (b, c) the grace boundary and the misfire policy at claim time ---------------------


@pytest.mark.parametrize(
    ("late", "starts"),
    [
        pytest.param(timedelta(seconds=30), True, id="exactly-grace"),
        pytest.param(timedelta(seconds=30) + US, False, id="grace-plus-1us"),
        pytest.param(timedelta(seconds=31), False, id="grace-plus-1s"),
    ],
)
def test_claim_starts_a_run_exactly_grace_seconds_late(store, make_job, late, starts):
    job = make_job(misfire_policy="skip", misfire_grace_seconds=30)
    t0 = timezone.now() - timedelta(minutes=5)
    run = queued(job, t0)
    result = store.claim("n1", ROOM, t0 + late)
    stored = JobRun.objects.get(pk=run.pk)
    if starts:
        assert [r.run_id for r in result.runs] == [run.pk] and stored.state == "running"
    else:
        assert result.runs == () and (stored.state, stored.is_final) == ("skipped", True)
        assert stored.error == (
            f"could not start within the 30 s grace period ({late.total_seconds():.1f} s late; "
            "misfire policy: skip)"
        )


def test_lateness_counts_from_when_the_run_was_queued(store, make_job):
    """A fire time already judged at enqueue (after downtime) is not judged again."""
    job = make_job(misfire_policy="skip", misfire_grace_seconds=30)
    t0 = timezone.now() - timedelta(minutes=10)
    run = queued(job, t0, queued_at=t0 + timedelta(minutes=5))
    assert [r.run_id for r in store.claim("n1", ROOM, t0 + timedelta(minutes=5, seconds=30)).runs] == [run.pk]
    other = make_job("other", misfire_policy="skip", misfire_grace_seconds=30)
    late = queued(other, t0, queued_at=t0 + timedelta(minutes=5))
    assert store.claim("n1", ROOM, t0 + timedelta(minutes=5, seconds=30) + US).runs == ()
    assert JobRun.objects.get(pk=late.pk).state == "skipped"


def test_a_run_that_waits_past_its_grace_on_a_busy_node_follows_the_policy(store, make_job):
    """One slot, two due runs: the second waits; when the slot frees after the grace
    period, skip drops it, coalesce runs it (nothing newer), run_all runs it."""
    t0 = timezone.now() - timedelta(minutes=10)
    one = Capacity(per_executor={"thread": 1}, total=1)
    for policy, end in (("skip", "skipped"), ("coalesce", "running"), ("run_all", "running")):
        first = make_job(f"first-{policy}", priority=10)
        waiting = make_job(f"waiting-{policy}", misfire_policy=policy, misfire_grace_seconds=60)
        busy, late = queued(first, t0), queued(waiting, t0)
        result = store.claim("n1", one, t0 + timedelta(seconds=1))
        assert [r.run_id for r in result.runs] == [busy.pk] and result.left_queued == 1
        assert JobRun.objects.get(pk=late.pk).state == "queued"
        store.record([outcome(JobRun.objects.get(pk=busy.pk), RunState.SUCCEEDED)])
        result = store.claim("n1", one, t0 + timedelta(seconds=61))
        assert JobRun.objects.get(pk=late.pk).state == end, policy
        assert [r.run_id for r in result.runs] == ([] if end == "skipped" else [late.pk])
        JobRun.objects.filter(pk=late.pk).update(state=RunState.SUCCEEDED)


def test_coalesce_at_claim_keeps_only_the_newest_late_run(store, make_job):
    job = make_job(
        misfire_policy="coalesce", misfire_grace_seconds=60, max_instances=5, overlap_policy="queue"
    )
    t0 = timezone.now() - timedelta(minutes=10)
    runs = [queued(job, t0 + timedelta(minutes=m)) for m in range(3)]
    result = store.claim("n1", ROOM, t0 + timedelta(minutes=5))
    assert [r.run_id for r in result.runs] == [runs[-1].pk]
    assert states(job) == ["skipped", "skipped", "running"]
    assert JobRun.objects.get(pk=runs[0].pk).error == (
        "coalesced into a newer scheduled run (misfire policy: coalesce)"
    )


def test_a_late_run_never_coalesces_into_itself_or_an_older_run(store, make_job):
    job = make_job(
        misfire_policy="coalesce", misfire_grace_seconds=60, max_instances=5, overlap_policy="queue"
    )
    t0 = timezone.now() - timedelta(minutes=10)
    # an older run of the job is queued too, but not due for this node yet
    older = queued(job, t0 - timedelta(minutes=1))
    JobRun.objects.filter(pk=older.pk).update(not_before=t0 + timedelta(hours=1))
    only = queued(job, t0)
    result = store.claim("n1", ROOM, t0 + timedelta(minutes=5))
    assert [r.run_id for r in result.runs] == [only.pk]
    assert JobRun.objects.get(pk=older.pk).state == "queued"


def test_coalesce_at_claim_sees_a_newer_run_outside_the_batch(store, make_job):
    """The newer run is not a claim candidate (its executor has no room here): the
    late one is still coalesced into it."""
    job = make_job(misfire_policy="coalesce", misfire_grace_seconds=60)
    t0 = timezone.now() - timedelta(minutes=10)
    late = queued(job, t0)
    queued(job, t0 + timedelta(minutes=1), executor="process")
    assert store.claim("n1", ROOM, t0 + timedelta(minutes=5)).runs == ()
    assert JobRun.objects.get(pk=late.pk).state == "skipped"


def test_coalesce_at_claim_looks_only_at_waiting_runs_of_the_same_job(store, make_job):
    """Newer runs of other jobs (in the batch and outside it) and a newer run of the
    same job that is no longer waiting do not make a late run coalesce."""
    t0 = timezone.now() - timedelta(minutes=10)
    late_jobs = [make_job(f"late{i}", misfire_policy="coalesce", misfire_grace_seconds=60) for i in range(2)]
    late = [queued(job, t0) for job in late_jobs]
    newer = make_job("newer")
    queued(newer, t0 + timedelta(minutes=1))  # in the batch
    queued(newer, t0 + timedelta(minutes=2), executor="process")  # outside it
    ran = queued(late_jobs[1], t0 + timedelta(minutes=3))
    JobRun.objects.filter(pk=ran.pk).update(state=RunState.SUCCEEDED, not_before=t0 + timedelta(hours=1))
    claimed = {r.run_id for r in store.claim("n1", ROOM, t0 + timedelta(minutes=5)).runs}
    assert {late[0].pk, late[1].pk} <= claimed


def test_coalesce_ignores_newer_runs_that_are_not_scheduled_first_attempts(store, make_job):
    job = make_job(
        misfire_policy="coalesce", misfire_grace_seconds=60, max_instances=5, overlap_policy="queue"
    )
    t0 = timezone.now() - timedelta(minutes=10)
    late = queued(job, t0)
    queued(job, t0 + timedelta(minutes=1), reason=RunReason.MANUAL)
    queued(job, t0 + timedelta(minutes=2), executor="process", reason=RunReason.MANUAL)
    claimed = {r.run_id for r in store.claim("n1", ROOM, t0 + timedelta(minutes=5)).runs}
    assert late.pk in claimed


@pytest.mark.parametrize(
    ("reason", "attempt"),
    [(RunReason.MANUAL, 1), (RunReason.RETRY, 2), (RunReason.DEPENDENCY, 1), (RunReason.SCHEDULE, 2)],
)
def test_only_first_scheduled_attempts_misfire_at_claim(store, make_job, reason, attempt):
    job = make_job(misfire_policy="skip", misfire_grace_seconds=1)
    t0 = timezone.now() - timedelta(hours=1)
    run = queued(job, t0, reason=reason, attempt=attempt)
    assert [r.run_id for r in store.claim("n1", ROOM, t0 + timedelta(minutes=30)).runs] == [run.pk]


# -- shedding the stale backlog at once ------------------------------------------------


def test_the_stale_backlog_is_shed_in_one_pass_as_a_claim_would_judge_each_run(store, make_job):
    """shed_misfired skips every queued scheduled run a claim would skip for lateness,
    with the claim's reason, and nothing a claim would start."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (elsewhere the claim's own check remains)")
    now = timezone.now()
    old, fresh = now - timedelta(seconds=30), now - timedelta(seconds=1)
    skip = make_job("skip", misfire_policy="skip", misfire_grace_seconds=10)
    coalesce = make_job("coalesce", misfire_policy="coalesce", misfire_grace_seconds=10)
    lone = make_job("lone", misfire_policy="coalesce", misfire_grace_seconds=10)
    run_all = make_job("all", misfire_policy="run_all", misfire_grace_seconds=10)
    paused = make_job("paused", misfire_policy="skip", misfire_grace_seconds=10)
    shed = {
        queued(skip, old),
        queued(skip, old + US),
        queued(coalesce, old),
        queued(coalesce, old + US),  # a newer one (the last) is queued
    }
    kept = {
        queued(skip, fresh),  # within its grace
        queued(skip, old + 2 * US, queued_at=fresh),  # queued late: judged from then
        queued(coalesce, old + 2 * US),  # the newest of its job: it runs
        queued(lone, old),  # coalesce with nothing newer
        queued(run_all, old),
        queued(skip, old + 5 * US, reason=RunReason.MANUAL),
        queued(skip, old + 3 * US, attempt=2),
        queued(paused, old),
    }
    held = queued(skip, old + 4 * US)
    JobRun.objects.filter(pk=held.pk).update(wait_reason="rate limit")  # held back on purpose
    Job.objects.filter(pk=paused.pk).update(paused=True)
    assert store.shed_misfired(now) == len(shed)
    states = dict(JobRun.objects.values_list("pk", "state"))
    assert {states[r.pk] for r in shed} == {"skipped"}
    assert {states[r.pk] for r in (*kept, held)} == {"queued"}
    errors = dict(JobRun.objects.filter(state="skipped").values_list("pk", "error"))
    first = min(shed, key=lambda r: (r.job_id, r.scheduled_for))
    assert (
        errors[first.pk] == "could not start within the 10 s grace period (30.0 s late; misfire policy: skip)"
    )
    assert {errors[r.pk] for r in shed if r.job_id == coalesce.pk} == {
        "coalesced into a newer scheduled run (misfire policy: coalesce)"
    }
    assert all(r.is_final and r.finished_at == now for r in JobRun.objects.filter(state="skipped"))
    assert store.shed_misfired(now) == 0  # nothing left to shed


def test_a_claim_records_each_of_its_skipped_runs_with_its_own_reason(store, make_job):
    """Several candidates past their grace in one claim (written in one statement on
    PostgreSQL): each gets its own reason, and the fresh one is started."""
    now = timezone.now()
    a = make_job("a", misfire_policy="skip", misfire_grace_seconds=5)
    b = make_job("b", misfire_policy="skip", misfire_grace_seconds=7)
    c = make_job("c", misfire_policy="skip", misfire_grace_seconds=60)
    late_a, late_b = queued(a, now - timedelta(seconds=20)), queued(b, now - timedelta(seconds=30))
    fresh = queued(c, now - timedelta(seconds=20))
    assert [r.run_id for r in store.claim("n1", ROOM, now).runs] == [fresh.pk]
    got = dict(JobRun.objects.filter(state="skipped").values_list("pk", "error"))
    assert got == {
        late_a.pk: "could not start within the 5 s grace period (20.0 s late; misfire policy: skip)",
        late_b.pk: "could not start within the 7 s grace period (30.0 s late; misfire policy: skip)",
    }
    assert all(r.is_final and r.finished_at == now for r in JobRun.objects.filter(state="skipped"))


def test_shedding_sends_the_skipped_signal_and_counts_the_runs(store, make_job):
    from scheduler_app import signals

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    job = make_job("skip", misfire_policy="skip", misfire_grace_seconds=1)
    now = timezone.now()
    runs = [queued(job, now - timedelta(seconds=s)) for s in (10, 20)]
    seen = []

    def receiver(sender, run, **kwargs):
        seen.append((run.pk, run.state))

    signals.run_skipped.connect(receiver, sender=JobRun)
    try:
        assert store.shed_misfired(now) == 2
    finally:
        signals.run_skipped.disconnect(receiver, sender=JobRun)
    assert sorted(seen) == sorted((r.pk, "skipped") for r in runs)


# -- claim: room, priority, overlap -----------------------------------------------------


def test_a_claim_reads_each_job_once_whatever_the_batch(store, make_job, tenant):
    """The claim loads only some of a job's columns: nothing it (or what it hands the
    executor) uses may be left to a query per run."""
    from django.test.utils import CaptureQueriesContext

    from scheduler_app.models import JobGroup

    group = JobGroup.objects.create(tenant=tenant, name="g", rate_limit="1000/m")
    counts = []
    for n in (1, 5):
        t0 = timezone.now() - timedelta(seconds=1)
        jobs = [
            make_job(
                f"only-{n}-{i}",
                task="demo.echo",
                group=group,
                kwargs={"x": i},
                secret_kwargs={"pw": "s3cret"},
                timeout_seconds=9,
            )
            for i in range(n)
        ]
        for job in jobs:
            queued(job, t0)
        with CaptureQueriesContext(connection) as ctx:
            result = store.claim("n1", Capacity(per_executor={"thread": 10}, total=10), timezone.now())
        assert len(result.runs) == n
        assert {r.kwargs["x"] for r in result.runs} == set(range(n))
        assert {(r.kwargs["pw"], r.timeout) for r in result.runs} == {("s3cret", 9)}
        counts.append(len(ctx.captured_queries))
        JobRun.objects.filter(state=RunState.RUNNING).update(state=RunState.SUCCEEDED)
    assert counts[0] == counts[1], counts


def test_claim_takes_priority_then_due_time_within_the_room(store, make_job):
    t0 = timezone.now() - timedelta(seconds=10)
    low, high = make_job("low", priority=0), make_job("high", priority=5)
    early_low, late_low = queued(low, t0), queued(low, t0 + timedelta(seconds=1))
    JobRun.objects.filter(pk=late_low.pk).update(job=make_job("low2"))
    top = queued(high, t0 + timedelta(seconds=2))
    future = queued(make_job("future"), t0 + timedelta(hours=1))
    two = Capacity(per_executor={"thread": 2}, total=2)
    result = store.claim("n1", two, t0 + timedelta(seconds=3))
    assert [r.run_id for r in result.runs] == [top.pk, early_low.pk]
    assert result.left_queued == 1 and not result.more
    assert JobRun.objects.get(pk=future.pk).state == "queued"
    assert store.claim("n1", Capacity(per_executor={"thread": 0}, total=0), t0).runs == ()


@pytest.mark.parametrize(
    ("policy", "second"),
    [("skip", "skipped"), ("queue", "queued"), ("replace", "running")],
)
def test_max_instances_with_each_overlap_policy(store, make_job, policy, second):
    job = make_job(max_instances=1, overlap_policy=policy, misfire_grace_seconds=3600)
    t0 = timezone.now() - timedelta(seconds=10)
    first = queued(job, t0)
    assert [r.run_id for r in store.claim("n1", ROOM, t0).runs] == [first.pk]
    nxt = queued(job, t0 + timedelta(seconds=1))
    result = store.claim("n1", ROOM, t0 + timedelta(seconds=2))
    assert JobRun.objects.get(pk=nxt.pk).state == second
    assert result.stop == ((first.pk,) if policy == "replace" else ())
    assert JobRun.objects.get(pk=first.pk).stop_requested is (policy == "replace")
    if policy == "skip":
        assert JobRun.objects.get(pk=nxt.pk).error == (
            "1 run(s) of this job already running (max instances 1, overlap policy: skip)"
        )


# -- claim: what it reads, room per executor and overall, the batch, routing -------------
# Written against the survivors of `./dev mutate '...claim*'` (README, "Mutation testing").


@pytest.mark.parametrize(
    "capacity",
    [
        pytest.param(Capacity(per_executor={"thread": 0}, total=0), id="no-room-anywhere"),
        pytest.param(Capacity(per_executor={"thread": 2}, total=0), id="node-wide-cap-reached"),
        pytest.param(Capacity(per_executor={"thread": 0, "process": 0}, total=4), id="every-executor-full"),
        pytest.param(Capacity(per_executor={}, total=4), id="no-executor"),
    ],
)
def test_claim_without_room_reads_nothing_and_reports_nothing(
    store, make_job, capacity, django_assert_num_queries
):
    """Either limit at zero is no room: the claim does not touch the database (a busy
    node polls often) and reports no runs left queued (it saw none)."""
    t0 = timezone.now() - timedelta(seconds=5)
    run = queued(make_job(), t0)
    with django_assert_num_queries(0):
        assert store.claim("n1", capacity, t0 + timedelta(seconds=1)) == ClaimResult()
    assert JobRun.objects.get(pk=run.pk).state == "queued"


def test_runs_of_full_or_absent_executors_do_not_crowd_out_a_run_with_room(store, make_job):
    """More higher-priority runs than one batch holds wait for a full executor
    (``process``) and one this node does not offer (``isolated``): they are not even
    read, so the one ``thread`` run is claimed, and nothing is reported left queued."""
    t0 = timezone.now() - timedelta(seconds=30)
    busy = make_job("busy", priority=9, max_instances=50, overlap_policy="queue", misfire_grace_seconds=3600)
    for i in range(12):
        queued(busy, t0 + i * US, executor="process")
        queued(busy, t0 + i * US, executor="isolated", attempt=2)
    mine = queued(make_job("mine"), t0 + timedelta(seconds=1))
    one = Capacity(per_executor={"thread": 1, "process": 0}, total=1)
    result = store.claim("n1", one, t0 + timedelta(seconds=2))
    assert [r.run_id for r in result.runs] == [mine.pk]
    assert (result.left_queued, result.more) == (0, False)


@pytest.mark.parametrize(
    ("due", "more", "left"),
    [
        pytest.param(8, False, 7, id="batch-not-full"),
        pytest.param(9, True, 8, id="batch-exactly-full"),
        pytest.param(10, True, 8, id="more-than-a-batch"),
    ],
)
def test_more_is_set_exactly_when_the_batch_was_full(store, make_job, due, more, left):
    """A first claim reads at most its room plus 8 runs (9 for one slot); when it read
    that many it says ``more`` (claim again at once), and it counts the runs it read
    but could not start."""
    job = make_job(max_instances=50, overlap_policy="queue", misfire_grace_seconds=3600)
    t0 = timezone.now() - timedelta(seconds=30)
    runs = [queued(job, t0 + i * US) for i in range(due)]
    result = store.claim("n1", Capacity(per_executor={"thread": 1}, total=1), t0 + timedelta(seconds=1))
    assert [r.run_id for r in result.runs] == [runs[0].pk]
    assert (result.more, result.left_queued) == (more, left)


def test_a_claim_reads_further_past_the_runs_the_last_one_passed_over(store, make_job):
    """A claim reads its room plus twice what the last claim passed over (runs it had
    room for but could not start) plus 8, at most twice its room plus 8: a queue headed
    by runs waiting for an overlap slot does not starve the runs behind them."""
    busy = make_job("busy", max_instances=1, overlap_policy="queue", misfire_grace_seconds=3600)
    free = make_job("free", max_instances=50, misfire_grace_seconds=3600)
    t0 = timezone.now() - timedelta(seconds=30)
    running(busy)
    blocked = [queued(busy, t0 + i * US) for i in range(14)]
    behind = queued(free, t0 + timedelta(seconds=1))
    room = Capacity(per_executor={"thread": 4}, total=4)
    first = store.claim("n1", room, t0 + timedelta(seconds=2))
    assert first.runs == () and first.more  # read 4 + 8 = 12, all waiting for the slot
    second = store.claim("n1", room, t0 + timedelta(seconds=2))
    assert [r.run_id for r in second.runs] == [behind.pk]  # read 4 + min(2 * 12 + 8, 12) = 16
    assert second.left_queued == len(blocked)


def test_claim_takes_the_earliest_due_run_whatever_its_id(store, make_job):
    t0 = timezone.now() - timedelta(seconds=30)
    later = queued(make_job("later"), t0 + timedelta(seconds=2))  # created first: the lower id
    earlier = queued(make_job("earlier"), t0)
    one = Capacity(per_executor={"thread": 1}, total=1)
    assert [r.run_id for r in store.claim("n1", one, t0 + timedelta(seconds=3)).runs] == [earlier.pk]
    assert JobRun.objects.get(pk=later.pk).state == "queued"


def test_claim_takes_equal_runs_in_the_order_they_were_queued(store, make_job):
    """Same priority, same due time: the first queued (lowest id) first."""
    t0 = timezone.now() - timedelta(seconds=30)
    first, second = queued(make_job("first"), t0), queued(make_job("second"), t0)
    one = Capacity(per_executor={"thread": 1}, total=1)
    assert [r.run_id for r in store.claim("n1", one, t0 + timedelta(seconds=1)).runs] == [first.pk]
    assert JobRun.objects.get(pk=second.pk).state == "queued"


def test_each_executors_room_and_the_node_wide_room_hold_within_one_claim(store, make_job):
    t0 = timezone.now() - timedelta(seconds=30)
    job = make_job(max_instances=50, overlap_policy="queue", misfire_grace_seconds=3600)
    threads = [queued(job, t0 + i * US) for i in range(3)]
    process = queued(job, t0 + timedelta(seconds=1), executor="process")
    # one thread slot (of six overall): one thread run, and the process run after them
    result = store.claim(
        "n1", Capacity(per_executor={"thread": 1, "process": 5}, total=6), t0 + timedelta(seconds=2)
    )
    assert [r.run_id for r in result.runs] == [threads[0].pk, process.pk] and result.left_queued == 2
    JobRun.objects.filter(job=job).update(state=RunState.QUEUED, node="", started_at=None)
    # plenty per executor, two overall: the first two by due time
    result = store.claim(
        "n1", Capacity(per_executor={"thread": 5, "process": 5}, total=2), t0 + timedelta(seconds=2)
    )
    assert [r.run_id for r in result.runs] == [threads[0].pk, threads[1].pk] and result.left_queued == 2


@pytest.mark.parametrize(
    ("max_instances", "already_running", "due", "started"),
    [
        pytest.param(1, 0, 2, 1, id="max-1-none-running"),
        pytest.param(2, 0, 3, 2, id="max-2-none-running"),
        pytest.param(2, 1, 2, 1, id="max-2-one-running"),
        pytest.param(3, 3, 1, 0, id="max-3-all-running"),
    ],
)
def test_max_instances_counts_the_runs_started_in_the_same_claim(
    store, make_job, max_instances, already_running, due, started
):
    job = make_job(max_instances=max_instances, overlap_policy="queue", misfire_grace_seconds=3600)
    t0 = timezone.now() - timedelta(seconds=30)
    for i in range(already_running):
        running(job, scheduled_for=t0 - timedelta(seconds=i + 1))
    runs = [queued(job, t0 + i * US) for i in range(due)]
    result = store.claim("n1", ROOM, t0 + timedelta(seconds=1))
    assert [r.run_id for r in result.runs] == [r.pk for r in runs[:started]]
    assert result.left_queued == due - started
    assert JobRun.objects.filter(job=job, state=RunState.RUNNING).count() == max(
        already_running, max_instances
    )


def test_runs_held_back_by_their_job_do_not_stop_the_claim_of_later_runs(store, make_job):
    """A job at its max_instances (queue: they stay queued and are counted; skip: they
    are skipped) is passed over; the runs after them are still claimed."""
    t0 = timezone.now() - timedelta(seconds=30)
    waits = make_job("waits", priority=9, overlap_policy="queue", misfire_grace_seconds=3600)
    skips = make_job("skips", priority=8, overlap_policy="skip", misfire_grace_seconds=3600)
    for job in (waits, skips):
        running(job, scheduled_for=t0 - timedelta(seconds=10))
    waiting = [queued(waits, t0 + i * US) for i in range(2)]
    skipped = queued(skips, t0)
    after = queued(make_job("after"), t0 + timedelta(seconds=1))
    result = store.claim("n1", ROOM, t0 + timedelta(seconds=2))
    assert [r.run_id for r in result.runs] == [after.pk] and result.left_queued == 2
    assert [JobRun.objects.get(pk=r.pk).state for r in waiting] == ["queued", "queued"]
    assert JobRun.objects.get(pk=skipped.pk).state == "skipped"


def test_replace_stops_the_jobs_own_earliest_started_running_run(store, make_job):
    """Not a run of another job, not a finished run of its own, not the lowest id."""
    t0 = timezone.now() - timedelta(minutes=10)
    job = make_job(max_instances=2, overlap_policy="replace", misfire_grace_seconds=3600)
    done = running(job, scheduled_for=t0 - timedelta(hours=2))
    JobRun.objects.filter(pk=done.pk).update(state=RunState.SUCCEEDED, finished_at=t0)
    other = running(make_job("other", max_instances=5), scheduled_for=t0 - timedelta(hours=1))
    newer = running(job, scheduled_for=t0 + timedelta(minutes=2))  # the lower id, started later
    older = running(job, scheduled_for=t0 + timedelta(minutes=1))
    new = queued(job, t0 + timedelta(minutes=3))
    result = store.claim("n1", ROOM, t0 + timedelta(minutes=3, seconds=1))
    assert result.stop == (older.pk,) and [r.run_id for r in result.runs] == [new.pk]
    flagged = set(JobRun.objects.filter(stop_requested=True).values_list("pk", flat=True))
    assert flagged == {older.pk}, {done.pk: "finished", other.pk: "other job", newer.pk: "newer"}


def test_replace_among_runs_started_together_stops_the_first_queued(store, make_job):
    """Runs claimed in one batch share their start time: the lowest id goes first."""
    t0 = timezone.now() - timedelta(minutes=10)
    job = make_job(max_instances=2, overlap_policy="replace", misfire_grace_seconds=3600)
    a, b = running(job, scheduled_for=t0), running(job, scheduled_for=t0 + US)
    JobRun.objects.filter(pk__in=[a.pk, b.pk]).update(started_at=t0)
    queued(job, t0 + timedelta(minutes=1))
    assert store.claim("n1", ROOM, t0 + timedelta(minutes=1, seconds=1)).stop == (a.pk,)


@pytest.mark.parametrize(
    ("reason", "claimed"),
    [
        (RunReason.MANUAL, True),
        (RunReason.RUN_AT, True),
        (RunReason.SCHEDULE, False),
        (RunReason.RETRY, False),
        (RunReason.DEPENDENCY, False),
        (RunReason.BACKFILL, False),
    ],
)
def test_a_paused_job_starts_only_the_runs_started_by_hand(store, make_job, reason, claimed):
    job = make_job(misfire_grace_seconds=3600)
    active = make_job("active", misfire_grace_seconds=3600)
    t0 = timezone.now() - timedelta(seconds=30)
    run, control = queued(job, t0, reason=reason), queued(active, t0, reason=reason)
    Job.objects.filter(pk=job.pk).update(paused=True)
    result = {r.run_id for r in store.claim("n1", ROOM, t0 + timedelta(seconds=1)).runs}
    assert result == ({run.pk, control.pk} if claimed else {control.pk})
    assert JobRun.objects.get(pk=run.pk).state == ("running" if claimed else "queued")


def test_broadcast_copies_are_claimed_only_by_their_node(store, make_job):
    job = make_job(routing="broadcast", misfire_grace_seconds=3600)
    t0 = timezone.now() - timedelta(seconds=30)
    copies = {}
    for node in ("n1", "n2"):
        copies[node] = queued(job, t0)
        JobRun.objects.filter(pk=copies[node].pk).update(target_node=node)
    anywhere = queued(make_job("anywhere"), t0)
    result = store.claim("n1", ROOM, t0 + timedelta(seconds=1))
    assert {r.run_id for r in result.runs} == {copies["n1"].pk, anywhere.pk}
    assert JobRun.objects.get(pk=copies["n2"].pk).state == "queued"
    assert [r.run_id for r in store.claim("n2", ROOM, t0 + timedelta(seconds=1)).runs] == [copies["n2"].pk]


def test_a_broadcast_fire_is_one_copy_per_live_node_with_the_tags(store, make_job):
    """Written by enqueue: one queued copy per live active node having the job's tags
    (the live nodes read once per tag set and batch), skipped when no node has them."""
    from scheduler_app.backends import cluster as cluster_backend

    registry = cluster_backend.DjangoRegistry(dead_after=15)
    for name, tags in (("n1", ["gpu"]), ("n2", ["gpu", "eu"]), ("n3", [])):
        registry.register({"name": name, "tags": tags})
    gpu = [make_job(f"gpu{i}", routing="broadcast", routing_tags=["gpu"]) for i in range(2)]
    everywhere = make_job("all", routing="broadcast")
    nowhere = make_job("tpu", routing="broadcast", routing_tags=["tpu"])
    due, noticed = timezone.now() - timedelta(seconds=1), timezone.now()
    fires = [Fire(j.pk, (due,), noticed) for j in (*gpu, everywhere, nowhere)]
    assert store.enqueue(fires) == 2 + 2 + 3
    copies = lambda job: sorted(  # noqa: E731
        JobRun.objects.filter(job=job).values_list("state", "target_node")
    )
    for job in gpu:
        assert copies(job) == [("queued", "n1"), ("queued", "n2")]
    assert copies(everywhere) == [("queued", "n1"), ("queued", "n2"), ("queued", "n3")]
    assert copies(nowhere) == [("skipped", "")]
    assert "no live node matches" in JobRun.objects.get(job=nowhere).error


def test_a_broadcast_jobs_max_instances_holds_per_node(store, make_job):
    """Counted on the claiming node only: a copy running on another node or a finished
    copy here does not hold a copy back, one running here does; and another job's
    count in the same claim stays the count over every node."""
    t0 = timezone.now() - timedelta(minutes=5)
    every = make_job("every", routing="broadcast", overlap_policy="queue", misfire_grace_seconds=3600)
    spread = make_job("spread", max_instances=2, overlap_policy="queue", misfire_grace_seconds=3600)
    for job, node, when in ((every, "n2", t0), (spread, "n1", t0), (spread, "n2", t0 + US)):
        run = running(job, scheduled_for=when)
        JobRun.objects.filter(pk=run.pk).update(node=node, target_node=node if job == every else "")
    done = running(every, scheduled_for=t0 + US)
    JobRun.objects.filter(pk=done.pk).update(state=RunState.SUCCEEDED, target_node="n1", finished_at=t0)

    def copy_for_n1(when):
        run = queued(every, when)
        JobRun.objects.filter(pk=run.pk).update(target_node="n1")
        return run

    first = copy_for_n1(t0 + timedelta(minutes=1))
    third = queued(spread, t0 + timedelta(minutes=1))
    result = store.claim("n1", ROOM, t0 + timedelta(minutes=1, seconds=1))
    assert [r.run_id for r in result.runs] == [first.pk] and result.left_queued == 1
    assert JobRun.objects.get(pk=third.pk).state == "queued"
    second = copy_for_n1(t0 + timedelta(minutes=2))
    result = store.claim("n1", ROOM, t0 + timedelta(minutes=2, seconds=1))
    assert result.runs == () and result.left_queued == 2
    assert JobRun.objects.get(pk=second.pk).state == "queued"


def test_claim_writes_who_runs_it_and_since_when_and_a_skip_its_end(store, make_job):
    t0 = timezone.now() - timedelta(minutes=5)
    late = queued(make_job("late", misfire_policy="skip", misfire_grace_seconds=1), t0)
    fresh = queued(make_job("fresh"), t0 + timedelta(minutes=4, seconds=50))
    now = t0 + timedelta(minutes=5)
    (claimed,) = store.claim("n1", ROOM, now).runs
    stored = JobRun.objects.get(pk=fresh.pk)
    assert (stored.state, stored.node, stored.started_at, stored.heartbeat_at) == ("running", "n1", now, now)
    assert stored.claim_token and stored.claim_token == claimed.claim_token
    stored = JobRun.objects.get(pk=late.pk)
    assert (stored.state, stored.finished_at, stored.is_final, stored.node) == ("skipped", now, True, "")


def test_a_run_skipped_at_claim_writes_its_alert_in_the_claim(store, make_job, tenant):
    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="hook", type="webhook", config={"url": "http://127.0.0.1:9/x"}),
        secret="s",
    )
    services.save_rule(AlertRule(tenant=tenant, name="skips", events=["skipped"]), channels=[channel])
    t0 = timezone.now() - timedelta(minutes=5)
    late = queued(make_job("late", misfire_policy="skip", misfire_grace_seconds=1), t0)
    assert store.claim("n1", ROOM, t0 + timedelta(minutes=5)).runs == ()
    assert list(AlertOutbox.objects.values_list("run_id", "event", "channel_id")) == [
        (late.pk, "skipped", channel.pk)
    ]


# -- claim against another transaction's locks (PostgreSQL: several nodes) ---------------


@pytest.fixture
def other_session():
    """A second connection to the test database, as another node's transaction."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks between sessions: PostgreSQL")
    s = connection.settings_dict
    conn = psycopg.connect(
        dbname=s["NAME"],
        user=s.get("USER") or "postgres",
        host=s.get("HOST") or "127.0.0.1",
        port=s.get("PORT") or 5432,
    )
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")  # a claim that waits fails instead of hanging
    yield conn
    conn.rollback()
    conn.close()
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout")


@pytest.mark.django_db(transaction=True)
def test_claim_skips_a_run_another_transaction_holds_and_takes_the_next(store, make_job, other_session):
    t0 = timezone.now() - timedelta(seconds=30)
    held, free = queued(make_job("held", priority=5), t0), queued(make_job("free"), t0)
    other_session.execute(f"SELECT id FROM {JobRun._meta.db_table} WHERE id = %s FOR UPDATE", [held.pk])
    result = store.claim("n1", ROOM, t0 + timedelta(seconds=1))
    assert [r.run_id for r in result.runs] == [free.pk]
    assert JobRun.objects.get(pk=held.pk).state == "queued"


@pytest.mark.django_db(transaction=True)
def test_claim_is_not_held_up_by_a_run_being_queued_for_the_same_job(store, make_job, other_session):
    """Queueing a run takes a key-share lock on its job's row (the foreign key); the
    claim locks only run rows in its first statement (and the job row without the key),
    so it neither waits for nor skips the run already queued."""
    t0 = timezone.now() - timedelta(seconds=30)
    job = make_job(max_instances=5, overlap_policy="queue")
    run = queued(job, t0)
    other_session.execute(f"SELECT id FROM {Job._meta.db_table} WHERE id = %s FOR KEY SHARE", [job.pk])
    assert [r.run_id for r in store.claim("n1", ROOM, t0 + timedelta(seconds=1)).runs] == [run.pk]


# -- (d) joins: one success edge and one failure edge -----------------------------------

UPSTREAM_ENDS = {
    "succeeded": (RunState.SUCCEEDED, 1),
    "failed-final": (RunState.FAILED, 1),
    "failed-will-retry": (RunState.FAILED, 2),
    "timed-out-final": (RunState.TIMED_OUT, 1),
}


@pytest.mark.parametrize("order", ["ok-first", "bad-first"])
@pytest.mark.parametrize(
    ("ok_end", "bad_end"),
    list(itertools.product(UPSTREAM_ENDS, UPSTREAM_ENDS)),
    ids=[f"success-edge-{a}/failure-edge-{b}" for a, b in itertools.product(UPSTREAM_ENDS, UPSTREAM_ENDS)],
)
def test_a_join_of_a_success_edge_and_a_failure_edge(store, make_job, ok_end, bad_end, order):
    """``down`` needs ``ok`` to succeed and ``bad`` to fail for good: it is queued once,
    when the second of the two conditions is met, and only then."""
    ends = {}
    for name, end in (("ok", ok_end), ("bad", bad_end)):
        state, max_attempts = UPSTREAM_ENDS[end]
        ends[name] = (make_job(name, retry_max_attempts=max_attempts), state)
    down = make_job("down")
    services.add_dependency(ends["ok"][0], down, condition="success")
    services.add_dependency(ends["bad"][0], down, condition="failure")
    names = ["ok", "bad"] if order == "ok-first" else ["bad", "ok"]
    recorded = []
    for name in names:
        job, state = ends[name]
        run = running(job)
        recorded.append(store.record([outcome(run, state, error="x" if state != "succeeded" else "")]))
        recorded[-1] -= JobRun.objects.filter(job=job, reason=RunReason.RETRY).count()
    met = UPSTREAM_ENDS[ok_end][0] == RunState.SUCCEEDED and bad_end in ("failed-final", "timed-out-final")
    triggered = JobRun.objects.filter(job=down)
    assert triggered.count() == (1 if met else 0)
    # record() counts the dependent it queued, on the outcome that completed the join
    assert recorded == ([0, 1] if met else [0, 0])
    if met:
        run = triggered.get()
        assert (run.reason, run.state, run.triggered_by.job.name) == ("dependency", "queued", names[-1])


def test_a_failure_edge_is_met_by_the_final_attempt_not_the_first(store, make_job):
    ok, bad, down = make_job("ok"), make_job("bad", retry_max_attempts=2), make_job("down")
    services.add_dependency(ok, down, condition="success")
    services.add_dependency(bad, down, condition="failure")
    store.record([outcome(running(ok), RunState.SUCCEEDED)])
    store.record([outcome(running(bad), RunState.FAILED, error="x")])
    assert not JobRun.objects.filter(job=down).exists()
    retry = JobRun.objects.get(job=bad, attempt=2)
    JobRun.objects.filter(pk=retry.pk).update(state=RunState.RUNNING)
    assert store.record([outcome(retry, RunState.FAILED, error="x")]) == 1
    assert JobRun.objects.get(job=down).triggered_by_id == retry.pk


def test_a_join_needs_fresh_ends_after_the_last_dependency_run(store, make_job):
    ok, bad, down = make_job("ok"), make_job("bad"), make_job("down")
    services.add_dependency(ok, down, condition="success")
    services.add_dependency(bad, down, condition="failure")
    store.record([outcome(running(ok), RunState.SUCCEEDED)])
    store.record([outcome(running(bad), RunState.FAILED, error="x")])
    assert JobRun.objects.filter(job=down).count() == 1
    # a new success alone does not trigger again: bad's failure was before the last run
    store.record([outcome(running(ok, scheduled_for=timezone.now()), RunState.SUCCEEDED)])
    assert JobRun.objects.filter(job=down).count() == 1
    store.record([outcome(running(bad, scheduled_for=timezone.now()), RunState.LOST)])
    assert JobRun.objects.filter(job=down).count() == 2


def test_a_join_counts_only_its_own_upstreams_since_its_own_last_dependency_run(store, make_job):
    ok, bad, down = make_job("ok"), make_job("bad"), make_job("down")
    services.add_dependency(ok, down, condition="success")
    services.add_dependency(bad, down, condition="failure")
    up2, other = make_job("up2"), make_job("other")
    services.add_dependency(up2, other, condition="success")
    # another job's success does not stand in for ok's
    store.record([outcome(running(other), RunState.SUCCEEDED)])
    store.record([outcome(running(bad), RunState.FAILED, error="x")])
    assert not JobRun.objects.filter(job=down).exists()
    # ok succeeds: the join completes (bad's failure is still fresh for down)
    store.record([outcome(running(ok), RunState.SUCCEEDED)])
    assert JobRun.objects.filter(job=down).count() == 1
    # ok succeeds again; then another job's dependency run and a manual run of down
    # do not move down's "since": bad's next failure completes the join again
    store.record([outcome(running(ok, scheduled_for=timezone.now()), RunState.SUCCEEDED)])
    store.record([outcome(running(up2), RunState.SUCCEEDED)])
    assert JobRun.objects.filter(job=other, reason=RunReason.DEPENDENCY).count() == 1
    services.run_jobs_now([down])
    store.record([outcome(running(bad, scheduled_for=timezone.now()), RunState.FAILED, error="x")])
    assert JobRun.objects.filter(job=down, reason=RunReason.DEPENDENCY).count() == 2


@pytest.mark.parametrize(
    ("condition", "state", "final", "met"),
    [
        ("completion", RunState.SUCCEEDED, True, True),
        ("completion", RunState.FAILED, True, True),
        ("completion", RunState.FAILED, False, False),
        ("success", RunState.FAILED, True, False),
        ("failure", RunState.SUCCEEDED, True, False),
    ],
)
def test_a_single_edge_of_each_condition(store, make_job, condition, state, final, met):
    up, down = make_job("up", retry_max_attempts=1 if final else 2), make_job("down")
    services.add_dependency(up, down, condition=condition)
    store.record([outcome(running(up), state, error="x")])
    assert JobRun.objects.filter(job=down).count() == (1 if met else 0)


def test_a_disabled_downstream_is_not_queued(store, make_job):
    up, down = make_job("up"), make_job("down", enabled=False)
    services.add_dependency(up, down, condition="success")
    assert store.record([outcome(running(up), RunState.SUCCEEDED)]) == 0
    assert not JobRun.objects.filter(job=down).exists()


# -- (e) secrets: twice in an error, inside a result -------------------------------------

SECRET = 'Pässwörd-"Echo"-Ω-3456'


@pytest.mark.parametrize("task", ["tests.raise_secrets", "tests.leak_secrets"])
def test_secrets_are_masked_in_what_the_store_records(store, make_job, task):
    """claim (decrypts) -> the engine's thread executor -> record: every occurrence is
    masked in every stored field, in any encoding."""
    job = make_job("leaky", task=task, secret_kwargs={"password": SECRET, "token": "tok-12345678"})
    services.run_jobs_now([job])
    claimed = store.claim("n1", ROOM, timezone.now()).runs
    assert len(claimed) == 1 and claimed[0].kwargs["password"] == SECRET
    outcomes = []
    executor = ThreadExecutor(1, resolve_task, outcomes.append, 100_000)
    executor.submit(claimed[0])
    executor.shutdown(wait=True)
    store.record(outcomes)
    run = JobRun.objects.get(job=job)
    stored = {
        "result": json.dumps(run.result, ensure_ascii=False),
        "result_ascii": json.dumps(run.result),
        "error": run.error,
        "error_type": run.error_type,
        "traceback": run.traceback,
    }
    for secret in (SECRET, "tok-12345678"):
        forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)}
        leaks = [(name, form) for name, text in stored.items() for form in forms if form in text]
        assert leaks == []
    if task == "tests.raise_secrets":
        assert run.state == "failed"
        # each value occurs three times in the message: each one is masked
        assert run.error.count(MASK) >= 6 and "again" in run.error
    else:
        assert run.state == "succeeded"
        assert run.result["plain"] == {"password": MASK, "token": MASK}
        assert run.result["embedded"][0] == f"before {MASK} after {MASK} end"


def test_claim_signals_the_runs_it_skips_and_starts(store, make_job):
    from scheduler_app import signals

    seen = []

    def receiver(signal, sender, run, **kwargs):
        seen.append((signal, sender, run.pk, run.state))

    skip = make_job("late", misfire_policy="skip", misfire_grace_seconds=1)
    ok = make_job("ok")
    t0 = timezone.now() - timedelta(minutes=1)
    late, fresh = queued(skip, t0 - timedelta(minutes=1)), queued(ok, t0)
    # connected as receivers usually are: for the JobRun sender only
    signals.run_skipped.connect(receiver, sender=JobRun)
    signals.run_started.connect(receiver, sender=JobRun)
    try:
        result = store.claim("n1", ROOM, t0 + timedelta(seconds=1))
    finally:
        signals.run_skipped.disconnect(receiver, sender=JobRun)
        signals.run_started.disconnect(receiver, sender=JobRun)
    assert sorted(seen, key=lambda s: s[2]) == [
        (signals.run_skipped, JobRun, late.pk, "skipped"),
        (signals.run_started, JobRun, fresh.pk, "running"),
    ]
    assert [(r.run_id, r.job_name, r.attempt) for r in result.runs] == [(fresh.pk, "ok", 1)]


def test_record_signals_each_outcome_and_a_coming_retry_by_sender(store, make_job):
    from scheduler_app import signals

    seen = []

    def receiver(signal, sender, run, **kwargs):
        seen.append((signal, run.pk, run.state))

    retried, done = make_job("retried", retry_max_attempts=2), make_job("done")
    first, ok = running(retried), running(done)
    connected = (signals.run_failed, signals.run_succeeded, signals.run_retrying)
    for signal in connected:
        signal.connect(receiver, sender=JobRun)
    try:
        store.record([outcome(first, RunState.FAILED, error="boom"), outcome(ok, RunState.SUCCEEDED)])
        final = JobRun.objects.get(job=retried, attempt=2)
        JobRun.objects.filter(pk=final.pk).update(state=RunState.RUNNING)
        store.record([outcome(final, RunState.FAILED, error="boom")])
    finally:
        for signal in connected:
            signal.disconnect(receiver, sender=JobRun)
    assert sorted(seen, key=lambda s: (s[1], str(s[0]))) == sorted(
        [
            (signals.run_failed, first.pk, "failed"),
            (signals.run_retrying, first.pk, "failed"),
            (signals.run_succeeded, ok.pk, "succeeded"),
            (signals.run_failed, final.pk, "failed"),  # final: no run_retrying
        ],
        key=lambda s: (s[1], str(s[0])),
    )


def test_enqueue_signals_the_runs_it_queues_to_receivers_for_jobrun(store, make_job):
    from scheduler_app import signals

    seen = []

    def receiver(sender, run, **kwargs):
        seen.append((sender, run.state))

    job = make_job()
    due = timezone.now() - timedelta(seconds=1)
    signals.run_queued.connect(receiver, sender=JobRun)
    try:
        assert store.enqueue([Fire(job.pk, (due,), timezone.now())]) == 1
    finally:
        signals.run_queued.disconnect(receiver, sender=JobRun)
    assert seen == [(JobRun, "queued")]


def test_claim_with_nothing_due(store, make_job):
    queued(make_job(), timezone.now() + timedelta(hours=1))
    assert store.claim("n1", ROOM, timezone.now()).runs == ()


# -- record: a batch, what it returns, logs, writes beside the runs, and locks ------------

RUNSTORE_LOGGER = "scheduler_app.backends.runstore"


def test_record_returns_every_run_the_whole_batch_queued(store, make_job):
    """Dependents of each upstream in the batch, retries and released runs: all counted."""
    up_a, up_b, down_a, down_b = make_job("up-a"), make_job("up-b"), make_job("down-a"), make_job("down-b")
    services.add_dependency(up_a, down_a, condition="success")
    services.add_dependency(up_b, down_b, condition="success")
    retried, back = make_job("retried", retry_max_attempts=2), make_job("back")
    a, b, failed, released = running(up_a), running(up_b), running(retried), running(back)
    queued_now = store.record(
        [
            outcome(a, RunState.SUCCEEDED),
            outcome(b, RunState.SUCCEEDED),
            outcome(failed, RunState.FAILED, error="boom"),
            outcome(released, "released"),
        ]
    )
    assert queued_now == 4
    assert sorted(
        JobRun.objects.filter(reason=RunReason.DEPENDENCY).values_list("job__name", "triggered_by_id")
    ) == [("down-a", a.pk), ("down-b", b.pk)]
    assert JobRun.objects.filter(job=retried, attempt=2, state="queued").count() == 1
    assert JobRun.objects.get(pk=released.pk).state == "queued"


def test_record_logs_its_batch_each_run_that_did_not_succeed_and_what_it_could_not_record(
    store, make_job, caplog
):
    import logging

    job = make_job("logged", max_instances=2)
    slow, instant = running(job), running(job, scheduled_for=timezone.now())
    now = timezone.now()
    unknown = [10**9 + n for n in range(21)]  # no such runs (e.g. finished meanwhile)
    outcomes = [
        Outcome(slow.pk, RunState.SUCCEEDED, now - timedelta(seconds=1.2345678), now),
        Outcome(instant.pk, RunState.FAILED, now, now, error="boom"),
        *(Outcome(pk, RunState.SUCCEEDED, now, now) for pk in unknown),
    ]
    caplog.set_level(logging.INFO, logger=RUNSTORE_LOGGER)
    store.record(outcomes)
    records = [r for r in caplog.records if r.name == RUNSTORE_LOGGER]
    gone = [r for r in records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in gone] == [
        "outcomes not recorded: the runs are no longer running here (finished, or lost and retried)"
    ]
    assert (gone[0].count, gone[0].run_ids) == (21, ",".join(map(str, unknown[:20])))
    # At INFO: one line per run that did not succeed, one line for the batch.
    finished = [r for r in records if r.getMessage() == "run finished"]
    assert [(r.job, r.run_id, r.state, r.duration, r.attempt, r.levelno) for r in finished] == [
        ("logged", instant.pk, "failed", 0.0, 1, logging.INFO)
    ]
    (batch,) = [r for r in records if r.getMessage() == "runs finished"]
    assert (batch.levelno, batch.count, batch.failed, batch.succeeded) == (logging.INFO, 2, 1, 1)
    assert batch.run_ids == f"{slow.pk},{instant.pk}"
    assert set(batch.jobs.split(",")) == {slow.job.name, instant.job.name}
    # At DEBUG a line per success too.
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger=RUNSTORE_LOGGER)
    again = running(job, scheduled_for=timezone.now() - timedelta(seconds=30))
    store.record([Outcome(again.pk, RunState.SUCCEEDED, now - timedelta(seconds=1.2345678), now)])
    finished = [r for r in caplog.records if r.getMessage() == "run finished"]
    assert [(r.job, r.run_id, r.state, r.duration, r.attempt, r.levelno) for r in finished] == [
        ("logged", again.pk, "succeeded", 1.2346, 1, logging.DEBUG)
    ]


def test_the_batch_line_names_at_most_twenty_runs_and_every_state(store, make_job, caplog):
    import logging

    jobs = [make_job(f"many-{i}") for i in range(25)]
    runs = [running(job) for job in jobs]
    states = [RunState.SUCCEEDED] * 22 + [RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED]
    caplog.set_level(logging.INFO, logger=RUNSTORE_LOGGER)
    store.record([outcome(run, state) for run, state in zip(runs, states, strict=True)])
    records = [r for r in caplog.records if r.name == RUNSTORE_LOGGER]
    (batch,) = [r for r in records if r.getMessage() == "runs finished"]
    assert (batch.count, batch.succeeded, batch.failed, batch.timed_out, batch.cancelled) == (25, 22, 1, 1, 1)
    assert batch.run_ids == ",".join(str(run.pk) for run in sorted(runs, key=lambda r: r.pk)[:20])
    assert sorted(r.state for r in records if r.getMessage() == "run finished") == [
        "cancelled",
        "failed",
        "timed_out",
    ]


def test_record_stores_the_captured_log_of_each_run_that_logged(store, make_job):
    from scheduler_app.engine.interfaces import RunLog
    from scheduler_app.models import JobRunLog

    job = make_job(max_instances=3)
    talkative, quiet, silent = (
        running(job),
        running(job, scheduled_for=timezone.now()),
        running(job, scheduled_for=timezone.now() + US),
    )
    before = timezone.now()
    store.record(
        [
            outcome(talkative, RunState.SUCCEEDED, log=RunLog(text="a\nb", lines_dropped=1, lines_total=3)),
            outcome(quiet, RunState.SUCCEEDED, log=RunLog()),
            outcome(silent, RunState.SUCCEEDED),
        ]
    )
    assert list(JobRunLog.objects.values_list("run_id", "text", "lines_dropped", "lines_total")) == [
        (talkative.pk, "a\nb", 1, 3)
    ]
    assert before <= JobRunLog.objects.get().updated_at <= timezone.now()


def test_record_writes_the_alert_of_a_failure_in_the_same_transaction(store, make_job, tenant):
    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="hook", type="webhook", config={"url": "http://127.0.0.1:9/x"}),
        secret="s",
    )
    services.save_rule(AlertRule(tenant=tenant, name="failures", events=["failed"]), channels=[channel])
    run = running(make_job("fails"))
    store.record([outcome(run, RunState.FAILED, error="boom")])
    assert list(AlertOutbox.objects.values_list("run_id", "event", "channel_id")) == [
        (run.pk, "failed", channel.pk)
    ]


def test_record_signals_no_retry_for_an_interrupted_run(store, make_job):
    from scheduler_app import signals

    seen = []

    def receiver(signal, sender, run, **kwargs):
        seen.append(run.pk)

    run = running(make_job(retry_max_attempts=3))
    signals.run_retrying.connect(receiver, sender=JobRun)
    try:
        store.record([outcome(run, RunState.INTERRUPTED)])
    finally:
        signals.run_retrying.disconnect(receiver, sender=JobRun)
    assert seen == [] and JobRun.objects.get(pk=run.pk).state == "interrupted"


def test_a_retry_that_already_exists_is_not_queued_twice(store, make_job):
    """The retry's row is unique (job, scheduled time, attempt, node): an outcome whose
    retry is already queued is still recorded, and the queued retry stays the only one."""
    job = make_job(retry_max_attempts=3)
    run = running(job)
    existing = queued(job, run.scheduled_for, attempt=2, reason=RunReason.RETRY)
    store.record([outcome(run, RunState.FAILED, error="boom")])
    assert JobRun.objects.get(pk=run.pk).state == "failed"
    assert list(JobRun.objects.filter(job=job, attempt=2).values_list("pk", flat=True)) == [existing.pk]


def test_record_reads_a_batch_in_as_many_queries_whatever_its_size(store, make_job):
    from django.test.utils import CaptureQueriesContext

    def queries(count):
        jobs = [make_job(f"batch-{count}-{n}") for n in range(count)]
        runs = [running(job) for job in jobs]
        with CaptureQueriesContext(connection) as captured:
            store.record([outcome(run, RunState.SUCCEEDED) for run in runs])
        assert set(JobRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)) == {
            "succeeded"
        }
        return len(captured.captured_queries)

    assert queries(2) == queries(6)


@pytest.mark.django_db(transaction=True)
def test_record_does_not_wait_for_a_transaction_changing_the_job(store, make_job, other_session):
    """An admin saving the job holds its row (FOR NO KEY UPDATE) until it commits;
    recording its run's outcome locks only the run row."""
    job = make_job()
    run = running(job)
    other_session.execute(f"UPDATE {Job._meta.db_table} SET priority = priority WHERE id = %s", [job.pk])
    store.record([outcome(run, RunState.SUCCEEDED)])
    assert JobRun.objects.get(pk=run.pk).state == "succeeded"


def test_record_stores_every_field_of_the_outcome(store, make_job):
    run = running(make_job(retry_max_attempts=1))
    started = timezone.now() - timedelta(seconds=3)
    finished = started + timedelta(seconds=2.5)
    store.record(
        [
            Outcome(
                run_id=run.pk,
                state=RunState.FAILED,
                started_at=started,
                finished_at=finished,
                result={"rows": [1, 2]},
                error_type="E" * 300,
                error="boom",
                traceback="Traceback: line 1",
                cpu_seconds=1.25,
                peak_memory_mb=42.5,
            )
        ]
    )
    stored = JobRun.objects.filter(pk=run.pk).values(
        "state",
        "started_at",
        "finished_at",
        "duration",
        "cpu_seconds",
        "peak_memory_mb",
        "result",
        "error_type",
        "error",
        "traceback",
        "is_final",
    )[0]
    assert stored == {
        "state": "failed",
        "started_at": started,
        "finished_at": finished,
        "duration": 2.5,
        "cpu_seconds": 1.25,
        "peak_memory_mb": 42.5,
        "result": {"rows": [1, 2]},
        "error_type": "E" * 200,  # the column's length
        "error": "boom (final: no retries configured)",
        "traceback": "Traceback: line 1",
        "is_final": True,
    }


@pytest.mark.parametrize("attempts", [2, 3])
def test_the_last_attempt_says_it_was_the_last(store, make_job, attempts):
    job = make_job(retry_max_attempts=attempts, retry_backoff_seconds=0)
    run = running(job, attempt=attempts)
    assert store.record([outcome(run, RunState.TIMED_OUT, error="slow")]) == 0
    stored = JobRun.objects.get(pk=run.pk)
    assert (stored.error, stored.is_final) == (f"slow (final: attempt {attempts} of {attempts})", True)


def test_claim_hands_the_executor_the_run_and_its_job_as_they_are(store, make_job):
    from scheduler_app.engine.interfaces import ClaimedRun

    job = make_job("full", task="demo.echo", kwargs={"a": 1, "b": 2}, secret_kwargs={"pw": "s3cret-Ω"})
    # (a run queued before run-now refused overrides of secrets may hold one)
    run = enqueue_run(
        job, scheduled_for=timezone.now(), reason=RunReason.MANUAL, kwargs_override={"b": 3, "pw": "typed-Ω"}
    )
    # The job changed after the run was queued: the run keeps the executor it was queued
    # for; args (of a task taking *args) and limits are the job's as it is now.
    Job.objects.filter(pk=job.pk).update(
        args=[1, "two"], timeout_seconds=30, cpu_limit_seconds=5, memory_limit_mb=64, executor="thread"
    )
    JobRun.objects.filter(pk=run.pk).update(attempt=2, executor="asyncio")
    room = Capacity(per_executor={"thread": 8, "asyncio": 8}, total=16)
    (claimed,) = store.claim("n1", room, timezone.now() + timedelta(seconds=1)).runs
    stored = JobRun.objects.get(pk=run.pk)
    assert claimed == ClaimedRun(
        run_id=run.pk,
        job_id=job.pk,
        job_name="full",
        task="demo.echo",
        args=(1, "two"),
        kwargs={"a": 1, "b": 3, "pw": "typed-Ω"},
        executor="asyncio",
        attempt=2,
        scheduled_for=stored.scheduled_for,
        timeout=30,
        cpu_limit=5,
        memory_limit_mb=64,
        setup_error=None,
        secret_values=("s3cret-Ω", "typed-Ω"),
        claim_token=stored.claim_token,
    )
    assert stored.claim_token and stored.state == "running"


def test_a_secret_no_key_decrypts_is_claimed_as_a_setup_error_without_inputs(store, make_job):
    from cryptography.fernet import Fernet
    from django.test import override_settings

    job = make_job("locked", task="demo.echo", kwargs={"a": 1}, secret_kwargs={"pw": "s3cret"})
    enqueue_run(job, scheduled_for=timezone.now(), reason=RunReason.MANUAL, kwargs_override={"pw": "typed"})
    with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}):
        (claimed,) = store.claim("n1", ROOM, timezone.now() + timedelta(seconds=1)).runs
    assert claimed.setup_error.startswith("secret kwargs: the secret kwargs cannot be decrypted")
    assert (claimed.kwargs, claimed.secret_values, claimed.task) == ({}, (), "demo.echo")


# -- liveness: heartbeats, lost runs, recovery, pruning -----------------------------------


def test_heartbeat_marks_running_runs_and_returns_stop_requests(store, make_job):
    job = make_job(max_instances=3)
    a, b = running(job), running(job, scheduled_for=timezone.now())
    done = queued(make_job("other"), timezone.now())
    JobRun.objects.filter(pk=b.pk).update(stop_requested=True)
    now = timezone.now()
    assert store.heartbeat("n1", [], now) == []
    assert store.heartbeat("n1", [a.pk, b.pk, done.pk], now) == [b.pk]
    assert {r.pk: r.heartbeat_at for r in JobRun.objects.filter(job=job)} == {a.pk: now, b.pk: now}
    assert JobRun.objects.get(pk=done.pk).heartbeat_at is None


def test_reap_lost_marks_silent_runs_lost_and_retries_them(store, make_job):
    job = make_job(retry_max_attempts=2, retry_backoff_seconds=0, max_instances=3)
    now = timezone.now()
    silent, alive, mine = running(job), running(job, scheduled_for=now), running(job, scheduled_for=now + US)
    JobRun.objects.filter(pk=silent.pk).update(heartbeat_at=now - timedelta(seconds=31))
    JobRun.objects.filter(pk=alive.pk).update(heartbeat_at=now - timedelta(seconds=29))
    JobRun.objects.filter(pk=mine.pk).update(heartbeat_at=now - timedelta(seconds=60))
    assert store.reap_lost(now, 30, exclude=[mine.pk]) == 1
    lost = JobRun.objects.get(pk=silent.pk)
    assert (lost.state, lost.error_type, lost.finished_at) == ("lost", "Lost", now)
    assert lost.error == "no heartbeat for more than 30 s; its node is gone"  # retried: not final
    assert JobRun.objects.get(pk=alive.pk).state == "running"
    assert JobRun.objects.get(pk=mine.pk).state == "running"
    assert JobRun.objects.filter(job=job, attempt=2, reason=RunReason.RETRY).count() == 1
    assert store.reap_lost(now, 30, exclude=[mine.pk]) == 0


def test_recover_marks_this_nodes_old_runs_lost_and_requeues_interrupted(store, make_job):
    import os
    import socket

    job = make_job(max_instances=5)
    now = timezone.now()
    host = socket.gethostname()
    mine, other_host, live = (
        running(job),
        running(job, scheduled_for=now),
        running(job, scheduled_for=now + US),
    )
    dead_pid = running(job, scheduled_for=now + 2 * US)
    JobRun.objects.filter(pk=mine.pk).update(node=f"{host}:1")
    JobRun.objects.filter(pk=other_host.pk).update(node="elsewhere:1")
    JobRun.objects.filter(pk=live.pk).update(node=f"{host}:{os.getpid()}")  # alive, not a runscheduler
    JobRun.objects.filter(pk=dead_pid.pk).update(node=f"{host}:999999999")
    stopped = running(make_job("stopped"))
    store.record([outcome(stopped, RunState.INTERRUPTED)])
    report = store.recover(f"{host}:1", now)
    assert (report.lost, report.requeued) == (3, 1)
    assert {r.pk: r.state for r in JobRun.objects.filter(job=job)} == {
        mine.pk: "lost",
        other_host.pk: "running",
        live.pk: "lost",
        dead_pid.pk: "lost",
    }
    again = JobRun.objects.get(job=stopped.job, attempt=2)
    assert (again.reason, again.state, again.not_before) == (RunReason.RECOVERY, "queued", now)
    assert JobRun.objects.get(pk=stopped.pk).is_final is True
    assert store.recover(f"{host}:1", now).requeued == 0


def test_recover_spares_the_runs_of_this_incarnation_whatever_their_order(store, make_job):
    """A node that restarted its engine in the same process (a new incarnation) loses the
    runs its earlier incarnation left running, never those it claimed itself."""
    job = make_job(max_instances=5)
    node = "rack-1:web:4242"  # a --node name whose host part holds a colon
    now = timezone.now()
    runs = [running(job, scheduled_for=now + n * US) for n in range(4)]
    tokens = ["i2:1", "i1:7", "i2:2", ""]  # this incarnation (i2) first, then an old one's
    for run, token in zip(runs, tokens, strict=True):
        JobRun.objects.filter(pk=run.pk).update(node=node, claim_token=token)
    store.incarnation = lambda: "i2"
    report = store.recover(node, now)
    assert (report.lost, report.requeued) == (2, 0)
    assert [JobRun.objects.get(pk=r.pk).state for r in runs] == ["running", "lost", "running", "lost"]
    lost = JobRun.objects.get(pk=runs[1].pk)
    assert (lost.error_type, lost.finished_at) == ("Lost", now)
    assert lost.error.startswith("the node running it stopped without finishing it (crash or kill)")


def test_recover_finds_dead_processes_of_a_host_named_with_colons(store, make_job):
    job = make_job(max_instances=5)
    now = timezone.now()
    dead_here, dead_short_host = running(job), running(job, scheduled_for=now)
    JobRun.objects.filter(pk=dead_here.pk).update(node="rack-1:web:999999999")
    JobRun.objects.filter(pk=dead_short_host.pk).update(node="rack-1:999999999")  # another host: "rack-1"
    assert store.recover("rack-1:web:1", now).lost == 1
    assert JobRun.objects.get(pk=dead_here.pk).state == "lost"
    assert JobRun.objects.get(pk=dead_short_host.pk).state == "running"


def test_prune_deletes_finished_runs_older_than_the_cutoff(store, make_job):
    job = make_job(max_instances=5)
    now = timezone.now()
    old, recent = running(job), running(job, scheduled_for=now)
    store.record([outcome(old, RunState.SUCCEEDED), outcome(recent, RunState.SUCCEEDED)])
    JobRun.objects.filter(pk=old.pk).update(finished_at=now - timedelta(days=8))
    waiting = queued(job, now + timedelta(seconds=1))
    JobRun.objects.filter(pk=waiting.pk).update(finished_at=now - timedelta(days=9))  # never pruned
    assert store.prune(now, None) == 0
    assert store.prune(now, 7) == 1
    assert set(JobRun.objects.filter(job=job).values_list("pk", flat=True)) == {recent.pk, waiting.pk}


def test_a_completion_join_needs_a_final_success_or_failure_of_each_upstream(store, make_job):
    u1, u2, down = make_job("u1"), make_job("u2", retry_max_attempts=2), make_job("down")
    services.add_dependency(u1, down, condition="completion")
    services.add_dependency(u2, down, condition="completion")
    skipped = queued(u2, timezone.now() - timedelta(minutes=1))
    JobRun.objects.filter(pk=skipped.pk).update(
        state=RunState.SKIPPED, is_final=True, finished_at=timezone.now()
    )
    store.record([outcome(running(u2), RunState.FAILED, error="x")])  # will be retried
    store.record([outcome(running(u1), RunState.SUCCEEDED)])
    assert not JobRun.objects.filter(job=down).exists()


def test_one_upstream_feeds_each_of_its_downstreams(store, make_job):
    up, never = make_job("up"), make_job("never")
    waiting = [make_job("a-waits"), make_job("z-waits")]
    on_failure, on_success = make_job("b-fails"), make_job("m-succeeds")
    # incomplete joins on both sides of the one that completes, whatever the edge order
    services.add_dependency(up, waiting[0], condition="success")
    services.add_dependency(up, on_failure, condition="failure")
    services.add_dependency(up, on_success, condition="success")
    services.add_dependency(up, waiting[1], condition="success")
    for job in waiting:
        services.add_dependency(never, job, condition="success")
    assert store.record([outcome(running(up), RunState.SUCCEEDED)]) == 1
    assert JobRun.objects.filter(job=on_success).count() == 1
    assert not JobRun.objects.filter(job__in=[*waiting, on_failure]).exists()
