"""Every executor masks the run's secrets in what it reports, before the outcome
leaves it: results (plain, nested, as keys, oversized, unserializable), errors and
tracebacks (pure engine, no Django)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from scheduler_app.engine.executors import AsyncioExecutor, ProcessExecutor, ThreadExecutor, _ProcessSlot
from scheduler_app.engine.interfaces import ClaimedRun
from scheduler_app.engine.outputguard import ACTIVE
from scheduler_app.engine.redaction import MASK
from tests.secret_forms import find_leaks
from tests.unit.masking_tasks import TASKS

SECRETS = {"s1": "Pässwörd-Echo-Ω-3456", "s2": 'a"b\\c', "s3": "line1\nline2", "s4": 9876543210}


def claimed(run_id, task, executor, secrets=SECRETS, **kwargs):
    return ClaimedRun(
        run_id=run_id,
        job_id=1,
        job_name="j",
        task=task,
        args=(),
        kwargs={**secrets, **kwargs},
        executor=executor,
        scheduled_for=datetime.now(UTC),
        secret_values=tuple(secrets.values()),
    )


class Collector:
    def __init__(self, expected):
        self.outcomes = {}
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, outcome):
        self.outcomes[outcome.run_id] = outcome
        if len(self.outcomes) >= self.expected:
            self.done.set()


def make(kind, sink):
    if kind == "thread":
        return ThreadExecutor(2, TASKS.__getitem__, sink, 2000)
    if kind == "asyncio":
        return AsyncioExecutor(4, 2, TASKS.__getitem__, sink, 2000)
    return ProcessExecutor(1, "tests.unit.masking_tasks:setup", sink, 2000)


EXECUTORS = ["thread", "asyncio", pytest.param("process", marks=pytest.mark.slow)]
TASK_NAMES = ["returns", "raises", "unserializable", "oversized"]


def leaks_of(outcome):
    fields = {name: str(getattr(outcome, name)) for name in ("result", "error", "error_type", "traceback")}
    return find_leaks(fields, list(SECRETS.values()))


@pytest.mark.parametrize("kind", EXECUTORS)
def test_every_outcome_is_masked(kind):
    tasks = TASK_NAMES + (["returns_async"] if kind == "asyncio" else [])
    sink = Collector(len(tasks))
    executor = make(kind, sink)
    try:
        for i, task in enumerate(tasks, 1):
            executor.submit(claimed(i, task, kind))
        assert sink.done.wait(60), sink.outcomes
    finally:
        executor.shutdown(wait=True)
    by_task = {task: sink.outcomes[i] for i, task in enumerate(tasks, 1)}
    for task, outcome in by_task.items():
        assert leaks_of(outcome) == [], (task, outcome)
    returned = by_task["returns"]
    assert returned.state == "succeeded"
    assert returned.result["plain"] == [MASK] * 4
    assert sorted(returned.result["keys"]) == [MASK, f"{MASK} (2)", f"{MASK} (3)", f"{MASK} (4)"]
    raised = by_task["raises"]
    assert raised.state == "failed" and raised.error.count(MASK) == 4 + 2 * 4
    assert raised.error.startswith(f"failed with {{'s1': '{MASK}', 's2': '{MASK}'")
    assert MASK in raised.traceback and "RuntimeError" in raised.traceback
    assert MASK in by_task["unserializable"].result["unserializable"]
    preview = by_task["oversized"].result["preview"]
    assert by_task["oversized"].result["truncated"] is True and len(preview) == 1000
    escaped = json.dumps(SECRETS["s1"])[1:-1]  # the preview is cut inside it: no piece left
    assert not [escaped[i : i + 5] for i in range(len(escaped) - 4) if escaped[i : i + 5] in preview]
    if kind == "asyncio":
        assert by_task["returns_async"].result["plain"] == [MASK] * 4
    deadline = time.monotonic() + 10
    while ACTIVE.holds() and time.monotonic() < deadline:  # released once the code returned
        time.sleep(0.01)
    assert not ACTIVE.holds()


@pytest.mark.parametrize("kind", EXECUTORS)
def test_stop_reasons_and_setup_errors_are_masked(kind):
    sink = Collector(2)
    executor = make(kind, sink)
    try:
        run = claimed(1, "slow", kind, seconds=3)
        executor.submit(run)
        broken = ClaimedRun(
            **{**claimed(2, "returns", kind).__dict__, "setup_error": "cannot use line1\nline2"}
        )
        executor.submit(broken)
        deadline = time.monotonic() + 30
        while not executor.executing() and time.monotonic() < deadline:  # it really started
            time.sleep(0.02)
        executor.stop(1, "cancelled", f"stopped by someone who typed {SECRETS['s1']}")
        assert sink.done.wait(30)
        while executor._inflight and time.monotonic() < deadline:  # let the stop land
            time.sleep(0.02)
    finally:
        executor.shutdown(wait=False)
    assert sink.outcomes[1].error == f"stopped by someone who typed {MASK}"
    assert sink.outcomes[2].error == f"cannot use {MASK}"


def test_the_parent_masks_what_a_worker_reports():
    """Whatever a worker sends back (an older worker, a bug in it) is masked again in
    the parent before it is reported."""
    sink = Collector(2)
    owner = ProcessExecutor(0, "tests.unit.masking_tasks:setup", sink, 2000)
    slot = _ProcessSlot(owner, 0)
    secret = SECRETS["s1"]
    ok = owner._register(claimed(1, "returns", "process"))
    slot._deliver(ok, {"ok": True, "result": {secret: [secret]}, "note": f"note {secret}"})
    failed = owner._register(claimed(2, "raises", "process"))
    slot._deliver(
        failed,
        {"ok": False, "error_type": "E", "error": f"{secret} {secret}", "traceback": f"tb {secret!r}"},
    )
    assert sink.outcomes[1].result == {MASK: [MASK]} and sink.outcomes[1].error == f"note {MASK}"
    assert sink.outcomes[2].error == f"{MASK} {MASK}" and sink.outcomes[2].traceback == f"tb '{MASK}'"


def test_an_executor_failure_is_logged_masked(caplog):
    def sink(outcome):
        raise ValueError(f"could not store {outcome.run_id} for {SECRETS['s2']!r} {SECRETS['s1']}")

    executor = ThreadExecutor(1, TASKS.__getitem__, sink, 2000)
    with caplog.at_level("ERROR", logger="scheduler_app.engine.executors"):
        executor.submit(claimed(1, "returns", "thread", secrets={"s1": SECRETS["s1"], "s2": SECRETS["s2"]}))
        executor.shutdown(wait=True)
    (record,) = [r for r in caplog.records if r.getMessage() == "outcome sink failed"]
    assert record.exc_info is None
    assert record.error == f"ValueError: could not store 1 for '{MASK}' {MASK}"
    assert find_leaks({"log": record.error + record.traceback}, list(SECRETS.values())) == []
