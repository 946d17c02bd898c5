"""Log lines that can be searched: ``time level logger message key=value ...``.

The secrets of the runs in progress are masked in every line (a task may log its
arguments, or an exception that quotes them); ``runscheduler`` also masks them at the
file-descriptor level (:mod:`scheduler_app.engine.outputguard`), for output that does
not pass through this formatter."""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from scheduler_app.engine.outputguard import ACTIVE
from scheduler_app.engine.redaction import log_quoted

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class OffsetTimeFormatter(logging.Formatter):
    """``%(asctime)s`` with milliseconds and the UTC offset of the process's zone
    (``2026-12-02 09:00:00.123 +08:00``), never logging's offset-less default."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created).astimezone()
        if datefmt:
            return moment.strftime(datefmt)
        offset = moment.strftime("%z")
        return f"{moment:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} {offset[:3]}:{offset[3:]}"


class KeyValueFormatter(OffsetTimeFormatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        redactor = ACTIVE.redactor()
        text = redactor.text(super().format(record))
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if extras:
            # Masked before quoting: the quoting must not tell what the secret held.
            text += " " + " ".join(f"{k}={_quote(redactor.text(str(v)))}" for k, v in extras.items())
        return redactor.text(text)


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return '"' + log_quoted(text) + '"'
    return text


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(KeyValueFormatter())
    for name in ("scheduler_app", "apscheduler"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(level if name == "scheduler_app" else "WARNING")
