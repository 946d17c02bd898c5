"""The scheduler engine end to end: real runscheduler processes, real signals, real
rows. Each test reads the JobRun rows the process wrote."""

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def acme(transactional_db):
    return Tenant.objects.create(slug="acme", name="Acme")


def job(tenant, name, **fields):
    fields.setdefault("task", "demo.noop")
    fields.setdefault("trigger", {"type": "manual"})
    return services.save_job(Job(tenant=tenant, name=name, **fields))


def runs(j, **filters):
    return list(JobRun.objects.filter(job=j, **filters).order_by("scheduled_for", "attempt"))


def test_scheduled_runs_execute_once_per_fire_time(acme, scheduler, tmp_path):
    out = tmp_path / "out.txt"
    j = job(
        acme,
        "tick",
        task="tests.append",
        kwargs={"path": str(out)},
        trigger={"type": "interval", "seconds": 1},
    )
    proc = scheduler()
    wait_until(lambda: len(runs(j, state="succeeded")) >= 4, 15)
    assert proc.stop() == 0
    done = runs(j)
    times = [r.scheduled_for for r in done]
    assert len(times) == len(set(times))
    assert all(r.state == "succeeded" for r in done)
    # every recorded success executed exactly once
    assert len(out.read_text().splitlines()) == len(done)
    # one second apart, on the interval's phase
    gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {1.0}
    lateness = [(r.started_at - r.scheduled_for).total_seconds() for r in done]
    assert max(lateness) < 1.0
    # successes are logged per batch at INFO (per run at DEBUG): their count, ids and jobs
    batches = [line for line in proc.output.splitlines() if "runs finished" in line]
    assert batches and all("succeeded=" in line and f"jobs={j.name}" in line for line in batches)
    assert {int(i) for line in batches for i in line.split("run_ids=")[1].split()[0].split(",")} == {
        r.pk for r in done
    }


def test_priority_order(acme, scheduler, tmp_path):
    out = tmp_path / "order.txt"
    jobs = {
        p: job(acme, f"p{p}", task="tests.append", kwargs={"path": str(out), "text": str(p)}, priority=p)
        for p in (0, 5, -3, 10, 1)
    }
    # queue all before the node starts; one slot, so start order is claim order
    for p in (0, 5, -3, 10, 1):
        services.run_jobs_now([jobs[p]])
    proc = scheduler(THREAD_POOL_SIZE=1, MAX_CONCURRENT_RUNS=1)
    wait_until(lambda: JobRun.objects.filter(state="succeeded").count() == 5, 20)
    proc.stop()
    order = [line.split()[0] for line in out.read_text().splitlines()]
    assert order == ["10", "5", "1", "0", "-3"]


def test_definition_changes_reach_the_running_scheduler(acme, scheduler):
    proc = scheduler(RECONCILE_INTERVAL=30.0)  # only the fast path may explain a quick change
    j = job(acme, "late-comer", trigger={"type": "interval", "seconds": 1})
    wait_until(lambda: runs(j, state="succeeded"), 5, message="new job did not fire")
    services.pause_jobs([Job.objects.get(pk=j.pk)])
    time.sleep(1.5)  # let a fire already in flight land
    count = len(runs(j))
    time.sleep(2.5)
    assert len(runs(j)) == count, "paused job kept firing"
    services.delete_jobs([Job.objects.get(pk=j.pk)])
    time.sleep(1.5)
    assert "removed=1" in proc.output
    proc.stop()


def test_direct_database_changes_are_reconciled(acme, scheduler):
    j = job(acme, "direct", trigger={"type": "interval", "seconds": 1})
    proc = scheduler(RECONCILE_INTERVAL=1.0)
    wait_until(lambda: runs(j, state="succeeded"), 10)
    Job.objects.filter(pk=j.pk).update(enabled=False)  # bypasses services and signals
    time.sleep(2.5)
    count = len(runs(j))
    time.sleep(2.5)
    assert len(runs(j)) == count
    proc.stop()


