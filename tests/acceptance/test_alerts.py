"""Alerts end to end: real runscheduler processes record failures, write outbox rows
and deliver them to a real local HTTP receiver and a real local SMTP server; a
scheduler killed with -9 while delivering leaves nothing lost (the next node resends
with the same alert_id)."""

import time
from datetime import UTC

import pytest

from scheduler_app import services
from scheduler_app.models import AlertChannel, AlertDelivery, AlertOutbox, AlertRule, Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until
from tests.alert_receivers import SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.slow


@pytest.fixture
def acme(transactional_db):
    return Tenant.objects.create(slug="acme", name="Acme")


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


def failing_job(tenant, name):
    return services.save_job(
        Job(
            tenant=tenant,
            name=name,
            task="demo.fail",
            kwargs={"message": f"{name} broke"},
            trigger={"type": "manual"},
        )
    )


def alert_on(tenant, channels, **fields):
    return services.save_rule(
        AlertRule(tenant=tenant, name="failures", events=["failed"], throttle_seconds=3600, **fields),
        channels=channels,
    )


def test_a_failed_run_reaches_webhook_and_mail(acme, scheduler, hook, smtp):
    web = services.save_channel(
        AlertChannel(tenant=acme, name="ops-hook", type="webhook", config={"url": hook.url}), secret="k"
    )
    mail = services.save_channel(
        AlertChannel(tenant=acme, name="ops-mail", type="email", config={"to": ["ops@example.com"]})
    )
    alert_on(acme, [web, mail])
    jobs = [failing_job(acme, f"nightly-{i}") for i in range(10)]
    proc = scheduler("node-a", extra_env={"SCHEDULER_TEST_SMTP_PORT": str(smtp.port)})
    services.run_jobs_now(jobs)
    wait_until(lambda: len(hook.accepted()) >= 10 and len(smtp.messages) >= 10, 30, message=proc.output)
    time.sleep(1.0)
    assert len(hook.accepted()) == 10 and len(smtp.messages) == 10  # once each
    latencies = []
    for request in hook.accepted():
        body = request["json"]
        run = JobRun.objects.get(pk=body["run_id"])
        assert body["event"] == "failed" and body["job"] == run.job.name
        assert body["error"].startswith(f"{run.job.name} broke")
        latencies.append(request["at"] - run.finished_at.astimezone(UTC).timestamp())
    assert max(latencies) < 5.0, latencies  # a shared, loaded machine; the bench measures p95
    assert {m["Subject"] for m in smtp.messages} == {
        f"[scheduler] failed: nightly-{i} (acme)" for i in range(10)
    }
    assert AlertOutbox.objects.filter(state="sent").count() == 20
    assert set(AlertDelivery.objects.values_list("node", flat=True)) == {"node-a"}


def test_killed_while_delivering_the_next_node_resends_with_the_same_alert_id(acme, scheduler, hook):
    web = services.save_channel(
        AlertChannel(tenant=acme, name="ops-hook", type="webhook", config={"url": hook.url})
    )
    alert_on(acme, [web])
    job = failing_job(acme, "billing")
    hook.delay = 3.0  # the receiver takes its time; the node is killed meanwhile
    first = scheduler("node-a", ALERTS_LEASE_SECONDS=4.0)
    services.run_jobs_now([job])
    wait_until(lambda: hook.started >= 1, 30, message=first.output)
    first.kill9()
    row = AlertOutbox.objects.get()
    assert row.state == "pending" and row.leased_by == "node-a"  # sent, perhaps, but not recorded
    hook.delay = 0.0
    second = scheduler("node-b", ALERTS_LEASE_SECONDS=4.0)
    wait_until(lambda: AlertOutbox.objects.filter(state="sent").exists(), 30, message=second.output)
    time.sleep(3.5)  # the first request's answer arrives; nothing else is sent
    ids = [r["json"]["alert_id"] for r in hook.requests]
    assert ids == [str(row.alert_id)] * 2  # at least once: the duplicate carries the same id
    attempts = list(AlertDelivery.objects.values_list("node", "ok"))
    assert attempts == [("node-b", True)]


def test_an_alert_written_by_another_process_wakes_the_delivery_loop(acme, scheduler, hook):
    """The test process (not the scheduler) writes the outbox rows. With the polls set to
    30 s, only the wake-up can bring them out promptly: PostgreSQL's NOTIFY, sent in the
    transaction of the insert and heard by the node's LISTEN connection. (SQLite has no
    notifications: its loop looks every second.)"""
    from django.db import connection, transaction

    web = services.save_channel(
        AlertChannel(tenant=acme, name="ops-hook", type="webhook", config={"url": hook.url}), secret="k"
    )
    postgres = connection.vendor == "postgresql"
    polls = {"ALERTS_POLL_INTERVAL": 30.0, "ALERTS_IDLE_POLL_SECONDS": 30.0} if postgres else {}
    proc = scheduler("node-a", ALERTS_CHECK_INTERVAL=30.0, **polls)
    services.send_test_alert(web)  # the first one also proves the node's loop is up
    wait_until(lambda: len(hook.accepted()) == 1, 35, message=proc.output)
    time.sleep(1.5)  # the loop is idle again, waiting
    with pytest.raises(RuntimeError), transaction.atomic():
        services.send_test_alert(web)  # rolled back: no row, and no NOTIFY either
        raise RuntimeError
    latencies = []
    for _ in range(5):
        written = time.time()
        row = services.send_test_alert(web)
        wait_until(
            lambda row=row: any(r["json"]["alert_id"] == str(row.alert_id) for r in hook.accepted()),
            35,
            interval=0.01,
            message=proc.output,
        )
        latencies.append(time.time() - written)
        time.sleep(0.3)
    assert len(hook.accepted()) == 6 and AlertOutbox.objects.count() == 6
    assert max(latencies) < (1.0 if postgres else 2.5), latencies  # far below the 30 s polls
