"""Rate limits and concurrency keys as pure values and functions (no Django).

A *rate* is "at most N runs started per period", written ``N/unit`` with the unit one
of ``s``, ``m``, ``h``, ``d`` (``"10/m"``, ``"1000/h"``). It is a sliding window: a run
started at ``t`` counts against the rate until ``t + period``, so the next run may start
when the oldest of the last N starts leaves the window.

A *concurrency key* is a name shared by jobs of one tenant; at most the job's
concurrency limit of runs holding the key run at once, across jobs and nodes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: seconds per unit of a rate
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the largest N of a rate: a window holding more starts than this is not a limit
MAX_COUNT = 1_000_000
#: what a concurrency key may be made of (no "/": keys are per tenant)
KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


#: the messages of :class:`ThrottleError`, by code (faces translate them by the same code)
MESSAGES = {
    "type": "must be text like '10/m', not %(type)s",
    "syntax": "%(text)r: write N/unit, e.g. 10/m (units: %(units)s)",
    "count": "%(text)r: the count %(count)r is not a whole number",
    "unit": "%(text)r: unknown unit %(unit)r (use one of %(units)s)",
    "range": "%(text)r: the count %(count)s is outside 1-%(max)s",
    "key_tenant": (
        "%(key)r: keys are per tenant and cannot name another tenant (no '/'); "
        "jobs of one tenant share a key by using the same name"
    ),
    "key_chars": (
        "%(key)r: use letters, digits and . _ : - (at most 100 characters, starting with a letter or digit)"
    ),
}


class ThrottleError(ValueError):
    """A rate or key that is not valid: ``code`` (a key of :data:`MESSAGES`) and the
    ``params`` of its message, which quotes the input and says what is wrong."""

    def __init__(self, code: str, **params: object) -> None:
        self.code = code
        self.params = {"units": ", ".join(UNITS), "max": MAX_COUNT, **params}
        super().__init__(MESSAGES[code] % self.params)


class RateError(ThrottleError):
    """A rate that cannot be parsed or built."""


@dataclass(frozen=True, order=True)
class Rate:
    """At most ``count`` runs started per ``unit`` (one of :data:`UNITS`)."""

    count: int
    unit: str

    def __post_init__(self) -> None:
        text = f"{self.count}/{self.unit}"
        if self.unit not in UNITS:
            raise RateError("unit", text=text, unit=self.unit)
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise RateError("count", text=text, count=str(self.count))
        if not 1 <= self.count <= MAX_COUNT:
            raise RateError("range", text=text, count=self.count)

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=UNITS[self.unit])


def parse_rate(text: str) -> Rate:
    """``"10/m"`` → ``Rate(10, "m")``. Spaces around the parts are allowed; anything
    else is a :class:`RateError` quoting the text: ``'10/x': unknown unit 'x' ...``."""
    if not isinstance(text, str):
        raise RateError("type", type=type(text).__name__)
    count_text, slash, unit = text.strip().partition("/")
    count_text, unit = count_text.strip(), unit.strip()
    if not slash or not count_text or not unit:
        raise RateError("syntax", text=text)
    if not count_text.isascii() or not count_text.isdigit():
        raise RateError("count", text=text, count=count_text)
    if unit not in UNITS:
        raise RateError("unit", text=text, unit=unit)
    count = int(count_text)
    if not 1 <= count <= MAX_COUNT:
        raise RateError("range", text=text, count=count)
    return Rate(count, unit)


def normalise_rate(text: str) -> str:
    """The canonical text of a rate (``" 10 / m "`` → ``"10/m"``); ``""`` stays ``""``."""
    return str(parse_rate(text)) if text.strip() else ""


def next_start(starts: Sequence[datetime], rate: Rate, now: datetime) -> datetime | None:
    """When a run may start under ``rate``, given the start times of runs counted in the
    scope (any order; those outside the window are ignored): ``None`` when it may start
    now, else the moment the window has room again."""
    window = sorted(t for t in starts if t > now - rate.period)
    if len(window) < rate.count:
        return None
    # The run that frees a slot is the one that makes the window hold count - 1 starts.
    return window[len(window) - rate.count] + rate.period


@dataclass
class RateWindow:
    """One rate's window as a claim sees it, without reading every start in it: how
    many runs started in the window (``in_window``), and the start times at the ranks
    (1 = the most recent) from :meth:`ranks_needed` on, enough to answer for up to
    ``batch`` more starts made by this claim (:meth:`add`, at the claim's time: the
    newest starts). Answers as :func:`next_start` over every start would."""

    rate: Rate
    in_window: int
    ranked: dict[int, datetime]
    added: list[datetime]

    @staticmethod
    def ranks_needed(rate: Rate, in_window: int, batch: int) -> range:
        """The ranks of stored starts to read for a claim of at most ``batch`` runs."""
        if in_window + batch < rate.count:
            return range(0)  # room for the whole batch
        return range(max(rate.count - batch, 1), min(rate.count, in_window) + 1)

    def next_start(self, now: datetime) -> datetime | None:
        if self.in_window + len(self.added) < self.rate.count:
            return None
        rank = self.rate.count - len(self.added)  # among the stored starts
        if rank <= 0:
            base = sorted(self.added, reverse=True)[self.rate.count - 1]
        else:
            # Missing only if a start changed between the count and the read: wait a period.
            base = self.ranked.get(rank, now)
        return base + self.rate.period

    def add(self, when: datetime) -> None:
        self.added.append(when)


def check_key(key: str) -> str:
    """A concurrency key as stored (stripped), or :class:`ThrottleError` saying why not."""
    key = key.strip()
    if key and "/" in key:
        raise ThrottleError("key_tenant", key=key)
    if key and not KEY_PATTERN.fullmatch(key):
        raise ThrottleError("key_chars", key=key)
    return key


__all__ = [
    "KEY_PATTERN",
    "MAX_COUNT",
    "UNITS",
    "MESSAGES",
    "Rate",
    "RateError",
    "RateWindow",
    "ThrottleError",
    "check_key",
    "next_start",
    "normalise_rate",
    "parse_rate",
]
