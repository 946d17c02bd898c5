"""What ``rundemo`` needs to run the web server and the scheduler as one program, the way
Procfile runners (foreman, honcho) do: both are child processes in the demo's process group,
and when either ends, or the demo is asked to stop, both are stopped and the demo exits.

- ``Address``: ``--port`` / ``--addrport`` parsed and checked before anything starts.
- ``SchedulerLock``: one demo scheduler per database, held with ``flock`` so it can never go
  stale: the kernel drops it when the last process holding it (the demo, and the scheduler it
  hands it to) is gone, however they died.
- ``supervise``: starts the children (on Linux each dies with the demo through
  ``PR_SET_PDEATHSIG``, so even ``kill -9`` of the demo leaves nothing behind) and stops them.

Uses no Django: the command passes in what the settings say.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

WEB_SERVER_STOP_TIMEOUT = 10.0


class DemoError(Exception):
    """Why the demo cannot start or stopped, in one line a person can act on."""


# -- addresses ----------------------------------------------------------------------------

# HOST:PORT with HOST an IPv4 address, a host name or a bracketed IPv6 address (as runserver).
_ADDRPORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>[^:]*)$")


def port_number(text: str) -> int:
    """argparse type of --port: a TCP port, 1-65535."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 1-65535")
    return port


@dataclass(frozen=True)
class Address:
    host: str  # as typed; IPv6 in brackets
    port: int

    @property
    def ipv6(self) -> bool:
        return self.host.startswith("[")

    @property
    def bind_host(self) -> str:
        return self.host.strip("[]")

    @property
    def addrport(self) -> str:
        """The argument runserver takes."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Where a browser on this machine reaches it (a wildcard address is not a place)."""
        host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(self.host, self.host)
        return f"http://{host}:{self.port}/admin/"

    @classmethod
    def parse(cls, text: str) -> Address:
        """argparse type of --addrport."""
        match = _ADDRPORT.match(text)
        if match is None:
            hint = f" (use --port {text} for a port alone)" if text.isdigit() else ""
            raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT{hint}")
        return cls(match["host"], port_number(match["port"]))


def _bind_error(address: Address) -> OSError | None:
    """Why runserver could not listen on the address, or None. Binds the way runserver does
    (SO_REUSEADDR), so a port left in TIME_WAIT counts as free, as it is for runserver."""
    family = socket.AF_INET6 if address.ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address.bind_host, address.port))
        except OSError as exc:  # socket.gaierror included
            return exc
    return None


def check_address(address: Address, default_host: str) -> None:
    """Raise DemoError naming the port (and a free one to use instead) if the web server
    could not listen there. Checked before anything starts, so a taken port costs nothing;
    a port taken in between is still handled: runserver exits and the demo stops."""
    error = _bind_error(address)
    if error is None:
        return
    if getattr(error, "errno", None) != errno.EADDRINUSE:
        reason = error.strerror or str(error)
        raise DemoError(f"cannot listen on {address.addrport}: {reason}")
    free = next(
        (
            port
            for port in range(address.port + 1, min(address.port + 50, 65535) + 1)
            if _bind_error(Address(address.host, port)) is None
        ),
        None,
    )
    if address.host == default_host:
        hint = f"./dev demo --port {free}" if free else "./dev demo --port N"
    else:
        hint = f"./dev demo --addrport {address.host}:{free or 'N'}"
    raise DemoError(
        f"port {address.port} on {address.host} is already in use; start the demo on another "
        f"port with --port, e.g. {hint}"
    )


# -- one scheduler per database -----------------------------------------------------------


