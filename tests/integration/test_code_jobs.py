"""Jobs declared in code (@scheduler_app.task(schedule=...) and SCHEDULER_APP["JOBS"]):
synced by syncjobs, audited with the deploy as actor, editable only in code (pause
aside), clashes refused naming both sides."""

import io

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings

import scheduler_app
from scheduler_app import services
from scheduler_app.models import Job
from scheduler_app.registry import CodeJob, code_jobs
from scheduler_app.services import codejobs

pytestmark = pytest.mark.django_db
HERE = __name__


@pytest.fixture
def declare():
    """Declare code jobs with the real decorator; forgotten (and unregistered) after."""
    saved = list(code_jobs)
    names = []

    def make(task_name, **options):
        def func(n: int = 0) -> int:
            return n

        func.__qualname__ = task_name.replace(".", "_")
        scheduler_app.task(name=task_name, **options)(func)
        names.append(task_name)

    yield make
    code_jobs[:] = saved
    for name in names:
        scheduler_app.registry.unregister(name)


def sync(*args):
    out = io.StringIO()
    call_command("syncjobs", *args, stdout=out)
    return out.getvalue()


def test_decorator_declares_a_job_synced_with_the_deploy_as_actor(declare):
    declare("billing.nightly", schedule="0 2 * * *", timezone="Europe/Berlin", kwargs={"n": 3}, priority=5)
    out = sync()
    assert f"create job default/billing.nightly ({HERE})" in out
    job = Job.objects.get(tenant__slug="default", name="billing.nightly")
    assert job.managed_by == HERE
    assert job.trigger == {
        "type": "cron",
        "expression": "0 2 * * *",
        "dialect": "crontab",
        "timezone": "Europe/Berlin",
    }
    assert (job.task, job.kwargs, job.priority) == ("billing.nightly", {"n": 3}, 5)
    version = job.versions.get()
    assert version.summary == f"deploy: created from {HERE}" and version.author is None
    entries = LogEntry.objects.get_for_object(job)
    assert entries.exists() and all(e.additional_data.get("actor") == "deploy" for e in entries)
    assert all(e.additional_data.get("module") == HERE for e in entries)
    assert "0 created, 0 changed, 0 deleted, 1 unchanged" in sync()


def test_changed_and_removed_declarations_update_and_delete(declare):
    declare("etl.load", schedule="*/5 * * * *")
    sync()
    code_jobs[-1] = CodeJob("etl.load", HERE, {**code_jobs[-1].document, "priority": 9})
    with pytest.raises(CommandError, match=r"drifted from the code: 0 created, 1 changed"):
        sync("--check")
    assert "would change job default/etl.load" in sync("--dry-run")
    assert Job.objects.get(name="etl.load").priority == 0
    sync()
    job = Job.objects.get(name="etl.load")
    assert job.priority == 9 and job.versions.count() == 2
    assert "Code jobs are in sync" in sync("--check")
    code_jobs.pop()
    out = sync()
    assert f"delete job default/etl.load ({HERE}; no longer declared)" in out
    assert not Job.objects.filter(name="etl.load").exists()


def test_settings_jobs_and_operators_may_only_pause(declare, tenant):
    jobs = [{"name": "cleanup", "task": "demo.noop", "schedule": "30 3 * * *", "tenant": "acme"}]
    with override_settings(SCHEDULER_APP={"JOBS": jobs, "TASK_MODULES": ["tests.tasks"]}):
        sync()
        job = Job.objects.get(tenant=tenant, name="cleanup")
        assert job.managed_by == "settings SCHEDULER_APP['JOBS'][0]"
        services.pause_jobs([job])
        job.refresh_from_db()
        job.priority = 50
        with pytest.raises(ValidationError) as info:
            services.save_job(job)
        assert info.value.messages == [
            "job cleanup is managed by code in settings SCHEDULER_APP['JOBS'][0]; change priority there "
            "(operators may only pause and resume it)"
        ]
        sync()  # the operator's pause survives the deploy
        assert Job.objects.get(pk=job.pk).paused is True
        assert Job.objects.get(pk=job.pk).priority == 0


def test_two_declarations_of_one_name_are_refused_naming_both(declare):
    declare("reports.weekly", schedule="0 6 * * 1")
    jobs = [{"name": "reports.weekly", "task": "demo.noop", "schedule": "0 7 * * 1"}]
    with override_settings(SCHEDULER_APP={"JOBS": jobs, "TASK_MODULES": ["tests.tasks"]}):
        with pytest.raises(CommandError) as info:
            sync()
    assert str(info.value) == (
        f"job default/reports.weekly is declared twice: in {HERE} and in settings SCHEDULER_APP['JOBS'][0]; "
        "nothing was changed"
    )
    assert not Job.objects.exists()


def test_clash_with_a_hand_made_job_is_refused_naming_both(declare, make_job):
    hand = make_job("sync.erp")
    declare("sync.erp", schedule="0 * * * *", tenant="acme")
    with pytest.raises(codejobs.CodeJobError) as info:
        codejobs.sync_code_jobs()
    assert str(info.value) == (
        f"job acme/sync.erp declared in {HERE} clashes with the hand-made job acme/sync.erp (id {hand.pk}); "
        "rename one of them"
    )
    assert Job.objects.get(pk=hand.pk).managed_by == ""


def test_bad_declaration_is_named(declare):
    declare("bad.schedule", schedule="0 25 * * *")
    with pytest.raises(CommandError) as info:
        sync()
    assert str(info.value).startswith(f"code job default/bad.schedule ({HERE}): trigger.expression")
    assert not Job.objects.exists()


def test_admin_shows_the_badge_and_refuses_edits(declare, admin_client):
    declare("ui.job", schedule="0 1 * * *")
    sync()
    job = Job.objects.get(name="ui.job")
    listing = admin_client.get("/admin/scheduler_app/job/").content.decode()
    assert f"managed by code ({HERE})" in listing
    page = admin_client.get(f"/admin/scheduler_app/job/{job.pk}/change/").content.decode()
    assert f"managed by code ({HERE})" in page


def test_duplicate_declarations_are_system_check_e070(declare):
    from scheduler_app.checks import check_code_jobs

    assert check_code_jobs() == []
    jobs = [{"name": "twice", "task": "demo.noop", "schedule": "0 1 * * *"}] * 2
    with override_settings(SCHEDULER_APP={"JOBS": jobs, "TASK_MODULES": ["tests.tasks"]}):
        (error,) = check_code_jobs()
    assert error.id == "scheduler_app.E070"
    assert error.msg == (
        "Jobs declared in code: job default/twice is declared twice: in settings SCHEDULER_APP['JOBS'][0] "
        "and in settings SCHEDULER_APP['JOBS'][1]."
    )


def test_jobs_file_edit_of_a_code_job_is_refused_naming_the_module(declare, tmp_path):
    declare("filed.job", schedule="0 4 * * *")
    sync()
    path = tmp_path / "jobs.json"
    path.write_text(
        '{"version": 1, "jobs": [{"tenant": "default", "name": "filed.job", "task": "filed.job", "priority": 3}]}'
    )
    with pytest.raises(CommandError) as info:
        call_command("importjobs", str(path), stdout=io.StringIO())
    assert str(info.value) == (
        f"{path}: jobs[0] (default/filed.job): job filed.job is managed by code in {HERE}; change priority "
        "there (operators may only pause and resume it); nothing was changed"
    )
    assert Job.objects.get(name="filed.job").priority == 0