class TestRetriesAndTimeouts:
    def test_retry_with_backoff_then_final(self, acme, scheduler):
        j = job(
            acme,
            "fails",
            task="demo.fail",
            kwargs={"message": "boom"},
            retry_max_attempts=3,
            retry_backoff_seconds=1,
            retry_backoff_factor=2,
        )
        scheduler()
        services.run_jobs_now([j])
        wait_until(lambda: len(runs(j, is_final=True)) == 1, 20)
        attempts = runs(j)
        assert [r.attempt for r in attempts] == [1, 2, 3]
        assert all(r.state == "failed" and r.error_type == "RuntimeError" for r in attempts)
        gap1 = (attempts[1].started_at - attempts[0].finished_at).total_seconds()
        gap2 = (attempts[2].started_at - attempts[1].finished_at).total_seconds()
        assert 1.0 <= gap1 < 3.0
        assert 2.0 <= gap2 < 4.0
        assert attempts[-1].error == "boom (final: attempt 3 of 3)"
        assert not attempts[0].is_final and attempts[-1].is_final
        assert "Traceback" in attempts[-1].traceback and "RuntimeError: boom" in attempts[-1].traceback

    def test_retry_until_success(self, acme, scheduler, tmp_path):
        j = job(
            acme,
            "flaky",
            task="tests.flaky",
            kwargs={"path": str(tmp_path / "n"), "failures": 1},
            retry_max_attempts=3,
            retry_backoff_seconds=0.2,
        )
        scheduler()
        services.run_jobs_now([j])
        wait_until(lambda: runs(j, state="succeeded"), 15)
        assert [r.state for r in runs(j)] == ["failed", "succeeded"]

    @pytest.mark.parametrize(
        ("executor", "task", "kwargs"),
        [
            ("thread", "demo.sleep", {"seconds": 20}),
            ("asyncio", "demo.async_sleep", {"seconds": 20}),
            ("process", "demo.cpu_burn", {"seconds": 20}),
        ],
    )
    def test_timeout_stops_the_run(self, acme, scheduler, executor, task, kwargs):
        j = job(acme, f"slow-{executor}", task=task, kwargs=kwargs, executor=executor, timeout_seconds=1)
        proc = scheduler()
        services.run_jobs_now([j])
        run = wait_until(lambda: runs(j, state="timed_out"), 30)[0]
        assert run.error.startswith("exceeded its timeout of 1 s")
        assert 0.9 <= run.duration < 5
        if executor == "process":
            # the worker was killed and replaced: the next run on that executor works
            nxt = job(acme, "after-kill", task="demo.echo", kwargs={"ok": 1}, executor="process")
            services.run_jobs_now([nxt])
            done = wait_until(lambda: runs(nxt, state="succeeded"), 30)[0]
            assert done.result == {"ok": 1}
        proc.stop()


class TestBadTasks:
    def test_failures_are_recorded_and_the_scheduler_keeps_going(self, acme, scheduler):
        unser = job(acme, "unser", task="tests.unserializable")
        exits = job(acme, "exits", task="tests.exit_process", executor="process")
        gone = job(acme, "gone")
        Job.objects.filter(pk=gone.pk).update(task="billing.removed_from_code")
        ok = job(acme, "ok", task="demo.echo", kwargs={"a": 1})
        proc = scheduler()
        services.run_jobs_now(Job.objects.filter(pk__in=[unser.pk, exits.pk, ok.pk]))
        services.enqueue_run(Job.objects.get(pk=gone.pk), scheduled_for=timezone.now(), reason="manual")
        wait_until(lambda: JobRun.objects.filter(state__in=["succeeded", "failed"]).count() == 4, 30)
        u = runs(unser)[0]
        assert u.state == "succeeded" and u.result["type"] == "set"
        assert "not JSON-serializable" in u.error
        e = runs(exits)[0]
        assert e.state == "failed" and e.error_type == "WorkerExited"
        assert "exited with code 3" in e.error
        g = runs(Job.objects.get(pk=gone.pk))[0]
        assert g.state == "failed" and "task 'billing.removed_from_code' is not registered" in g.error
        assert runs(ok)[0].result == {"a": 1}
        assert proc.proc.poll() is None
        assert proc.stop() == 0


def test_undecryptable_secret_fails_the_run_not_the_scheduler(acme, scheduler):
    from cryptography.fernet import Fernet

    locked = job(acme, "locked", task="demo.echo", secret_kwargs={"token": "t"})
    # as if the key that encrypted it had been removed from the configuration
    foreign = Fernet(Fernet.generate_key()).encrypt(b'{"token": "t"}').decode()
    Job.objects.filter(pk=locked.pk).update(secrets_token=foreign)
    ok = job(acme, "fine", task="demo.echo", kwargs={"a": 1})
    proc = scheduler()
    services.run_jobs_now(Job.objects.filter(pk__in=[locked.pk, ok.pk]))
    run = wait_until(lambda: runs(Job.objects.get(pk=locked.pk), state="failed"), 20)[0]
    assert run.error_type == "SetupError"
    assert "cannot be decrypted with any configured key" in run.error
    assert wait_until(lambda: runs(ok, state="succeeded"), 20)[0].result == {"a": 1}
    assert proc.proc.poll() is None
    assert proc.stop() == 0


