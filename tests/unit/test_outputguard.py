"""The output guard masks held secrets in everything a process writes to its standard
output and error, whoever writes it; real processes, real pipes (no Django)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from scheduler_app.engine.outputguard import ACTIVE, ActiveSecrets
from scheduler_app.engine.redaction import MASK
from scheduler_app.logutils import KeyValueFormatter
from tests.secret_forms import find_leaks

SECRETS = ["Pässwörd-Echo-Ω-3456", 'a"b\\c', "line1\nline2"]

SCRIPT = textwrap.dedent(
    """
    import logging, os, subprocess, sys, time
    from scheduler_app.engine.outputguard import ACTIVE, OutputGuard

    secrets = {secrets!r}
    guard = OutputGuard(idle=0.2)
    guard.install()
    print("the run starts")
    sys.stdout.flush()
    token = ACTIVE.hold(secrets)
    print("print", secrets)
    sys.stderr.write("stderr %s\\n" % secrets[1])
    os.write(1, ("fd1 " + secrets[2] + "\\n").encode())
    os.write(2, ("fd2 " + secrets[0] + "\\n").encode())
    subprocess.run([sys.executable, "-c", "import sys; print('child', sys.argv[1:])", *secrets], check=True)
    logging.getLogger("task").warning("logged %r", secrets[0])  # logging's last resort
    sys.stdout.flush()
    os.write(1, secrets[0][:5].encode())  # one secret in two writes
    time.sleep(0.05)
    os.write(1, (secrets[0][5:] + " split\\n").encode())
    os.write(1, b"raw bytes \\xff\\xfe kept\\n")
    print("x" * 200000 + " big " + secrets[0])  # more than a pipe holds, then release at once
    print("buffered " + secrets[0])  # still in sys.stdout's buffer when the run ends
    ACTIVE.release(token)
    deadline = time.monotonic() + 30
    while ACTIVE.holds() and time.monotonic() < deadline:  # the guard caught up
        time.sleep(0.05)
    print("after the run: " + secrets[0])
    print("last line")
    guard.close()
    """
)


@pytest.mark.slow
def test_everything_written_while_a_run_holds_its_secrets_is_masked():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(secrets=SECRETS)],
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},  # block-buffered
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("utf-8", "surrogateescape")
    err = proc.stderr.decode("utf-8", "surrogateescape")
    during_out = out.split("after the run: ")[0]
    assert find_leaks({"stdout": during_out, "stderr": err}, SECRETS) == []
    assert f"print ['{MASK}', '{MASK}', '{MASK}']" in out
    assert f"stderr {MASK}" in err and f"fd2 {MASK}" in err
    assert f"fd1 {MASK}" in out and f"child ['{MASK}', '{MASK}', '{MASK}']" in out
    assert f"logged '{MASK}'" in err
    assert f"{MASK} split" in out
    assert "x" * 200000 + f" big {MASK}\nbuffered {MASK}\n" in out
    # Nothing else is changed or lost; released secrets are not masked for ever.
    assert "raw bytes \udcff\udcfe kept" in out
    assert out.startswith("the run starts\n")
    assert out.endswith("after the run: " + SECRETS[0] + "\nlast line\n")


def test_released_secrets_go_at_once_without_a_guard():
    secrets = ActiveSecrets()
    token = secrets.hold(["s3cret-value"])
    assert secrets.redactor().text("s3cret-value") == MASK
    secrets.release(token)
    assert secrets.redactor().text("s3cret-value") == "s3cret-value"
    assert secrets.hold([]) is None


def test_runs_sharing_a_secret_keep_it_masked_until_the_last_ends():
    secrets = ActiveSecrets()
    first, second = secrets.hold(["s3cret-value", 1]), secrets.hold(["s3cret-value"])
    built = secrets.redactor()
    third = secrets.hold(["s3cret-value"])
    assert secrets.redactor() is built  # same values: not rebuilt
    secrets.release(first)
    secrets.release(third)
    assert secrets.redactor().value(["s3cret-value", 1, True]) == [MASK, 1, True]
    secrets.release(second)
    assert secrets.redactor().text("s3cret-value") == "s3cret-value" and not secrets.holds()


def test_with_a_guard_released_secrets_go_once_it_caught_up():
    secrets = ActiveSecrets()
    secrets.guarded = True
    token = secrets.hold(["s3cret-value"])
    generation = secrets.generation()
    secrets.release(token)
    secrets.caught_up(generation)  # read up to before the release: still masked
    assert secrets.redactor().text("s3cret-value") == MASK
    secrets.caught_up(secrets.generation())
    assert secrets.redactor().text("s3cret-value") == "s3cret-value"


def test_log_lines_are_masked_by_the_formatter():
    token = ACTIVE.hold(SECRETS)
    try:
        record = logging.LogRecord(
            "scheduler_app.x", logging.ERROR, __file__, 1, "got %r", (SECRETS[2],), None
        )
        record.detail = SECRETS[1]  # an extra= value, quoted by the formatter
        try:
            raise ValueError(SECRETS[0])
        except ValueError:
            record.exc_info = sys.exc_info()
        line = KeyValueFormatter().format(record)
    finally:
        ACTIVE.release(token)
    assert find_leaks({"line": line}, SECRETS) == []
    assert f"got '{MASK}'" in line and f"detail={MASK}" in line and f"ValueError: {MASK}" in line
