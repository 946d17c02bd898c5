"""Each built-in executor captures what its runs log (pure engine, real threads, real
worker and isolated processes; no Django): lines in order, secrets masked, concurrent
runs apart, the log of a running run available before it ends, and the log so far kept
when a run is stopped."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from scheduler_app.engine.executors import AsyncioExecutor, ProcessExecutor, ThreadExecutor
from scheduler_app.engine.extensions import ExecutorContext, build_executors
from scheduler_app.engine.interfaces import ClaimedRun
from scheduler_app.engine.isolated import IsolatedExecutor, IsolationConfig
from scheduler_app.engine.redaction import MASK
from tests.unit import runlog_tasks

INIT = "tests.unit.runlog_tasks:setup"
SECRET = "Pässwörd-Ω"


class Sink:
    def __init__(self):
        self.outcomes = {}
        self.cond = threading.Condition()

    def __call__(self, outcome):
        with self.cond:
            self.outcomes[outcome.run_id] = outcome
            self.cond.notify_all()

    def wait(self, run_id, timeout=60):
        with self.cond:
            assert self.cond.wait_for(lambda: run_id in self.outcomes, timeout), f"run {run_id} did not end"
            return self.outcomes[run_id]


def claimed(run_id, task, secrets=None, timeout=None, **kwargs):
    return ClaimedRun(
        run_id=run_id,
        job_id=1,
        job_name="j",
        task=task,
        args=(),
        kwargs={**kwargs, **(secrets or {})},
        scheduled_for=datetime.now(UTC),
        timeout=timeout,
        secret_values=tuple((secrets or {}).values()),
    )


def texts(outcome):
    return [line[13:] for line in outcome.log.text.split("\n")]


@pytest.fixture
def build():
    made = []

    def make(kind, sink, max_bytes=65536):
        if kind == "thread":
            ex = ThreadExecutor(4, runlog_tasks.TASKS.__getitem__, sink, 65536, log_max_bytes=max_bytes)
        elif kind == "asyncio":
            ex = AsyncioExecutor(8, 2, runlog_tasks.TASKS.__getitem__, sink, 65536, log_max_bytes=max_bytes)
        elif kind == "process":
            ex = ProcessExecutor(1, INIT, sink, 65536, log_max_bytes=max_bytes)
        elif kind == "isolated":
            ex = IsolatedExecutor(1, sink, 65536, IsolationConfig(initializer=INIT), log_max_bytes=max_bytes)
        else:  # as a node gets it: built by its factory, behind the plugin guard
            config = IsolationConfig(initializer=INIT)
            built, failed = build_executors(
                {
                    "isolated": lambda ctx: IsolatedExecutor(
                        1, ctx.sink, 65536, config, log_max_bytes=max_bytes
                    )
                },
                ExecutorContext(sink=sink, result_max_bytes=65536),
            )
            assert not failed
            ex = built["isolated"]
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown(wait=False)


@pytest.mark.parametrize("kind", ["process", "isolated"])
def test_child_processes_capture_records_and_output_in_order_masked(build, kind):
    sink = Sink()
    executor = build(kind, sink)
    executor.submit(claimed(1, "chatter", {"password": SECRET}, label="c", count=3))
    outcome = sink.wait(1)
    assert outcome.state == "succeeded", outcome.error
    assert texts(outcome) == [
        line
        for n in range(3)
        for line in (
            f"INFO tests.unit.runlog_tasks: c {n} password={MASK}",
            f"STDOUT stdout: c printed {n} password={MASK}",
        )
    ]
    assert SECRET not in outcome.log.text


@pytest.mark.parametrize("kind", ["process", "isolated", "guarded-isolated", "thread"])
def test_the_log_of_a_running_run_is_there_before_it_ends(build, kind, tmp_path):
    sink = Sink()
    executor = build(kind, sink)
    gate = tmp_path / "go"
    executor.submit(claimed(7, "chatter", label="w", count=2, gate=str(gate)))
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("w waiting" in log.text for log in seen):
        log = executor.take_logs().get(7)
        if log is not None:
            seen.append(log)
        time.sleep(0.05)
    assert seen and "WARNING tests.unit.runlog_tasks: w waiting" in seen[-1].text
    assert 7 not in sink.outcomes  # still running
    assert executor.take_logs() == {}  # nothing new since
    gate.touch()
    outcome = sink.wait(7)
    assert outcome.log.text == seen[-1].text and outcome.log.lines_total == seen[-1].lines_total


@pytest.mark.parametrize("kind", ["process", "isolated", "thread"])
def test_a_timed_out_run_keeps_what_it_logged_until_then(build, kind, tmp_path):
    sink = Sink()
    executor = build(kind, sink)
    gate = tmp_path / "go"
    executor.submit(claimed(3, "chatter", label="t", count=2, gate=str(gate)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = executor.take_logs().get(3)
        if log is not None and "t waiting" in log.text:
            break
        time.sleep(0.05)
    assert executor.stop(3, "timed_out", "exceeded its timeout of 1 s")
    outcome = sink.wait(3)
    gate.touch()  # a thread cannot be killed: let it end
    assert outcome.state == "timed_out"
    assert texts(outcome)[-1] == "WARNING tests.unit.runlog_tasks: t waiting"


def test_asyncio_tasks_on_one_loop_do_not_mix_their_lines(build):
    sink = Sink()
    executor = build("asyncio", sink)
    for run_id, label in ((1, "a"), (2, "b"), (3, "c")):
        executor.submit(claimed(run_id, "chatter_async", label=label, count=40))
    executor.submit(claimed(4, "chatter", label="sync", count=5))  # in the loop's thread pool
    for run_id, label in ((1, "a"), (2, "b"), (3, "c")):
        assert texts(sink.wait(run_id)) == [f"INFO tests.unit.runlog_tasks: {label} {n}" for n in range(40)]
    # a sync task's prints are not captured in a shared process, its records are
    assert texts(sink.wait(4)) == [f"INFO tests.unit.runlog_tasks: sync {n} " for n in range(5)]


def test_capture_off_stores_nothing(build):
    sink = Sink()
    executor = build("process", sink, max_bytes=0)
    executor.submit(claimed(1, "chatter", label="off"))
    outcome = sink.wait(1)
    assert outcome.state == "succeeded" and outcome.log is None
