"""Next fire times of jobs for the read side (API lists and details), without parsing
and building every job's trigger on every request.

A job's next fire time after ``now`` is a function of what its trigger is made of (the
trigger document, the job's hash key and creation time for the interval phase, the
dates its calendars exclude, the trigger limits) and of ``now``. Computed at ``t0`` it
gives ``N``, the first fire time strictly after ``t0``; for every ``now`` in ``[t0, N)``
the answer is again ``N`` (no fire lies between), and a trigger with no fire left after
``t0`` has none later either. So the answer is kept per job with a signature of those
inputs and reused while it still holds; any change of the job's configuration changes
the signature, whichever process made it. Triggers with ``jitter`` are not kept (each
computation draws its own offset, as before).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from scheduler_app.engine import triggerspec

#: Jobs whose answers are kept per process; beyond this the cache starts again.
MAX_ENTRIES = 50_000

_lock = threading.Lock()
#: job id -> (signature, computed at, next fire time or None)
_entries: dict[int, tuple[tuple[Any, ...], datetime, datetime | None]] = {}


def forget() -> None:
    with _lock:
        _entries.clear()


def trigger_text(job: Any) -> str:
    """The job's trigger as :func:`signature` compares it (a caller that keeps the job
    can keep this too, and pass it instead of encoding the trigger again)."""
    return json.dumps(job.trigger, default=str)


def signature(job: Any, excluded: Iterable[date], text: str | None = None) -> tuple[Any, ...] | None:
    """What the next fire time depends on besides ``now``; None: not cacheable.
    ``text``: :func:`trigger_text` of the job, if the caller has it."""
    from scheduler_app.conf import app_settings

    if text is None:
        text = trigger_text(job)
    if '"jitter"' in text and _has_jitter(job.trigger):
        return None
    return (
        text,
        job.hash_key,
        job.created_at,
        tuple(sorted(set(excluded))),
        app_settings.TRIGGER_MAX_CHILDREN,
        app_settings.TRIGGER_MAX_DEPTH,
    )


def _has_jitter(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("jitter") not in (None, 0):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def compute(job: Any, excluded: Iterable[date], now: datetime) -> datetime | None:
    """The first fire time strictly after ``now`` (None: none, or an invalid trigger)."""
    try:
        trigger = triggerspec.build_trigger(
            job.trigger_spec, hash_key=job.hash_key, anchor=job.created_at, excluded_dates=excluded
        )
    except ValueError:
        return None
    times = triggerspec.fire_times(trigger, now, 1)
    return times[0] if times and times[0] > now else None


def next_fire_time(
    job: Any, excluded: Iterable[date], now: datetime, *, trigger_text: str | None = None
) -> datetime | None:
    """:func:`compute`, reusing the answer of an earlier ``now`` while it still holds.
    ``trigger_text``: the job's :func:`trigger_text`, if the caller has it."""
    if not job.is_schedulable:
        return None
    excluded = list(excluded)
    key = signature(job, excluded, trigger_text) if job.pk is not None else None
    if key is None:
        return compute(job, excluded, now)
    entry = _entries.get(job.pk)
    if entry is not None:
        sig, at, nxt = entry
        # "None" is not reused: a search that gives up (an all-of trigger's rounds, a
        # calendar's horizon) counts from ``now`` and may find a time later on.
        if sig == key and at <= now and nxt is not None and now < nxt:
            return nxt
    nxt = compute(job, excluded, now)
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[job.pk] = (key, now, nxt)
    return nxt