def test_diamond_dag_runs_in_order_once(acme, scheduler):
    a = job(acme, "A")
    b = job(acme, "B", task="demo.sleep", kwargs={"seconds": 0.3})
    c = job(acme, "C", task="demo.sleep", kwargs={"seconds": 0.6})
    d = job(acme, "D")
    for up, down in [(a, b), (a, c), (b, d), (c, d)]:
        services.add_dependency(up, down)
    proc = scheduler()
    services.run_jobs_now([a])
    wait_until(lambda: runs(d, state="succeeded"), 20)
    time.sleep(1.0)  # a duplicate D would show up by now
    assert len(runs(d)) == 1
    rd, rb, rc, ra = runs(d)[0], runs(b)[0], runs(c)[0], runs(a)[0]
    assert rd.started_at >= max(rb.finished_at, rc.finished_at)
    assert rb.started_at >= ra.finished_at and rc.started_at >= ra.finished_at
    assert rb.triggered_by_id == ra.pk and rc.triggered_by_id == ra.pk
    assert rd.triggered_by_id in (rb.pk, rc.pk)
    assert rd.reason == "dependency"
    # a second A gives exactly one more D
    services.run_jobs_now([a])
    wait_until(lambda: len(runs(d, state="succeeded")) == 2, 20)
    time.sleep(1.0)
    assert len(runs(d)) == 2
    proc.stop()


def test_failure_edge_fires_only_on_final_failure(acme, scheduler):
    up = job(
        acme, "up", task="demo.fail", kwargs={"message": "x"}, retry_max_attempts=2, retry_backoff_seconds=0.2
    )
    alert = job(acme, "alert")
    services.add_dependency(up, alert, "failure")
    scheduler()
    services.run_jobs_now([up])
    wait_until(lambda: runs(alert, state="succeeded"), 20)
    assert len(runs(up)) == 2
    assert runs(alert)[0].triggered_by_id == runs(up)[-1].pk


class TestOverlap:
    def test_skip(self, acme, scheduler):
        j = job(
            acme,
            "busy",
            task="demo.sleep",
            kwargs={"seconds": 2.5},
            max_instances=1,
            overlap_policy="skip",
            trigger={"type": "interval", "seconds": 1},
        )
        proc = scheduler()
        wait_until(lambda: runs(j, state="succeeded"), 15)
        wait_until(lambda: runs(j, state="skipped"), 10)
        proc.stop()
        skipped = runs(j, state="skipped")
        assert "max instances 1, overlap policy: skip" in skipped[0].error
        assert_never_overlapping(runs(j, state="succeeded"))

    def test_queue(self, acme, scheduler):
        j = job(
            acme,
            "queued",
            task="demo.sleep",
            kwargs={"seconds": 1.0},
            max_instances=1,
            overlap_policy="queue",
        )
        proc = scheduler()
        for _ in range(3):
            services.run_jobs_now([j])
        wait_until(lambda: len(runs(j, state="succeeded")) == 3, 20)
        proc.stop()
        assert_never_overlapping(runs(j))

    def test_replace(self, acme, scheduler):
        j = job(
            acme,
            "replaced",
            task="demo.async_sleep",
            kwargs={"seconds": 30},
            executor="asyncio",
            max_instances=1,
            overlap_policy="replace",
        )
        proc = scheduler()
        services.run_jobs_now([j])
        first = wait_until(lambda: runs(j, state="running"), 10)[0]
        services.run_jobs_now([j])
        wait_until(lambda: JobRun.objects.get(pk=first.pk).state == "cancelled", 10)
        first.refresh_from_db()
        assert "replaced by a newer run" in first.error
        wait_until(lambda: len(runs(j, state="running")) == 1, 10)
        proc.stop()

    def test_global_limit(self, acme, scheduler, tmp_path):
        out = tmp_path / "spans.txt"
        jobs = [
            job(acme, f"w{i}", task="tests.append", kwargs={"path": str(out), "sleep": 0.5}, max_instances=5)
            for i in range(8)
        ]
        proc = scheduler(MAX_CONCURRENT_RUNS=3)
        services.run_jobs_now(jobs)
        wait_until(lambda: JobRun.objects.filter(state="succeeded").count() == 8, 30)
        proc.stop()
        spans = [tuple(map(float, line.split()[1:])) for line in out.read_text().splitlines()]
        assert max_concurrency(spans) <= 3


