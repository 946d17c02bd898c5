"""Captured run logs: what a task logs (and, in a child process, prints) while it runs,
kept with the run. Pure Python: no Django.

* :class:`RunLogBuffer` keeps one run's lines, newest last, within ``max_bytes`` (UTF-8,
  newlines included): when a line does not fit, the oldest lines are dropped and the
  marker ``… N earlier lines dropped …`` is the first line of the text. Every entry is
  masked with the run's :class:`~scheduler_app.engine.redaction.Redactor` *before* it is
  kept (a log record whole, so that a secret over several lines is masked too), and a
  line longer than the cap is cut after masking.
* :func:`capturing` binds a buffer to the current thread (a context variable, so that
  concurrent runs of the thread executor and the asyncio tasks of the asyncio executor
  never mix lines) and, while any run captures, attaches one handler to the root logger
  and to ``scheduler_app`` (which does not propagate). Only records that the loggers let
  through reach it: a logger's level is the project's ``LOGGING``, not ours.
* :func:`capturing_process` is for a process that executes one run at a time (the
  process executor's workers, the isolated executor's runner): every thread's records,
  and ``sys.stdout`` / ``sys.stderr`` (still written to where they went before).

Lines read ``HH:MM:SS.mmm LEVEL logger: message`` (UTC); output lines
``HH:MM:SS.mmm STDOUT stdout: text`` (or ``STDERR stderr``).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from scheduler_app.engine.interfaces import RunLog
from scheduler_app.engine.redaction import NO_SECRETS, Redactor

__all__ = ["RunLog", "RunLogBuffer", "capturing", "capturing_process"]

DEFAULT_MAX_BYTES = 65_536
#: The smallest cap that is not 0 (0 turns capture off).
MIN_MAX_BYTES = 1024
MARKER = "… {n} earlier lines dropped …"
_CUT = " …"
# Bytes kept free at the top for the marker once lines were dropped (its longest form
# is under 50 bytes).
_MARKER_ROOM = 64
# Loggers the capture handler is attached to: the root, and ours (it does not propagate).
CAPTURED_LOGGERS = ("", "scheduler_app")


def _size(line: str) -> int:
    return len(line.encode("utf-8", "surrogateescape")) + 1


def timestamp(when: float) -> str:
    t = time.gmtime(when)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{int(when * 1000) % 1000:03d}"


class RunLogBuffer:
    """One run's captured lines, capped, masked; thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, redactor: Redactor = NO_SECRETS) -> None:
        self.max_bytes = max(int(max_bytes), 0)
        self.redactor = redactor
        self._lock = threading.Lock()
        self._lines: deque[str] = deque()
        self._bytes = 0
        self.dropped = 0  # always lines_total - len(kept lines)
        self.total = 0
        self._version = 0
        self._taken = 0
        self._sent = 0  # lines handed out by drain()

    def __bool__(self) -> bool:  # a buffer is "on" even while empty
        return self.max_bytes > 0

    # -- writing ------------------------------------------------------------------------

    def write(self, entry: str) -> None:
        """One entry (a formatted record, a line of output): masked whole, then kept
        as lines."""
        if self.max_bytes:
            self._add(self.redactor.text(entry).split("\n"))

    def add_masked(self, lines: Iterable[str]) -> None:
        """Lines masked already (by a :class:`StreamCapture`)."""
        if self.max_bytes:
            self._add(lines)

    def extend(self, lines: Sequence[str], dropped: int = 0) -> None:
        """Lines captured elsewhere (in a child process, with the same cap), masked once
        more here; ``dropped`` lines were lost just before them. Lines lost there came
        after every line kept here, so those go too: the marker then stays at the top."""
        if not self.max_bytes:
            return
        masked = [self.redactor.text(str(line)) for line in lines]
        with self._lock:
            if dropped > 0:
                self.dropped += len(self._lines) + dropped
                self.total += dropped
                self._lines.clear()
                self._bytes = 0
                self._version += 1
        self._add(masked)

    def _fit(self, line: str) -> str:
        limit = self.max_bytes - _MARKER_ROOM - 1
        if _size(line) - 1 <= limit:
            return line
        cut = line.encode("utf-8", "surrogateescape")[: max(limit - len(_CUT.encode()), 0)]
        return cut.decode("utf-8", "ignore") + _CUT

    def _add(self, lines: Iterable[str]) -> None:
        with self._lock:
            for line in lines:
                line = self._fit(line)
                self._lines.append(line)
                self._bytes += _size(line)
                self.total += 1
                self._version += 1
            while self._lines and self._bytes > self.max_bytes - (_MARKER_ROOM if self.dropped else 0):
                self._bytes -= _size(self._lines.popleft())
                self.dropped += 1

    # -- reading ------------------------------------------------------------------------

    def _snapshot_locked(self) -> RunLog:
        lines: Iterable[str] = self._lines
        if self.dropped:
            lines = itertools.chain([MARKER.format(n=self.dropped)], self._lines)
        return RunLog("\n".join(lines), self.dropped, self.total)

    def snapshot(self) -> RunLog:
        with self._lock:
            self._taken = self._version
            return self._snapshot_locked()

    def take(self) -> RunLog | None:
        """The log if it changed since the last :meth:`take` or :meth:`snapshot`."""
        with self._lock:
            if self._version == self._taken:
                return None
            self._taken = self._version
            return self._snapshot_locked()

    def drain(self) -> tuple[list[str], int]:
        """(lines written since the last drain and still kept, how many of the lines
        written since then were dropped before they could be drained)."""
        with self._lock:
            start = max(self._sent, self.dropped)
            lost = max(self.dropped - self._sent, 0)
            lines = list(itertools.islice(self._lines, start - self.dropped, None))
            self._sent = self.total
            return lines, lost


