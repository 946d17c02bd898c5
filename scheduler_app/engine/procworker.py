"""The body of a process-executor worker. Runs in a spawned child process.

The parent sends ``(run_id, task, args, kwargs, cpu_limit, memory_limit_mb,
result_max_bytes, secret_values, log_max_bytes)``; the worker answers with a dict, the
secrets masked in it (the result is masked before an oversized one is cut to a preview,
so that only the worker can do it; the parent masks what it reports once more). What the
task prints goes to the descriptors the worker inherited from the parent, where the
parent's output guard masks it. What it logs and prints through ``sys.stdout`` /
``sys.stderr`` is also captured (:mod:`scheduler_app.engine.runlog`): sent to the
parent as ``{"log": [lines], "dropped": n}`` messages every half second while the run
goes on, the rest in the reply (``"log"``, ``"log_dropped"``). ``initializer`` is a
``"module:function"`` reference fixed in code by the backend (never user input); the
function prepares the process (e.g. ``django.setup()``) and returns the task resolver.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from scheduler_app.engine.redaction import Redactor
from scheduler_app.engine.results import describe_exception, storable_result
from scheduler_app.engine.runlog import LiveSender, RunLogBuffer, capturing_process


class CpuLimitExceeded(Exception):
    pass


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise CpuLimitExceeded("CPU time limit exceeded")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[0])
        return pages * resource.getpagesize()
    except OSError:
        return 0


def reset_peak_memory() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``/proc/self/clear_refs``
    "5"), so that :func:`peak_memory_mb` reports the peak of what runs from now on."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak RSS since the last :func:`reset_peak_memory` (``VmHWM``); where that is not
    available, the process's lifetime peak (``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 3)
    except (OSError, ValueError, IndexError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 3)


def die_with_parent(parent_pid: int) -> None:
    """A worker whose node is gone must not go on executing a run that the cluster
    will mark lost and retry elsewhere: on Linux the kernel kills it
    (``PR_SET_PDEATHSIG``) when the thread that started it dies with its process;
    elsewhere (or if the parent died before this ran) a watcher thread notices the
    parent pid change within 0.5 s and kills the process."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.5)

    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(conn: Connection, initializer: str, parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    module_name, _, func_name = initializer.partition(":")
    resolve = getattr(importlib.import_module(module_name), func_name)()
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    lock = threading.Lock()

    def send(message: Any) -> None:
        with lock:  # the live log sender and the reply share the pipe
            conn.send(message)

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        reply = execute(resolve, *message, live=send)
        # What the run printed reaches the parent's output guard before the parent
        # learns that the run ended (and stops masking its secrets).
        sys.stdout.flush()
        sys.stderr.flush()
        send(reply)


def execute(
    resolve: Any,
    run_id: int,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    cpu_limit: float | None,
    memory_limit_mb: int | None,
    result_max_bytes: int,
    secret_values: tuple[Any, ...] = (),
    log_max_bytes: int = 0,
    *,
    live: Any = None,
) -> dict[str, Any]:
    redactor = Redactor(secret_values)
    log = RunLogBuffer(log_max_bytes, redactor) if log_max_bytes > 0 else None
    # Started before the limits are set: a thread needs memory for its stack.
    sender = LiveSender(log, live).start()
    try:
        with capturing_process(log):
            reply = _execute(
                resolve, task, args, kwargs, cpu_limit, memory_limit_mb, result_max_bytes, redactor
            )
    finally:
        rest = sender.stop()
    return {**reply, **rest}


def _execute(
    resolve: Any,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    cpu_limit: float | None,
    memory_limit_mb: int | None,
    result_max_bytes: int,
    redactor: Redactor,
) -> dict[str, Any]:
    reset_peak_memory()  # the run's own peak, not the worker's lifetime peak
    cpu0 = _cpu_seconds()
    old_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    old_as = resource.getrlimit(resource.RLIMIT_AS)
    recycle = False
    try:
        if cpu_limit:
            soft = int(math.ceil(cpu0 + cpu_limit))
            resource.setrlimit(resource.RLIMIT_CPU, (soft, old_cpu[1]))
        if memory_limit_mb:
            soft = _vm_size_bytes() + memory_limit_mb * 1024 * 1024
            if old_as[1] != resource.RLIM_INFINITY:
                soft = min(soft, old_as[1])
            resource.setrlimit(resource.RLIMIT_AS, (soft, old_as[1]))
        func = resolve(task)
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except MemoryError as exc:
        recycle = True
        return _failure(exc, cpu0, f"memory limit of {memory_limit_mb} MB exceeded", recycle, redactor)
    except CpuLimitExceeded as exc:
        return _failure(exc, cpu0, f"CPU limit of {cpu_limit:g} s exceeded", recycle, redactor)
    except BaseException as exc:  # noqa: BLE001
        return _failure(exc, cpu0, None, recycle, redactor)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, old_cpu)
        resource.setrlimit(resource.RLIMIT_AS, old_as)
    result, note = storable_result(value, result_max_bytes, redactor)
    return {"ok": True, "result": result, "note": note, **_usage(cpu0)}


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _usage(cpu0: float) -> dict[str, float]:
    return {"cpu_seconds": round(_cpu_seconds() - cpu0, 6), "peak_memory_mb": peak_memory_mb()}


def _failure(
    exc: BaseException, cpu0: float, message: str | None, recycle: bool, redactor: Redactor
) -> dict[str, Any]:
    kind, text, tb = describe_exception(exc, redactor)
    return {
        "ok": False,
        "error_type": kind,
        "error": message or text,
        "traceback": tb,
        "recycle": recycle,
        **_usage(cpu0),
    }
