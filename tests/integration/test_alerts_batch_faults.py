"""Faults of batched alert work (review of the one-transaction batches): a leased batch
with slow sends records the fast ones at once (no duplicates after the lease), one
unrecordable attempt does not leave the others unrecorded, and an incident another
node opened (not committed yet) is detected by a batch that fails and recovers. Real
PostgreSQL sessions and real local HTTP receivers."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from scheduler_app import services
from scheduler_app.alerts import delivery, evaluate
from scheduler_app.models import (
    AlertChannel,
    AlertDelivery,
    AlertIncident,
    AlertOutbox,
    JobGroup,
    JobRun,
    RunState,
)
from tests.alert_receivers import WebhookReceiver
from tests.integration.test_alerts import finish, rule, webhook_channel

WHEN = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def delivering_in_a_thread(node):
    """``delivery.deliver(node)`` in a thread of its own (another node), started."""

    def deliver():
        try:
            delivery.deliver(node, limit=100)
        finally:
            connection.close()

    thread = threading.Thread(target=deliver)
    thread.start()
    return thread


def hook_channel(tenant, name, url):
    return services.save_channel(
        AlertChannel(tenant=tenant, name=name, type="webhook", config={"url": url}), secret="s3cret"
    )


@pytest.mark.django_db(transaction=True)
def test_fast_alerts_are_recorded_while_slow_sends_of_their_batch_time_out(tenant, make_job, settings):
    """5 alerts to a healthy receiver first in the batch, then 20 jobs alerting a
    receiver that times out and the healthy one. The fast ones are recorded as sent
    before the lease ends, so another node leasing after it sends none of them again."""
    settings.SCHEDULER_APP = {**getattr(settings, "SCHEDULER_APP", {}), "ALERTS_LEASE_SECONDS": 4}
    fast, slow = WebhookReceiver(), WebhookReceiver()
    slow.delay = 6.0  # past the 2 s send timeout (half the lease)
    try:
        rule(tenant, [hook_channel(tenant, "fast", fast.url)], name="fast")
        for i in range(5):
            finish(make_job(f"fast-{i}", retry_max_attempts=1), "failed")
        rule(tenant, [hook_channel(tenant, "slow", slow.url)], name="slow")
        for i in range(20):
            finish(make_job(f"slow-{i}", retry_max_attempts=1), "failed")
        first_fast = list(
            AlertOutbox.objects.filter(channel__name="fast").order_by("id").values_list("pk", flat=True)[:5]
        )

        started = time.monotonic()
        t = delivering_in_a_thread("node-a")
        # Recorded within node-a's lease (4 s), while its slow sends are still waiting
        # (their 2 s timeouts come in waves of 8 threads); a loaded machine (SQLite's write
        # lock shared with other tests) may take a while, not the lease.
        fast_sent = AlertOutbox.objects.filter(pk__in=first_fast, state="sent")
        while fast_sent.count() < 5 and time.monotonic() - started < 3.5:
            time.sleep(0.05)
        assert fast_sent.count() == 5
        time.sleep(max(0.0, started + 4.4 - time.monotonic()))  # node-a's lease expired
        delivery.deliver("node-b", limit=100)
        t.join()
        sent = [r["json"]["alert_id"] for r in fast.accepted()]
        ids = [
            str(a) for a in AlertOutbox.objects.filter(pk__in=first_fast).values_list("alert_id", flat=True)
        ]
        assert [sent.count(a) for a in ids] == [1] * 5
        assert AlertDelivery.objects.filter(outbox_id__in=first_fast).count() == 5
    finally:
        fast.close()
        slow.close()


class NulReceiver:
    """Answers 200 with a NUL byte in the body for the job ``nul-job``."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                answer = b"ok\x00" if body.get("job") == "nul-job" else b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.django_db
def test_a_response_with_a_nul_byte_is_stored_replaced_and_the_batch_is_recorded(tenant, make_job):
    receiver = NulReceiver()
    try:
        rule(tenant, [hook_channel(tenant, "hook", receiver.url)])
        for name in ("good-0", "nul-job", "good-1", "good-2"):
            finish(make_job(name, retry_max_attempts=1), "failed")
        assert delivery.deliver("node-a") == 4
        assert AlertOutbox.objects.filter(state="sent").count() == 4
        stored = AlertDelivery.objects.get(outbox__job__name="nul-job").response
        assert "\x00" not in stored and "ok\ufffd" in stored
    finally:
        receiver.close()


