"""Alert rules, the outbox and delivery, in process, with a real local HTTP receiver and
a real local SMTP server (aiosmtpd)."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from scheduler_app import services, signals
from scheduler_app.alerts import delivery
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.models import (
    AlertChannel,
    AlertDelivery,
    AlertIncident,
    AlertOutbox,
    AlertRule,
    JobGroup,
    JobRun,
    RunState,
)
from tests.alert_receivers import SmtpReceiver, WebhookReceiver

SMTP = "django.core.mail.backends.smtp.EmailBackend"
FAST = {"ALERTS_RETRY_BASE_SECONDS": 0.0, "ALERTS_RETRY_MAX_SECONDS": 0.0}


@pytest.fixture
def hook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


def webhook_channel(tenant, url, secret="s3cret-hook", **config):
    return services.save_channel(
        AlertChannel(tenant=tenant, name="ops-hook", type="webhook", config={"url": url, **config}),
        secret=secret,
    )


def rule(tenant, channels, events=("failed",), **fields):
    fields.setdefault("throttle_seconds", 3600)
    return services.save_rule(
        AlertRule(tenant=tenant, name=fields.pop("name", "rule"), events=list(events), **fields),
        channels=channels,
    )


def finish(job, state, *, attempt=1, error="boom", seconds=0.5, when=None):
    """A run of ``job`` claimed and recorded through the real run store."""
    when = when or datetime.now(UTC).replace(microsecond=0)
    run = JobRun.objects.create(
        job=job,
        scheduled_for=when,
        attempt=attempt,
        state=RunState.RUNNING,
        started_at=when,
        node="n1",
        not_before=when,
    )
    DjangoRunStore().record(
        [
            Outcome(
                run_id=run.pk,
                state=state,
                started_at=when,
                finished_at=when + timedelta(seconds=seconds),
                error_type="RuntimeError" if state != "succeeded" else "",
                error=error if state != "succeeded" else "",
            )
        ]
    )
    run.refresh_from_db()
    return run


def deliver_all():
    total = 0
    while n := delivery.deliver("test-node"):
        total += n
    return total


@pytest.mark.django_db
def test_failed_run_writes_outbox_row_and_webhook_gets_signed_payload(tenant, make_job, hook):
    job = make_job("billing")
    channel = webhook_channel(tenant, hook.url)
    rule(tenant, [channel], events=["failed"])
    run = finish(job, "failed", error="ValueError: bad invoice\nmore")
    row = AlertOutbox.objects.get()
    assert row.event == "failed" and row.run_id == run.pk and row.state == "pending"
    assert deliver_all() == 1
    (request,) = hook.accepted()
    body = request["json"]
    assert body["alert_id"] == str(row.alert_id)
    assert body["event"] == "failed"
    assert body["tenant"] == "acme" and body["job"] == "billing"
    assert body["run_id"] == run.pk and body["state"] == "failed"
    assert body["error"].startswith("ValueError: bad invoice")
    assert body["url"].endswith(f"/admin/scheduler_app/jobrun/{run.pk}/change/")
    assert body["scheduled_for"] == run.scheduled_for.isoformat()
    t, v1 = (part.split("=", 1)[1] for part in request["headers"]["X-Scheduler-Signature"].split(","))
    expected = hmac.new(b"s3cret-hook", f"{t}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert v1 == expected
    assert request["headers"]["X-Scheduler-Alert-Id"] == str(row.alert_id)
    row.refresh_from_db()
    assert row.state == "sent" and row.attempts == 1
    assert AlertDelivery.objects.get(outbox=row).ok


@pytest.mark.django_db
def test_secret_stored_encrypted(tenant, hook):
    channel = webhook_channel(tenant, hook.url, secret="very-secret-value-123")
    stored = AlertChannel.objects.filter(pk=channel.pk).values()[0]
    assert "very-secret-value-123" not in repr(stored)
    assert AlertChannel.objects.get(pk=channel.pk).reveal_secret() == "very-secret-value-123"


@pytest.mark.django_db
def test_no_rule_no_alert_and_rollback_drops_alert(tenant, make_job, hook):
    job = make_job("a")
    finish(job, "failed")
    assert not AlertOutbox.objects.exists()
    rule(tenant, [webhook_channel(tenant, hook.url)])
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        finish(job, "failed", when=datetime(2026, 1, 1, tzinfo=UTC))
        assert AlertOutbox.objects.count() == 1
        raise RuntimeError("the recording transaction fails")
    assert not AlertOutbox.objects.exists()  # same transaction as the outcome


@pytest.mark.django_db
def test_retrying_then_failed_and_dedup_until_recovered(tenant, make_job, hook):
    job = make_job("j", retry_max_attempts=2)
    rule(tenant, [webhook_channel(tenant, hook.url)], events=["failed", "retrying", "recovered"])
    base = datetime(2026, 1, 1, tzinfo=UTC)
    finish(job, "failed", attempt=1, when=base)
    assert list(AlertOutbox.objects.values_list("event", flat=True)) == ["retrying"]
    # The job keeps failing: one incident, no further alerts within the throttle window.
    for i in range(20):
        finish(job, "failed", attempt=2, when=base + timedelta(minutes=i + 1))
    assert AlertOutbox.objects.count() == 1
    assert AlertIncident.objects.get().suppressed == 20
    finish(job, "succeeded", when=base + timedelta(hours=1))
    assert sorted(AlertOutbox.objects.values_list("event", flat=True)) == ["recovered", "retrying"]
    assert AlertIncident.objects.get().closed_at is not None
    finish(job, "failed", attempt=2, when=base + timedelta(hours=2))
    assert AlertOutbox.objects.filter(event="failed").count() == 1  # a new incident


@pytest.mark.django_db
def test_scope_group_and_job(tenant, make_job, hook):
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    in_group = make_job("in", group=group)
    outside = make_job("out")
    channel = webhook_channel(tenant, hook.url)
    rule(tenant, [channel], name="g", scope_group=group)
    rule(tenant, [channel], name="j", scope_job=outside, events=["timed_out"])
    finish(in_group, "failed")
    finish(outside, "failed")
    finish(outside, "timed_out", when=datetime(2026, 1, 1, tzinfo=UTC))
    got = sorted(AlertOutbox.objects.values_list("rule__name", "job__name", "event"))
    assert got == [("g", "in", "failed"), ("j", "out", "timed_out")]


@pytest.mark.django_db
def test_muted_rule_sends_nothing(tenant, make_job, hook):
    job = make_job("j")
    r = rule(tenant, [webhook_channel(tenant, hook.url)])
    services.mute_rule(r, datetime.now(UTC) + timedelta(hours=1))
    finish(job, "failed")
    assert not AlertOutbox.objects.exists()
    services.mute_rule(r, None)
    finish(job, "failed", when=datetime(2026, 1, 1, tzinfo=UTC))
    assert AlertOutbox.objects.count() == 1


@pytest.mark.django_db
def test_lost_and_cancelled_runs_alert_and_signal(tenant, make_job, hook):
    job = make_job("j")
    rule(tenant, [webhook_channel(tenant, hook.url)], events=["lost", "cancelled"])
    got = []

    def receiver(sender, run, **kwargs):
        got.append((run.pk, run.state))

    signals.run_lost.connect(receiver)
    signals.run_cancelled.connect(receiver)
    try:
        when = datetime.now(UTC) - timedelta(minutes=5)
        running = JobRun.objects.create(
            job=job, scheduled_for=when, state=RunState.RUNNING, started_at=when, heartbeat_at=when, node="x"
        )
        DjangoRunStore().reap_lost(datetime.now(UTC), 30.0)
        queued = JobRun.objects.create(job=job, scheduled_for=when + timedelta(seconds=1))
        services.cancel_runs([queued])
    finally:
        signals.run_lost.disconnect(receiver)
        signals.run_cancelled.disconnect(receiver)
    assert (running.pk, "lost") in got and (queued.pk, "cancelled") in got
    assert sorted(AlertOutbox.objects.values_list("event", flat=True)) == ["cancelled", "lost"]


@pytest.mark.django_db
@override_settings(SCHEDULER_APP={**__import__("django.conf").conf.settings.SCHEDULER_APP, **FAST})
def test_receiver_down_500_then_up_every_alert_arrives_once(tenant, make_job, hook):
    jobs = [make_job(f"j{i}") for i in range(5)]
    rule(tenant, [webhook_channel(tenant, hook.url)])
    for job in jobs:
        finish(job, "failed")
    hook.status = 500
    deliver_all_attempts = delivery.deliver("test-node")
    assert deliver_all_attempts == 5
    assert AlertOutbox.objects.filter(state="pending").count() == 5
    assert AlertDelivery.objects.filter(ok=False, status="500").count() == 5
    hook.status = 200
    deliver_all()
    assert AlertOutbox.objects.filter(state="sent").count() == 5
    ids = [r["json"]["alert_id"] for r in hook.accepted()]
    assert sorted(ids) == sorted(str(a) for a in AlertOutbox.objects.values_list("alert_id", flat=True))


@pytest.mark.django_db
@override_settings(SCHEDULER_APP={**__import__("django.conf").conf.settings.SCHEDULER_APP, **FAST})
def test_unreachable_and_timeout_are_recorded_and_retried(tenant, make_job, hook):
    job = make_job("j")
    channel = webhook_channel(tenant, "http://127.0.0.1:9/nothing-listens")
    rule(tenant, [channel])
    finish(job, "failed")
    delivery.deliver("test-node")
    attempt = AlertDelivery.objects.get()
    assert not attempt.ok and attempt.status == "unreachable"
    channel.config = {"url": hook.url, "timeout": 0.5}
    services.save_channel(channel)
    hook.delay = 2.0  # answers 200, but too late
    delivery.deliver("test-node")
    assert AlertDelivery.objects.filter(status="timeout").count() == 1
    assert AlertOutbox.objects.get().state == "pending"
    hook.delay = 0.0
    deliver_all()
    assert AlertOutbox.objects.get().state == "sent"


@pytest.mark.django_db
@override_settings(
    SCHEDULER_APP={
        **__import__("django.conf").conf.settings.SCHEDULER_APP,
        **FAST,
        "ALERTS_GIVE_UP_AFTER_SECONDS": 0.0,
    }
)
def test_gives_up_after_the_window_and_signals(tenant, make_job, hook):
    job = make_job("j")
    rule(tenant, [webhook_channel(tenant, hook.url)])
    finish(job, "failed")
    hook.status = 503
    failed = []

    def receiver(sender, alert, error, final, **kwargs):
        failed.append((alert.alert_id, final))

    signals.alert_failed.connect(receiver)
    try:
        delivery.deliver("test-node")
    finally:
        signals.alert_failed.disconnect(receiver)
    assert AlertOutbox.objects.get().state == "dead"
    assert failed == [(AlertOutbox.objects.get().alert_id, True)]


@pytest.mark.django_db
@override_settings(SCHEDULER_APP={**__import__("django.conf").conf.settings.SCHEDULER_APP, **FAST})
def test_digest_sends_piled_up_alerts_as_one(tenant, make_job, hook):
    jobs = [make_job(f"j{i}") for i in range(4)]
    rule(tenant, [webhook_channel(tenant, hook.url)], digest=True)
    for job in jobs:
        finish(job, "failed")
    deliver_all()
    (request,) = hook.accepted()
    assert request["json"]["event"] == "digest"
    assert sorted(a["job"] for a in request["json"]["alerts"]) == ["j0", "j1", "j2", "j3"]
    assert AlertOutbox.objects.filter(state="sent").count() == 4


@pytest.mark.django_db
@override_settings(EMAIL_BACKEND=SMTP, EMAIL_HOST="127.0.0.1")
def test_email_channel_plain_and_html_through_real_smtp(tenant, make_job, smtp, settings):
    settings.EMAIL_PORT = smtp.port
    job = make_job("nightly")
    channel = services.save_channel(
        AlertChannel(
            tenant=tenant,
            name="mail",
            type="email",
            config={"to": ["ops@example.com"]},
            subject_template="ALERT {event} {job}",
        )
    )
    rule(tenant, [channel])
    run = finish(job, "failed", error="KeyError: 'x'")
    deliver_all()
    (message,) = smtp.messages
    assert message["Subject"] == "ALERT failed nightly"
    assert message["To"] == "ops@example.com"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "KeyError: 'x'" in plain and f"/jobrun/{run.pk}/change/" in plain
    assert "KeyError: &#x27;x&#x27;" in html or "KeyError: &#39;x&#39;" in html
    assert AlertOutbox.objects.get().state == "sent"


@pytest.mark.django_db
@override_settings(
    EMAIL_BACKEND=SMTP,
    EMAIL_HOST="127.0.0.1",
    SCHEDULER_APP={**__import__("django.conf").conf.settings.SCHEDULER_APP, **FAST},
)
def test_smtp_refusal_is_recorded_and_retried(tenant, make_job):
    # Not pytest-django's ``settings`` fixture: its teardown, after this decorator's,
    # would put the decorator's settings (FAST retries) back for every later test.
    smtp = SmtpReceiver(refuse=True)
    try:
        with override_settings(EMAIL_PORT=smtp.port):
            job = make_job("j")
            channel = services.save_channel(
                AlertChannel(tenant=tenant, name="mail", type="email", config={"to": ["ops@example.com"]})
            )
            rule(tenant, [channel])
            finish(job, "failed")
            delivery.deliver("test-node")
            attempt = AlertDelivery.objects.get()
            assert not attempt.ok and "550" in attempt.error
            smtp.refuse = False
            deliver_all()
            assert len(smtp.messages) == 1
    finally:
        smtp.close()


@pytest.mark.django_db
def test_template_failing_at_send_time_falls_back_to_default(tenant, make_job, hook):
    from scheduler_app.alerts import channels

    channel = AlertChannel(tenant=tenant, name="x", type="email", subject_template="{job:%Y}")
    subject, body = channels.render(channel, {"event": "failed", "job": "nightly", "tenant": "acme"})
    assert subject == "[scheduler] failed: nightly (acme)"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields,secret,field,message",
    [
        ({"type": "webhook", "config": {"url": "ftp://x"}}, None, "url", "is not an http(s) URL"),
        (
            {"type": "webhook", "config": {"url": "http://x.example", "timeout": 0}},
            None,
            "timeout",
            "above 0",
        ),
        ({"type": "email", "config": {"to": []}}, None, "to", "at least one e-mail address"),
        ({"type": "email", "config": {"to": ["not-mail"]}}, None, "to", "'not-mail' is not an e-mail"),
        ({"type": "apprise", "config": {}}, "nonsense://", "url", "not an apprise URL"),
        (
            {"type": "webhook", "config": {"url": "http://x.example"}, "subject_template": "{nope}"},
            None,
            "subject_template",
            "unknown variable {nope}",
        ),
        (
            {"type": "webhook", "config": {"url": "http://x.example"}, "body_template": "{job"},
            None,
            "body_template",
            "invalid template",
        ),
        ({"type": "sms", "config": {}}, None, "type", "unknown channel type 'sms'"),
    ],
    ids=[
        "webhook-url",
        "timeout",
        "email-empty",
        "email-bad",
        "apprise",
        "unknown-var",
        "bad-syntax",
        "type",
    ],
)
def test_bad_channels_refused_naming_the_field(tenant, fields, secret, field, message):
    with pytest.raises(ValidationError) as info:
        services.save_channel(AlertChannel(tenant=tenant, name="c", **fields), secret=secret)
    assert field in info.value.message_dict
    assert any(message in m for m in info.value.message_dict[field])
    assert not AlertChannel.objects.exists()


@pytest.mark.django_db
def test_bad_rules_refused(tenant, other_tenant, make_job, hook):
    channel = webhook_channel(tenant, hook.url)
    foreign = make_job("theirs", tenant=other_tenant)
    cases = [
        ({"events": ["failed"], "scope_job": foreign}, "scope", "not in the rule's tenant"),
        ({"events": ["missed"], "missed_after_seconds": 0}, "missed_after_seconds", "positive"),
        ({"events": ["late"], "late_after_seconds": -5}, "late_after_seconds", "positive"),
        ({"events": ["missed"]}, "missed_after_seconds", "required"),
        ({"events": ["exploded"]}, "events", "unknown event(s) 'exploded'"),
    ]
    for fields, field, message in cases:
        with pytest.raises(ValidationError) as info:
            services.save_rule(AlertRule(tenant=tenant, name="r", **fields), channels=[channel])
        assert any(message in m for m in info.value.message_dict[field]), (fields, info.value)
    with pytest.raises(ValidationError) as info:
        other = AlertChannel.objects.create(tenant=other_tenant, name="x", type="webhook")
        services.save_rule(AlertRule(tenant=tenant, name="r", events=["failed"]), channels=[other])
    assert "channels" in info.value.message_dict
    assert not AlertRule.objects.exists()


@pytest.mark.django_db
def test_missed_and_late_checks_fire_once(tenant, make_job, hook):
    from scheduler_app.alerts import checks

    job = make_job("heartbeat")
    rule(
        tenant,
        [webhook_channel(tenant, hook.url)],
        events=["missed", "late"],
        missed_after_seconds=60,
        late_after_seconds=30,
    )
    now = datetime.now(UTC)
    assert checks.run_periodic_checks(now) == 0  # the job and rule are new
    JobRun.objects.create(job=job, scheduled_for=now - timedelta(minutes=1))  # queued, not started
    later = now + timedelta(minutes=2)
    assert checks.run_periodic_checks(later) == 2
    assert checks.run_periodic_checks(later + timedelta(seconds=5)) == 0  # one incident each
    assert sorted(AlertOutbox.objects.values_list("event", flat=True)) == ["late", "missed"]
    AlertOutbox.objects.update(next_attempt_at=now)  # the checks ran "in the future"
    deliver_all()
    missed = next(r["json"] for r in hook.accepted() if r["json"]["event"] == "missed")
    assert missed["job"] == "heartbeat" and missed["last_success_at"] is None


@pytest.mark.django_db
def test_test_action_sends_a_sample(tenant, hook):
    channel = webhook_channel(tenant, hook.url)
    row = services.send_test_alert(channel)
    deliver_all()
    (request,) = hook.accepted()
    assert request["json"]["event"] == "test" and request["json"]["alert_id"] == str(row.alert_id)


@pytest.mark.django_db
def test_prune_keeps_pending_alerts(tenant, hook):
    channel = webhook_channel(tenant, hook.url)
    sent, pending = services.send_test_alert(channel), services.send_test_alert(channel)
    old = datetime.now(UTC) - timedelta(days=40)
    AlertOutbox.objects.filter(pk=sent.pk).update(state="sent", created_at=old)
    AlertOutbox.objects.filter(pk=pending.pk).update(created_at=old)
    assert delivery.prune(datetime.now(UTC), 30) == 1
    assert list(AlertOutbox.objects.values_list("pk", flat=True)) == [pending.pk]
    assert delivery.prune(datetime.now(UTC), None) == 0


@pytest.mark.django_db
def test_retrying_and_interrupted_signals_and_alerts(tenant, make_job, hook):
    job = make_job("j", retry_max_attempts=3)
    rule(tenant, [webhook_channel(tenant, hook.url)], events=["retrying", "interrupted"], throttle_seconds=0)
    got = []

    def receiver(sender, run, **kwargs):
        got.append((kwargs["signal"], run.state, run.is_final))

    signals.run_retrying.connect(receiver)
    signals.run_interrupted.connect(receiver)
    try:
        finish(job, "failed", when=datetime(2026, 1, 1, tzinfo=UTC))
        finish(job, "interrupted", when=datetime(2026, 1, 2, tzinfo=UTC))
    finally:
        signals.run_retrying.disconnect(receiver)
        signals.run_interrupted.disconnect(receiver)
    assert got == [
        (signals.run_retrying, "failed", False),
        (signals.run_interrupted, "interrupted", False),
    ]
    assert sorted(AlertOutbox.objects.values_list("event", flat=True)) == ["interrupted", "retrying"]


@pytest.mark.django_db
def test_suppressed_failures_cost_the_same_statements_whatever_the_batch(tenant, make_job):
    """A job failing every second under an open incident must not cost one UPDATE per
    failure in the outcome's transaction: the suppressed counts are one statement."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduler_app.alerts import evaluate

    channel = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    rule(tenant, [channel], events=["failed"])
    jobs = [make_job(f"flaky-{i}", retry_max_attempts=1) for i in range(12)]
    for job in jobs:
        finish(job, "failed")  # opens each job's incident
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 12
    statements = {}
    for size in (3, 12):
        later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=size)
        runs = []
        for job in jobs[:size]:
            run = JobRun.objects.create(
                job=job,
                scheduled_for=later,
                state=RunState.FAILED,
                is_final=True,
                finished_at=later,
                not_before=later,
            )
            runs.append(run)
        with CaptureQueriesContext(connection) as captured:
            assert evaluate.on_outcome(runs) == 0  # all suppressed
        statements[size] = len(captured)
    assert statements[3] == statements[12], statements
    assert sorted(AlertIncident.objects.values_list("suppressed", flat=True)) == [1] * 9 + [2] * 3
