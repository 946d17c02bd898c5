"""The demo project's tasks. Their names are a public contract: later features,
tests and benchmarks refer to them."""

import asyncio
import os
import time

import scheduler_app


@scheduler_app.task(name="demo.noop")
def noop() -> None:
    """Do nothing (measures scheduler overhead)."""


@scheduler_app.task(name="demo.echo")
def echo(**kwargs):
    """Return the keyword arguments it was given."""
    return kwargs


@scheduler_app.task(name="demo.sleep")
def sleep(seconds: float) -> float:
    """Sleep in a thread for the given seconds."""
    time.sleep(float(seconds))
    return seconds


@scheduler_app.task(name="demo.append_line")
def append_line(path: str, line: str, seconds: float = 0) -> str:
    """Sleep for the given seconds, then append one line to the file at ``path``:
    ``line``, the start and the end time (Unix seconds). Counts real executions from
    their side effects: a run killed before it returns leaves no line, a run executed
    twice leaves two. One ``write`` on an ``O_APPEND`` descriptor, so lines of
    concurrent runs (threads or processes) never interleave."""
    if "\n" in line:
        raise ValueError("line: must not contain a newline")
    start = time.time()
    if seconds:
        time.sleep(float(seconds))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {start:.6f} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
    return line


@scheduler_app.task(name="demo.async_sleep")
async def async_sleep(seconds: float) -> float:
    """Sleep in the event loop for the given seconds (a coroutine)."""
    await asyncio.sleep(float(seconds))
    return seconds


@scheduler_app.task(name="demo.fail")
def fail(message: str) -> None:
    """Raise RuntimeError(message)."""
    raise RuntimeError(message)


@scheduler_app.task(name="demo.cpu_burn")
def cpu_burn(seconds: float) -> int:
    """Busy-loop on the CPU for the given seconds; returns the loop count."""
    deadline = time.process_time() + float(seconds)
    count = 0
    while time.process_time() < deadline:
        count += 1
    return count


@scheduler_app.task(name="demo.allocate")
def allocate(megabytes: int, hold_seconds: float = 0) -> int:
    """Allocate and touch that many MB, hold them, and return the size."""
    block = bytearray(int(megabytes) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    if hold_seconds:
        time.sleep(float(hold_seconds))
    return len(block)
