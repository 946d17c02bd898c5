"""jobctl list / status print jobs with next fire, last run and state; every
subcommand has its own --help."""

import datetime as dt

import pytest
from django.core.management import CommandError, call_command

from scheduler_app.models import JobRun

pytestmark = pytest.mark.django_db

CRON_SHANGHAI = {"type": "cron", "expression": "0 9 * * *", "timezone": "Asia/Shanghai"}


@pytest.fixture
def jobs(make_job, other_tenant):
    daily = make_job("daily", trigger=CRON_SHANGHAI)
    make_job("held", paused=True)
    make_job("off", enabled=False)
    make_job("theirs", tenant=other_tenant)
    at = dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)
    JobRun.objects.create(
        job=daily,
        tenant=daily.tenant,
        scheduled_for=at,
        not_before=at,
        state="succeeded",
        duration=1.6044e-05,
    )
    return daily


def lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_list_shows_state_next_fire_and_last_run(jobs, capsys):
    call_command("jobctl", "list")
    out = lines(capsys)
    assert out[0].split() == ["JOB", "STATE", "NEXT", "FIRE", "LAST", "RUN"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"acme/daily", "acme/held", "acme/off", "globex/theirs"}
    daily = rows["acme/daily"]
    assert " enabled " in daily
    assert "09:00:00 +08:00 (Asia/Shanghai)" in daily  # next fire, in the job's zone
    assert daily.endswith("succeeded 2026-12-02 09:00:00 +08:00 (Asia/Shanghai)")
    assert " paused " in rows["acme/held"] and " disabled " in rows["acme/off"]
    assert rows["acme/off"].split()[2] == "—"  # a disabled job does not fire


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tenant", "acme"], {"acme/daily", "acme/held", "acme/off"}),
        (["--tenant", "globex"], {"globex/theirs"}),
        (["--state", "paused"], {"acme/held"}),
        (["--state", "paused", "--state", "disabled"], {"acme/held", "acme/off"}),
        (["--tenant", "globex", "--state", "paused"], set()),
    ],
    ids=["tenant", "other-tenant", "state", "two-states", "none"],
)
def test_list_filters(jobs, capsys, argv, expected):
    call_command("jobctl", "list", *argv)
    out = lines(capsys)
    listed = {line.split()[0] for line in out[1:] if "/" in line.split()[0]}
    assert listed == expected
    if not expected:
        assert out[-1] == "(no jobs)"


def test_list_bad_input(jobs):
    with pytest.raises(CommandError, match="--tenant: no tenant with slug 'nope'"):
        call_command("jobctl", "list", "--tenant", "nope")
    with pytest.raises(CommandError, match="invalid choice: 'running'"):
        call_command("jobctl", "list", "--state", "running")


def test_status(jobs, capsys):
    call_command("jobctl", "status", "acme/daily")
    out = "\n".join(lines(capsys))
    assert "job:        acme/daily" in out
    assert "state:      enabled" in out
    assert "trigger:    At 09:00 (Asia/Shanghai)" in out
    assert out.count("09:00:00 +08:00 (Asia/Shanghai)") >= 5  # next fire times and the run
    assert "succeeded  0.000 s" in out  # rounded, never 1.6044e-05
    assert "e-05" not in out
    with pytest.raises(CommandError, match="'acme/nope': no such job"):
        call_command("jobctl", "status", "acme/nope")


@pytest.mark.parametrize(
    ("sub", "expected"),
    [("list", "--tenant SLUG"), ("status", "TENANT/NAME"), ("run", "--kwargs"), ("cancel", "RUN_ID")],
)
def test_subcommand_help(capsys, sub, expected):
    with pytest.raises(SystemExit) as exit_info:
        call_command("jobctl", sub, "--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"jobctl {sub}" in out.splitlines()[0]
    assert expected in out
