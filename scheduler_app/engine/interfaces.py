"""The engine's interfaces and the values that cross them. Pure Python: no Django.

The engine (APScheduler bridge executor, worker loop, executors) talks to storage only
through :class:`RunStore`; ``scheduler_app.backends`` implements it on the Django ORM.
Each method documents the rules an implementation must keep, because the cluster
features rely on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Fire:
    """A trigger fired for ``job_id``: every fire time APScheduler computed as due
    (several after downtime or a pause, oldest first), and when we noticed."""

    job_id: int
    run_times: tuple[datetime, ...]
    noticed_at: datetime


@dataclass(frozen=True)
class ClaimedRun:
    """A run this node claimed and must execute (state is already ``running``)."""

    run_id: int
    job_id: int
    job_name: str
    task: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(repr=False)  # may hold decrypted secrets
    executor: str = "thread"
    attempt: int = 1
    scheduled_for: datetime | None = None
    timeout: float | None = None
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    # Set when the run's inputs could not be prepared (e.g. a secret that no key
    # decrypts): the run is failed with this message instead of executed.
    setup_error: str | None = None
    # The revealed secret values (any JSON value) to mask in whatever the run reports
    # (result, error, traceback) and prints; see scheduler_app.engine.redaction.
    secret_values: tuple[Any, ...] = field(default=(), repr=False)
    # The claim that handed it out: "<node incarnation>:<claim number>" (fencing).
    claim_token: str = ""


@dataclass(frozen=True)
class RunLog:
    """What a run logged, as stored (:mod:`scheduler_app.engine.runlog` captures it,
    secrets masked, capped): ``text`` holds the kept lines, the marker
    ``… N earlier lines dropped …`` first when lines were dropped; ``lines_total``
    counts every line written, so the kept lines are numbers ``lines_dropped`` to
    ``lines_total - 1`` (what ``?log_offset=`` counts in)."""

    text: str = ""
    lines_dropped: int = 0
    lines_total: int = 0


@dataclass(frozen=True)
class Outcome:
    """How an execution ended. ``state`` is one of succeeded, failed, timed_out,
    cancelled, interrupted, or ``released`` (never started: back to the queue).
    ``started_at`` is when it really started (after any wait in the executor)."""

    run_id: int
    state: str
    started_at: datetime
    finished_at: datetime
    result: Any = None
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    cpu_seconds: float | None = None
    peak_memory_mb: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The claim token of the run it reports; "" for judgements made by the store itself.
    claim_token: str = ""
    # What the run logged (None: nothing captured, e.g. it never started).
    log: RunLog | None = None

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Capacity:
    """Free execution slots on a node, per executor, and overall."""

    per_executor: Mapping[str, int]
    total: int


@dataclass(frozen=True)
class RecoveryReport:
    lost: int = 0
    requeued: int = 0


class RunStore(Protocol):
    """Where runs live. Implementations must keep these rules:

    * ``enqueue`` is idempotent on (job, scheduled time, attempt): calling it twice
      with the same fire never creates a second run. It applies the job's misfire
      policy to fire times older than the job's grace period, recording the fire
      times it does not run as ``skipped`` runs.
    * ``claim`` takes only ``queued`` runs whose ``not_before`` has passed, highest
      priority first, then earliest ``not_before``; two concurrent callers never get
      the same run (``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it).
      It never hands out more runs per executor than ``capacity`` allows, and keeps
      each job's ``max_instances`` with its overlap policy: ``skip`` records the new run
      as skipped, ``queue`` leaves it queued, ``replace`` asks for the oldest running
      run to be stopped (returned in ``ClaimResult.stop``) and starts the new one.
    * ``record`` writes outcomes exactly once per run (a run already finished is left
      alone, and an outcome whose claim token is not the run's current one is refused
      and logged: fencing), then enqueues retries (attempt + 1 after the job's backoff) and
      dependents whose conditions are met, each at most once; it returns how many
      runs it queued, so the caller knows whether to claim again. The outcomes' logs
      are written in the same transaction, in one statement per batch.
    * ``heartbeat`` marks this node's running runs alive and returns the ids of those
      an operator asked to stop.
    * ``save_logs`` writes the logs of runs executing on this node so far (live), only
      for runs still ``running`` on it with its current incarnation, in a bounded
      number of statements whatever the number of lines; a log never replaces one with
      more lines (the outcome's final log may have been written meanwhile).
    * ``claim`` honours routing: a broadcast copy only on its node, a job routed by
      tags only on a node having all of them; the job's running runs are counted after
      its row is locked, in a statement of their own (READ COMMITTED).
    * ``claim`` honours rate limits (job, group, tenant: at most N starts per sliding
      period, see :mod:`scheduler_app.engine.throttle`) and concurrency keys (at most
      the job's limit of runs of the tenant's jobs with the key running, on any node),
      after ``max_instances``. A run over a limit is never dropped silently: with the
      job's throttle policy ``wait`` it stays queued with ``wait_reason`` set and, for a
      rate, ``not_before`` moved to the next free slot; with ``skip`` it is recorded as
      skipped with the reason. A run with a ``wait_reason`` is not judged a misfire, and
      lateness counts from its ``not_before`` too. Scopes shared by several jobs are
      serialised across nodes (an advisory lock per scope, taken after the job rows'
      locks, in a fixed order) and counted after the lock; ``wait_reason`` is cleared
      when the run starts.
    * ``recover`` runs at start-up: runs left ``running`` by this node's previous
      life become ``lost`` (retried per policy); ``interrupted`` runs are re-queued.
    * ``reap_lost`` marks ``running`` runs of nodes that are not live (by the node
      registry) and whose heartbeat is older than ``lost_after`` seconds as lost
      (except ``exclude``, the caller's own live runs), retries them per policy, and
      re-queues interrupted runs of any node. It and ``recover`` also feed the skips
      still marked for their downstream joins (a claim's or a shed's skip whose own
      follow-up never ran): each exactly once.
    * A skip written outside the transaction that feeds the joins (the claim's, the
      shed's) is marked pending in the statement that writes it; whoever feeds it
      clears the mark in the same transaction.
    """

    def enqueue(self, fires: Sequence[Fire]) -> int: ...

    def claim(self, node: str, capacity: Capacity, now: datetime) -> ClaimResult: ...

    def record(self, outcomes: Sequence[Outcome]) -> int: ...

    def heartbeat(self, node: str, run_ids: Sequence[int], now: datetime) -> list[int]: ...

    def save_logs(self, node: str, logs: Mapping[int, RunLog], now: datetime) -> None: ...

    def recover(self, node: str, now: datetime) -> RecoveryReport: ...

    def reap_lost(self, now: datetime, lost_after: float, exclude: Sequence[int] = ()) -> int: ...


@dataclass(frozen=True)
class ClaimResult:
    runs: tuple[ClaimedRun, ...] = ()
    # Running runs (anywhere) that must be stopped because a newer run replaced them.
    stop: tuple[int, ...] = ()
    # True when the claim was cut short by its batch size: claim again at once.
    more: bool = False
    # Due runs it saw but left queued (no room, waiting for an overlap slot or a
    # concurrency key).
    left_queued: int = 0
    # The executors of those runs (a claim that left none of an executor's runs found
    # nothing more for it).
    left_of: frozenset[str] = frozenset()


class Executor(Protocol):
    """Runs claimed runs. ``submit`` never blocks for long; the outcome is delivered
    through the callback given at construction.

    Optional: an ``on_release`` attribute (a callable taking nothing), which the node
    sets and the executor calls once a run's slot is free again. An executor that
    reports an outcome before it frees the slot should have it: without it a freed slot
    is claimed for at the next wake-up or poll tick (``POLL_INTERVAL``), not at once.
    """

    name: str

    def free_slots(self) -> int: ...

    def submit(self, run: ClaimedRun) -> None: ...

    def stop(self, run_id: int, state: str, reason: str) -> bool: ...

    def running_ids(self) -> list[int]: ...

    def shutdown(self, wait: bool) -> None: ...
