"""backup / restore of alert channels (secrets as ciphertext only) and alert rules, and
the per-job alert mute: a restored webhook channel still signs with its original secret
(checked on a real local HTTP receiver)."""

import datetime as dt
import hashlib
import hmac
import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scheduler_app import services
from scheduler_app.alerts import delivery
from scheduler_app.interchange import backup
from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule, Job, JobGroup, Tenant
from tests.alert_receivers import WebhookReceiver
from tests.integration.test_alerts import finish

pytestmark = pytest.mark.django_db

HOOK_SECRET = "hmac-original-secret-42"
APPRISE_URL = "json://alerts.example.com:8443/tok3n-in-the-url"


@pytest.fixture
def hook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def alerting(hook):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    billing = JobGroup.objects.create(tenant=acme, name="billing")
    services.save_job(Job(tenant=acme, name="invoices", task="demo.noop", group=billing))
    quiet = services.save_job(Job(tenant=acme, name="quiet", task="demo.noop"))
    muted_until = (timezone.now() + dt.timedelta(hours=2)).replace(microsecond=0)
    services.mute_job_alerts(quiet, muted_until)
    hook_channel = services.save_channel(
        AlertChannel(
            tenant=acme,
            name="ops-hook",
            type="webhook",
            config={"url": hook.url, "timeout": 5},
            subject_template="{event} {job}",
        ),
        secret=HOOK_SECRET,
    )
    mail = services.save_channel(
        AlertChannel(tenant=acme, name="ops-mail", type="email", config={"to": ["ops@example.com"]})
    )
    chat = services.save_channel(AlertChannel(tenant=acme, name="chat", type="apprise"), secret=APPRISE_URL)
    services.save_rule(
        AlertRule(
            tenant=acme,
            name="billing failures",
            scope_group=billing,
            events=["failed", "missed"],
            missed_after_seconds=3600,
            throttle_seconds=0,
        ),
        channels=[hook_channel, mail],
    )
    services.save_rule(
        AlertRule(tenant=acme, name="quiet job", scope_job=quiet, events=["failed"], digest=True),
        channels=[chat],
    )
    services.save_rule(
        AlertRule(
            tenant=acme,
            name="everything slow",
            events=["slow", "node_down"],
            slow_factor=3.0,
            muted_until=muted_until,
            enabled=False,
        ),
        channels=[mail, chat],
    )
    return {"hook": hook_channel, "muted_until": muted_until}


def run_backup(path):
    out = io.StringIO()
    call_command("backup", "-o", str(path), stdout=out, stderr=io.StringIO(), no_color=True)
    return out.getvalue()


def run_restore(path, *options):
    out = io.StringIO()
    call_command("restore", str(path), *options, stdout=out, stderr=io.StringIO(), no_color=True)
    return out.getvalue()


def without_created_at(doc):
    return {k: v for k, v in doc.items() if k != "created_at"}


