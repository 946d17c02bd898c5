"""Test-only: when ``SCHEDULER_TEST_SQL_LOG`` names a file, every SQL statement a process
runs (each connection, each thread) is appended to it, one line each. A real
runscheduler started by an acceptance test then says exactly what it asked of the
database. Installed by tests/settings.py; never part of the product."""

import os
import threading

_lock = threading.Lock()


def _writer(path: str):
    def wrapper(execute, sql, params, many, context):
        with _lock, open(path, "a", encoding="utf-8") as out:
            out.write(" ".join(str(sql).split())[:400] + "\n")
        return execute(sql, params, many, context)

    return wrapper


def install() -> None:
    path = os.environ.get("SCHEDULER_TEST_SQL_LOG")
    if not path:
        return
    from django.db.backends.signals import connection_created

    def on_created(sender, connection, **kwargs):
        connection.execute_wrappers.append(_writer(path))

    connection_created.connect(on_created, weak=False)
