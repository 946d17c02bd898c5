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


class Reporter(Plugin):
    """Reports what its run was given, as a careless plugin would: the secret in the
    result, the error, the traceback and the log, and a result far over the cap."""

    def submit(self, run):
        from datetime import UTC, datetime

        from scheduler_app.engine.interfaces import Outcome, RunLog

        now = datetime.now(UTC)
        token = run.kwargs["token"]
        self.context.sink(
            Outcome(
                run_id=run.run_id,
                state=self.mode,
                started_at=now,
                finished_at=now,
                result={"echo": token, "pad": "x" * 2000} if self.mode == "succeeded" else None,
                error=f"login as {token} failed" if self.mode == "failed" else "",
                traceback=f"Traceback: {token}" if self.mode == "failed" else "",
                log=RunLog(text=f"using {token}\n", lines_total=1),
            )
        )


def test_what_a_plugin_reports_is_masked_and_capped_like_the_built_in_executors():
    """A downstream job receives results: a plugin's must not carry the run's secrets in
    clear, nor exceed RESULT_MAX_BYTES (found by review)."""
    from scheduler_app.engine.redaction import MASK

    for mode in ("succeeded", "failed"):
        outcomes = []
        built, _ = build_executors(
            {"p": lambda ctx, mode=mode: Reporter(ctx, mode)}, ExecutorContext(outcomes.append, 1000)
        )
        run = ClaimedRun(
            run_id=8,
            job_id=1,
            job_name="j",
            task="t",
            args=(),
            kwargs={"token": "s3cr3t-Ω-token"},
            secret_values=("s3cr3t-Ω-token",),
        )
        built["p"].submit(run)
        (outcome,) = outcomes
        assert "s3cr3t" not in repr(outcome), outcome
        assert MASK in outcome.log.text
        if mode == "succeeded":
            assert outcome.result["truncated"] and "exceeds the 1000-byte cap" in outcome.error
        else:
            assert outcome.error == f"login as {MASK} failed" and MASK in outcome.traceback
        built["p"].shutdown(False)
