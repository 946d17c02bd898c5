"""An example scheduler_app plugin (plugin API version 1), one of each extension point:

* trigger type ``business_days``: ``{"type": "business_days", "every": 2, "at": "09:30",
  "timezone": "Europe/Berlin", "start": "2026-01-05"}`` fires at ``at`` on every
  ``every``-th business day (Monday to Friday) counted from ``start``; the job's exclusion
  calendars skip dates as for any trigger.
* executor ``serial``: runs one run at a time in its own thread (a plain reference
  implementation of the Executor protocol, timeouts and stop included).
* alert channel ``jsonfile``: appends each alert as one JSON line to ``config["path"]``
  (an absolute path in an existing directory; ``token`` is a secret field, stored
  encrypted; the line says only whether it was set).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

API_VERSION = 1


# -- trigger ----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "every": {"type": "integer", "minimum": 1, "maximum": 250},
        "at": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
        "timezone": {"type": "string"},
        "start": {"type": "string", "format": "date"},
    },
    "required": ["every", "at"],
    "additionalProperties": False,
}


def _error(path, message):
    from scheduler_app.engine.triggerspec import TriggerSpecError

    return TriggerSpecError(path, message)


def validate(doc, path):
    unknown = sorted(set(doc) - set(SCHEMA["properties"]))
    if unknown:
        raise _error(f"{path}.{unknown[0]}", "unknown key")
    every = doc.get("every")
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= 250:
        raise _error(f"{path}.every", "must be a whole number of business days from 1 to 250")
    at = doc.get("at")
    try:
        hour, minute = (int(x) for x in str(at).split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise _error(f"{path}.at", f"{at!r} is not a time of day HH:MM") from None
    tz = doc.get("timezone") or "UTC"
    try:
        ZoneInfo(tz)
    except Exception:  # noqa: BLE001
        raise _error(f"{path}.timezone", f"unknown time zone {tz!r}") from None
    start = doc.get("start") or "2026-01-05"
    try:
        date.fromisoformat(start)
    except (TypeError, ValueError):
        raise _error(f"{path}.start", f"{start!r} is not a date YYYY-MM-DD") from None
    return {"every": every, "at": f"{hour:02d}:{minute:02d}", "timezone": tz, "start": start}


class BusinessDaysTrigger(BaseTrigger):
    def __init__(self, every, at, timezone, start):
        self.every = every
        self.hour, self.minute = (int(x) for x in at.split(":"))
        self.tz = ZoneInfo(timezone)
        self.start = date.fromisoformat(start)

    def _is_fire_day(self, day):
        if day.weekday() >= 5 or day < self.start:
            return False
        # business days from start to day (inclusive of start, exclusive of day)
        weeks, rest = divmod((day - self.start).days, 7)
        count = weeks * 5 + sum(1 for i in range(rest) if (self.start + timedelta(i)).weekday() < 5)
        return count % self.every == 0

    def get_next_fire_time(self, previous_fire_time, now):
        moment = max(now, previous_fire_time + timedelta(microseconds=1)) if previous_fire_time else now
        local = moment.astimezone(self.tz)
        day = local.date()
        for _ in range(400 * self.every):
            if self._is_fire_day(day):
                fire = datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=self.tz)
                if fire >= local:
                    return fire
            day += timedelta(days=1)
        return None

    def __str__(self):
        return f"every {self.every} business day(s) at {self.hour:02d}:{self.minute:02d}"


def build(doc, context):
    return BusinessDaysTrigger(doc["every"], doc["at"], doc["timezone"], doc["start"])


def describe(doc):
    n = doc["every"]
    days = "business day" if n == 1 else f"{n} business days"
    return f"Every {days} at {doc['at']} ({doc['timezone']}), counted from {doc['start']}"


# -- executor ---------------------------------------------------------------------------


class SerialExecutor:
    """One run at a time, in order; a run past its timeout is reported by the node's
    call to stop() (its thread is abandoned, as the thread executor does)."""

    name = "serial"
    size = 1

    def __init__(self, context):
        from scheduler_app.engine.interfaces import Outcome

        self._outcome = Outcome
        self._sink = context.sink
        self._resolve = context.resolve
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self._runs = {}  # run_id -> (run, deadline or None, reported)
        self._thread = threading.Thread(target=self._loop, name="serial-executor", daemon=True)
        self._thread.start()

    def free_slots(self):
        with self._lock:
            return max(1 - len(self._runs), 0)

    def submit(self, run):
        with self._lock:
            self._runs[run.run_id] = [run, None, False]
        self._queue.put(run)

    def _report(self, run_id, state, started, **fields):
        with self._lock:
            entry = self._runs.get(run_id)
            if entry is None or entry[2]:
                return False
            entry[2] = True
        self._sink(
            self._outcome(
                run_id=run_id, state=state, started_at=started, finished_at=datetime.now(UTC), **fields
            )
        )
        return True

    def _loop(self):
        while True:
            run = self._queue.get()
            if run is None:
                return
            started = datetime.now(UTC)
            with self._lock:
                if run.run_id in self._runs and run.timeout:
                    self._runs[run.run_id][1] = time.monotonic() + run.timeout
            try:
                value = self._resolve(run.task)(*run.args, **run.kwargs)
            except Exception as exc:  # noqa: BLE001
                self._report(run.run_id, "failed", started, error_type=type(exc).__name__, error=str(exc))
            else:
                self._report(run.run_id, "succeeded", started, result=value, extra={"executor": "serial"})
            with self._lock:
                self._runs.pop(run.run_id, None)

    def overdue(self, monotonic_now):
        with self._lock:
            return [
                r
                for r, deadline, done in self._runs.values()
                if deadline and not done and monotonic_now >= deadline
            ]

    def stop(self, run_id, state, reason):
        return self._report(run_id, state, datetime.now(UTC), error_type="Stopped", error=reason)

    def running_ids(self):
        with self._lock:
            return [rid for rid, (_r, _d, done) in self._runs.items() if not done]

    def shutdown(self, wait):
        self._queue.put(None)
        if wait:
            self._thread.join(timeout=5)


# -- alert channel ----------------------------------------------------------------------


JSONFILE_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string", "minLength": 1}, "token": {"type": "string"}},
    "required": ["path"],
    "additionalProperties": False,
}


def validate_jsonfile(config):
    """The file must be given by an absolute path in an existing directory."""
    import os

    from scheduler_app.engine.extensions import ChannelConfigError

    path = config["path"]
    if not os.path.isabs(path):
        raise ChannelConfigError("path", f"{path!r} is not an absolute path")
    if not os.path.isdir(os.path.dirname(path)):
        raise ChannelConfigError("path", f"the directory {os.path.dirname(path)!r} does not exist")
    return {**config, "path": os.path.normpath(path)}


def send_jsonfile(config, message):
    with open(config["path"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**message, "token_set": bool(config.get("token"))}) + "\n")


# -- the plugin ---------------------------------------------------------------------------


class ExamplePlugin:
    name = "example"
    api_version = API_VERSION

    def register(self, registry):
        registry.add_trigger_type(
            "business_days", schema=SCHEMA, validate=validate, build=build, describe=describe
        )
        registry.add_executor("serial", SerialExecutor, label="serial (example plugin)")
        registry.add_alert_channel(
            "jsonfile",
            config_schema=JSONFILE_SCHEMA,
            send=send_jsonfile,
            secret_fields=("token",),
            validate=validate_jsonfile,
            label="JSON lines file (example plugin)",
        )


plugin = ExamplePlugin()
