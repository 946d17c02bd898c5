"""Task functions for the run-log engine tests, and the initializer that resolves them in
process-executor workers and isolated runners (pure Python: no Django)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("tests.unit.runlog_tasks")
log.setLevel(logging.INFO)


def chatter(label: str, count: int = 3, pause: float = 0.0, gate: str = "", **secrets: Any) -> int:
    """Logs and prints ``count`` numbered lines quoting the secret kwargs; with ``gate``,
    says "waiting" and waits (up to 30 s) for that file before it returns."""
    shown = " ".join(f"{k}={v}" for k, v in sorted(secrets.items()))
    for n in range(count):
        log.info("%s %d %s", label, n, shown)
        print(f"{label} printed {n} {shown}")
        if pause:
            time.sleep(pause)
    sys.stdout.flush()
    if gate:
        log.warning("%s waiting", label)
        deadline = time.monotonic() + 30
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return count


async def chatter_async(label: str, count: int = 3) -> int:
    for n in range(count):
        log.info("%s %d", label, n)
        await asyncio.sleep(0.002)
    return count


TASKS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (chatter, chatter_async)}


def setup() -> Callable[[str], Callable[..., Any]]:
    return TASKS.__getitem__