@pytest.mark.django_db
def test_a_refused_batch_record_records_the_other_alerts_one_by_one(tenant, make_job, caplog):
    """The batch statement refused (here: an error PostgreSQL cannot store, as a channel
    answering with anything unstorable would): each alert is recorded alone, the bad one
    is logged and left to its lease, the others are sent."""
    if connection.vendor != "postgresql":
        pytest.skip("NUL in text is a PostgreSQL refusal")
    channel = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    rule(tenant, [channel], events=["failed"])
    for i in range(4):
        finish(make_job(f"rec-{i}", retry_max_attempts=1), "failed")
    rows = delivery.lease("node-a", datetime.now(UTC), 50)
    results = [([row], (True, "ok", "fine", "", 0.01)) for row in rows]
    results[1] = ([rows[1]], (False, "500", "bad\x00", "HTTP 500", 0.01))
    delivery._record_all("node-a", results)
    states = dict(AlertOutbox.objects.values_list("pk", "state"))
    assert [states[r.pk] for r in rows] == ["sent", "pending", "sent", "sent"]
    assert AlertDelivery.objects.count() == 3
    assert "alert attempt not recordable" in caplog.text


def run(job, state, sec):
    r = JobRun.objects.create(
        job=job,
        scheduled_for=WHEN + timedelta(seconds=sec),
        state=state,
        is_final=True,
        finished_at=WHEN + timedelta(seconds=sec),
        not_before=WHEN,
    )
    r.job = job
    return r


def events():
    return list(AlertOutbox.objects.order_by("id").values_list("rule__name", "event"))


@pytest.mark.django_db(transaction=True)
def test_an_incident_another_node_is_opening_is_detected_by_a_batch_that_fails_and_recovers(tenant, make_job):
    """Node B's batch opened the job's failure incident (not committed yet); node A's
    batch has a failure then a success of the same job. A's insert waits for B and loses:
    A writes no second 'failed' alert (nor a recovery from an incident it did not open),
    and B's incident stays the one open, as with one INSERT per incident before."""
    if connection.vendor != "postgresql":
        pytest.skip("two sessions: PostgreSQL")
    ch = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    rule(tenant, [ch], events=["failed", "recovered"])
    job = make_job("shared", retry_max_attempts=1)
    opened, done = threading.Event(), threading.Event()

    def node_b():
        try:
            with transaction.atomic():
                evaluate.on_outcome([run(job, RunState.FAILED, 0)])
                opened.set()
                done.wait(2)
        finally:
            connection.close()

    t = threading.Thread(target=node_b)
    t.start()
    assert opened.wait(10)
    timer = threading.Timer(1.0, done.set)
    timer.start()
    with transaction.atomic():
        assert evaluate.on_outcome([run(job, RunState.FAILED, 1), run(job, RunState.SUCCEEDED, 2)]) == 0
    done.set()
    t.join()
    timer.cancel()
    assert events() == [("rule", "failed")]
    assert AlertIncident.objects.count() == 1
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_fail_recover_fail_in_one_batch(tenant, make_job):
    ch = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    rule(tenant, [ch], events=["failed", "recovered"])
    job = make_job("flap", retry_max_attempts=1)
    batch = [
        run(job, RunState.FAILED, 0),
        run(job, RunState.SUCCEEDED, 1),
        run(job, RunState.FAILED, 2),
        run(job, RunState.FAILED, 3),
    ]
    assert evaluate.on_outcome(batch) == 3
    assert [e for _, e in events()] == ["failed", "recovered", "failed"]
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 1
    assert AlertIncident.objects.get(closed_at__isnull=True).suppressed == 1
    assert AlertIncident.objects.count() == 2


