"""Extensions end to end in real runscheduler processes: the isolated executor (fresh
process per run, clean environment, secrets by pipe, per-run memory), the reused process
worker's per-run peak memory, and the installed example plugin's executor and trigger
type; an executor plugin that blocks in submit fails the run, naming it."""

import pytest

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
    secrets = fields.pop("secret_kwargs", None)
    j = Job(tenant=tenant, name=name, **fields)
    if secrets:
        j.secret_kwargs = secrets
    return services.save_job(j)


def run_and_wait(j, timeout=60):
    (run,) = services.run_jobs_now([j]).done
    wait_until(lambda: JobRun.objects.get(pk=run.pk).is_final, timeout, message=f"run of {j.name}")
    return JobRun.objects.get(pk=run.pk)


def test_isolated_runs_in_a_fresh_clean_process_with_its_own_memory_figure(acme, scheduler):
    probe = job(
        acme, "probe", task="tests.isolation_probe", executor="isolated", secret_kwargs={"token": "abc123"}
    )
    big = job(acme, "big", task="demo.allocate", kwargs={"megabytes": 150}, executor="isolated")
    small = job(acme, "small", task="demo.allocate", kwargs={"megabytes": 1}, executor="isolated")
    limited = job(
        acme,
        "limited",
        task="demo.allocate",
        kwargs={"megabytes": 300},
        executor="isolated",
        memory_limit_mb=64,
    )
    scheduler("node-a", extra_env={"CLOUD_SECRET_TOKEN": "should-not-reach-runs"})
    first, second = run_and_wait(probe), run_and_wait(probe)
    assert first.state == "succeeded", first.error
    assert first.result["token_length"] == 6  # the secret arrived (through the pipe)
    assert "CLOUD_SECRET_TOKEN" not in first.result["env"]
    assert "DATABASE_URL" not in first.result["env"]
    assert first.result["cwd"] != second.result["cwd"]
    big_run, small_run = run_and_wait(big), run_and_wait(small)
    assert big_run.state == small_run.state == "succeeded"
    assert big_run.peak_memory_mb >= 150 and small_run.peak_memory_mb < 80, (
        big_run.peak_memory_mb,
        small_run.peak_memory_mb,
    )
    over = run_and_wait(limited)
    assert over.state == "failed" and over.error.startswith("memory limit of 64 MB exceeded")


def test_the_reused_process_worker_reports_each_runs_own_peak(acme, scheduler):
    big = job(acme, "big", task="demo.allocate", kwargs={"megabytes": 150}, executor="process")
    small = job(acme, "small", task="demo.allocate", kwargs={"megabytes": 1}, executor="process")
    scheduler("node-a", PROCESS_POOL_SIZE=1)  # one worker: the small run reuses the big one's
    big_run, small_run = run_and_wait(big), run_and_wait(small)
    assert big_run.peak_memory_mb >= 150
    assert small_run.peak_memory_mb < big_run.peak_memory_mb - 100, (
        big_run.peak_memory_mb,
        small_run.peak_memory_mb,
    )


def test_example_plugin_executor_and_trigger_in_runscheduler(acme, scheduler):
    serial = job(acme, "serial", task="demo.echo", kwargs={"x": 1}, executor="serial")
    scheduler("node-a")
    outcome = run_and_wait(serial)
    assert outcome.state == "succeeded" and outcome.result == {"x": 1}
    # the plugin trigger is live in the scheduler: its next fire time is recorded
    bdays = job(
        acme,
        "bdays",
        trigger={
            "type": "business_days",
            "every": 1,
            "at": "03:00",
            "timezone": "UTC",
            "start": "2026-01-05",
        },
    )
    assert "business day" in bdays.describe_trigger()


def test_an_executor_plugin_that_blocks_in_submit_fails_the_run(acme, scheduler):
    from django.conf import settings
    from django.test import override_settings

    with override_settings(
        SCHEDULER_APP={**settings.SCHEDULER_APP, "PLUGINS": ["tests.plugin_fixtures:blocking"]}
    ):
        blocked = job(acme, "blocked", executor="blocking")
    proc = scheduler("node-a", PLUGINS=["tests.plugin_fixtures:blocking"])
    outcome = run_and_wait(blocked)
    assert outcome.state == "failed"
    assert outcome.error.startswith("executor 'blocking' blocked in submit for more than 5 s")
    assert proc.proc.poll() is None  # the node keeps going
