"""Real runscheduler processes against the test database (PostgreSQL or SQLite)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]

FAST = {
    "POLL_INTERVAL": 0.2,
    "HEARTBEAT_INTERVAL": 0.5,
    "LOST_AFTER": 4.0,
    "LEADER_LEASE": 3.0,
    "SHUTDOWN_GRACE": 2.0,
    "RECONCILE_INTERVAL": 1.0,
}


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s.get("USER") or "postgres"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


class SchedulerProcess:
    def __init__(
        self,
        node: str,
        store: str | None,
        overrides: dict,
        extra_env: dict | None = None,
        extra_args: list[str] | None = None,
    ):
        env = os.environ.copy()
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DATABASE_URL=database_url(),
            SCHEDULER_TEST_OVERRIDES=json.dumps({**FAST, **overrides}),
            PYTHONUNBUFFERED="1",
        )
        if store:
            env["SCHEDULER_JOB_STORE"] = store
        env.update(extra_env or {})
        self.node = node
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler", "--node", node, *(extra_args or [])],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"runscheduler exited ({self.proc.returncode}):\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._reader.join(timeout=5)
            tail = "\n".join(self.output.splitlines()[-60:])
            raise AssertionError(
                f"runscheduler did not exit within {timeout} s of SIGTERM; its last lines:\n{tail}"
            ) from exc
        self._reader.join(timeout=5)
        return code

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def acme(transactional_db):
    """Tenant "acme" (a module may define its own)."""
    from scheduler_app.models import Tenant

    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def scheduler(transactional_db):
    started: list[SchedulerProcess] = []

    def start(
        node: str = "node-a",
        store: str | None = None,
        extra_env: dict | None = None,
        extra_args: list[str] | None = None,
        **overrides,
    ):
        proc = SchedulerProcess(node, store, overrides, extra_env, extra_args)
        started.append(proc)
        proc.wait_for("scheduler started", 60)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill9()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout} s")
