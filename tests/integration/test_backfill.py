"""Backfill: one run per fire time in a range, bounded by the cap, idempotent with the
normal fires; from the service, jobctl (confirmation, --yes, --dry-run), the API and the
admin."""

import datetime as dt
import io

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Membership
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db
UTC = dt.UTC
HOURLY = {"type": "cron", "expression": "0 * * * *", "dialect": "crontab", "timezone": "UTC"}
FROM, TO = "2026-11-23T00:00:00+00:00", "2026-11-23T05:00:00+00:00"


def t(hour):
    return dt.datetime(2026, 11, 23, hour, tzinfo=UTC)


@pytest.fixture
def hourly(make_job):
    return make_job("hourly", trigger=HOURLY, priority=3)


def test_queues_one_run_per_fire_time_and_not_again(hourly):
    services.enqueue_run(hourly, scheduled_for=t(2))  # the trigger fired at 02:00
    plan = services.backfill_job(hourly, t(0), t(5), priority=9)
    assert [r.scheduled_for for r in plan.queued] == [t(0), t(1), t(3), t(4), t(5)]
    assert plan.existing == [t(2)]
    assert {r.reason for r in plan.queued} == {"backfill"} and {r.priority for r in plan.queued} == {9}
    again = services.backfill_job(hourly, t(0), t(5))
    assert again.queued == [] and len(again.existing) == 6
    assert JobRun.objects.count() == 6
    # a normal fire of a backfilled time adds nothing
    assert services.enqueue_run(hourly, scheduled_for=t(4)) is None
    entry = LogEntry.objects.filter(additional_data__operation="backfill").order_by("pk").first()
    assert entry.additional_data["queued"] == 5 and entry.additional_data["already"] == 1


def test_dry_run_queues_nothing(hourly):
    plan = services.backfill_job(hourly, t(0), t(2), dry_run=True)
    assert plan.to_queue == [t(0), t(1), t(2)] and not JobRun.objects.exists()


@override_settings(SCHEDULER_APP={"BACKFILL_MAX_RUNS": 50})
def test_cap_refuses_a_century_of_every_second_fires(make_job):
    job = make_job("fast", trigger={"type": "interval", "seconds": 1})
    start = dt.datetime(1990, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError, match=r'more than 50 fire times.*BACKFILL_MAX_RUNS"\] = 50'):
        services.backfill_job(job, start, start.replace(year=2090))
    assert not JobRun.objects.exists()


@pytest.mark.parametrize(
    ("start", "end", "trigger", "field", "message"),
    [
        (t(5), t(0), HOURLY, "to", "is before from"),
        (t(0).replace(tzinfo=None), t(5), HOURLY, "from", "needs a UTC offset"),
        (t(0), t(5), {"type": "manual"}, "trigger", "manual trigger"),
    ],
    ids=["reversed", "naive", "manual"],
)
def test_bad_input(make_job, start, end, trigger, field, message):
    job = make_job("j", trigger=trigger)
    with pytest.raises(ValidationError) as info:
        services.backfill_job(job, start, end)
    assert message in " ".join(info.value.message_dict[field])


def test_disabled_job_and_bad_priority_are_refused(hourly):
    with pytest.raises(ValidationError, match="out of range"):
        services.backfill_job(hourly, t(0), t(1), priority=2**40)
    services.disable_jobs([hourly])
    with pytest.raises(ValidationError, match="is disabled"):
        services.backfill_job(Job.objects.get(), t(0), t(1))


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_jobctl_asks_on_a_terminal_and_refuses_without_one(hourly, capsys):
    call_command("jobctl", "backfill", "acme/hourly", "--from", FROM, "--to", TO, "--dry-run")
    out = capsys.readouterr().out
    assert "6 run(s) to queue" in out and "would queue 2026-11-23T05:00:00+00:00" in out
    with pytest.raises(CommandError, match="no terminal to confirm on; add --yes"):
        call_command("jobctl", "backfill", "acme/hourly", "--from", FROM, "--to", TO, stdin=io.StringIO())
    with pytest.raises(CommandError, match="not confirmed"):
        call_command("jobctl", "backfill", "acme/hourly", "--from", FROM, "--to", TO, stdin=Tty("n\n"))
    assert not JobRun.objects.exists()
    call_command("jobctl", "backfill", "acme/hourly", "--from", FROM, "--to", TO, stdin=Tty("y\n"))
    out = capsys.readouterr().out
    assert "Queue 6 run(s)? [y/N]" in out and "queued 6/6" in out and "queued 6 run(s), skipped 0" in out
    call_command("jobctl", "backfill", "acme/hourly", "--from", FROM, "--to", TO, "--yes", "--priority", "7")
    assert "0 run(s) to queue" in capsys.readouterr().out and JobRun.objects.count() == 6


def test_jobctl_errors(hourly):
    with pytest.raises(CommandError, match="give --from and --to"):
        call_command("jobctl", "backfill", "acme/hourly", "--from", FROM)
    with pytest.raises(CommandError, match="--to: add a UTC offset"):
        call_command("jobctl", "backfill", "acme/hourly", "--from", FROM, "--to", "2026-11-24T00:00:00")
    with pytest.raises(CommandError, match="to: .*is before from"):
        call_command("jobctl", "backfill", "acme/hourly", "--from", TO, "--to", FROM, "--yes")


def test_api_backfill(hourly, tenant, other_tenant, make_job):
    user = get_user_model().objects.create_user("op")
    Membership.objects.create(tenant=tenant, user=user, role="operator")
    api = client_for(key_for(user))
    url = f"/api/jobs/{hourly.pk}/backfill/"
    response = api.post(url, {"from": FROM, "to": TO, "dry_run": True}, format="json")
    assert response.status_code == 200, response.content
    assert len(response.json()["queued"]) == 6 and response.json()["runs"] == []
    response = api.post(url, {"from": FROM, "to": TO, "priority": 5}, format="json")
    body = response.json()
    assert len(body["runs"]) == 6 and set(JobRun.objects.values_list("priority", flat=True)) == {5}
    assert errors_of(api.post(url, {"from": FROM}, format="json")) == [
        ("to", "an ISO 8601 time with a UTC offset")
    ]
    assert errors_of(api.post(url, {"from": FROM, "to": TO, "priority": "high"}, format="json")) == [
        ("priority", "must be a whole number")
    ]
    with override_settings(SCHEDULER_APP={"BACKFILL_MAX_RUNS": 3}):
        ((field, message),) = errors_of(api.post(url, {"from": FROM, "to": TO}, format="json"))
    assert field == "to" and "BACKFILL_MAX_RUNS" in message
    foreign = make_job("x", tenant=other_tenant, trigger=HOURLY)
    assert (
        api.post(f"/api/jobs/{foreign.pk}/backfill/", {"from": FROM, "to": TO}, format="json").status_code
        == 404
    )


def test_admin_backfill_action(hourly, admin_client):
    url = reverse("admin:scheduler_app_job_changelist")
    form = admin_client.post(url, {"action": "backfill_selected", "_selected_action": [hourly.pk]})
    assert form.status_code == 200 and "Backfill this job" in form.content.decode()
    data = {"action": "backfill_selected", "_selected_action": [hourly.pk], "apply": "1"}
    response = admin_client.post(url, {**data, "start": FROM, "end": "2026-11-23T05:00:00"})
    assert "add a UTC offset" in response.content.decode()
    response = admin_client.post(url, {**data, "start": FROM, "end": TO}, follow=True)
    assert "Hourly: 6 run(s) queued, 0 fire time(s) already had a run." in response.content.decode()
    assert JobRun.objects.filter(reason="backfill").count() == 6
