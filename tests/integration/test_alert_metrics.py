"""``scheduler_alerts_sent_total`` and ``scheduler_alerts_given_up_total``: alerts counted
once each when their delivery reaches a final state, through real deliveries to a real
webhook receiver, by label set, and never lowered by pruning delivered alerts."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from scheduler_app.alerts import delivery
from scheduler_app.models import AlertCounter, AlertOutbox
from scheduler_app.monitoring import metrics
from tests.integration.test_alerts import FAST, deliver_all, finish, rule, webhook_channel
from tests.integration.test_monitoring import scrape, value

pytestmark = pytest.mark.django_db

BASE = __import__("django.conf").conf.settings.SCHEDULER_APP


@pytest.fixture
def hook():
    from tests.alert_receivers import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(autouse=True)
def fresh_metrics():
    metrics.collector.forget()
    yield
    metrics.collector.forget()


@override_settings(SCHEDULER_APP={**BASE, **FAST})
def test_sent_alerts_are_counted_once_each_and_survive_pruning(client, tenant, make_job, hook):
    jobs = [make_job(f"j{i}") for i in range(3)]
    rule(tenant, [webhook_channel(tenant, hook.url)], events=["failed"], name="r1")
    hook.status = 503  # the first attempts fail and are retried: not counted
    for job in jobs:
        finish(job, "failed")
    delivery.deliver("test-node")
    assert AlertOutbox.objects.filter(state="pending").count() == 3
    families = scrape(client)
    assert value(families, "scheduler_alerts_sent_total", tenant="acme") is None
    hook.status = 200
    deliver_all()
    assert AlertOutbox.objects.filter(state="sent").count() == 3
    metrics.collector.forget()
    families = scrape(client)
    labels = {"tenant": "acme", "channel_type": "webhook", "event": "failed"}
    assert value(families, "scheduler_alerts_sent_total", **labels) == 3
    assert value(families, "scheduler_alerts_given_up_total", **labels) is None
    # Delivered alerts are pruned with old runs: the counter stays.
    AlertOutbox.objects.update(created_at=timezone.now() - timedelta(days=60))
    delivery.prune(timezone.now(), 30)
    assert not AlertOutbox.objects.exists()
    metrics.collector.forget()
    assert value(scrape(client), "scheduler_alerts_sent_total", **labels) == 3


@override_settings(SCHEDULER_APP={**BASE, **FAST, "ALERTS_GIVE_UP_AFTER_SECONDS": 0.0})
def test_given_up_alerts_are_counted(client, tenant, make_job, hook):
    job = make_job("j")
    rule(tenant, [webhook_channel(tenant, hook.url)])
    finish(job, "failed")
    hook.status = 503
    delivery.deliver("test-node")
    assert AlertOutbox.objects.get().state == "dead"
    families = scrape(client)
    labels = {"tenant": "acme", "channel_type": "webhook", "event": "failed"}
    assert value(families, "scheduler_alerts_given_up_total", **labels) == 1
    assert value(families, "scheduler_alerts_sent_total", **labels) is None


@override_settings(SCHEDULER_APP={**BASE, **FAST})
def test_a_digest_counts_each_alert_and_a_fenced_node_counts_nothing(client, tenant, make_job, hook):
    jobs = [make_job(f"j{i}") for i in range(4)]
    rule(tenant, [webhook_channel(tenant, hook.url)], digest=True)
    for job in jobs:
        finish(job, "failed")
    deliver_all()
    assert len(hook.accepted()) == 1
    assert AlertCounter.objects.get().count == 4
    # A node whose lease was taken over records nothing, so it counts nothing either.
    finish(make_job("late"), "failed")
    rows = delivery.lease("slow-node", timezone.now(), 10)
    AlertOutbox.objects.filter(pk__in=[r.pk for r in rows]).update(leased_by="other-node")
    delivery._record("slow-node", rows, (True, "ok", "", "", 0.1))
    assert AlertCounter.objects.get().count == 4
