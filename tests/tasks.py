"""Tasks used only by the tests (registered through tests/settings.py TASK_MODULES)."""

import os
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