def format_record(record: logging.LogRecord) -> str:
    """``HH:MM:SS.mmm LEVEL logger: message`` with the traceback or stack, if any, on the
    following lines. Leaves the record as it was (no ``exc_text`` cached on it)."""
    try:
        message = record.getMessage()
    except Exception as exc:  # noqa: BLE001 - a task's bad format string must not fail it
        message = f"<unformattable log record {record.msg!r}: {exc}>"
    if record.exc_info and record.exc_info[1] is not None:
        message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    elif record.exc_text:
        message += "\n" + record.exc_text
    if record.stack_info:
        message += "\n" + record.stack_info
    return f"{timestamp(record.created)} {record.levelname} {record.name}: {message}"


# -- the logging handler ------------------------------------------------------------------

_CURRENT: contextvars.ContextVar[RunLogBuffer | None] = contextvars.ContextVar(
    "scheduler_app_run_log", default=None
)
_PROCESS: list[RunLogBuffer] = []  # the one run of a child process (capturing_process)


def _handled_elsewhere(record: logging.LogRecord) -> bool:
    """Whether a handler other than ours sees the record (else logging's last resort
    must still print it, as it would without us)."""
    logger: logging.Logger | None = logging.getLogger(record.name) if record.name != "root" else None
    logger = logger or logging.getLogger()
    while logger is not None:
        if any(h is not _HANDLER for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        # A record may reach us twice (the root and scheduler_app, if it propagates).
        if getattr(record, "_run_log_seen", False):
            return
        record._run_log_seen = True
        if not _handled_elsewhere(record):
            last = logging.lastResort
            if last is not None and record.levelno >= last.level:
                last.handle(record)
        buffer = _CURRENT.get() or (_PROCESS[-1] if _PROCESS else None)
        if buffer is not None:
            buffer.write(format_record(record))

    def handleError(self, record: logging.LogRecord) -> None:  # never into the task
        pass


_HANDLER = _CaptureHandler()
_install_lock = threading.Lock()
_users = 0


def _attach() -> None:
    global _users
    with _install_lock:
        _users += 1
        if _users == 1:
            for name in CAPTURED_LOGGERS:
                logging.getLogger(name).addHandler(_HANDLER)


def _detach() -> None:
    global _users
    with _install_lock:
        _users -= 1
        if _users == 0:
            for name in CAPTURED_LOGGERS:
                logging.getLogger(name).removeHandler(_HANDLER)


@contextlib.contextmanager
def capturing(buffer: RunLogBuffer | None) -> Iterator[None]:
    """Capture the log records of the current thread (and of the asyncio tasks and
    ``asyncio.run`` it starts, which copy its context) into ``buffer``."""
    if not buffer:
        yield
        return
    _attach()
    token = _CURRENT.set(buffer)
    try:
        yield
    finally:
        _CURRENT.reset(token)
        _detach()


# -- output of a child process ------------------------------------------------------------


class StreamCapture:
    """A text stream that writes to ``original`` and keeps complete lines in the buffer.
    Masking works on the stream (a secret split over two writes is held back until the
    rest arrives) before the text is cut into lines."""

    def __init__(self, original: Any, buffer: RunLogBuffer, name: str) -> None:
        self._original = original
        self._buffer = buffer
        self._label = f"{name.upper()} {name}: "
        self._lock = threading.Lock()
        self._held = ""  # not masked yet: a secret may continue in the next write
        self._line = ""  # masked, waiting for its newline

    def write(self, text: str) -> int:
        if self._original is not None:
            with contextlib.suppress(Exception):
                self._original.write(text)
        with contextlib.suppress(Exception):
            self._capture(str(text))
        return len(text)

    def _capture(self, text: str) -> None:
        with self._lock:
            safe, self._held = self._buffer.redactor.split_safe(self._held + text)
            *complete, self._line = (self._line + safe).split("\n")
            if len(self._line) > self._buffer.max_bytes:  # no newline in sight: cut here
                complete.append(self._line)
                self._line = ""
            if complete:
                stamp = timestamp(time.time())
                self._buffer.add_masked(f"{stamp} {self._label}{line}" for line in complete)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._original is not None:
            with contextlib.suppress(Exception):
                self._original.flush()

    def close_capture(self) -> None:
        """Keep what is left (a last line without its newline)."""
        with self._lock:
            rest = self._line + self._buffer.redactor.text(self._held)
            self._held = self._line = ""
        if rest:
            self._buffer.add_masked([f"{timestamp(time.time())} {self._label}{rest}"])

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty ... as before
        return getattr(self._original, name)


@contextlib.contextmanager
def capturing_process(buffer: RunLogBuffer | None) -> Iterator[None]:
    """Capture every thread's log records and ``sys.stdout`` / ``sys.stderr`` of this
    process into ``buffer`` (for a process that executes one run at a time)."""
    if not buffer:
        yield
        return
    streams = [StreamCapture(sys.stdout, buffer, "stdout"), StreamCapture(sys.stderr, buffer, "stderr")]
    saved = sys.stdout, sys.stderr
    _PROCESS.append(buffer)
    _attach()
    sys.stdout, sys.stderr = streams
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        _detach()
        _PROCESS.remove(buffer)
        for stream in streams:
            stream.close_capture()


class LiveSender:
    """In a child process: sends what the run logged to the parent every ``interval``
    seconds (``send({"log": lines, "dropped": n})``), so that the log can be followed
    while the run goes on. :meth:`stop` ends it and returns the rest for the reply."""

    def __init__(self, buffer: RunLogBuffer | None, send: Any, interval: float = 0.5) -> None:
        self.buffer = buffer
        self._send = send
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveSender:
        if self.buffer and self._send is not None:
            self._thread = threading.Thread(target=self._loop, name="run-log-sender", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            assert self.buffer is not None
            lines, lost = self.buffer.drain()
            if lines or lost:
                try:
                    self._send({"log": lines, "dropped": lost})
                except Exception:  # noqa: BLE001 - the parent is gone: the reply fails too
                    return

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.buffer:
            return {}
        lines, lost = self.buffer.drain()
        return {"log": lines, "log_dropped": lost}
