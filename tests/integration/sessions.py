"""Helpers for tests with two database sessions at once (row and advisory locks on
PostgreSQL): work in its own thread (hence its own connection), waiting for a condition,
counting the sessions that wait for a lock, and "hold a transaction open while another
session tries"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction


class InThread:
    """``func()`` in its own thread, hence its own database session (closed at the end):
    ``result`` or ``error`` once ``done`` is set."""

    def __init__(self, func: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.result = func()
            except BaseException as exc:  # reported by the test
                self.error = exc
            finally:
                connections.close_all()
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> bool:
        """Whether it finished within ``timeout`` seconds."""
        return self.done.wait(timeout)


def until(predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)


def waiting_locks(execute: Callable[[str], Any] | None = None) -> int:
    """How many other sessions of this database wait for a lock now (through Django's
    connection, or ``execute`` of another session, e.g. a psycopg connection's)."""
    # Inside a transaction PostgreSQL answers from a snapshot of the activity taken at its
    # first read: drop it, so a loop sees sessions start waiting.
    if execute is not None:
        execute("SELECT pg_stat_clear_snapshot()")
        return execute(WAITING_FOR_A_LOCK).fetchone()[0]
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(WAITING_FOR_A_LOCK)
        return cursor.fetchone()[0]


def while_held(hold: Callable[[], Any], then: Callable[[], Any], *, what: str = "the lock") -> Any:
    """``hold()`` in a transaction kept open while ``then()`` runs in another session,
    which must wait for it (asserted: else the test shows nothing); ``then()``'s result."""
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with transaction.atomic():
            hold()
            held.set()
            release.wait(10)

    holder = InThread(first)
    assert held.wait(10), holder.error
    second = InThread(then)
    waited = not second.join(1.0)
    release.set()
    assert holder.join(10) and second.join(10)
    assert holder.error is None, holder.error
    assert waited, f"{what} was not waited for: the test shows nothing"
    if second.error is not None:
        raise second.error
    return second.result
