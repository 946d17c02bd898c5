"""The isolated executor with real child processes (no Django): a fresh process per run,
limits, clean environment, secrets by pipe, own working directory, grandchildren killed,
per-run CPU and memory figures, optional user and network namespace (root)."""

import os
import socket
import threading
import time

import pytest

from scheduler_app.engine.interfaces import ClaimedRun
from scheduler_app.engine.isolated import IsolatedExecutor, IsolationConfig, can_unshare
from scheduler_app.engine.results import MASK

INIT = "tests.unit.isolated_tasks:setup"


class Collect:
    def __init__(self):
        self.outcomes = {}
        self.event = threading.Condition()

    def __call__(self, outcome):
        with self.event:
            self.outcomes[outcome.run_id] = outcome
            self.event.notify_all()

    def wait(self, run_id, timeout=30):
        with self.event:
            self.event.wait_for(lambda: run_id in self.outcomes, timeout)
        return self.outcomes[run_id]


@pytest.fixture
def make(monkeypatch):
    made = []

    def build(**config):
        sink = Collect()
        executor = IsolatedExecutor(2, sink, 65536, IsolationConfig(initializer=INIT, **config))
        made.append(executor)
        return executor, sink

    yield build
    for executor in made:
        executor.shutdown(wait=False)


def run(executor, sink, run_id, task, *args, timeout=None, **options):
    kwargs = options.pop("kwargs", {})
    executor.submit(
        ClaimedRun(
            run_id=run_id,
            job_id=1,
            job_name="j",
            task=task,
            args=args,
            kwargs=kwargs,
            timeout=timeout,
            **options,
        )
    )
    if timeout:
        deadline = time.monotonic() + 30
        while run_id not in sink.outcomes and time.monotonic() < deadline:
            for overdue in executor.overdue(time.monotonic()):
                executor.stop(overdue.run_id, "timed_out", "timed out")
            time.sleep(0.05)
    return sink.wait(run_id)


def test_fresh_process_clean_environment_secret_by_pipe_own_directory(make, monkeypatch):
    monkeypatch.setenv("SCHEDULER_APP_ENCRYPTION_KEYS", "do-not-leak")
    monkeypatch.setenv("ALLOWED_ONE", "yes")
    executor, sink = make(environment=("PATH", "ALLOWED_ONE"))
    first = run(
        executor, sink, 1, "environment", kwargs={"token": "s3cret-value"}, secret_values=("s3cret-value",)
    )
    second = run(executor, sink, 2, "environment")
    assert first.state == "succeeded", first.error
    env = first.result["env"]
    assert env["ALLOWED_ONE"] == "yes" and "SCHEDULER_APP_ENCRYPTION_KEYS" not in env
    assert set(env) <= {
        "PATH",
        "ALLOWED_ONE",
        "PYTHONPATH",
        "HOME",
        "TMPDIR",
        "PWD",
        "SHLVL",
        "_",
        "LC_CTYPE",
    }
    # a leaked secret would show as the mask (results are masked): not in env nor argv
    assert MASK not in repr(first.result["env"]) + repr(first.result["argv"])
    assert first.result["cwd"] != second.result["cwd"] and env["HOME"] == first.result["cwd"]
    assert not os.path.exists(first.result["cwd"])  # removed after the run
    assert first.result["pid"] != second.result["pid"] or can_unshare()  # pid 1 in its own namespace


def test_no_state_leaks_between_runs(make):
    executor, sink = make()
    assert run(executor, sink, 1, "set_global", "a").result is None
    assert run(executor, sink, 2, "set_global", "b").result is None


def test_memory_cpu_and_open_file_limits(make):
    executor, sink = make(max_open_files=32)
    memory = run(executor, sink, 1, "allocate", 200, memory_limit_mb=50)
    assert memory.state == "failed" and memory.error == "memory limit of 50 MB exceeded"
    cpu = run(executor, sink, 2, "spin", 10, cpu_limit=1)
    assert cpu.state == "failed" and cpu.error == "CPU limit of 1 s exceeded"
    files = run(executor, sink, 3, "open_files", 100)
    assert files.state == "failed" and files.error.startswith("open-file limit of 32 exceeded")
    assert run(executor, sink, 4, "open_files", 5).result == 5


def test_wall_time_kills_the_process(make):
    executor, sink = make()
    started = time.monotonic()
    outcome = run(executor, sink, 1, "sleep", 30, timeout=1)
    assert outcome.state == "timed_out" and time.monotonic() - started < 10


def test_peak_memory_and_cpu_are_the_runs_own(make):
    executor, sink = make()
    big = run(executor, sink, 1, "allocate", 120)
    small = run(executor, sink, 2, "allocate", 1)
    spin = run(executor, sink, 3, "spin", 0.5)
    assert big.peak_memory_mb >= 120 and small.peak_memory_mb < 60, (big.peak_memory_mb, small.peak_memory_mb)
    assert 0.4 <= spin.cpu_seconds < 2.0 and small.cpu_seconds < 0.4


def test_grandchild_left_behind_is_killed(make, tmp_path):
    executor, sink = make()
    marker = tmp_path / "started"
    outcome = run(executor, sink, 1, "leave_grandchild", str(marker))
    assert outcome.state == "succeeded"
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    ps = os.popen("ps -eo args").read()
    assert f"open({str(marker)!r}" not in ps


@pytest.mark.skipif(not can_unshare(), reason="needs root")
def test_no_network(make):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        executor, sink = make()
        assert run(executor, sink, 1, "connect", port).result == "connected"
        executor, sink = make(no_network=True)
        blocked = run(executor, sink, 2, "connect", port)
        assert blocked.state == "failed" and blocked.error_type in ("OSError", "ConnectionRefusedError")
    finally:
        server.close()


def _nobody_can_run_python():
    import pwd
    import subprocess
    import sys

    uid = pwd.getpwnam("nobody").pw_uid
    try:
        return subprocess.run([sys.executable, "-c", "pass"], user=uid, capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(
    not can_unshare() or not _nobody_can_run_python(), reason="needs root and a venv others may run"
)
def test_other_unix_user(make):
    import pwd

    executor, sink = make(user="nobody")
    assert run(executor, sink, 1, "environment").result["uid"] == pwd.getpwnam("nobody").pw_uid


def test_unknown_task_fails_cleanly(make):
    executor, sink = make()
    outcome = run(executor, sink, 1, "nope")
    assert outcome.state == "failed" and outcome.error_type == "KeyError"
