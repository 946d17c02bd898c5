"""The delivery loop: runs in a thread of every ``runscheduler``; any node delivers.

A node leases due outbox rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) for
``ALERTS_LEASE_SECONDS``, sends them outside any transaction, then records the attempt
and the new state only if it still holds the lease. A node killed between sending and
recording leaves the row leased; when the lease expires another node (or the restart)
sends it again with the same ``alert_id``: delivery is at least once.

Failures retry with exponential backoff (``ALERTS_RETRY_BASE_SECONDS`` doubling up to
``ALERTS_RETRY_MAX_SECONDS``) until ``ALERTS_GIVE_UP_AFTER_SECONDS`` after the alert was
written; then the row becomes ``dead`` (visible in the admin, ``alert_failed`` sent).
A rule with ``digest`` sends the alerts that piled up for one channel as one message.

Waking up: the loop sends what is due, then waits. Alerts written by this process wake
it when their transaction commits; on PostgreSQL every outbox insert also sends
``NOTIFY scheduler_app_alerts`` in its transaction and a :class:`NotifyListener` thread
(its own connection, ``LISTEN``) wakes the loop of every node, so an alert written by
any process is sent at once. The wait is then bounded by ``ALERTS_IDLE_POLL_SECONDS``
and by when the next retry falls due (no busy polling); while the LISTEN connection is
down, by ``ALERTS_POLL_INTERVAL``. SQLite has no notifications: the loop looks every
``max(ALERTS_POLL_INTERVAL, 1)`` seconds."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone

from scheduler_app import signals
from scheduler_app.alerts import channels as channel_types
from scheduler_app.alerts import checks, evaluate
from scheduler_app.conf import app_settings
from scheduler_app.models import AlertDelivery, AlertOutbox, OutboxState
from scheduler_app.monitoring import counters

logger = logging.getLogger(__name__)


def retry_delay(attempts: int) -> float:
    base = float(app_settings.ALERTS_RETRY_BASE_SECONDS)
    # The exponent is capped: 2**1024 does not fit a float (a row retried that often
    # is at the maximum anyway).
    return min(base * (2 ** min(max(attempts - 1, 0), 60)), float(app_settings.ALERTS_RETRY_MAX_SECONDS))


def lease(node: str, now: datetime, limit: int) -> list[AlertOutbox]:
    """Lease up to ``limit`` due rows to ``node``."""
    until = now + timedelta(seconds=app_settings.ALERTS_LEASE_SECONDS)
    due = AlertOutbox.objects.filter(state=OutboxState.PENDING, next_attempt_at__lte=now).filter(
        Q(leased_until__isnull=True) | Q(leased_until__lte=now)
    )
    # A plain read first: on SQLite every transaction takes the write lock (IMMEDIATE),
    # and an idle poll must not compete with the run engine for it.
    if not due.exists():
        return []
    with transaction.atomic():
        qs = (
            AlertOutbox.objects.filter(state=OutboxState.PENDING, next_attempt_at__lte=now)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
            .order_by("next_attempt_at", "id")
        )
        if connection.vendor == "postgresql":
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        rows = list(qs[:limit])
        if not rows:
            return []
        AlertOutbox.objects.filter(pk__in=[r.pk for r in rows]).update(leased_by=node, leased_until=until)
    ids = [r.pk for r in rows]
    return list(AlertOutbox.objects.filter(pk__in=ids).select_related("channel", "rule").order_by("id"))


def _groups(rows: list[AlertOutbox]) -> list[list[AlertOutbox]]:
    """Rows sent together: a digest rule's rows for one channel, else one each."""
    digest: dict[tuple[int, int], list[AlertOutbox]] = defaultdict(list)
    groups: list[list[AlertOutbox]] = []
    for row in rows:
        if row.rule is not None and row.rule.digest:
            digest[(row.rule_id, row.channel_id)].append(row)
        else:
            groups.append([row])
    groups.extend(digest.values())
    return groups


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _senders() -> ThreadPoolExecutor:
    """Threads that do the network part of sending (no database), so one slow channel
    does not hold up the others."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="alert-send")
        return _pool


def deliver(node: str, limit: int = 50) -> int:
    """Lease and send what is due; returns how many rows were handled."""
    now = timezone.now()
    rows = lease(node, now, limit)
    if not rows:
        return 0
    groups = _groups(rows)
    # A send that waited for a sender thread (behind slow ones) so long that it could end
    # after the lease, when another node may lease and send the row again, is not made:
    # the row is left to its lease (no attempt counted) and sent by whoever leases it next.
    latest_start = time.monotonic() + max(
        0.0, float(app_settings.ALERTS_LEASE_SECONDS) * 0.9 - send_timeout() - record_hold()
    )
    pending: dict[Future, list[AlertOutbox]] = {
        _senders().submit(_attempt, group, latest_start): group for group in groups
    }
    # Recorded as the sends complete, in chunks: after the first of a chunk completes,
    # the others get at most ``hold`` seconds (a twentieth of the lease) to join it, so a
    # finished send is never held behind a slow one (a timeout) until its lease expires
    # and another node sends it again; a batch of fast sends is still recorded in one
    # transaction.
    hold = record_hold()
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        if len(done) < len(pending):
            done, _ = wait(pending, timeout=hold)
        chunk = [(group, future) for future, group in pending.items() if future in done]  # batch order
        for _, future in chunk:
            del pending[future]
        made = [(group, result) for group, future in chunk if (result := future.result()) is not None]
        if len(made) < len(chunk):
            logger.info(
                "alerts left to their lease: their sends would have started too late", extra={"node": node}
            )
        if made:
            _record_all(node, made)
    return len(rows)


#: The longest a completed send waits for others to be recorded with it, in seconds:
#: a twentieth of the lease (1.5 s at the default 30 s), at most this.
RECORD_HOLD_SECONDS = 2.0


def record_hold() -> float:
    return min(RECORD_HOLD_SECONDS, float(app_settings.ALERTS_LEASE_SECONDS) / 20)


def _payload(group: list[AlertOutbox]) -> dict:
    if len(group) == 1:
        return group[0].payload
    return {
        "schema": group[0].payload.get("schema", 1),
        "alert_id": f"digest-{group[0].alert_id}",
        "event": "digest",
        "tenant": group[0].payload.get("tenant"),
        "rule": group[0].payload.get("rule"),
        "alerts": [r.payload for r in group],
    }


def send_timeout() -> float:
    """How long one send may take, in seconds: half the lease (at least 1 s)."""
    return max(1.0, float(app_settings.ALERTS_LEASE_SECONDS) / 2)


def _attempt(
    group: list[AlertOutbox], latest_start: float = float("inf")
) -> tuple[bool, str, str, str, float] | None:
    """Send one message (no database access): ok, status, response, error, seconds; None
    (nothing sent) when it would start after ``latest_start`` (monotonic)."""
    timeout = send_timeout()
    started = time.monotonic()
    if started > latest_start:
        return None
    ok, status, response, error = True, "ok", "", ""
    try:
        response = channel_types.send(group[0].channel, _payload(group), timeout)
    except channel_types.DeliveryError as exc:
        ok, status, response, error = False, exc.status or "error", exc.response, str(exc)
    except Exception as exc:  # a broken channel must not stop the loop
        ok, status, error = False, "error", f"{exc.__class__.__name__}: {exc}"
    # What a receiver answered is stored: no NUL (PostgreSQL text refuses it), bounded.
    clean = channel_types.storable
    return ok, clean(status, 32), clean(response, 2000), clean(error, 2000), time.monotonic() - started


def _record(node: str, group: list[AlertOutbox], result: Result) -> None:
    _record_all(node, [(group, result)])


Result = tuple[bool, str, str, str, float]


def _record_all(node: str, results: list[tuple[list[AlertOutbox], Result]]) -> None:
    """Record the attempts (see :func:`_record_batch`); if the batch's transaction is
    refused, each message's attempts are recorded in a transaction of their own, so one
    unrecordable attempt cannot leave the others unrecorded (and sent again after the
    lease, forever). One still refused is logged and left to its lease. The database
    away (OperationalError, InterfaceError) is raised: the loop retries."""
    try:
        _record_batch(node, results)
        return
    except (OperationalError, InterfaceError):
        raise
    except DatabaseError as exc:
        if len(results) == 1:
            _unrecordable(results[0][0], exc)
            return
        logger.warning("alert batch not recordable; recording each alert alone", extra={"error": str(exc)})
    for item in results:
        try:
            _record_batch(node, [item])
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            _unrecordable(item[0], exc)


def _unrecordable(group: list[AlertOutbox], exc: Exception) -> None:
    logger.error(
        "alert attempt not recordable",
        extra={"alert_id": ", ".join(str(r.alert_id) for r in group), "error": str(exc)},
        exc_info=True,
    )


def _record_batch(node: str, results: list[tuple[list[AlertOutbox], Result]]) -> None:
    """Record the attempts of a leased batch in one transaction: the rows this node
    still holds, locked in one statement; one UPDATE per distinct new state (one in
    practice: every row sent), one INSERT of all the attempts and the counters. A few
    statements per batch instead of five per alert, so delivery keeps up with a burst
    without taking the run engine's database time. Signals and logs follow the commit."""
    if not results:
        return
    now = timezone.now()
    give_up = timedelta(seconds=app_settings.ALERTS_GIVE_UP_AFTER_SECONDS)
    ids = [row.pk for group, _ in results for row in group]
    # (outcome, attempts, error) -> the rows getting that state; error is one per group
    updates: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    attempts_made: list[AlertDelivery] = []
    finished: list[tuple[AlertOutbox, str, AlertOutbox, str, str]] = []
    with transaction.atomic():
        # Fenced: a node whose lease expired (it was too slow) records nothing for that
        # row (another node may be sending it); the attempt itself is recorded anyway.
        held = AlertOutbox.objects.filter(pk__in=ids, leased_by=node, state=OutboxState.PENDING)
        if connection.vendor == "postgresql":
            held = held.select_for_update(of=("self",)).order_by("pk")  # pk order: no deadlock
        mine = set(held.values_list("pk", flat=True))
        for group, (ok, status, response, error, took) in results:
            for row in group:
                attempts = row.attempts + 1
                if ok:
                    outcome = "sent"
                elif now - row.created_at >= give_up:
                    outcome = "dead"
                else:
                    outcome = "retry"
                if row.pk in mine:
                    # the retry's delay depends on the attempts; sent and dead rows share one UPDATE
                    key = (outcome, attempts if outcome == "retry" else 0, "" if ok else error)
                    updates[key].append(row.pk)
                    finished.append((row, outcome, group[0], response, error))
                attempts_made.append(
                    AlertDelivery(
                        outbox=row,
                        attempted_at=now,
                        node=node,
                        ok=ok,
                        status=status[:32],
                        response=response[:2000],
                        error=error[:2000],
                        duration=round(took, 4),
                    )
                )
        for (outcome, attempts, error), pks in updates.items():
            fields: dict[str, object]
            if outcome == "sent":
                fields = {"state": OutboxState.SENT, "sent_at": now, "last_error": ""}
            elif outcome == "dead":
                fields = {"state": OutboxState.DEAD, "last_error": error}
            else:
                fields = {
                    "next_attempt_at": now + timedelta(seconds=retry_delay(attempts)),
                    "last_error": error,
                }
            # The rows are locked and leased to this node: attempts + 1 is the leased value + 1.
            AlertOutbox.objects.filter(pk__in=pks).update(
                attempts=F("attempts") + 1, leased_by="", leased_until=None, **fields
            )
        AlertDelivery.objects.bulk_create(attempts_made)
        by_type: dict[str, list[tuple[AlertOutbox, str]]] = defaultdict(list)
        for row, outcome, first, _, _ in finished:
            by_type[first.channel.type].append((row, outcome))
        for channel_type, pairs in sorted(by_type.items()):
            counters.count_alerts(pairs, channel_type)
    for row, outcome, first, response, error in finished:
        log = logger.info if outcome == "sent" else logger.warning
        log(
            f"alert {outcome}",
            extra={
                "alert_id": str(row.alert_id),
                "event": row.event,
                "channel": first.channel.name,
                "error": error,
            },
        )
        if outcome == "sent":
            signals.alert_sent.send(sender=AlertOutbox, alert=row, response=response)
        else:
            signals.alert_failed.send(sender=AlertOutbox, alert=row, error=error, final=outcome == "dead")


