"""How the delivery loop wakes up: outbox inserts NOTIFY in their transaction on
PostgreSQL (only a commit is heard, by a LISTEN connection of its own), the idle wait
is bounded by the next retry falling due, and SQLite polls every second."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from scheduler_app import services
from scheduler_app.alerts import delivery, evaluate
from scheduler_app.models import AlertChannel, AlertOutbox

postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY is PostgreSQL's"
)


def channel(tenant):
    return services.save_channel(
        AlertChannel(tenant=tenant, name="mail", type="email", config={"to": ["ops@example.com"]})
    )


def heard_within(seconds):
    return evaluate.delivery_wanted.wait(seconds)


def in_another_thread(func):
    """Run ``func`` on another database connection (as another process would)."""
    errors = []

    def run():
        try:
            func()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not errors, errors


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_listener_hears_committed_outbox_rows_of_other_connections_only(tenant):
    chan = channel(tenant)
    listener = delivery.NotifyListener()
    listener.start()
    try:
        deadline = time.monotonic() + 10
        while not listener.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.healthy
        time.sleep(0.2)
        evaluate.delivery_wanted.clear()

        def rolled_back():
            with pytest.raises(RuntimeError), transaction.atomic():
                services.send_test_alert(chan)
                raise RuntimeError

        in_another_thread(rolled_back)
        assert not heard_within(1.0)  # NOTIFY is transactional: no commit, no wake-up
        evaluate.delivery_wanted.clear()

        in_another_thread(lambda: services.send_test_alert(chan))
        assert heard_within(2.0)
        assert AlertOutbox.objects.count() == 1
    finally:
        listener.stop()
    assert not listener.healthy


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_listener_reconnects_after_its_connection_is_killed(tenant):
    chan = channel(tenant)
    listener = delivery.NotifyListener()
    listener.start()
    try:
        deadline = time.monotonic() + 10
        while not listener.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        with connection.cursor() as cursor:  # an administrator (or a failover) cuts it
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %%' "
                "AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone() is not None
        deadline = time.monotonic() + 10
        while listener.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 15
        while not listener.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.healthy
        time.sleep(0.2)
        evaluate.delivery_wanted.clear()
        in_another_thread(lambda: services.send_test_alert(chan))
        assert heard_within(2.0)
    finally:
        listener.stop()


@pytest.mark.django_db
def test_idle_wait_is_bounded_by_the_next_retry(tenant):
    chan = channel(tenant)
    loop = delivery.DeliveryLoop("n1")
    now = timezone.now()
    with override_settings(SCHEDULER_APP={"ALERTS_POLL_INTERVAL": 0.25, "ALERTS_IDLE_POLL_SECONDS": 5.0}):
        if connection.vendor == "sqlite":
            assert loop.idle_wait(now) == 1.0  # no notifications: a short poll
            return
        assert loop.idle_wait(now) == 0.25  # no LISTEN connection (yet): the short poll
        loop.listener = delivery.NotifyListener()
        loop.listener.healthy = True  # as when listening
        assert loop.idle_wait(now) == 5.0  # nothing pending: the safety-net poll only
        row = services.send_test_alert(chan)
        AlertOutbox.objects.filter(pk=row.pk).update(next_attempt_at=now + timedelta(seconds=2))
        assert loop.idle_wait(now) == pytest.approx(2.0, abs=0.01)  # the retry falls due
        AlertOutbox.objects.filter(pk=row.pk).update(leased_until=now + timedelta(seconds=3), leased_by="n2")
        assert loop.idle_wait(now) == pytest.approx(3.0, abs=0.01)  # another node's lease ends
        AlertOutbox.objects.filter(pk=row.pk).update(state="sent")
        assert loop.idle_wait(now) == 5.0


def test_retry_delay_of_a_row_retried_very_often_stays_at_the_maximum(settings):
    assert delivery.retry_delay(1) == 5.0 and delivery.retry_delay(2) == 10.0
    assert delivery.retry_delay(5000) == 300.0  # 2**4999 would not fit a float
    with override_settings(SCHEDULER_APP={**settings.SCHEDULER_APP, "ALERTS_RETRY_BASE_SECONDS": 0.0}):
        assert delivery.retry_delay(5000) == 0.0
