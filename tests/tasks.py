"""Tasks used only by the tests (registered through tests/settings.py TASK_MODULES)."""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import scheduler_app


@scheduler_app.task(name="tests.exit_process")
def exit_process(code: int = 3) -> None:
    """Ends its process without returning (only sensible on the process executor)."""
    os._exit(code)


@scheduler_app.task(name="tests.unserializable")
def unserializable() -> object:
    return {1, 2, 3}


@scheduler_app.task(name="tests.append")
def append(path: str, text: str = "x", sleep: float = 0) -> str:
    """Appends a line 'text start end' to a file: lets tests see real executions."""
    start = time.time()
    if sleep:
        time.sleep(float(sleep))
    with Path(path).open("a") as fh:
        fh.write(f"{text} {start:.6f} {time.time():.6f}\n")
    return text


@scheduler_app.task(name="tests.flaky")
def flaky(path: str, failures: int) -> int:
    """Fails the first `failures` times it is called (counted in a file), then succeeds."""
    p = Path(path)
    count = int(p.read_text()) if p.exists() else 0
    p.write_text(str(count + 1))
    if count < failures:
        raise RuntimeError(f"failure {count + 1} of {failures}")
    return count + 1


# -- careless tasks for the secret-masking tests: they do every wrong thing with the
# secret kwargs they are given (print, log, return, raise), so the tests can check that
# nothing of it reaches a row, a log line, a page or a backup in clear.

_leak_log = logging.getLogger("tests.tasks")
_leak_app_log = logging.getLogger("scheduler_app.tests")


def _leak_output(secrets: dict) -> None:
    for name, value in secrets.items():
        print(f"print {name}={value}")
        _leak_log.warning("log %s=%s", name, value)
        _leak_app_log.info("scheduler_app log %s=%r", name, value)
    print(repr(secrets))
    sys.stderr.write(f"stderr {secrets}\n")
    sys.stdout.flush()
    os.write(1, f"fd {secrets}\n".encode())  # below Python's streams
    subprocess.run(["printf", "%s\\n", str(secrets)], check=True)  # a child process
    try:
        raise ValueError(f"inner {secrets!r}")
    except ValueError:
        _leak_log.exception("caught inside the task")


def _leak_shapes(secrets: dict) -> dict:
    values = list(secrets.values())
    return {
        "plain": secrets,
        "nested": {"deep": [values, {"again": values}]},
        "keys": {str(v): "as a key" for v in values},
        "embedded": [f"before {v} after {v} end" for v in values],
        "json": json.dumps(secrets),
        "repr": repr(secrets),
    }


@scheduler_app.task(name="tests.leak_secrets")
def leak_secrets(**secrets: object) -> dict:
    _leak_output(secrets)
    return _leak_shapes(secrets)


@scheduler_app.task(name="tests.leak_secrets_async")
async def leak_secrets_async(**secrets: object) -> dict:
    _leak_output(secrets)
    return _leak_shapes(secrets)


@scheduler_app.task(name="tests.raise_secrets")
def raise_secrets(**secrets: object) -> None:
    values = " / ".join(str(v) for v in secrets.values())
    raise RuntimeError(f"login failed with {secrets!r}; the values were {values}; again {values}")


@scheduler_app.task(name="tests.big_secret_result")
def big_secret_result(cut: str = "s1", size: int = 70_000, **secrets: object) -> dict:
    """A result over RESULT_MAX_BYTES whose JSON text has the secret ``cut`` across the
    1000th character, where the stored preview of an oversized result ends."""
    secret = str(secrets[cut])
    escaped = json.dumps(secret)[1:-1]
    pad = 1000 - len('{"pad": "') - len('", "secret": "') - len(escaped) // 2
    return {"pad": "x" * pad, "secret": secret, "more": "y" * size, "others": secrets}


@scheduler_app.task(name="tests.isolation_probe")
def isolation_probe(token: str = "", allocate_mb: int = 0) -> dict:
    """What a run sees of its process: environment names, working directory, pid; and
    whether its secret kwarg arrived (the value itself is never returned)."""
    block = bytearray(allocate_mb * 1024 * 1024) if allocate_mb else b""
    return {
        "env": sorted(os.environ),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "token_length": len(token),
        "allocated": len(block),
    }


# -- captured run logs (tests/integration/test_run_logs.py) -----------------------------

# As a project's LOGGING would: without a level the root's WARNING applies, and INFO
# records would never be made, so never captured.
_run_log = logging.getLogger("tests.tasks.logs")
_run_log.setLevel(logging.INFO)


@scheduler_app.task(name="tests.log_lines")
def log_lines(
    label: str = "line", count: int = 5, pause: float = 0, printed: bool = True, gate: str = "", **secrets
) -> int:
    """Logs ``count`` numbered lines (and prints one after each, if ``printed``), with a
    pause between them; each line also quotes the secret kwargs. With ``gate``, logs
    "waiting" and waits (up to 60 s) for that file to exist before it returns."""
    shown = " ".join(f"{name}={value}" for name, value in sorted(secrets.items()))
    for n in range(int(count)):
        _run_log.info("%s %d logged %s", label, n, shown)
        if printed:
            print(f"{label} {n} printed {shown}", flush=True)
        if pause:
            time.sleep(float(pause))
    if secrets:
        _run_log.warning("repr of the secrets: %r", secrets)
        sys.stderr.write(f"stderr {secrets}\n")
    if gate:
        _run_log.info("%s waiting", label)
        deadline = time.monotonic() + 60
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return int(count)


# -- results along DAGs --------------------------------------------------------------


@scheduler_app.task(name="tests.give")
def give(value=None, fail: bool = False, sleep: float = 0, **secret) -> object:
    """Returns ``value`` (or the secret kwargs, to check they are masked downstream), or
    fails; after ``sleep`` seconds."""
    if sleep:
        time.sleep(float(sleep))
    if fail:
        raise RuntimeError("asked to fail")
    return secret or value


@scheduler_app.task(name="tests.receive")
def receive(path: str, upstream: dict | None = None) -> object:
    """Writes what it received as ``upstream`` to a file (one JSON line per call) and
    returns it."""
    with Path(path).open("a") as fh:
        fh.write(json.dumps(upstream) + "\n")
    return upstream
