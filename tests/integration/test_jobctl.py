"""The jobctl command drives the same services as the admin."""

import pytest
from django.core.management import CommandError, call_command

from scheduler_app.models import Job, JobRun

pytestmark = pytest.mark.django_db


def test_run_with_overrides_and_at(make_job, capsys):
    make_job("echo", task="demo.echo")
    call_command("jobctl", "run", "acme/echo", "--kwargs", '{"x": 1}', "--at", "2030-01-01T09:00:00+01:00")
    run = JobRun.objects.get()
    assert run.kwargs_override == {"x": 1} and run.reason == "run_at"
    assert run.not_before.isoformat() == "2030-01-01T08:00:00+00:00"
    assert "run: run" in capsys.readouterr().out


def test_pause_resume_enable_disable(make_job):
    make_job("a")
    call_command("jobctl", "pause", "acme/a")
    assert Job.objects.get().paused
    call_command("jobctl", "resume", "acme/a")
    assert not Job.objects.get().paused
    call_command("jobctl", "disable", "acme/a")
    assert not Job.objects.get().enabled
    with pytest.raises(CommandError, match="1 of 1 refused"):
        call_command("jobctl", "run", "acme/a")
    call_command("jobctl", "enable", "acme/a")
    assert Job.objects.get().enabled


def test_cancel_and_errors(make_job):
    make_job("a")
    call_command("jobctl", "run", "acme/a")
    run = JobRun.objects.get()
    call_command("jobctl", "cancel", str(run.pk))
    assert JobRun.objects.get().state == "cancelled"
    with pytest.raises(CommandError, match="no such job"):
        call_command("jobctl", "pause", "acme/nope")
    with pytest.raises(CommandError, match="TENANT/NAME"):
        call_command("jobctl", "pause", "nope")
    with pytest.raises(CommandError, match="--kwargs: not valid JSON"):
        call_command("jobctl", "run", "acme/a", "--kwargs", "{x")
    with pytest.raises(CommandError, match="no run with id 999"):
        call_command("jobctl", "stop", "999")