@pytest.mark.django_db
def test_group_and_tenant_rules_muted_and_recovered_on_one_batch(tenant, make_job):
    ch = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    rule(tenant, [ch], name="group", events=["failed", "recovered"], scope_group=group)
    rule(tenant, [ch], name="tenant", events=["failed", "recovered"])
    rule(
        tenant,
        [ch],
        name="muted",
        events=["failed", "recovered"],
        muted_until=datetime.now(UTC) + timedelta(hours=1),
    )
    job = make_job("bill", group=group, retry_max_attempts=1)
    batch = [run(job, RunState.FAILED, 0), run(job, RunState.FAILED, 1), run(job, RunState.SUCCEEDED, 2)]
    assert evaluate.on_outcome(batch) == 4
    assert sorted(events()) == sorted(
        [("group", "failed"), ("tenant", "failed"), ("group", "recovered"), ("tenant", "recovered")]
    )
    assert not AlertIncident.objects.filter(closed_at__isnull=True).exists()
    assert sorted(AlertIncident.objects.values_list("rule__name", "suppressed")) == [
        ("group", 1),
        ("tenant", 1),
    ]


@pytest.mark.django_db
def test_the_incidents_a_batch_opens_are_inserted_in_rule_job_kind_order(tenant, make_job):
    """Two nodes opening the same incidents wait for each other in one order (no
    deadlock): the batch's jobs in reverse order still insert by (rule, job, kind)."""
    ch = webhook_channel(tenant, "http://127.0.0.1:9/hook")
    first = rule(tenant, [ch], name="first", events=["failed"])
    second = rule(tenant, [ch], name="second", events=["failed"])
    jobs = [make_job(f"order-{i}", retry_max_attempts=1) for i in range(4)]
    batch = [run(job, RunState.FAILED, i) for i, job in enumerate(reversed(jobs))]
    with CaptureQueriesContext(connection) as captured:
        assert evaluate.on_outcome(batch) == 8
    (insert,) = [q["sql"] for q in captured if q["sql"].startswith("INSERT") and "incident" in q["sql"]]
    values = insert.split(" VALUES ", 1)[1].split(" ON CONFLICT ", 1)[0]
    order = [(int(r), int(j)) for r, j in (tuple(v.split(", ")[:2]) for v in values.split("(")[1:])]
    expected = sorted((rl.pk, job.pk) for rl in (first, second) for job in jobs)
    assert order == expected


@pytest.mark.django_db(transaction=True)
def test_a_send_that_would_start_too_late_for_its_lease_is_left_to_the_next_lease(tenant, make_job, settings):
    """40 alerts to a receiver that takes 1 s each, 8 sender threads, a 4 s lease: the
    sends queued behind the first waves would end after the lease (when another node
    leases the rows and sends them too). They are not made: every alert is received
    exactly once over the rounds, and a round counts no attempt for what it left."""
    settings.SCHEDULER_APP = {**getattr(settings, "SCHEDULER_APP", {}), "ALERTS_LEASE_SECONDS": 4}
    slow = WebhookReceiver()
    slow.delay = 1.0
    try:
        rule(tenant, [hook_channel(tenant, "slowish", slow.url)], name="slowish")
        for i in range(40):
            finish(make_job(f"slowish-{i}", retry_max_attempts=1), "failed")
        assert AlertOutbox.objects.count() == 40

        t = delivering_in_a_thread("node-a")
        time.sleep(4.2)  # node-a's lease expired: node-b leases what node-a has not recorded
        delivery.deliver("node-b", limit=100)
        t.join()
        left = AlertOutbox.objects.exclude(state="sent")
        assert left.exists() and not left.filter(attempts__gt=0).exists()
        for _ in range(6):
            if not AlertOutbox.objects.exclude(state="sent").exists():
                break
            time.sleep(
                max(
                    0.0,
                    (
                        AlertOutbox.objects.exclude(leased_until=None)
                        .order_by("-leased_until")
                        .values_list("leased_until", flat=True)
                        .first()
                        or WHEN
                    ).timestamp()
                    - time.time(),
                )
                + 0.1
            )
            delivery.deliver("node-c", limit=100)
        sent = [r["json"]["alert_id"] for r in slow.accepted()]
        ids = [str(a) for a in AlertOutbox.objects.values_list("alert_id", flat=True)]
        assert AlertOutbox.objects.filter(state="sent").count() == 40
        assert sorted(sent.count(a) for a in ids) == [1] * 40
    finally:
        slow.close()
