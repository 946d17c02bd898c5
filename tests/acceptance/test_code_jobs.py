"""A real runscheduler syncs the jobs declared in code at start (a decorator in a task
module and SCHEDULER_APP["JOBS"]), runs them, and refuses to start on a clash."""

import pytest

from scheduler_app.models import Job, JobRun, Tenant
from tests.acceptance.conftest import SchedulerProcess, wait_until

pytestmark = pytest.mark.slow

CODE = {
    "TASK_MODULES": ["tests.tasks", "tests.codejob_tasks"],
    "JOBS": [{"name": "nightly", "task": "demo.noop", "schedule": "0 2 * * *", "timezone": "Europe/Berlin"}],
}


def test_runscheduler_syncs_code_jobs_at_start_and_runs_them(scheduler):
    Tenant.objects.create(slug="acme", name="Acme")
    proc = scheduler(**CODE)
    assert "code jobs: create job acme/tests.code_tick (tests.codejob_tasks)" in proc.output
    tick = Job.objects.get(tenant__slug="acme", name="tests.code_tick")
    assert tick.managed_by == "tests.codejob_tasks"
    nightly = Job.objects.get(tenant__slug="default", name="nightly")
    assert nightly.managed_by == "settings SCHEDULER_APP['JOBS'][0]"
    assert nightly.trigger["timezone"] == "Europe/Berlin"
    wait_until(
        lambda: JobRun.objects.filter(job=tick, state="succeeded").exists(),
        timeout=30,
        message="the code job never ran",
    )
    assert proc.stop() == 0
    assert JobRun.objects.filter(job=tick, state="succeeded").first().result == "tick"
    # a second start with the same code changes nothing
    proc = scheduler(node="node-b", **CODE)
    assert "code jobs:" not in proc.output
    assert proc.stop() == 0
    assert nightly.versions.count() == 1


def test_runscheduler_refuses_to_start_on_a_clash_naming_both(scheduler):
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    hand = Job.objects.create(tenant=tenant, name="tests.code_tick", task="demo.noop")
    proc = SchedulerProcess("node-a", None, CODE)
    code = proc.proc.wait(timeout=120)
    proc._reader.join(timeout=5)
    assert code != 0
    assert (
        "refusing to start: job acme/tests.code_tick declared in tests.codejob_tasks clashes with "
        f"the hand-made job acme/tests.code_tick (id {hand.pk}); rename one of them"
    ) in proc.output
    assert "Traceback" not in proc.output
    assert Job.objects.get(pk=hand.pk).managed_by == ""
    assert not Job.objects.filter(name="nightly").exists()  # nothing half-applied
