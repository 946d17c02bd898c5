"""Alert channels and rules in jobs files: the issue's shape imports, exports round
trip (secrets only encrypted), re-imports change nothing, errors name the entry and
the field, and a bad entry leaves nothing half-applied."""

import copy

import pytest

from scheduler_app.interchange import jobsfile
from scheduler_app.models import AlertChannel, AlertRule, Job, JobGroup

DOC = {
    "version": 1,
    "tenants": [{"slug": "acme", "name": "Acme"}],
    "groups": [{"tenant": "acme", "name": "billing", "description": ""}],
    "jobs": [
        {
            "tenant": "acme",
            "name": "invoices",
            "task": "demo.noop",
            "group": "billing",
            "trigger": {"type": "manual"},
        }
    ],
    "alert_channels": [
        {
            "tenant": "acme",
            "name": "ops-hook",
            "type": "webhook",
            "url": "https://hooks.example.com/x",
            "secret": "hook-secret-123",
        },
        {"tenant": "acme", "name": "ops-mail", "type": "email", "to": ["ops@example.com"]},
        {"tenant": "acme", "name": "chat", "type": "apprise", "url": "json://127.0.0.1:9/chat"},
    ],
    "alert_rules": [
        {
            "tenant": "acme",
            "name": "billing failures",
            "scope": {"group": "billing"},
            "events": ["failed", "missed"],
            "channels": ["ops-hook", "ops-mail"],
            "missed_after_seconds": 3600,
            "late_after_seconds": 300,
            "slow_after_seconds": None,
            "throttle_seconds": 3600,
            "enabled": True,
        },
        {
            "tenant": "acme",
            "name": "invoices",
            "scope": {"job": "invoices"},
            "events": ["lost"],
            "channels": ["chat"],
        },
    ],
}


@pytest.mark.django_db
def test_import_export_round_trip():
    report = jobsfile.import_document(copy.deepcopy(DOC))
    assert "alert rule acme/billing failures" in report.created
    hook = AlertChannel.objects.get(name="ops-hook")
    assert hook.reveal_secret() == "hook-secret-123"
    assert AlertChannel.objects.get(name="chat").reveal_secret() == "json://127.0.0.1:9/chat"
    rule = AlertRule.objects.get(name="billing failures")
    assert rule.scope_group == JobGroup.objects.get(name="billing")
    assert AlertRule.objects.get(name="invoices").scope_job == Job.objects.get(name="invoices")
    exported = jobsfile.export_document()
    text = jobsfile.dump_document(exported)
    assert "hook-secret-123" not in text and "127.0.0.1:9/chat" not in text
    assert exported["alert_rules"][0]["scope"] == {"group": "billing"}
    assert exported["alert_rules"][0]["channels"] == ["ops-hook", "ops-mail"]
    # Again: nothing changes.
    assert not jobsfile.import_document(copy.deepcopy(DOC)).has_changes
    # The export with encrypted secrets restores them elsewhere (here: after deleting).
    full = jobsfile.export_document(include_secrets=True)
    assert "hook-secret-123" not in jobsfile.dump_document(full)
    AlertRule.objects.all().delete()
    AlertChannel.objects.all().delete()
    jobsfile.import_document(full)
    assert AlertChannel.objects.get(name="ops-hook").reveal_secret() == "hook-secret-123"
    assert AlertChannel.objects.get(name="chat").reveal_secret() == "json://127.0.0.1:9/chat"
    assert not jobsfile.import_document(jobsfile.export_document(include_secrets=True)).has_changes


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,value,message",
    [
        (
            ("alert_rules", 0, "scope"),
            {"job": "nope"},
            "alert_rules[0] (acme/billing failures): scope.job: no job 'nope'",
        ),
        (
            ("alert_rules", 0, "channels"),
            ["ghost"],
            "alert_rules[0] (acme/billing failures): channels[0]: no alert channel 'ghost'",
        ),
        (
            ("alert_rules", 0, "missed_after_seconds"),
            0,
            "alert_rules[0] (acme/billing failures): missed_after_seconds: must be a positive",
        ),
        (("alert_rules", 0, "late_after_seconds"), -1, "late_after_seconds: must be a positive"),
        (("alert_rules", 0, "events"), ["boom"], "events: unknown event(s) 'boom'"),
        (
            ("alert_channels", 2, "url"),
            "nonsense://",
            "alert_channels[2] (acme/chat): url: not an apprise URL",
        ),
        (
            ("alert_channels", 0, "url"),
            "ftp://x",
            "alert_channels[0] (acme/ops-hook): url: 'ftp://x' is not an http(s) URL",
        ),
        (
            ("alert_channels", 1, "to"),
            ["nobody"],
            "alert_channels[1] (acme/ops-mail): to: to[0]: 'nobody' is not an e-mail",
        ),
        (("alert_channels", 0, "body_template"), "{secret}", "body_template: unknown variable {secret}"),
        (("alert_channels", 0, "colour"), "red", "alert_channels[0] (acme/ops-hook): colour: unknown field"),
    ],
    ids=[
        "scope-job",
        "channel",
        "zero",
        "negative",
        "event",
        "apprise",
        "webhook-url",
        "email",
        "template",
        "unknown",
    ],
)
def test_bad_alert_entries_name_the_field_and_apply_nothing(path, value, message):
    doc = copy.deepcopy(DOC)
    section, index, key = path
    doc[section][index][key] = value
    with pytest.raises(jobsfile.JobsFileError) as info:
        jobsfile.import_document(doc)
    assert message in str(info.value)
    assert not Job.objects.exists() and not AlertChannel.objects.exists() and not AlertRule.objects.exists()


@pytest.mark.django_db
def test_rule_scoped_to_another_tenants_job_is_refused():
    doc = copy.deepcopy(DOC)
    doc["tenants"].append({"slug": "globex", "name": "Globex"})
    doc["jobs"].append(
        {"tenant": "globex", "name": "theirs", "task": "demo.noop", "trigger": {"type": "manual"}}
    )
    doc["alert_rules"][1]["scope"] = {"job": "theirs"}
    with pytest.raises(jobsfile.JobsFileError) as info:
        jobsfile.import_document(doc)
    assert "scope.job: no job 'theirs' in tenant acme" in str(info.value)