def lock_path(database: dict, var_dir: Path) -> tuple[Path, str]:
    """The lock file for a database and how to name the database to a person. SQLite: next
    to the database file, so two var directories pointing at one file share it. Others: in
    the var directory, named by a digest of the server and database name, so it only sees
    demos started from this checkout (the node table will see every scheduler)."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        path = Path(database["NAME"]).resolve()
        try:
            label = str(path.relative_to(Path.cwd()))
        except ValueError:
            label = str(path)
        return path.with_name(path.name + ".lock"), label
    where = f"{database.get('HOST') or 'localhost'}:{database.get('PORT') or ''}".rstrip(":")
    label = f"database {database['NAME']} on {where}"
    digest = hashlib.sha256(f"{database['ENGINE']}|{where}|{database['NAME']}".encode()).hexdigest()[:16]
    return var_dir / f"demo-scheduler-{digest}.lock", label


class SchedulerLock:
    """An exclusive ``flock`` on the lock file. The demo takes it before touching the database
    and hands its descriptor to the scheduler, so it is held as long as either lives, and
    released by the kernel when both are gone (no stale pid files). The file records the pids
    only to name them in the refusal."""

    def __init__(self, path: Path, label: str):
        self.path = path
        self.label = label
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DemoError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise DemoError(
                f"a demo scheduler is already running on {self.label} (pid {holder}); "
                "stop it first or use another DATABASE_URL"
            ) from None
        self.fd = fd
        self.record(demo=os.getpid())

    def record(self, **pids: int) -> None:
        assert self.fd is not None
        text = " ".join(f"{name}={pid}" for name, pid in pids.items()).encode() + b"\n"
        os.pwrite(self.fd, text, 0)
        os.ftruncate(self.fd, len(text))

    @staticmethod
    def _holder(fd: int) -> str:
        """The demo's pid if it lives, else the scheduler's (a demo killed with -9 whose
        scheduler is still finishing its runs)."""
        pids = dict(
            part.split("=", 1)
            for part in os.pread(fd, 200, 0).decode(errors="replace").split()
            if "=" in part
        )
        for name in ("demo", "scheduler"):
            pid = pids.get(name, "")
            if pid.isdigit() and _alive(int(pid)):
                return pid
        return "unknown"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- children -----------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with(parent: int) -> Callable[[], None] | None:
    """preexec_fn making the child get SIGTERM when the demo dies, even by SIGKILL (the
    scheduler then shuts down gracefully). The setting survives exec. Elsewhere than Linux
    there is no such thing; the demo still stops its children on every exit it can see."""
    if _prctl is None:
        return None

    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the demo died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def describe(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"status {returncode}"


@dataclass
class Outcome:
    """How the demo ended: a signal asked it to stop, or a child exited by itself."""

    signal: str | None = None
    web_server: int | None = None
    scheduler: int | None = None


def supervise(
    web_command: Sequence[str],
    scheduler_command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    lock: SchedulerLock,
    scheduler_stop_timeout: float,
    on_stopping: Callable[[str], None],
) -> Outcome:
    """Run both children until one exits or SIGINT/SIGTERM/SIGHUP arrives, then stop both:
    SIGTERM, and SIGKILL for one that outlasts its timeout. Children stay in the demo's
    process group, so a terminal's Ctrl-C reaches them as well."""
    received: list[str] = []
    wake = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        wake.set()

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    scheduler: subprocess.Popen | None = None
    web: subprocess.Popen | None = None
    try:
        sys.stdout.flush()
        scheduler = subprocess.Popen(
            scheduler_command, cwd=cwd, env=env, pass_fds=(lock.fd,), preexec_fn=_die_with(os.getpid())
        )
        lock.record(demo=os.getpid(), scheduler=scheduler.pid)
        web = subprocess.Popen(web_command, cwd=cwd, env=env, preexec_fn=_die_with(os.getpid()))
        outcome = Outcome()
        while not received:
            if web.poll() is not None:
                outcome.web_server = web.returncode
                break
            if scheduler.poll() is not None:
                outcome.scheduler = scheduler.returncode
                break
            wake.wait(0.2)
        on_stopping(received[0] if received else "")
    finally:
        # Also on an error of the demo itself: never leave a child running.
        children = [(web, WEB_SERVER_STOP_TIMEOUT), (scheduler, scheduler_stop_timeout)]
        for child, _ in children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child, timeout in children:
            if child is None:
                continue
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A Ctrl-C ends the web server too; the signal, not that exit, is why the demo stopped.
    if received:
        return Outcome(signal=received[0])
    return outcome
