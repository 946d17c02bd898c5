"""What alerting costs per batch: a leased batch of alerts is recorded in one
transaction with a fixed number of statements (was five per alert), still fenced; a batch
of failures of many jobs opens its incidents in one statement, in the outcomes'
transaction, and deduplicates within the batch. Real PostgreSQL (or SQLite), a real local
HTTP receiver."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduler_app import signals
from scheduler_app.alerts import delivery, evaluate
from scheduler_app.models import (
    AlertCounter,
    AlertDelivery,
    AlertIncident,
    AlertOutbox,
    JobRun,
    RunState,
)
from tests.alert_receivers import WebhookReceiver
from tests.integration.test_alerts import finish, rule, webhook_channel


@pytest.fixture
def hook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def pending_alerts(tenant, make_job, url, count, prefix):
    channel = webhook_channel(tenant, url)
    rule(tenant, [channel], events=["failed"])
    for i in range(count):
        finish(make_job(f"{prefix}-{i}", retry_max_attempts=1), "failed")
    assert AlertOutbox.objects.filter(state="pending").count() == count


@pytest.mark.django_db
@pytest.mark.parametrize("count", [4, 40])
def test_a_delivered_batch_is_recorded_in_the_same_statements_whatever_its_size(
    tenant, make_job, hook, count
):
    pending_alerts(tenant, make_job, hook.url, count, "batch")
    sent = []

    def on_sent(sender, alert, **kwargs):
        sent.append(alert.alert_id)

    signals.alert_sent.connect(on_sent, dispatch_uid="test-batch-sent")
    try:
        with CaptureQueriesContext(connection) as captured:
            assert delivery.deliver("test-node") == count
    finally:
        signals.alert_sent.disconnect(dispatch_uid="test-batch-sent")
    statements = [q["sql"] for q in captured if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    # the lease (look, lock, mark, read with channels), then the record: lock the rows
    # still held, one UPDATE, one INSERT of the attempts, tenant slugs, counters (was
    # five statements and a commit per alert)
    assert len(statements) <= 10, statements
    assert AlertOutbox.objects.filter(state="sent", attempts=1, leased_by="").count() == count
    assert AlertDelivery.objects.filter(ok=True).count() == count
    assert AlertCounter.objects.get().count == count
    assert len(set(sent)) == count
    assert len({r["json"]["alert_id"] for r in hook.accepted()}) == count


@pytest.mark.django_db
def test_a_row_leased_again_by_another_node_is_not_recorded_as_sent_by_the_slow_one(tenant, make_job, hook):
    pending_alerts(tenant, make_job, hook.url, 3, "fence")
    rows = delivery.lease("slow-node", datetime.now(UTC), 50)
    results = [([row], delivery._attempt([row])) for row in rows]
    # The slow node's lease on the first row expired and another node took it.
    AlertOutbox.objects.filter(pk=rows[0].pk).update(leased_by="other-node")
    delivery._record_all("slow-node", results)
    first = AlertOutbox.objects.get(pk=rows[0].pk)
    assert first.state == "pending" and first.leased_by == "other-node" and first.attempts == 0
    assert AlertOutbox.objects.filter(state="sent").count() == 2
    assert AlertDelivery.objects.count() == 3  # each attempt is recorded, fenced or not
    assert AlertCounter.objects.get().count == 2


@pytest.mark.django_db
def test_a_failed_batch_retries_with_backoff_and_keeps_the_error(tenant, make_job, settings):
    settings.SCHEDULER_APP = {**getattr(settings, "SCHEDULER_APP", {}), "ALERTS_RETRY_BASE_SECONDS": 30.0}
    pending_alerts(tenant, make_job, "http://127.0.0.1:9/hook", 3, "down")
    before = datetime.now(UTC)
    assert delivery.deliver("test-node") == 3
    rows = list(AlertOutbox.objects.all())
    assert {r.state for r in rows} == {"pending"}
    assert {r.attempts for r in rows} == {1}
    assert all(r.next_attempt_at >= before + timedelta(seconds=29) for r in rows)
    assert all(r.last_error.startswith("cannot reach") for r in rows)
    assert all(r.leased_by == "" for r in rows)
    assert AlertDelivery.objects.filter(ok=False).count() == 3


def failed_runs(jobs, when):
    return [
        JobRun.objects.create(
            job=job,
            scheduled_for=when,
            state=RunState.FAILED,
            is_final=True,
            finished_at=when,
            not_before=when,
        )
        for job in jobs
    ]


@pytest.mark.django_db
def test_a_batch_of_forty_first_failures_opens_its_incidents_in_one_statement(tenant, make_job):
    channel = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    rule(tenant, [channel], events=["failed"])
    jobs = [make_job(f"first-{i}", retry_max_attempts=1) for i in range(40)]
    when = datetime.now(UTC).replace(microsecond=0)
    runs = failed_runs(jobs, when)
    # two failures of the same job in the batch: still one incident and one alert
    runs += failed_runs(jobs[:5], when + timedelta(seconds=1))
    for run in runs:
        run.job = next(j for j in jobs if j.pk == run.job_id)
    with CaptureQueriesContext(connection) as captured:
        assert evaluate.on_outcome(runs) == 40
    inserts = [q["sql"] for q in captured if q["sql"].startswith("INSERT") and "incident" in q["sql"]]
    assert len(inserts) == 1, inserts
    assert not [q for q in captured if q["sql"].startswith("SAVEPOINT")]
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 40
    assert AlertOutbox.objects.count() == 40
    assert sorted(AlertIncident.objects.values_list("suppressed", flat=True)) == [0] * 35 + [1] * 5
    # the next batch: all suppressed, nothing opened
    assert evaluate.on_outcome(failed_runs(jobs, when + timedelta(seconds=2))) == 0
    assert AlertIncident.objects.count() == 40


@pytest.mark.django_db
def test_an_incident_another_node_opened_first_is_left_to_it(tenant, make_job):
    """The open-incident index decides between two nodes: the incident already open
    (the other node's) is not written again and keeps no pk, so the batch writes no
    alert for it; the others are written."""
    channel = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    the_rule = rule(tenant, [channel], events=["failed"])
    a, b = make_job("race-a"), make_job("race-b")
    now = datetime.now(UTC)
    theirs = AlertIncident.objects.create(
        rule=the_rule, job=a, kind="failure", opened_at=now, last_alert_at=now
    )
    mine = [
        AlertIncident(rule=the_rule, job=job, kind="failure", opened_at=now, last_alert_at=now)
        for job in (a, b)
    ]
    evaluate.open_incidents_at_once(mine)
    assert mine[0].pk is None and mine[1].pk is not None
    assert set(AlertIncident.objects.values_list("pk", flat=True)) == {theirs.pk, mine[1].pk}


@pytest.mark.django_db
def test_a_job_failing_then_recovering_in_one_batch_alerts_both_and_leaves_no_open_incident(tenant, make_job):
    channel = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    rule(tenant, [channel], events=["failed", "recovered"])
    job = make_job("blip", retry_max_attempts=1)
    when = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    (failed,) = failed_runs([job], when)
    ok = JobRun.objects.create(
        job=job,
        scheduled_for=when + timedelta(seconds=1),
        state=RunState.SUCCEEDED,
        is_final=True,
        finished_at=when,
        not_before=when,
    )
    failed.job = ok.job = job
    assert evaluate.on_outcome([failed, ok]) == 2
    assert list(AlertOutbox.objects.order_by("id").values_list("event", flat=True)) == ["failed", "recovered"]
    (incident,) = AlertIncident.objects.all()
    assert incident.closed_at is not None
    # the next failure opens a new incident and alerts again
    assert evaluate.on_outcome(failed_runs([job], when + timedelta(seconds=2))) == 1
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 1