def prune(now: datetime, days: float | None) -> int:
    """Delete delivered and given-up alerts (with their attempts) and closed incidents
    older than the run retention; pending alerts are never deleted."""
    if days is None:
        return 0
    from scheduler_app.models import AlertIncident

    cutoff = now - timedelta(days=days)
    deleted, _ = AlertOutbox.objects.filter(
        state__in=[OutboxState.SENT, OutboxState.DEAD], created_at__lt=cutoff
    ).delete()
    AlertIncident.objects.filter(closed_at__lt=cutoff).delete()
    return deleted


def next_due_in(now: datetime) -> float | None:
    """Seconds until the first pending alert falls due (its next attempt, or the end of
    the lease another node holds on it); None if nothing is pending."""
    from django.db.models import Min
    from django.db.models.functions import Coalesce, Greatest

    first = AlertOutbox.objects.filter(state=OutboxState.PENDING).aggregate(
        at=Min(Greatest("next_attempt_at", Coalesce("leased_until", "next_attempt_at")))
    )["at"]
    return None if first is None else max((first - now).total_seconds(), 0.0)


class NotifyListener:
    """A thread with its own PostgreSQL connection that ``LISTEN``s on
    ``scheduler_app_alerts`` and sets ``evaluate.delivery_wanted`` on each notification
    (and once after each (re)connect, for what was written while it was down). A lost
    connection is retried with backoff; ``healthy`` says whether it listens now."""

    def __init__(self) -> None:
        self.healthy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._params: dict | None = None

    def start(self) -> None:
        # The connection parameters are Django's (read here, in the loop's thread).
        self._params = connection.get_connection_params()
        self._thread = threading.Thread(target=self._run, name="alert-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(**(self._params or {}), autocommit=True) as conn:
                    conn.execute(f"LISTEN {evaluate.NOTIFY_CHANNEL}")
                    self.healthy, backoff = True, 0.5
                    evaluate.wake_delivery()
                    while not self._stop.is_set():
                        for _note in conn.notifies(timeout=1.0, stop_after=1):
                            evaluate.wake_delivery()
            except Exception as exc:  # noqa: BLE001 - down: the loop polls meanwhile
                if self.healthy:
                    logger.warning("alert LISTEN connection lost; polling", extra={"error": str(exc)})
                self.healthy = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.healthy = False


class DeliveryLoop:
    """The thread inside ``runscheduler``: delivers due alerts as soon as it is woken
    (see the module doc for how long it waits otherwise) and runs the late/missed checks."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listener: NotifyListener | None = None

    def start(self) -> None:
        if connection.vendor == "postgresql":
            self.listener = NotifyListener()
            self.listener.start()
        self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        evaluate.wake_delivery()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.listener is not None:
            self.listener.stop()

    def idle_wait(self, now: datetime) -> float:
        """How long to wait for a wake-up when nothing was due (see the module doc)."""
        poll = float(app_settings.ALERTS_POLL_INTERVAL)
        if connection.vendor == "sqlite":
            return max(poll, 1.0)
        if self.listener is None or not self.listener.healthy:
            return poll
        wait = float(app_settings.ALERTS_IDLE_POLL_SECONDS)
        due = next_due_in(now)
        return max(min(wait, due if due is not None else wait), 0.05)

    def problems(self) -> list[str]:
        if self._thread is None or self._stop.is_set():
            return []
        if not self._thread.is_alive():
            return ["the alert delivery loop died"]
        stalled = time.monotonic() - self.beat
        if stalled > max(120.0, app_settings.ALERTS_LEASE_SECONDS * 4):
            return [f"the alert delivery loop stalled for {stalled:.0f} s"]
        return []

    def _run(self) -> None:
        close_old_connections()
        last_check = 0.0
        last_prune = time.monotonic()
        failing = False
        while not self._stop.is_set():
            self.beat = time.monotonic()
            busy = False
            wait = float(app_settings.ALERTS_POLL_INTERVAL)
            # Cleared before looking, so a wake-up during deliver() is not lost.
            evaluate.delivery_wanted.clear()
            try:
                busy = deliver(self.node) > 0
                if time.monotonic() - last_check >= app_settings.ALERTS_CHECK_INTERVAL:
                    last_check = time.monotonic()
                    checks.run_periodic_checks(timezone.now())
                if time.monotonic() - last_prune >= 3600.0:
                    last_prune = time.monotonic()
                    prune(timezone.now(), app_settings.RUN_RETENTION_DAYS)
                if not busy:
                    wait = self.idle_wait(timezone.now())
                if failing:
                    logger.warning("alert delivery recovered")
                    failing = False
            except Exception as exc:
                if not failing:
                    # The database away is expected (one line, like the other loops);
                    # anything else gets its traceback.
                    transient = isinstance(exc, OperationalError | InterfaceError)
                    logger.error(
                        "alert delivery failed; retrying", extra={"error": str(exc)}, exc_info=not transient
                    )
                failing = True
                try:
                    connection.close()
                except Exception:
                    pass
                self._stop.wait(1.0)
            if not busy:
                evaluate.delivery_wanted.wait(min(wait, float(app_settings.ALERTS_CHECK_INTERVAL)))
        connection.close()
