"""Masking what tasks print or log: the secrets of the runs in progress are masked in
this process's standard output and error. Pure Python: no Django.

Executors :meth:`~ActiveSecrets.hold` a run's secrets while it executes. With an
:class:`OutputGuard` installed (``runscheduler`` does), file descriptors 1 and 2 are
pipes read by one thread, which masks the held secrets and writes to the real output.
Working on the descriptors, not on ``sys.stdout``, covers everything that writes there:
``print``, every logging handler whatever stream object it kept, ``os.write``, C
extensions, child processes a task starts, and the process executor's workers (they
inherit the descriptors).

Ordering: a run's secrets stay held until the guard has read everything written before
the run ended (Python's buffers are flushed on release, and a released run's secrets are
dropped only once both pipes were seen empty afterwards). A secret split over two writes
is held back until the rest arrives, but only for :attr:`OutputGuard.idle` seconds.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import itertools
import json
import os
import select
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from scheduler_app.engine.redaction import NO_SECRETS, Redactor

# Without a guard reading the output, a release drops the secrets at once; with one,
# they are dropped when the guard has caught up, or after this long at the latest.
_RETIRE_MAX_SECONDS = 60.0


class ActiveSecrets:
    """The secrets of the runs executing in this process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._held: dict[int, tuple[str, ...]] = {}  # token -> keys of its values
        # Distinct values with how many holds have them: the runs of one job share
        # theirs, and the redactor is rebuilt only when the set of values changes.
        self._values: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._retired: list[tuple[int, float, int]] = []  # (generation, when, token)
        self._generation = 0
        self._redactor: Redactor | None = NO_SECRETS
        self.guarded = False  # an OutputGuard reads the output

    def hold(self, secrets: Iterable[Any]) -> int | None:
        """Mask ``secrets`` in the output until :meth:`release` of the returned token."""
        values = tuple(secrets)
        if not values:
            return None
        keys = tuple(_key(v) for v in values)
        with self._lock:
            token = next(self._tokens)
            self._held[token] = keys
            for key, value in zip(keys, values, strict=True):
                if key not in self._counts:
                    self._values[key] = value
                    self._counts[key] = 0
                    self._redactor = None
                self._counts[key] += 1
        return token

    def release(self, token: int | None) -> None:
        if token is None:
            return
        for stream in (sys.stdout, sys.stderr):  # what the run wrote must reach the pipe
            with contextlib.suppress(Exception):
                stream.flush()
        with self._lock:
            if not self.guarded:
                self._drop([token])
                return
            self._generation += 1
            self._retired.append((self._generation, time.monotonic(), token))
            self._expire_locked(None)

    def generation(self) -> int:
        with self._lock:
            return self._generation

    def caught_up(self, generation: int) -> None:
        """The guard read everything written before ``generation``: the secrets of runs
        released by then may go."""
        with self._lock:
            self._expire_locked(generation)

    def _expire_locked(self, generation: int | None) -> None:
        oldest = time.monotonic() - _RETIRE_MAX_SECONDS
        done = [
            t for g, when, t in self._retired if (generation is not None and g <= generation) or when < oldest
        ]
        if done:
            self._retired = [r for r in self._retired if r[2] not in done]
            self._drop(done)

    def _drop(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            for key in self._held.pop(token, ()):
                self._counts[key] -= 1
                if not self._counts[key]:
                    del self._counts[key], self._values[key]
                    self._redactor = None

    def redactor(self) -> Redactor:
        with self._lock:
            if self._redactor is None:
                self._redactor = Redactor(self._values[k] for k in sorted(self._values))
            return self._redactor

    def holds(self) -> int:
        with self._lock:
            return len(self._held)


def _key(value: Any) -> str:
    """Tells secret values apart (1 is not True, nor "1")."""
    try:
        return type(value).__name__ + ":" + json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return type(value).__name__ + ":" + repr(value)


#: The process-wide registry the executors and the log formatter use.
ACTIVE = ActiveSecrets()


class _Pipe:
    """One guarded descriptor: its pipe's read end and the real output."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.real = os.dup(fd)
        self.read, write = os.pipe()
        os.dup2(write, fd)
        os.close(write)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.tail = ""

    def feed(self, data: bytes, redactor: Redactor, final: bool = False) -> None:
        text = self.tail + self.decoder.decode(data, final)
        safe, self.tail = redactor.split_safe(text)
        if final:
            safe, self.tail = safe + self.tail, ""
        self._write(safe)

    def flush_tail(self) -> None:
        tail, self.tail = self.tail, ""
        self._write(tail)

    def write_notice(self, text: str) -> None:
        self._write(text)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        while data:
            try:
                data = data[os.write(self.real, data) :]
            except InterruptedError:
                continue
            except OSError:
                return  # nobody reads our output any more: keep draining the pipe

    def restore(self) -> None:
        os.dup2(self.real, self.fd)


class OutputGuard:
    """Masks :data:`ACTIVE` secrets in file descriptors 1 and 2 of this process."""

    def __init__(self, secrets: ActiveSecrets = ACTIVE, fds: tuple[int, ...] = (1, 2), idle: float = 0.2):
        self.secrets = secrets
        self.fds = fds
        self.idle = idle
        self._pipes: list[_Pipe] = []
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def install(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._pipes = [_Pipe(fd) for fd in self.fds]
        self.secrets.guarded = True
        self._thread = threading.Thread(target=self._loop, name="output-guard", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def close(self, timeout: float = 5.0) -> None:
        """Write out everything masked and give the descriptors back (idempotent)."""
        if self._thread is None:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for pipe in self._pipes:
            pipe.restore()  # this process writes to the real output again
        self._closing.set()
        self._thread.join(timeout)
        self._thread = None
        self.secrets.guarded = False

    def _loop(self) -> None:
        readers = {pipe.read: pipe for pipe in self._pipes}
        while readers:
            generation = self.secrets.generation()
            try:
                ready, _, _ = select.select(list(readers), [], [], self.idle)
            except InterruptedError:
                continue
            if not ready:
                if self._closing.is_set():
                    break  # drained: everything written before close() is out
                for pipe in readers.values():
                    pipe.flush_tail()
                self.secrets.caught_up(generation)
                continue
            for fd in ready:
                pipe = readers[fd]
                try:
                    data = os.read(fd, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    del readers[fd]  # every writer closed its end
                self._feed(pipe, data, final=not data)
        for pipe in self._pipes:
            if pipe.read in readers:
                self._feed(pipe, b"", final=True)
            with contextlib.suppress(OSError):
                os.close(pipe.read)

    def _feed(self, pipe: _Pipe, data: bytes, final: bool) -> None:
        try:
            pipe.feed(data, self.secrets.redactor(), final)
        except Exception:  # noqa: BLE001 - the guard must keep reading, and never leak
            pipe.tail = ""
            pipe.write_notice("[output withheld: it could not be masked]\n")
