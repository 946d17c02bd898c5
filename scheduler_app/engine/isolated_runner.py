"""The body of one isolated run, in a fresh process started for that run only
(``python -m scheduler_app.engine.isolated_runner RESULT_FD``). No Django here until the
initializer sets it up.

The parent writes one JSON document to this process's stdin and closes it::

    {"initializer": "module:function", "task": ..., "args": [...], "kwargs": {...},
     "secret_values": [...], "cpu_limit": s, "memory_limit_mb": n, "max_open_files": n,
     "result_max_bytes": n, "log_max_bytes": n}

so that secrets travel in memory (a pipe), never in the environment or on the command
line. The process prepares itself (the initializer, e.g. ``django.setup()``), then sets
its limits (so that they bound the run, not the start-up), runs the task and writes one
JSON reply to ``RESULT_FD``. CPU and peak memory are measured around the task alone.
What the task logs and prints is captured (:mod:`scheduler_app.engine.runlog`) and
written to ``RESULT_FD`` too while it runs: every message is one line of JSON, the log
lines as ``{"log": [...], "dropped": n}``, the reply last.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import math
import os
import resource
import signal
import sys
import threading
from typing import Any

from scheduler_app.engine import procworker
from scheduler_app.engine.redaction import Redactor
from scheduler_app.engine.results import describe_exception, storable_result
from scheduler_app.engine.runlog import LiveSender, RunLogBuffer, capturing_process


def _limit(which: int, soft: int) -> None:
    _old_soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(spec: dict[str, Any], live: Any = None) -> dict[str, Any]:
    redactor = Redactor(tuple(spec.get("secret_values") or ()))
    max_bytes = int(spec.get("log_max_bytes") or 0)
    log = RunLogBuffer(max_bytes, redactor) if max_bytes > 0 else None
    sender = LiveSender(log, live).start()  # before the limits: a thread needs memory
    try:
        with capturing_process(log):
            reply = _run(spec, redactor)
    finally:
        rest = sender.stop()
    return {**reply, **rest}


def _run(spec: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    module_name, _, func_name = spec["initializer"].partition(":")
    resolve = getattr(importlib.import_module(module_name), func_name)()
    func = resolve(spec["task"])
    cpu_limit, memory_mb, files = (
        spec.get("cpu_limit"),
        spec.get("memory_limit_mb"),
        spec.get("max_open_files"),
    )
    signal.signal(signal.SIGXCPU, procworker._on_sigxcpu)
    procworker.reset_peak_memory()
    cpu0 = _cpu()
    try:
        if cpu_limit:
            _limit(resource.RLIMIT_CPU, int(math.ceil(cpu0 + cpu_limit)))
        if memory_mb:
            _limit(resource.RLIMIT_AS, procworker._vm_size_bytes() + memory_mb * 1024 * 1024)
        if files:
            _limit(resource.RLIMIT_NOFILE, int(files))
        value = func(*spec.get("args", []), **spec.get("kwargs", {}))
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except MemoryError as exc:
        return _failure(exc, cpu0, f"memory limit of {memory_mb} MB exceeded", redactor)
    except procworker.CpuLimitExceeded as exc:
        return _failure(exc, cpu0, f"CPU limit of {cpu_limit:g} s exceeded", redactor)
    except OSError as exc:
        import errno

        if exc.errno == errno.EMFILE and files:
            return _failure(exc, cpu0, f"open-file limit of {files} exceeded ({exc})", redactor)
        return _failure(exc, cpu0, None, redactor)
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a task is a failure too
        return _failure(exc, cpu0, None, redactor)
    result, note = storable_result(value, int(spec.get("result_max_bytes") or 65536), redactor)
    return {"ok": True, "result": result, "note": note, **_usage(cpu0)}


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _usage(cpu0: float) -> dict[str, float | None]:
    return {"cpu_seconds": round(_cpu() - cpu0, 6), "peak_memory_mb": procworker.peak_memory_mb()}


def _failure(exc: BaseException, cpu0: float, message: str | None, redactor: Redactor) -> dict[str, Any]:
    kind, text, tb = describe_exception(exc, redactor)
    return {"ok": False, "error_type": kind, "error": message or text, "traceback": tb, **_usage(cpu0)}


def main() -> None:
    result_fd = int(sys.argv[1])
    spec = json.loads(sys.stdin.buffer.read() or b"{}")
    sys.stdin.close()
    # Opened now: descriptors above the open-file limit cannot be opened any more.
    out = os.fdopen(result_fd, "w")
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(message, default=str) + "\n")
            out.flush()

    try:
        reply = run(spec, send)
    except BaseException as exc:  # noqa: BLE001 - set-up failed (task unknown, initializer)
        kind, text, tb = describe_exception(exc, Redactor(tuple(spec.get("secret_values") or ())))
        reply = {"ok": False, "error_type": kind, "error": text, "traceback": tb}
    sys.stdout.flush()
    sys.stderr.flush()
    send(reply)
    out.close()


if __name__ == "__main__":
    main()
