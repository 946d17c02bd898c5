"""The slow-by-p95, node_down and per-job mute alerts, with a real local HTTP receiver."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from scheduler_app import services
from scheduler_app.backends.cluster import DjangoRegistry
from scheduler_app.models import AlertOutbox, AlertRule, Node
from tests.integration.test_alerts import deliver_all, finish, hook, rule, webhook_channel  # noqa: F401


@pytest.mark.django_db
def test_slow_factor_fires_above_k_times_p95(tenant, make_job, hook):  # noqa: F811
    job = make_job("etl")
    channel = webhook_channel(tenant, hook.url)
    rule(tenant, [channel], events=["slow"], slow_factor=3.0)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(6):
        finish(job, "succeeded", seconds=1.0, when=start + timedelta(minutes=i))
    assert not AlertOutbox.objects.exists()  # baseline p95 = 1 s
    finish(job, "succeeded", seconds=2.5, when=start + timedelta(minutes=10))
    assert not AlertOutbox.objects.exists()  # 2.5 s < 3 × 1 s
    # p95 (nearest rank) of 1 s ×6 and 2.5 s is 2.5 s: slow above 7.5 s.
    finish(job, "succeeded", seconds=8.0, when=start + timedelta(minutes=12))
    row = AlertOutbox.objects.get()
    assert row.event == "slow"
    assert deliver_all() == 1
    (request,) = hook.accepted()
    assert request["json"]["p95_seconds"] == 2.5 and request["json"]["slow_after_seconds"] == 7.5


@pytest.mark.django_db
def test_slow_needs_a_threshold_and_factor_at_least_one(tenant, hook):  # noqa: F811
    channel = webhook_channel(tenant, hook.url)
    with pytest.raises(ValidationError) as exc:
        rule(tenant, [channel], events=["slow"])
    assert "slow_after_seconds" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        rule(tenant, [channel], events=["slow"], slow_factor=0.5)
    assert "slow_factor" in exc.value.message_dict


@pytest.mark.django_db
def test_node_declared_dead_alerts_tenant_wide_rules(tenant, make_job, hook):  # noqa: F811
    channel = webhook_channel(tenant, hook.url)
    rule(tenant, [channel], events=["node_down"])
    with pytest.raises(ValidationError) as exc:
        rule(tenant, [channel], events=["node_down"], name="scoped", scope_job=make_job("x"))
    assert "scope" in exc.value.message_dict
    registry = DjangoRegistry(15.0)
    registry.register({"name": "n-dead"})
    Node.objects.filter(name="n-dead").update(heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    assert registry.judge_dead(15.0) == ["n-dead"]
    row = AlertOutbox.objects.get()
    assert row.event == "node_down"
    assert deliver_all() == 1
    (request,) = hook.accepted()
    assert request["json"]["node"] == "n-dead" and request["json"]["event"] == "node_down"


@pytest.mark.django_db
def test_job_mute_silences_that_job_only(tenant, make_job, hook):  # noqa: F811
    muted, other = make_job("muted"), make_job("other")
    channel = webhook_channel(tenant, hook.url)
    rule(tenant, [channel], events=["failed"])
    services.mute_job_alerts(muted, datetime.now(UTC) + timedelta(hours=1))
    finish(muted, "failed")
    finish(other, "failed")
    assert list(AlertOutbox.objects.values_list("job__name", flat=True)) == ["other"]
    assert AlertRule.objects.count() == 1
