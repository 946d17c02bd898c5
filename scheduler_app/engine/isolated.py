"""The ``isolated`` executor: every run in a fresh process started for it alone.

* Limits: CPU seconds (``RLIMIT_CPU``), memory (``RLIMIT_AS``, counted from after the
  process's start-up), open files (``RLIMIT_NOFILE``), all set in the child before the
  task starts; wall time is the run's timeout, enforced here by killing the process.
* A clean environment: only the variable names in ``IsolationConfig.environment`` are
  copied from this process, plus ``PYTHONPATH`` (this interpreter's path) and ``HOME`` /
  ``TMPDIR`` (the run's own working directory, deleted afterwards).
* Secrets (the kwargs, which hold the decrypted secret kwargs) go to the child through
  its stdin pipe, never through the environment or the command line.
* The child starts its own session (process group); when the run ends, however it ends,
  the whole group is killed, so a grandchild that it forked and left behind dies with it.
  Where this process may (root), the child also gets its own PID namespace
  (``pid_namespace``): nothing it starts survives it, even one that calls ``setsid``.
* Optionally a different Unix user (``user``: a name or uid; needs root) and no network
  (``no_network``: a fresh network namespace with only a down loopback; needs root or
  unprivileged user namespaces).

CPU and peak memory are measured in the child around the task alone (the peak-RSS mark
is reset after start-up), so they are that run's figures. Pure Python, no Django.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scheduler_app.engine.executors import (
    Sink,
    _BaseExecutor,
    _exit_message,
    _Inflight,
    _is_log_message,
    _log_failure,
)
from scheduler_app.engine.runlog import DEFAULT_MAX_BYTES

CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
DEFAULT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "DJANGO_SETTINGS_MODULE")


@dataclass(frozen=True)
class IsolationConfig:
    """How isolated runs are started (one value for the node, from the settings)."""

    initializer: str = "scheduler_app.backends.procinit:setup"
    environment: Sequence[str] = DEFAULT_ENVIRONMENT
    max_open_files: int | None = 256
    user: str | int | None = None
    no_network: bool = False
    pid_namespace: bool = True
    work_root: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _preexec(namespaces: int, user: str | int | None) -> Any:
    """In the child before exec: new namespaces (as root), then drop to ``user``."""
    ids = None
    if user is not None:
        import pwd

        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
        ids = (entry.pw_uid, entry.pw_gid)

    def prepare() -> None:
        if namespaces:
            _unshare(namespaces)
        if ids is not None:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])

    return prepare


def can_unshare() -> bool:
    """Whether this process may create namespaces (root, here)."""
    return os.geteuid() == 0


class IsolatedExecutor(_BaseExecutor):
    """``size`` runs at once, each in its own fresh process."""

    name = "isolated"

    def __init__(
        self,
        size: int,
        sink: Sink,
        result_max_bytes: int,
        config: IsolationConfig | None = None,
        log_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(size, sink, result_max_bytes, log_max_bytes=log_max_bytes)
        self.config = config or IsolationConfig()
        self._queue: queue.Queue[_Inflight | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"isolated-slot-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, run: Any) -> None:
        entry = self._register(run)
        if self._setup_failure(entry):
            return
        self._queue.put(entry)

    def _interrupt(self, entry: _Inflight) -> None:
        entry.extra["kill"] = True
        _kill_group(entry.handle)

    def shutdown(self, wait: bool) -> None:
        for _ in self._threads:
            self._queue.put(None)
        with self._lock:
            handles = [e.handle for e in self._inflight.values()]
        if not wait:
            for handle in handles:
                _kill_group(handle)
        for thread in self._threads:
            thread.join(timeout=10 if wait else 1)

    # -- one run ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                if not entry.finished:
                    self._execute(entry)
            except Exception as exc:  # never lose the slot thread
                _log_failure("isolated run failed to start", entry, exc)
                if self._claim_report(entry.run.run_id):
                    self._failure(entry, exc)
            finally:
                _kill_group(entry.handle)
                self._release(entry.run.run_id)

    def environment(self, workdir: str) -> dict[str, str]:
        env = {name: os.environ[name] for name in self.config.environment if name in os.environ}
        env.update(self.config.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        env["HOME"] = env["TMPDIR"] = workdir
        return env

    def _execute(self, entry: _Inflight) -> None:
        run = entry.run
        cfg = self.config
        workdir = tempfile.mkdtemp(prefix=f"run-{run.run_id}-", dir=cfg.work_root)
        read_fd, write_fd = os.pipe()
        namespaces = (CLONE_NEWNET if cfg.no_network else 0) | (
            CLONE_NEWPID if cfg.pid_namespace and can_unshare() else 0
        )
        try:
            if cfg.user is not None:
                shutil.chown(workdir, user=cfg.user)
            spec = {
                "initializer": cfg.initializer,
                "task": run.task,
                "args": list(run.args),
                "kwargs": dict(run.kwargs),
                "secret_values": list(run.secret_values),
                "cpu_limit": run.cpu_limit,
                "memory_limit_mb": run.memory_limit_mb,
                "max_open_files": cfg.max_open_files,
                "result_max_bytes": self._result_max_bytes,
                "log_max_bytes": self.log_max_bytes,
            }
            command = [sys.executable, "-m", "scheduler_app.engine.isolated_runner", str(write_fd)]
            if namespaces & CLONE_NEWPID:
                # A new PID namespace applies to the caller's children: a tiny shell
                # forks the runner, which becomes the namespace's init (when it exits,
                # the kernel kills everything left in the namespace).
                command = ["/bin/sh", "-c", '"$@"; status=$?; exit $status', "isolated", *command]
            self._begin(entry)
            entry.handle = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                cwd=workdir,
                env=self.environment(workdir),
                pass_fds=(write_fd,),
                start_new_session=True,
                preexec_fn=_preexec(namespaces, cfg.user) if namespaces or cfg.user is not None else None,
                close_fds=True,
            )
            os.close(write_fd)
            write_fd = -1
            assert entry.handle.stdin is not None
            try:
                entry.handle.stdin.write(json.dumps(spec, default=str).encode())
                entry.handle.stdin.close()
            except BrokenPipeError:
                pass
            del spec
            reply = self._wait(entry, read_fd)
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            os.close(read_fd)
            shutil.rmtree(workdir, ignore_errors=True)
        if reply is None:
            return
        if entry.log is not None and not entry.finished:
            entry.log.extend(reply.get("log") or (), int(reply.get("log_dropped") or 0))
        if not self._claim_report(run.run_id):
            return
        fields = {"cpu_seconds": reply.get("cpu_seconds"), "peak_memory_mb": reply.get("peak_memory_mb")}
        if reply.get("ok"):
            self._report(
                entry, "succeeded", result=reply.get("result"), error=reply.get("note", ""), **fields
            )
        else:
            self._report(
                entry,
                "failed",
                error_type=reply.get("error_type", "Error"),
                error=reply.get("error", ""),
                traceback=reply.get("traceback", ""),
                **fields,
            )

    def _wait(self, entry: _Inflight, read_fd: int) -> dict[str, Any] | None:
        """The child's reply, or None when the run was stopped or the child died (the
        outcome is then reported here or by stop())."""
        process = entry.handle
        chunks: list[bytes] = []
        reply: Any = None

        def messages() -> None:
            """Take in the complete lines read so far: live log lines, or the reply."""
            nonlocal reply
            data = b"".join(chunks)
            *lines, rest = data.split(b"\n")
            chunks[:] = [rest] if rest else []
            for line in lines:
                reply = self._message(entry, line, reply)

        os.set_blocking(read_fd, False)
        while True:
            if entry.extra.get("kill"):
                _kill_group(process)
                return None
            try:
                data = os.read(read_fd, 65536)
            except BlockingIOError:
                data = None
            if data:
                chunks.append(data)
                if b"\n" in data:
                    messages()
                continue
            if data == b"" and process.poll() is not None:
                break  # writer closed and the child ended
            if process.poll() is not None and data is None:
                time.sleep(0.01)
                try:
                    rest = os.read(read_fd, 1 << 20)
                except BlockingIOError:
                    rest = b""
                chunks.append(rest)
                if not rest:
                    break
                continue
            time.sleep(0.02)
        code = process.wait()
        _kill_group(process)
        chunks.append(b"\n")
        messages()
        if isinstance(reply, dict):
            return reply
        self._died(entry, code)
        return None

    @staticmethod
    def _message(entry: _Inflight, line: bytes, reply: Any) -> Any:
        """One line from the child: log lines go to the run's log; returns the reply
        (this line if it is one, else the reply seen before)."""
        if not line.strip():
            return reply
        try:
            message = json.loads(line.decode())
        except ValueError:
            return reply
        if _is_log_message(message):
            if entry.log is not None and not entry.finished:
                entry.log.extend(message["log"], int(message.get("dropped") or 0))
            return reply
        return message

    def _died(self, entry: _Inflight, code: int | None) -> None:
        if code is not None and code > 128 and self.config.pid_namespace and can_unshare():
            code = -(code - 128)  # the shell's report of the runner killed by a signal
        if self._claim_report(entry.run.run_id):
            self._report(entry, "failed", error_type="WorkerExited", error=_exit_message(code))


def _kill_group(process: Any) -> None:
    """Kill the run's whole process group (the child and whatever it left behind)."""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
