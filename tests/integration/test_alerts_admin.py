"""The alerts admin: channels and rules saved through services (validated, audited,
secrets write-only and encrypted), the outbox with its delivery attempts, the test
action, and tenant isolation (404 for another tenant's objects)."""

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.urls import reverse

from scheduler_app import services
from scheduler_app.alerts import delivery
from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule, Membership
from tests.alert_receivers import WebhookReceiver


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


def url(model, view="changelist", *args):
    return reverse(f"admin:scheduler_app_{model}_{view}", args=args)


def channel_data(tenant, **fields):
    data = {
        "tenant": tenant.pk,
        "name": "ops-hook",
        "type": "webhook",
        "url": "",
        "to": "",
        "timeout": "",
        "secret": "",
        "language": "",
        "subject_template": "",
        "body_template": "",
        "enabled": "on",
    }
    data.update(fields)
    return data


@pytest.mark.django_db
def test_add_webhook_channel_secret_encrypted_and_audited(client, editor, tenant, hook):
    response = client.post(
        url("alertchannel", "add"), channel_data(tenant, url=hook.url, secret="hunter2-hook")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = AlertChannel.objects.get()
    assert channel.config == {"url": hook.url}
    assert channel.reveal_secret() == "hunter2-hook"
    page = client.get(url("alertchannel", "change", channel.pk)).content.decode()
    assert "hunter2-hook" not in page and channel.secret_token not in page
    entries = LogEntry.objects.get_for_object(channel)
    assert entries.exists() and all(e.actor_id == editor.pk for e in entries)
    assert all("hunter2-hook" not in str(e.changes) for e in entries)
    # Saving again without a secret keeps it.
    response = client.post(url("alertchannel", "change", channel.pk), channel_data(tenant, url=hook.url))
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.reveal_secret() == "hunter2-hook"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields,field,message",
    [
        ({"url": "not a url"}, "url", "is not an http(s) URL"),
        ({"type": "email", "to": "nobody"}, "to", "'nobody' is not an e-mail address"),
        ({"type": "apprise", "secret": "nonsense://x"}, "secret", "not an apprise URL"),
        ({"url": "http://x.example", "subject_template": "{oops}"}, "subject_template", "unknown variable"),
    ],
    ids=["url", "email", "apprise", "template"],
)
def test_bad_channel_form_names_the_field(client, editor, tenant, fields, field, message):
    response = client.post(url("alertchannel", "add"), channel_data(tenant, **fields))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in m for m in errors[field]), errors
    assert not AlertChannel.objects.exists()


@pytest.mark.django_db
def test_rule_form_and_threshold_error(client, editor, tenant):
    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="hook", type="webhook", config={"url": "http://x.example/h"})
    )
    data = {
        "tenant": tenant.pk,
        "name": "failures",
        "scope_job": "",
        "scope_group": "",
        "events": ["failed", "missed"],
        "channels": [channel.pk],
        "late_after_seconds": "",
        "missed_after_seconds": "",
        "slow_after_seconds": "",
        "throttle_seconds": "3600",
        "muted_until_0": "",
        "muted_until_1": "",
        "enabled": "on",
    }
    response = client.post(url("alertrule", "add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any("required for the 'missed' event" in m for m in errors["missed_after_seconds"])
    data["missed_after_seconds"] = "3600"
    response = client.post(url("alertrule", "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = AlertRule.objects.get()
    assert rule.events == ["failed", "missed"] and list(rule.channels.all()) == [channel]
    assert LogEntry.objects.get_for_object(rule).filter(actor=editor).exists()


@pytest.mark.django_db
def test_test_action_and_outbox_shows_attempts(client, editor, tenant, hook):
    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="hook", type="webhook", config={"url": hook.url})
    )
    response = client.post(
        url("alertchannel"), {"action": "send_test", "_selected_action": [channel.pk]}, follow=True
    )
    assert "test alert(s) queued" in response.content.decode()
    row = AlertOutbox.objects.get()
    hook.status = 500
    delivery.deliver("node-x")
    page = client.get(url("alertoutbox", "change", row.pk)).content.decode()
    assert "HTTP 500" in page and "node-x" in page
    assert client.get(url("alertoutbox", "add")).status_code == 403


@pytest.mark.django_db
def test_other_tenants_alert_objects_are_404(client, editor, other_tenant):
    theirs = services.save_channel(
        AlertChannel(tenant=other_tenant, name="theirs", type="webhook", config={"url": "http://x.example/h"})
    )
    rule = services.save_rule(AlertRule(tenant=other_tenant, name="r", events=["failed"]), channels=[theirs])
    row = services.send_test_alert(theirs)
    assert client.get(url("alertchannel", "change", theirs.pk)).status_code == 404
    assert client.get(url("alertrule", "change", rule.pk)).status_code == 404
    assert client.get(url("alertoutbox", "change", row.pk)).status_code == 404
    listing = client.get(url("alertchannel")).content.decode()
    assert "theirs" not in listing