def test_per_executor_pool_limit(acme, scheduler, tmp_path):
    out = tmp_path / "spans.txt"
    jobs = [
        job(acme, f"t{i}", task="tests.append", kwargs={"path": str(out), "sleep": 0.4}, max_instances=5)
        for i in range(6)
    ]
    proc = scheduler(THREAD_POOL_SIZE=2, MAX_CONCURRENT_RUNS=50)
    services.run_jobs_now(jobs)
    wait_until(lambda: JobRun.objects.filter(state="succeeded").count() == 6, 30)
    proc.stop()
    spans = [tuple(map(float, line.split()[1:])) for line in out.read_text().splitlines()]
    assert max_concurrency(spans) == 2


def max_concurrency(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def assert_never_overlapping(run_list):
    spans = [(r.started_at.timestamp(), r.finished_at.timestamp()) for r in run_list if r.started_at]
    assert max_concurrency(spans) <= 1


class TestShutdownAndRecovery:
    def test_sigterm_interrupts_and_requeues(self, acme, scheduler):
        j = job(acme, "long", task="demo.sleep", kwargs={"seconds": 60})
        quick = job(acme, "quick", task="demo.sleep", kwargs={"seconds": 0.5})
        proc = scheduler(SHUTDOWN_GRACE=1.5)
        services.run_jobs_now([j, quick])
        wait_until(lambda: runs(j, state="running") and runs(quick, state="running"), 10)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.stop(timeout=20) == 0
        assert time.monotonic() - started < 10
        assert runs(quick)[0].state == "succeeded"  # finished within the grace
        run = runs(j)[0]
        assert run.state == "interrupted" and "SIGTERM" in run.error
        assert not JobRun.objects.filter(state="running").exists()
        # on the next start the interrupted run is queued again and runs
        Job.objects.filter(pk=j.pk).update(kwargs={"seconds": 0.1})
        proc2 = scheduler(node="node-b")
        wait_until(lambda: runs(j, state="succeeded"), 15)
        again = runs(j, state="succeeded")[0]
        assert again.attempt == 2 and again.reason == "recovery"
        proc2.stop()

    def test_kill_9_marks_lost_and_retries(self, acme, scheduler):
        j = job(
            acme,
            "victim",
            task="demo.sleep",
            kwargs={"seconds": 60},
            retry_max_attempts=2,
            retry_backoff_seconds=0,
        )
        proc = scheduler(node="stable-node")
        services.run_jobs_now([j])
        wait_until(lambda: runs(j, state="running"), 10)
        queued_other = job(acme, "waiting", trigger={"type": "manual"})
        services.run_jobs_now([queued_other], at=timezone.now() + timedelta(seconds=3))
        proc.kill9()
        Job.objects.filter(pk=j.pk).update(kwargs={"seconds": 0.1})
        proc2 = scheduler(node="stable-node")
        wait_until(lambda: runs(j, state="succeeded"), 15)
        first, second = runs(j)
        assert first.state == "lost" and "crash or kill" in first.error
        assert second.attempt == 2 and second.state == "succeeded"
        # the queued run survived the crash and ran at its time
        wait_until(lambda: runs(queued_other, state="succeeded"), 15)
        assert "recovered runs from an earlier life" in proc2.output
        proc2.stop()

    def test_runs_of_a_dead_node_are_reaped(self, acme, scheduler):
        j = job(acme, "orphan", task="demo.sleep", kwargs={"seconds": 60}, retry_max_attempts=1)
        proc = scheduler(node="dies")
        services.run_jobs_now([j])
        wait_until(lambda: runs(j, state="running"), 10)
        proc.kill9()
        # another node with another name notices the stale heartbeat
        proc2 = scheduler(node="survivor", LOST_AFTER=2.0)
        run = wait_until(lambda: runs(j, state="lost"), 20)[0]
        assert "no heartbeat" in run.error and run.is_final
        proc2.stop()


def test_stop_a_running_run(acme, scheduler):
    j = job(acme, "stoppable", task="demo.cpu_burn", kwargs={"seconds": 60}, executor="process")
    proc = scheduler()
    services.run_jobs_now([j])
    run = wait_until(lambda: runs(j, state="running"), 20)[0]
    services.stop_runs([run])
    wait_until(lambda: JobRun.objects.get(pk=run.pk).state == "cancelled", 10)
    assert JobRun.objects.get(pk=run.pk).error == "stopped by an operator"
    proc.stop()


def test_refuses_to_start_when_misconfigured(transactional_db):
    import subprocess
    import sys

    from tests.acceptance.conftest import ROOT, database_url

    env = {
        **__import__("os").environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "SCHEDULER_TEST_OVERRIDES": '{"JOB_STORE": "floppy"}',
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "runscheduler"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "refusing to start" in result.stderr and "scheduler_app.E002" in result.stderr
