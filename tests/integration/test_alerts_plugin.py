"""Alert channels from plugins, with the installed example plugin's ``jsonfile`` type:
accepted as a channel type everywhere (services, admin, API, jobs files), its settings
validated by the plugin (field errors naming the key), its secret field stored
encrypted, and delivery through the plugin's send: a rule firing on a failed run puts
the alert in the file."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from scheduler_app import plugins, services
from scheduler_app.alerts import delivery
from scheduler_app.models import AlertChannel, AlertDelivery, AlertOutbox, AlertRule, Membership
from tests.integration.api_support import client_for, errors_of, key_for
from tests.integration.test_alerts import deliver_all, finish

pytestmark = pytest.mark.django_db
TOKEN = "jsonfile-t0ken-value"


@pytest.fixture(autouse=True)
def fresh_registry():
    plugins.registry.reset()
    yield
    plugins.registry.reset()


@pytest.fixture
def editor(tenant):
    user = get_user_model().objects.create_user("ed", password="pw", is_staff=True)
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return user


def jsonfile(tenant, path, **config):
    return services.save_channel(
        AlertChannel(tenant=tenant, name="file", type="jsonfile", config={"path": str(path), **config})
    )


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_rule_firing_on_a_failed_run_writes_the_alert_to_the_file(tenant, make_job, tmp_path):
    path = tmp_path / "alerts.jsonl"
    job = make_job("billing")
    channel = jsonfile(tenant, path, token=TOKEN)
    stored = AlertChannel.objects.filter(pk=channel.pk).values()[0]
    assert stored["type"] == "jsonfile" and stored["config"] == {"path": str(path)}  # the token left config
    assert TOKEN not in repr(stored) and stored["secret_token"]
    assert channel.reveal_secrets() == {"token": TOKEN}
    services.save_rule(AlertRule(tenant=tenant, name="r", events=["failed"]), channels=[channel])

    run = finish(job, "failed", error="ValueError: bad invoice")
    row = AlertOutbox.objects.get(channel=channel)
    assert not path.exists()  # written to the outbox, not sent yet
    assert deliver_all() == 1
    (alert,) = lines(path)
    assert alert["alert_id"] == str(row.alert_id) and alert["event"] == "failed"
    assert (alert["tenant"], alert["job"], alert["run_id"]) == ("acme", "billing", run.pk)
    assert alert["error"].startswith("ValueError: bad invoice")
    assert alert["subject"] == "[scheduler] failed: billing (acme)"
    assert "Job: billing" in alert["body"]
    assert alert["token_set"] is True  # the plugin got the decrypted secret field
    assert TOKEN not in path.read_text()
    row.refresh_from_db()
    assert row.state == "sent"
    assert AlertDelivery.objects.get(outbox=row).response == "sent by the example plugin"


def test_a_failing_plugin_send_is_retried_and_recorded(tenant, make_job, tmp_path):
    path = tmp_path / "gone" / "alerts.jsonl"
    (tmp_path / "gone").mkdir()
    channel = jsonfile(tenant, path)
    services.save_rule(AlertRule(tenant=tenant, name="r", events=["failed"]), channels=[channel])
    (tmp_path / "gone").rmdir()  # the directory disappears after the channel was saved
    finish(make_job("a"), "failed")
    assert delivery.deliver("test-node") == 1
    row = AlertOutbox.objects.get()
    assert row.state == "pending" and row.attempts == 1
    attempt = AlertDelivery.objects.get(outbox=row)
    assert not attempt.ok and attempt.error.startswith("FileNotFoundError")


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({}, "config.path", "required"),
        ({"path": 5}, "config.path", "must be of type string, not 5"),
        ({"path": "relative.jsonl"}, "config.path", "'relative.jsonl' is not an absolute path"),
        ({"path": "/no/such/dir/a.jsonl"}, "config.path", "the directory '/no/such/dir' does not exist"),
        ({"path": "/tmp/a.jsonl", "colour": "red"}, "config.colour", "unknown key; known: path, token"),
    ],
    ids=["missing", "wrong-type", "relative", "no-directory", "unknown-key"],
)
def test_bad_settings_are_refused_by_the_plugin_naming_the_key(tenant, config, field, message):
    with pytest.raises(ValidationError) as info:
        services.save_channel(AlertChannel(tenant=tenant, name="file", type="jsonfile", config=config))
    assert info.value.message_dict == {field: [message]}
    assert not AlertChannel.objects.exists()


def test_types_offered_are_the_built_in_and_the_plugins(tenant):
    field = AlertChannel._meta.get_field("type")
    assert ("jsonfile", "JSON lines file (example plugin)") in list(field.choices)
    with pytest.raises(ValidationError) as info:
        services.save_channel(AlertChannel(tenant=tenant, name="x", type="pigeon", config={}))
    assert info.value.message_dict["type"] == [
        "unknown channel type 'pigeon'; use email, webhook, apprise, jsonfile"
    ]


def channel_form(tenant, **fields):
    data = {
        "tenant": tenant.pk,
        "name": "file",
        "type": "jsonfile",
        "url": "",
        "to": "",
        "timeout": "",
        "secret": "",
        "settings": "",
        "language": "",
        "subject_template": "",
        "body_template": "",
        "enabled": "on",
    }
    data.update(fields)
    return data


def test_admin_form_refuses_bad_settings_with_a_field_error_and_saves_good_ones(
    client, editor, tenant, tmp_path
):
    client.force_login(editor)
    add = reverse("admin:scheduler_app_alertchannel_add")
    page = client.get(add)
    assert b'<option value="jsonfile">JSON lines file (example plugin)</option>' in page.content
    response = client.post(add, channel_form(tenant, settings='{"path": "relative.jsonl"}'))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {"settings": ["path: 'relative.jsonl' is not an absolute path"]}
    assert not AlertChannel.objects.exists()

    path = tmp_path / "a.jsonl"
    response = client.post(add, channel_form(tenant, settings=json.dumps({"path": str(path)}), secret=TOKEN))
    assert response.status_code == 302, response.content.decode()[:3000]
    channel = AlertChannel.objects.get()
    assert channel.config == {"path": str(path)} and channel.reveal_secrets() == {"token": TOKEN}
    change = client.get(reverse("admin:scheduler_app_alertchannel_change", args=[channel.pk]))
    assert str(path).encode() in change.content and TOKEN.encode() not in change.content


def test_api_accepts_plugin_channels_and_refuses_bad_settings_naming_the_field(editor, tmp_path):
    api = client_for(key_for(editor))
    bad = api.post(
        "/api/alert-channels/",
        {"tenant": "acme", "name": "file", "type": "jsonfile", "config": {"path": "relative.jsonl"}},
        format="json",
    )
    assert bad.status_code == 400
    assert errors_of(bad) == [("config.path", "'relative.jsonl' is not an absolute path")]
    assert not AlertChannel.objects.exists()

    path = tmp_path / "a.jsonl"
    made = api.post(
        "/api/alert-channels/",
        {"tenant": "acme", "name": "file", "type": "jsonfile", "config": {"path": str(path), "token": TOKEN}},
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["type"] == "jsonfile" and body["config"] == {"path": str(path)} and body["has_secret"]
    assert TOKEN not in made.content.decode()
    assert AlertChannel.objects.get().reveal_secrets() == {"token": TOKEN}
    from auditlog.models import LogEntry

    entries = list(LogEntry.objects.values_list("changes", "additional_data"))
    assert entries and TOKEN not in repr(entries)  # the audit trail has only the fingerprint
    # A PATCH of the settings keeps the stored secret field.
    other = tmp_path / "b.jsonl"
    changed = api.patch(f"/api/alert-channels/{body['id']}/", {"config": {"path": str(other)}}, format="json")
    assert changed.status_code == 200, changed.content
    assert AlertChannel.objects.get().reveal_secrets() == {"token": TOKEN}
    wrong = api.post(
        "/api/alert-channels/",
        {
            "tenant": "acme",
            "name": "f2",
            "type": "jsonfile",
            "config": {"path": str(path)},
            "secret": {"pin": "1"},
        },
        format="json",
    )
    assert wrong.status_code == 400
    assert errors_of(wrong) == [("secret", "pin: not a secret field of jsonfile channels (they are: token)")]


def test_jobs_file_round_trip_with_the_secret_field_encrypted(tenant, tmp_path):
    path = tmp_path / "alerts.jsonl"
    doc = {
        "version": 1,
        "alert_channels": [
            {
                "tenant": "acme",
                "name": "file",
                "type": "jsonfile",
                "config": {"path": str(path)},
                "secret": TOKEN,
            }
        ],
    }
    source = tmp_path / "jobs.json"
    source.write_text(json.dumps(doc))
    out = io.StringIO()
    call_command("importjobs", str(source), stdout=out, stderr=io.StringIO())
    assert "create alert channel acme/file" in out.getvalue()
    assert (
        "; alert channels 1 created, 0 changed, 0 unchanged, 0 deleted; alert rules 0 created"
        in out.getvalue()
    )
    channel = AlertChannel.objects.get()
    assert channel.config == {"path": str(path)} and channel.reveal_secrets() == {"token": TOKEN}
    out = tmp_path / "export.json"
    call_command(
        "exportjobs", "-o", str(out), "--include-secrets", stdout=io.StringIO(), stderr=io.StringIO()
    )
    text = out.read_text()
    assert TOKEN not in text
    (exported,) = json.loads(text)["alert_channels"]
    assert exported["config"] == {"path": str(path)} and exported["secret_encrypted"] == channel.secret_token
    # Loading the export elsewhere brings the same secret back.
    AlertChannel.objects.all().delete()
    call_command("importjobs", str(out), stdout=io.StringIO(), stderr=io.StringIO())
    assert AlertChannel.objects.get().reveal_secrets() == {"token": TOKEN}
    bad = dict(doc["alert_channels"][0], config={"path": "x"})
    source.write_text(json.dumps({"version": 1, "alert_channels": [bad]}))
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as info:
        call_command("importjobs", str(source), stdout=io.StringIO(), stderr=io.StringIO())
    assert "alert_channels[0] (acme/file): config.path: 'x' is not an absolute path" in str(info.value)


def test_a_channel_whose_plugin_is_gone_fails_its_deliveries_naming_the_type(tenant):
    # As a restore leaves it when the plugin is not installed (the row, not a save).
    channel = AlertChannel.objects.create(tenant=tenant, name="old", type="pigeon", config={})
    row = services.send_test_alert(channel)
    assert delivery.deliver("test-node") == 1
    row.refresh_from_db()
    assert row.state == "pending" and row.attempts == 1
    assert row.last_error == "unknown channel type 'pigeon' (is the plugin that provides it installed?)"
