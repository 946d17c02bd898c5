"""Run-queue rules as pure functions: misfires, retries, overlap and joins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

SKIP = "skip"
COALESCE = "coalesce"
RUN_ALL = "run_all"


@dataclass(frozen=True)
class FirePlan:
    run: tuple[datetime, ...]
    skipped: tuple[tuple[datetime, str], ...]
    capped: int = 0  # run_all fire times dropped by the cap


def plan_fires(
    run_times: Sequence[datetime],
    now: datetime,
    policy: str,
    grace_seconds: float,
    run_all_cap: int,
) -> FirePlan:
    """Which fire times to run and which to record as skipped.

    A fire time is *missed* when it is more than ``grace_seconds`` in the past. Fire
    times within the grace period always run. Missed ones: ``skip`` runs none,
    ``coalesce`` runs once, for the latest due time (missed or not),
    ``run_all`` runs each, at most ``run_all_cap`` (the most recent ones)."""
    ordered = sorted(set(run_times))
    grace = timedelta(seconds=grace_seconds)
    on_time = [t for t in ordered if now - t <= grace]
    missed = [t for t in ordered if now - t > grace]
    if not missed:
        return FirePlan(run=tuple(on_time), skipped=())
    if policy == SKIP:
        reason = f"missed by more than the {grace_seconds:g} s grace period (misfire policy: skip)"
        return FirePlan(run=tuple(on_time), skipped=tuple((t, reason) for t in missed))
    if policy == COALESCE:
        latest = ordered[-1]
        reason = f"coalesced into the run for {latest.isoformat()} (misfire policy: coalesce)"
        return FirePlan(run=(latest,), skipped=tuple((t, reason) for t in ordered[:-1]))
    # run_all
    if len(missed) > run_all_cap:
        dropped = missed[: len(missed) - run_all_cap]
        kept = missed[len(missed) - run_all_cap :]
        reason = f"over the cap of {run_all_cap} missed runs (misfire policy: run_all)"
        return FirePlan(
            run=tuple(kept + on_time),
            skipped=tuple((t, reason) for t in dropped),
            capped=len(dropped),
        )
    return FirePlan(run=tuple(missed + on_time), skipped=())


def backlog_wait(ahead: int, drain_per_second: float) -> float | None:
    """Seconds a run joining the queue now waits before a node claims it, judged from
    the due runs queued ahead of it (higher or equal priority, due earlier) and how many
    runs the cluster finished per second lately; ``None`` when that cannot be judged
    (nothing finished lately: an idle or stalled cluster says nothing about its pace)."""
    if drain_per_second <= 0:
        return None
    return max(ahead, 0) / drain_per_second


def skipped_by_backlog(policy: str, grace_seconds: float, wait: float | None) -> bool:
    """Whether a new fire would be skipped anyway when claimed: its job's misfire policy
    is ``skip`` and the queue ahead of it cannot be drained within its grace period.
    ``coalesce`` keeps the newest fire (this one) and ``run_all`` runs every fire, so
    their fires are always queued."""
    return policy == SKIP and wait is not None and wait > grace_seconds


def retry_delay(attempt: int, backoff: float, factor: float, cap: float) -> float:
    """Seconds before attempt ``attempt + 1`` after attempt ``attempt`` failed."""
    return float(min(backoff * factor ** max(attempt - 1, 0), cap))


def should_retry(attempt: int, max_attempts: int) -> bool:
    return attempt < max_attempts


OVERLAP_SKIP = "skip"
OVERLAP_QUEUE = "queue"
OVERLAP_REPLACE = "replace"


def overlap_action(running: int, max_instances: int, policy: str) -> str:
    """``start`` when under the limit, else the policy: skip | queue | replace."""
    if running < max_instances:
        return "start"
    return policy


def condition_met(condition: str, state: str, is_final: bool) -> bool:
    """Whether an upstream run's end satisfies a dependency edge's condition.

    ``success`` needs a success; ``failure`` needs a failure that will not be retried;
    ``completion`` needs a final end of either kind."""
    if condition == "success":
        return state == "succeeded"
    if condition == "failure":
        return state != "succeeded" and is_final
    if condition == "completion":
        return state == "succeeded" or is_final
    return False


# -- trigger rules (joins) -----------------------------------------------------------------

ALL_SUCCESS = "all_success"
ALL_DONE = "all_done"
NONE_FAILED = "none_failed"
ONE_SUCCESS = "one_success"
ONE_FAILED = "one_failed"
TRIGGER_RULES = (ALL_SUCCESS, ALL_DONE, NONE_FAILED, ONE_SUCCESS, ONE_FAILED)


@dataclass(frozen=True)
class JoinDecision:
    fire: bool  # queue the downstream run now
    close: bool  # the round is over (every upstream has ended in it)


#: How an upstream run ended, as a round of a join counts it.
END_SUCCESS = "success"
END_FAILED = "failed"  # a failure no retry follows
END_SKIPPED = "skipped"  # never started (misfire, overlap or limit policy: skip)


def join_decision(rule: str, ends: dict[int, str], upstreams: set[int], *, fired: bool) -> JoinDecision:
    """A round of a join under a trigger rule other than ``all_success``.

    ``ends``: upstream job id -> how its end in this round came (``END_SUCCESS``,
    ``END_FAILED``: a failure counts only once final, no retry follows;
    ``END_SKIPPED``); ``upstreams``: the downstream's upstream jobs now; ``fired``: the
    round already queued its downstream run. A round holds at most one end per upstream
    and is over when every upstream has ended in it; ``one_*`` rules fire at the first
    qualifying end and the round then absorbs the other upstreams' ends of that round
    without firing again.

    As in Airflow a skipped upstream has ended: ``all_done`` counts it, ``none_failed``
    accepts it (no upstream failed), ``one_success`` and ``one_failed`` do not fire on
    it (it is neither)."""
    complete = upstreams <= set(ends)
    if fired:
        return JoinDecision(fire=False, close=complete)
    if rule == ONE_SUCCESS:
        fire = END_SUCCESS in ends.values()
    elif rule == ONE_FAILED:
        fire = END_FAILED in ends.values()
    elif rule == ALL_DONE:
        fire = complete
    elif rule == NONE_FAILED:
        fire = complete and END_FAILED not in ends.values()
    else:
        raise ValueError(f"{rule!r} is not a trigger rule for rounds")
    return JoinDecision(fire=fire, close=complete)
