"""The alert evaluation reuses the enabled rules while the configuration version is
unchanged (a scheduler node reads no rule per batch of outcomes), follows every change
made through the services at once (new rule, mute, channel, deletion), and closes the
incidents a batch's successes end in one statement, before a later failure of the same
batch opens a new one."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduler_app import services
from scheduler_app.alerts import evaluate
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.models import AlertChannel, AlertIncident, AlertOutbox, AlertRule, ConfigVersion, JobRun

pytestmark = pytest.mark.django_db


def channel(tenant, name="ops-hook"):
    return services.save_channel(
        AlertChannel(tenant=tenant, name=name, type="webhook", config={"url": "http://127.0.0.1:9/x"}),
        secret="s3cret",
    )


def rule(tenant, channels, events=("failed", "recovered"), name="rule", **fields):
    fields.setdefault("throttle_seconds", 3600)
    return services.save_rule(
        AlertRule(tenant=tenant, name=name, events=list(events), **fields), channels=channels
    )


_fires = itertools.count()


def record(job, states):
    """Runs of ``job`` recorded through the real run store, in one batch."""
    when = datetime.now(UTC).replace(microsecond=0)
    runs = [
        JobRun.objects.create(
            job=job,
            scheduled_for=when + timedelta(minutes=next(_fires)),
            state="running",
            started_at=when + timedelta(seconds=i),
            node="n1",
            not_before=when,
        )
        for i in range(len(states))
    ]
    DjangoRunStore().record(
        [
            Outcome(
                run_id=run.pk,
                state=state,
                started_at=run.started_at,
                finished_at=run.started_at + timedelta(milliseconds=500),
                error_type="RuntimeError" if state != "succeeded" else "",
                error="boom" if state != "succeeded" else "",
            )
            for run, state in zip(runs, states, strict=True)
        ]
    )
    return runs


def rule_queries(captured):
    return [q["sql"] for q in captured if "scheduler_app_alertrule" in q["sql"]]


@pytest.fixture
def node_version(monkeypatch):
    """What a scheduler node does: the version comes from its definition sync (here
    read when asked, as the sync would have read it), not from a query per batch."""
    seen = {"version": ConfigVersion.current()}
    monkeypatch.setattr(evaluate, "config_version", lambda: seen["version"])
    return seen


def test_a_node_reads_no_rule_per_batch_while_nothing_changed(tenant, make_job, node_version):
    job = make_job("billing")
    rule(tenant, [channel(tenant)])
    node_version["version"] = ConfigVersion.current()
    record(job, ["failed"])  # reads the rules once
    with CaptureQueriesContext(connection) as captured:
        record(job, ["failed"])
    assert rule_queries(captured) == []
    assert AlertOutbox.objects.count() == 1
    assert AlertIncident.objects.get().suppressed == 1


def test_a_new_rule_applies_to_the_next_batch(tenant, make_job):
    job = make_job("billing")
    hook = channel(tenant)
    record(job, ["failed"])  # no rule yet: nothing, and the (empty) rules are reused
    assert AlertOutbox.objects.count() == 0
    rule(tenant, [hook])
    record(job, ["failed"])
    assert list(AlertOutbox.objects.values_list("event", flat=True)) == ["failed"]


def test_a_muted_rule_is_silent_at_once_and_an_unmuted_one_speaks_again(tenant, make_job):
    job, other = make_job("billing"), make_job("export")
    made = rule(tenant, [channel(tenant)], events=["failed"], throttle_seconds=0)
    record(job, ["failed"])
    assert AlertOutbox.objects.count() == 1
    services.mute_rule(made, datetime.now(UTC) + timedelta(hours=1))
    record(other, ["failed"])
    assert AlertOutbox.objects.count() == 1
    services.mute_rule(AlertRule.objects.get(pk=made.pk), None)
    record(other, ["failed"])
    assert AlertOutbox.objects.count() == 2


def test_a_deleted_rule_and_a_disabled_channel_stop_alerting(tenant, make_job):
    job = make_job("billing")
    hook, spare = channel(tenant), channel(tenant, "spare")
    first = rule(tenant, [hook], events=["failed"], throttle_seconds=0)
    rule(tenant, [spare], events=["failed"], throttle_seconds=0, name="second")
    record(job, ["failed"])
    assert AlertOutbox.objects.count() == 2
    services.delete_alert_objects([first])
    spare.enabled = False
    services.save_channel(spare)
    record(make_job("export"), ["failed"])
    assert AlertOutbox.objects.count() == 2


def test_rules_are_read_again_after_the_cache_time(tenant, make_job, node_version, monkeypatch):
    """A change beside the services (no version bump) shows within RULES_CACHE_SECONDS."""
    made = rule(tenant, [channel(tenant)], events=["failed"])
    node_version["version"] = ConfigVersion.current()
    record(make_job("a"), ["failed"])
    AlertRule.objects.filter(pk=made.pk).update(enabled=False)  # beside the services
    record(make_job("b"), ["failed"])
    assert AlertOutbox.objects.count() == 2  # still the reused rule
    monkeypatch.setattr(evaluate, "RULES_CACHE_SECONDS", 0.0)
    record(make_job("c"), ["failed"])
    assert AlertOutbox.objects.count() == 2


def test_recovery_and_a_new_failure_in_one_batch(tenant, make_job):
    job = make_job("billing")
    rule(tenant, [channel(tenant)])
    record(job, ["failed"])
    first = AlertIncident.objects.get()
    now = datetime.now(UTC)
    ok, bad = (
        JobRun.objects.create(
            job=job,
            scheduled_for=now + timedelta(hours=i + 1),
            state=state,
            started_at=now,
            finished_at=now,
            duration=0.1,
            is_final=True,
            error="boom" if state == "failed" else "",
        )
        for i, state in enumerate(["succeeded", "failed"])
    )
    evaluate.on_outcome([ok, bad], now)  # recovers, then fails again: a new incident
    assert list(AlertOutbox.objects.order_by("pk").values_list("event", flat=True)) == [
        "failed",
        "recovered",
        "failed",
    ]
    first.refresh_from_db()
    assert first.closed_at is not None
    assert AlertIncident.objects.filter(closed_at__isnull=True).exclude(pk=first.pk).count() == 1


def test_successes_close_their_incidents_in_one_statement(tenant, make_job):
    jobs = [make_job(f"job-{i}") for i in range(5)]
    rule(tenant, [channel(tenant)])
    for job in jobs:
        record(job, ["failed"])
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 5
    now = datetime.now(UTC).replace(microsecond=0)
    runs = [
        JobRun.objects.create(
            job=job, scheduled_for=now, state="running", started_at=now, node="n1", not_before=now
        )
        for job in jobs
    ]
    with CaptureQueriesContext(connection) as captured:
        DjangoRunStore().record(
            [
                Outcome(
                    run_id=r.pk, state="succeeded", started_at=now, finished_at=now + timedelta(seconds=1)
                )
                for r in runs
            ]
        )
    closing = [q for q in captured if q["sql"].startswith('UPDATE "scheduler_app_alertincident"')]
    assert len(closing) == 1
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 0
    assert AlertOutbox.objects.filter(event="recovered").count() == 5
