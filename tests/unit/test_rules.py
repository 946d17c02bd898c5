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


@pytest.mark.parametrize(
    ("attempt", "factor", "cap", "expected"),
    [
        (1, 3, 100, 10.0),
        (2, 3, 100, 30.0),
        (3, 3, 100, 90.0),
        (4, 3, 100, 100.0),
        (2, 1.5, 100, 15.0),
        (3, 1.5, 100, 22.5),
        (4, 1.5, 30, 30.0),
        (5, 1, 100, 10.0),
        (0, 3, 100, 10.0),  # no attempt before the first: no growth, never a fraction
    ],
)
def test_retry_delay_with_other_factors(attempt, factor, cap, expected):
    delay = rules.retry_delay(attempt, 10, factor, cap)
    assert delay == expected and isinstance(delay, float)


def test_retry_delay_cap_applies_exactly_at_the_cap():
    assert rules.retry_delay(2, 10, 3, 30) == 30.0
    assert rules.retry_delay(2, 10, 3, 29.5) == 29.5


class TestGraceBoundary:
    US = timedelta(microseconds=1)

    @pytest.mark.parametrize("policy", ["skip", "coalesce", "run_all"])
    def test_exactly_grace_late_is_on_time(self, policy):
        plan = rules.plan_fires([ago(30)], NOW, policy, 30, 100)
        assert plan == rules.FirePlan(run=(ago(30),), skipped=())

    def test_one_microsecond_past_grace_is_missed(self):
        late = NOW - timedelta(seconds=30) - self.US
        plan = rules.plan_fires([late], NOW, "skip", 30, 100)
        assert plan.run == () and plan.skipped == (
            (late, "missed by more than the 30 s grace period (misfire policy: skip)"),
        )

    def test_fractional_grace(self):
        assert rules.plan_fires([ago(1.5)], NOW, "skip", 1.5, 100).run == (ago(1.5),)
        assert rules.plan_fires([ago(1.5)], NOW, "skip", 1.25, 100).skipped[0][1] == (
            "missed by more than the 1.25 s grace period (misfire policy: skip)"
        )

    def test_coalesce_of_a_single_missed_time_runs_it(self):
        plan = rules.plan_fires([ago(300)], NOW, "coalesce", 30, 100)
        assert plan == rules.FirePlan(run=(ago(300),), skipped=())

    def test_coalesce_reason_names_the_run_kept(self):
        plan = rules.plan_fires([ago(300), ago(200)], NOW, "coalesce", 30, 100)
        assert plan.skipped == (
            (ago(300), f"coalesced into the run for {ago(200).isoformat()} (misfire policy: coalesce)"),
        )

    def test_run_all_at_the_cap_drops_nothing(self):
        missed = [ago(100 + i) for i in range(4)]
        plan = rules.plan_fires([*missed, ago(1)], NOW, "run_all", 30, 4)
        assert plan == rules.FirePlan(run=(*sorted(missed), ago(1)), skipped=(), capped=0)

    def test_run_all_over_the_cap_keeps_on_time_runs(self):
        missed = [ago(100 + i) for i in range(5)]
        plan = rules.plan_fires([*missed, ago(1)], NOW, "run_all", 30, 4)
        assert plan.run == (*sorted(missed)[1:], ago(1)) and plan.capped == 1
        assert plan.skipped == ((ago(104), "over the cap of 4 missed runs (misfire policy: run_all)"),)

    def test_skip_with_nothing_on_time(self):
        assert rules.plan_fires([ago(100), ago(50)], NOW, "skip", 30, 100).run == ()

    def test_empty(self):
        assert rules.plan_fires([], NOW, "skip", 30, 100) == rules.FirePlan(run=(), skipped=())


@pytest.mark.parametrize(
    ("running", "limit", "action"),
    [(0, 2, "start"), (1, 2, "start"), (2, 2, "queue"), (3, 2, "queue")],
)
def test_overlap_at_the_limit(running, limit, action):
    assert rules.overlap_action(running, limit, "queue") == action


@pytest.mark.parametrize(
    ("condition", "state", "final", "met"),
    [
        ("success", "succeeded", False, True),
        ("failure", "succeeded", True, False),
        ("failure", "lost", True, True),
        ("completion", "succeeded", False, True),
        ("completion", "timed_out", False, False),
        ("unknown", "succeeded", True, False),
        ("unknown", "failed", True, False),
    ],
)
def test_condition_met_other_ends(condition, state, final, met):
    assert rules.condition_met(condition, state, final) is met


def test_should_retry_boundaries():
    assert rules.should_retry(0, 1) and not rules.should_retry(1, 1) and not rules.should_retry(4, 3)


S, F, K = rules.END_SUCCESS, rules.END_FAILED, rules.END_SKIPPED


@pytest.mark.parametrize(
    ("rule", "ends", "fire", "close"),
    [
        ("all_done", {1: K, 2: S}, True, True),  # a skipped upstream has ended
        ("all_done", {1: K}, False, False),
        ("none_failed", {1: K, 2: S}, True, True),  # skipped is not a failure
        ("none_failed", {1: K, 2: K}, True, True),
        ("none_failed", {1: K, 2: F}, False, True),
        ("one_success", {1: K}, False, False),  # skipped is no success
        ("one_success", {1: K, 2: S}, True, True),
        ("one_success", {1: K, 2: K}, False, True),  # the round closes, never fired
        ("one_failed", {1: K, 2: K}, False, True),  # skipped is no failure
        ("one_failed", {1: K, 2: F}, True, True),
    ],
    ids=lambda v: str(v),
)
def test_join_decision_counts_a_skipped_upstream_as_an_end(rule, ends, fire, close):
    assert rules.join_decision(rule, ends, {1, 2}, fired=False) == rules.JoinDecision(fire=fire, close=close)


# -- fires behind a backlog (issue 12: skipped at enqueue when they cannot start in time)


@pytest.mark.parametrize(
    ("ahead", "pace", "wait"),
    [(200, 100.0, 2.0), (0, 50.0, 0.0), (-3, 50.0, 0.0), (10, 0.0, None), (10, -1.0, None)],
)
def test_backlog_wait_is_the_queue_ahead_over_the_pace_and_unknown_without_a_pace(ahead, pace, wait):
    assert rules.backlog_wait(ahead, pace) == wait


@pytest.mark.parametrize(
    ("policy", "grace", "wait", "skipped"),
    [
        ("skip", 2, 2.01, True),
        ("skip", 2, 2.0, False),  # exactly the grace still starts in time (as at claim)
        ("skip", 2, None, False),  # no pace: not judged
        ("coalesce", 2, 100.0, False),  # the newest fire is the one coalesce keeps
        ("run_all", 2, 100.0, False),
    ],
)
def test_only_skip_fires_whose_wait_exceeds_the_grace_are_skipped_by_the_backlog(
    policy, grace, wait, skipped
):
    assert rules.skipped_by_backlog(policy, grace, wait) is skipped
