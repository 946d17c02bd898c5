"""The admin's mute actions: "Mute alerts of selected jobs until…" / "Unmute" on jobs
and "Mute selected rules until…" / "Unmute" on alert rules, through services (per-object
permission, audited with the user), and what a mute does: a muted job's or rule's
failures send nothing until the time, then alerts go out again (real webhook receiver)."""

import datetime as dt

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import AlertOutbox, Job, Membership
from tests.alert_receivers import WebhookReceiver
from tests.integration.test_alerts import deliver_all, finish, rule, webhook_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def editor(tenant, client):
    user = get_user_model().objects.create_user("ed", password="pw", is_staff=True)
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    client.force_login(user)
    return user


def changelist(model):
    return reverse(f"admin:scheduler_app_{model}_changelist")


def act(client, model, action, objs, **fields):
    data = {"action": action, "_selected_action": [o.pk for o in objs], **fields}
    return client.post(changelist(model), data, follow=True)


def texts(response):
    return [str(m) for m in response.context["messages"]]


def test_mute_jobs_until_a_time_then_unmute(client, editor, tenant, make_job, hook):
    billing, other = make_job("billing"), make_job("other")
    channel = webhook_channel(tenant, hook.url)
    rule(tenant, [channel], events=["failed"], throttle_seconds=0)

    page = act(client, "job", "mute_alerts_selected", [billing])
    assert page.status_code == 200 and b"Mute the alerts of this object" in page.content
    assert b"acme/billing" in page.content and Job.objects.get(pk=billing.pk).alerts_muted_until is None

    bad = act(client, "job", "mute_alerts_selected", [billing], apply="1", until="2020-01-01T00:00:00+00:00")
    assert bad.context["form"].errors == {"until": ["must be in the future"]}
    naive = act(client, "job", "mute_alerts_selected", [billing], apply="1", until="2030-01-01T00:00:00")
    assert naive.context["form"].errors == {"until": ["add a UTC offset, e.g. 2026-12-01T00:00:00+00:00"]}
    both = act(client, "job", "mute_alerts_selected", [billing], apply="1", duration="1h",
               until="2030-01-01T00:00:00+00:00")  # fmt: skip
    assert both.context["form"].non_field_errors() == [
        "choose how long, or give a time until which to mute, not both"
    ]
    assert Job.objects.get(pk=billing.pk).alerts_muted_until is None  # nothing applied

    until = (timezone.now() + dt.timedelta(hours=3)).replace(microsecond=0)
    done = act(client, "job", "mute_alerts_selected", [billing], apply="1", until=until.isoformat())
    assert done.redirect_chain and texts(done) == [
        f"Alerts muted until {until.strftime('%Y-%m-%d %H:%M:%S')} +00:00: 1."
    ]
    assert Job.objects.get(pk=billing.pk).alerts_muted_until == until
    assert Job.objects.get(pk=other.pk).alerts_muted_until is None
    entry = LogEntry.objects.filter(additional_data__operation="mute_alerts").get()
    assert entry.actor == editor and entry.additional_data["until"] == until.isoformat()
    change = client.get(reverse("admin:scheduler_app_job_change", args=[billing.pk]))
    assert until.strftime("%Y-%m-%d %H:%M:%S +00:00").encode() in change.content

    finish(Job.objects.get(pk=billing.pk), "failed")
    finish(Job.objects.get(pk=other.pk), "failed")
    deliver_all()
    assert [r["json"]["job"] for r in hook.accepted()] == ["other"]  # the muted job sent nothing

    done = act(client, "job", "unmute_alerts_selected", [billing])
    assert texts(done) == ["Alerts unmuted: 1."]
    assert Job.objects.get(pk=billing.pk).alerts_muted_until is None
    assert LogEntry.objects.filter(additional_data__operation="unmute_alerts").get().actor == editor
    finish(Job.objects.get(pk=billing.pk), "failed", when=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    deliver_all()
    assert sorted(r["json"]["job"] for r in hook.accepted()) == ["billing", "other"]


def test_mute_for_a_duration(client, editor, make_job):
    job = make_job("a")
    before = timezone.now()
    act(client, "job", "mute_alerts_selected", [job], apply="1", duration="4h")
    until = Job.objects.get(pk=job.pk).alerts_muted_until
    assert before + dt.timedelta(hours=4) <= until <= timezone.now() + dt.timedelta(hours=4)


def test_a_viewer_may_not_mute(client, tenant, make_job):
    job = make_job("a")
    viewer = get_user_model().objects.create_user("vi", password="pw", is_staff=True)
    Membership.objects.create(tenant=tenant, user=viewer, role="viewer")
    client.force_login(viewer)
    response = client.get(changelist("job"))
    assert b"mute_alerts_selected" not in response.content  # the action is not offered
    act(client, "job", "mute_alerts_selected", [job], apply="1", duration="1h")
    assert Job.objects.get(pk=job.pk).alerts_muted_until is None


def test_mute_rules_until_a_time_then_unmute(client, editor, tenant, make_job, hook):
    job = make_job("billing")
    channel = webhook_channel(tenant, hook.url)
    loud = rule(tenant, [channel], name="loud", events=["failed"])
    quiet = rule(tenant, [channel], name="quiet", events=["failed"])
    until = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    page = act(client, "alertrule", "mute_selected", [quiet])
    assert page.status_code == 200 and b"acme/quiet" in page.content
    done = act(client, "alertrule", "mute_selected", [quiet], apply="1", until=until.isoformat())
    assert texts(done) == [f"Alerts muted until {until.strftime('%Y-%m-%d %H:%M:%S')} +00:00: 1."]
    quiet.refresh_from_db()
    loud.refresh_from_db()
    assert quiet.muted_until == until and loud.muted_until is None
    entry = LogEntry.objects.get_for_object(quiet).latest("pk")
    assert entry.actor == editor and entry.changes_dict["muted_until"][0] == "None"

    finish(job, "failed")
    assert [r.rule.name for r in AlertOutbox.objects.select_related("rule")] == ["loud"]

    done = act(client, "alertrule", "unmute_selected", [quiet])
    assert texts(done) == ["Alerts unmuted: 1."]
    quiet.refresh_from_db()
    assert quiet.muted_until is None


def test_services_refuse_a_past_time_and_check_permission_per_object(tenant, other_tenant, make_job):
    job = make_job("a")
    user = get_user_model().objects.create_user("ed2", password="pw", is_staff=True)
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    theirs = services.save_job(Job(tenant=other_tenant, name="theirs", task="demo.noop"))
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        services.mute_jobs_alerts([job], timezone.now() - dt.timedelta(seconds=1), actor=user)
    assert info.value.message_dict == {"alerts_muted_until": ["must be in the future"]}
    result = services.mute_jobs_alerts([job, theirs], timezone.now() + dt.timedelta(hours=1), actor=user)
    assert result.done == [job] and [(o, r) for o, r in result.refused] == [
        (theirs, "you may not change this job")
    ]
    assert Job.objects.get(pk=theirs.pk).alerts_muted_until is None
