"""The guard around plugin executors (no Django): a blocking or raising submit fails
that run, naming the executor; each outcome reaches the node exactly once; runs the
plugin holds are reported as running (heartbeated) and can be stopped."""

import threading

from scheduler_app.engine.extensions import ExecutorContext, build_executors
from scheduler_app.engine.interfaces import ClaimedRun


class Plugin:
    size = 1

    def __init__(self, context, mode):
        self.context, self.mode, self.gate = context, mode, threading.Event()

    def free_slots(self):
        return 1

    def submit(self, run):
        if self.mode == "block":
            self.gate.wait(10)
        elif self.mode == "raise":
            raise RuntimeError("no room")

    def stop(self, run_id, state, reason):
        return False

    def running_ids(self):
        return []

    def shutdown(self, wait):
        self.gate.set()


def make(mode, timeout=0.2):
    outcomes = []
    built, failed = build_executors(
        {"p": lambda ctx: Plugin(ctx, mode)}, ExecutorContext(outcomes.append, 1000), submit_timeout=timeout
    )
    return built["p"], outcomes, failed


RUN = ClaimedRun(run_id=7, job_id=1, job_name="j", task="t", args=(), kwargs={})


def test_blocking_submit_fails_the_run_once():
    executor, outcomes, _ = make("block")
    executor.submit(RUN)
    assert [(o.state, o.error) for o in outcomes] == [
        ("failed", "executor 'p' blocked in submit for more than 0.2 s")
    ]
    assert executor.free_slots() == 0  # no more runs while it is stuck
    assert executor.running_ids() == []
    executor.sink(outcomes[0])  # a late report from the plugin is dropped
    assert len(outcomes) == 1
    executor.shutdown(False)


def test_raising_submit_fails_the_run_with_its_error():
    executor, outcomes, _ = make("raise")
    executor.submit(RUN)
    assert outcomes[0].error == "executor 'p' refused the run: no room"


def test_accepted_runs_are_running_and_can_be_stopped():
    executor, outcomes, _ = make("accept")
    executor.submit(RUN)
    assert executor.running_ids() == [7]
    assert executor.stop(7, "timed_out", "too slow") is True
    assert [(o.state, o.error) for o in outcomes] == [("timed_out", "too slow")]
    assert executor.running_ids() == [] and executor.stop(7, "timed_out", "again") is False


def test_a_factory_that_fails_or_lacks_methods_is_left_out():
    built, failed = build_executors(
        {"bad": lambda ctx: 1 / 0, "half": lambda ctx: object()}, ExecutorContext(lambda o: None, 1000)
    )
    assert built == {}
    assert failed["bad"].startswith("ZeroDivisionError")
    assert "lacks free_slots, submit, stop, running_ids, shutdown" in failed["half"]