def signature_ok(request, secret):
    t, v1 = (p.split("=", 1)[1] for p in request["headers"]["X-Scheduler-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(v1, expected)


def deliver_all():
    while delivery.deliver("test-node"):
        pass


def test_channels_rules_and_job_mutes_round_trip_and_the_secret_still_signs(tmp_path, alerting, hook):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    out = run_backup(first)
    assert "2 jobs, 0 dependencies" in out
    assert "3 alert channels, 3 alert rules" in out
    raw = first.read_bytes()
    assert HOOK_SECRET.encode() not in raw and b"tok3n-in-the-url" not in raw
    doc = json.loads(raw)
    entries = {c["name"]: c for c in doc["alert_channels"]}
    stored = AlertChannel.objects.get(name="ops-hook")
    assert entries["ops-hook"]["secret_token"] == stored.secret_token  # the ciphertext, as stored
    assert entries["ops-hook"]["secret_fingerprint"] == stored.secret_fingerprint
    assert entries["ops-hook"]["config"] == {"url": hook.url, "timeout": 5}
    assert entries["ops-mail"]["secret_token"] == ""
    assert "id" not in entries["ops-hook"] and "tenant_id" not in entries["ops-hook"]
    rules = {r["name"]: r for r in doc["alert_rules"]}
    assert rules["billing failures"]["scope"] == {"group": "billing"}
    assert rules["billing failures"]["channels"] == ["ops-hook", "ops-mail"]
    assert rules["quiet job"]["scope"] == {"job": "quiet"} and rules["quiet job"]["digest"] is True
    assert rules["everything slow"]["scope"] == {"tenant": True}
    assert rules["everything slow"]["muted_until"] == alerting["muted_until"].isoformat()
    quiet = next(j for j in doc["jobs"] if j["name"] == "quiet")
    assert quiet["alerts_muted_until"] == alerting["muted_until"].isoformat()

    backup.delete_configuration()  # the wipe
    assert not AlertChannel.objects.exists() and not AlertRule.objects.exists()
    out = run_restore(first)
    assert (
        "2 jobs, 0 dependencies, 2 job versions, 0 object permissions, 3 alert channels, 3 alert rules" in out
    )
    run_backup(second)
    assert without_created_at(json.loads(second.read_text())) == without_created_at(doc)

    channel = AlertChannel.objects.get(name="ops-hook")
    assert channel.reveal_secret() == HOOK_SECRET
    assert AlertChannel.objects.get(name="chat").reveal_secret() == APPRISE_URL
    assert Job.objects.get(name="quiet").alerts_muted_until == alerting["muted_until"]
    slow = AlertRule.objects.get(name="everything slow")
    assert (slow.muted_until, slow.enabled, slow.slow_factor) == (alerting["muted_until"], False, 3.0)
    assert sorted(c.name for c in slow.channels.all()) == ["chat", "ops-mail"]

    # The restored channel delivers, signed with the original secret: a test alert ...
    row = services.send_test_alert(channel)
    deliver_all()
    (request,) = hook.accepted()
    assert request["json"]["alert_id"] == str(row.alert_id) and request["json"]["event"] == "test"
    assert signature_ok(request, HOOK_SECRET)
    assert not signature_ok(request, HOOK_SECRET + "x")
    # ... and the restored group rule fires on a failed run of a restored job.
    run = finish(Job.objects.get(name="invoices"), "failed", error="RuntimeError: restored")
    assert AlertOutbox.objects.filter(run=run, channel=channel, event="failed").exists()
    deliver_all()
    failed = [r for r in hook.accepted() if r["json"]["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["json"]["run_id"] == run.pk
    assert signature_ok(failed[0], HOOK_SECRET)
    # ... while the muted job's failure (the mute came back with the job) sends nothing.
    finish(Job.objects.get(name="quiet"), "failed")
    assert not AlertOutbox.objects.filter(job__name="quiet").exists()


def _foreign_token(doc):
    token = Fernet(Fernet.generate_key()).encrypt(b'{"secret": "other"}').decode()
    next(c for c in doc["alert_channels"] if c["name"] == "ops-hook")["secret_token"] = token


def _edit(section, name, **changes):
    def apply(doc):
        next(e for e in doc[section] if e["name"] == name).update(changes)

    return apply


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _foreign_token,
            "alert_channels[1] (acme/ops-hook): secret_token: the channel's secret cannot be "
            "decrypted with any configured key",
        ),
        (
            _edit("alert_channels", "ops-hook", config={"url": "ftp://x"}),
            "alert_channels[1] (acme/ops-hook): url: 'ftp://x' is not an http(s) URL",
        ),
        (
            _edit("alert_channels", "chat", secret_token=""),
            "alert_channels[0] (acme/chat): url: an apprise URL is required",
        ),
        (
            _edit("alert_rules", "billing failures", channels=["ops-hook", "gone"]),
            "alert_rules[0] (acme/billing failures): channels[1]: unknown alert channel 'gone' in tenant acme",
        ),
        (
            _edit("alert_rules", "quiet job", scope={"job": "ghost"}),
            "alert_rules[2] (acme/quiet job): scope.job: unknown job 'ghost' in tenant acme",
        ),
        (
            _edit("alert_rules", "billing failures", events=["failed", "exploded"]),
            "alert_rules[0] (acme/billing failures): events: unknown event(s) 'exploded'",
        ),
        (
            _edit("alert_rules", "billing failures", missed_after_seconds=None),
            "alert_rules[0] (acme/billing failures): missed_after_seconds: required for the 'missed' event",
        ),
        (
            _edit("alert_rules", "billing failures", colour="red"),
            "alert_rules[0] (acme/billing failures): colour: unknown field",
        ),
    ],
    ids=[
        "foreign-key",
        "bad-url",
        "apprise-without-url",
        "unknown-channel",
        "unknown-job",
        "bad-event",
        "missing-threshold",
        "unknown-field",
    ],
)
def test_bad_alert_entries_are_named_and_change_nothing(tmp_path, alerting, mutate, expected):
    path = tmp_path / "b.json"
    run_backup(path)
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    before = (
        list(AlertChannel.objects.order_by("pk").values()),
        list(AlertRule.objects.order_by("pk").values()),
    )
    with pytest.raises(CommandError) as info:
        run_restore(path, "--replace")
    assert expected in str(info.value) and str(info.value).endswith("; nothing was changed")
    after = (
        list(AlertChannel.objects.order_by("pk").values()),
        list(AlertRule.objects.order_by("pk").values()),
    )
    assert after == before


def test_a_plugin_channel_round_trips_with_its_secret_field_and_still_delivers(tmp_path, tenant, make_job):
    target = tmp_path / "alerts.jsonl"
    services.save_channel(
        AlertChannel(
            tenant=tenant, name="file", type="jsonfile", config={"path": str(target), "token": "pl-s3cret"}
        )
    )
    services.save_rule(
        AlertRule(tenant=tenant, name="r", scope_job=make_job("a"), events=["failed"]),
        channels=list(AlertChannel.objects.all()),
    )
    path = tmp_path / "b.json"
    run_backup(path)
    assert b"pl-s3cret" not in path.read_bytes()
    (entry,) = json.loads(path.read_text())["alert_channels"]
    assert entry["type"] == "jsonfile" and entry["config"] == {"path": str(target)}
    backup.delete_configuration()
    run_restore(path)
    channel = AlertChannel.objects.get()
    assert channel.reveal_secrets() == {"token": "pl-s3cret"}
    finish(Job.objects.get(name="a"), "failed")
    deliver_all()
    (line,) = target.read_text().splitlines()
    assert json.loads(line)["event"] == "failed" and json.loads(line)["token_set"] is True


def test_a_channel_of_a_plugin_not_installed_is_restored_with_a_warning(tmp_path, alerting):
    path = tmp_path / "b.json"
    run_backup(path)
    doc = json.loads(path.read_text())
    entry = next(c for c in doc["alert_channels"] if c["name"] == "ops-mail")
    entry.update(type="pigeon", config={"loft": "north"})
    path.write_text(json.dumps(doc))
    err = io.StringIO()
    call_command("restore", str(path), "--replace", stdout=io.StringIO(), stderr=err, no_color=True)
    assert (
        "warning: alert_channels[2] (acme/ops-mail): alert channel type 'pigeon' is not provided by any "
        "installed plugin; its alerts will fail until it is"
    ) in err.getvalue()
    restored = AlertChannel.objects.get(name="ops-mail")
    assert (restored.type, restored.config) == ("pigeon", {"loft": "north"})
