"""Run-queue rules as pure functions (no Django)."""

from datetime import UTC, datetime, timedelta

import pytest

from scheduler_app.engine import rules

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds):
    return NOW - timedelta(seconds=seconds)


class TestPlanFires:
    def test_on_time_runs(self):
        plan = rules.plan_fires([ago(1)], NOW, "skip", 30, 100)
        assert plan.run == (ago(1),) and plan.skipped == ()

    def test_skip_drops_missed_keeps_on_time(self):
        plan = rules.plan_fires([ago(300), ago(200), ago(5)], NOW, "skip", 30, 100)
        assert plan.run == (ago(5),)
        assert [t for t, _ in plan.skipped] == [ago(300), ago(200)]
        assert "misfire policy: skip" in plan.skipped[0][1]

    def test_coalesce_runs_latest_missed_once(self):
        plan = rules.plan_fires([ago(300), ago(200), ago(100)], NOW, "coalesce", 30, 100)
        assert plan.run == (ago(100),)
        assert [t for t, _ in plan.skipped] == [ago(300), ago(200)]

    def test_coalesce_into_on_time_run(self):
        plan = rules.plan_fires([ago(300), ago(29), ago(10)], NOW, "coalesce", 30, 100)
        assert plan.run == (ago(10),)
        assert [t for t, _ in plan.skipped] == [ago(300), ago(29)]
        assert "coalesced into" in plan.skipped[0][1]

    def test_run_all_with_cap(self):
        missed = [ago(100 + i) for i in range(10)]
        plan = rules.plan_fires(missed, NOW, "run_all", 30, 4)
        assert plan.run == tuple(sorted(missed)[-4:])
        assert plan.capped == 6 and len(plan.skipped) == 6
        assert "cap of 4" in plan.skipped[0][1]

    def test_duplicates_collapse(self):
        assert rules.plan_fires([ago(1), ago(1)], NOW, "run_all", 30, 10).run == (ago(1),)


@pytest.mark.parametrize(("attempt", "expected"), [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0)])
def test_retry_delay_grows_and_is_capped(attempt, expected):
    assert rules.retry_delay(attempt, 10, 2, 60) == expected


def test_should_retry():
    assert rules.should_retry(1, 3) and rules.should_retry(2, 3) and not rules.should_retry(3, 3)


@pytest.mark.parametrize(
    ("running", "policy", "action"),
    [(0, "skip", "start"), (1, "skip", "skip"), (1, "queue", "queue"), (1, "replace", "replace")],
)
def test_overlap(running, policy, action):
    assert rules.overlap_action(running, 1, policy) == action


@pytest.mark.parametrize(
    ("condition", "state", "final", "met"),
    [
        ("success", "succeeded", True, True),
        ("success", "failed", True, False),
        ("failure", "failed", False, False),  # a retry will follow
        ("failure", "failed", True, True),
        ("failure", "timed_out", True, True),
        ("completion", "succeeded", True, True),
        ("completion", "failed", False, False),
        ("completion", "lost", True, True),
    ],
)
def test_condition_met(condition, state, final, met):
    assert rules.condition_met(condition, state, final) is met
