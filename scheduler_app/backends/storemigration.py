"""Moving APScheduler's job state between the persistent job stores (``migratejobs``).

What moves are the ``job-<pk>`` entries :class:`~scheduler_app.backends.bridge.JobSync`
keeps in the store: trigger, next run time (``None`` while paused) and the fingerprint
kwarg. With them the scheduler started on the new store continues exactly where the old
one stopped: no fire time is lost and none fires twice (runs are unique per (job,
scheduled time, attempt) anyway).

The move is copy, verify, then delete: every entry is written to the destination
(replacing an entry with the same id), read back and compared (count, and per job id,
next run time, trigger, args and kwargs, and the store's own next-run index that the
scheduler uses to find due jobs); only then are the entries removed from the source. If
writing or the check fails, the destination is put back as it was and the source is
left alone. Entries that are not ``job-*`` (not made by scheduler_app) stay where they
are, as do destination entries the source does not have.

Entries are read without APScheduler's ``get_all_jobs()``, which silently *deletes*
entries it cannot unpickle; an unreadable entry stops the move instead, naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp

from scheduler_app.backends import bridge
from scheduler_app.conf import app_settings

PERSISTENT_STORES = ("django", "sqlalchemy", "redis")
JOB_PREFIX = "job-"


class StoreMigrationError(Exception):
    """The move cannot start or did not complete; the message says what was changed."""


@dataclass(frozen=True)
class Entry:
    """One APScheduler job as the comparison sees it."""

    id: str
    name: str
    next_run_time: datetime | None
    trigger: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, job: Any) -> Entry:
        return cls(job.id, job.name, job.next_run_time, str(job.trigger), tuple(job.args), dict(job.kwargs))

    def describe(self) -> str:
        when = self.next_run_time.astimezone(UTC).isoformat() if self.next_run_time else "none (paused)"
        return f"{self.id} {self.name} next run {when}"

    def differences(self, other: Entry) -> list[str]:
        found = []
        for attr in ("id", "next_run_time", "trigger", "args", "kwargs"):
            if getattr(self, attr) != getattr(other, attr):
                found.append(f"{attr} {getattr(other, attr)!r} instead of {getattr(self, attr)!r}")
        return found


@dataclass
class MigrationReport:
    source: str
    destination: str
    dry_run: bool
    entries: list[Entry] = field(default_factory=list)
    #: Ids the destination already had and that were (or would be) replaced.
    replaced: list[str] = field(default_factory=list)
    #: job-* ids only the destination has; left alone.
    destination_only: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would move" if self.dry_run else "moved"
        out = [
            f"{verb} {e.describe()}"
            + (f" (replacing the {self.destination} entry)" if e.id in self.replaced else "")
            for e in self.entries
        ]
        if self.destination_only:
            out.append(
                f"note: {self.destination} also holds {len(self.destination_only)} job(s) that "
                f"{self.source} does not ({', '.join(self.destination_only)}); left alone (the "
                "scheduler drops those whose jobs are gone, paused or disabled)"
            )
        return out

    def summary(self) -> str:
        count = len(self.entries)
        if self.dry_run:
            return (
                f"Dry run: would move {count} job(s) from {self.source} to "
                f"{self.destination}; nothing was changed."
            )
        if not count:
            return f"Nothing to move: the {self.source} job store holds no scheduler_app jobs."
        return (
            f"Moved {count} job(s) from {self.source} to {self.destination} (verified). Now "
            f"run the scheduler with the {self.destination} store: "
            f"SCHEDULER_APP['JOB_STORE'] = {self.destination!r} or runscheduler "
            f"--job-store {self.destination}."
        )


# -- checks -------------------------------------------------------------------------------


def check_store_names(source: str, destination: str) -> None:
    for option, kind in (("--from", source), ("--to", destination)):
        if kind == "memory":
            raise StoreMigrationError(
                f"{option} memory: the memory job store is not persistent (it lives and dies "
                "with one runscheduler process), so there is nothing to move from or to it; "
                f"use one of {', '.join(PERSISTENT_STORES)}"
            )
        if kind not in PERSISTENT_STORES:
            raise StoreMigrationError(
                f"{option} {kind}: unknown job store; use one of {', '.join(PERSISTENT_STORES)}"
            )
    if source == destination:
        raise StoreMigrationError(f"--from and --to are both {source}: nothing to move")


def live_runs(now: datetime | None = None) -> Any:
    """Runs some scheduler is executing right now: ``running`` with a heartbeat younger
    than ``LOST_AFTER`` seconds. There is no node table yet, so this is how a live
    ``runscheduler`` is recognised; an idle one (running nothing) is not seen."""
    from scheduler_app.models import JobRun, RunState

    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=float(app_settings.LOST_AFTER))
    return JobRun.objects.filter(state=RunState.RUNNING, heartbeat_at__gt=cutoff)


def live_scheduler_problem() -> str | None:
    from scheduler_app.backends import cluster as cluster_backend

    live = cluster_backend.live_nodes()
    if live:
        names = ", ".join(f"{n.name} (host {n.host}, pid {n.pid})" for n in live[:10])
        return f"a scheduler is running against this database: live node(s) {names}; stop them first"
    runs = live_runs().select_related("job__tenant").order_by("-heartbeat_at")
    count = runs.count()
    if not count:
        return None
    run = runs.first()
    nodes = sorted(set(runs.values_list("node", flat=True)))
    return (
        f"a scheduler seems to be running against this database: {count} run(s) are running "
        f"with a heartbeat within the last {float(app_settings.LOST_AFTER):g} s (e.g. run "
        f"{run.pk} of {run.job.tenant.slug}/{run.job.name} on node(s) {', '.join(nodes)})"
    )


# -- stores -------------------------------------------------------------------------------


def open_store(kind: str, *, create: bool = False) -> BaseJobStore:
    """A started job store that belongs to a scheduler that is never started. ``create``
    lets the SQLAlchemy store create its table (only when writing to it)."""
    store = bridge.make_job_store(kind)
    scheduler = BackgroundScheduler(timezone=UTC)
    alias = f"migratejobs-{kind}"
    if kind == "sqlalchemy" and not create:
        BaseJobStore.start(store, scheduler, alias)  # without CREATE TABLE
    else:
        store.start(scheduler, alias)
    return store


def close_store(kind: str, store: BaseJobStore) -> None:
    if kind == "django":
        return  # DjangoJobStore.shutdown() closes Django's connection, which is not ours
    with contextlib.suppress(Exception):
        store.shutdown()


@contextlib.contextmanager
def opened(kind: str, *, create: bool = False) -> Iterator[BaseJobStore]:
    store = open_store(kind, create=create)
    try:
        yield store
    finally:
        close_store(kind, store)


def _raw_states(kind: str, store: Any) -> list[tuple[str, bytes]]:
    """(id, pickled state) of every entry, read without APScheduler's deleting reader."""
    if kind == "django":
        from django_apscheduler.models import DjangoJob

        return [(job_id, bytes(state)) for job_id, state in DjangoJob.objects.values_list("id", "job_state")]
    if kind == "sqlalchemy":
        from sqlalchemy import inspect, select

        table = store.jobs_t
        if not inspect(store.engine).has_table(table.name, schema=table.schema):
            return []
        with store.engine.connect() as conn:
            return [(row[0], bytes(row[1])) for row in conn.execute(select(table.c.id, table.c.job_state))]
    if kind == "redis":
        return [
            (k.decode() if isinstance(k, bytes) else k, v)
            for k, v in store.redis.hgetall(store.jobs_key).items()
        ]
    raise StoreMigrationError(f"unknown job store {kind!r}")  # pragma: no cover


def _indexed_times(kind: str, store: Any) -> dict[str, float | None]:
    """The next run time each entry has in the store's index (what the scheduler queries
    to find due jobs), as a UTC timestamp."""
    if kind == "django":
        from django_apscheduler.models import DjangoJob

        return {
            job_id: datetime_to_utc_timestamp(when)
            for job_id, when in DjangoJob.objects.values_list("id", "next_run_time")
        }
    if kind == "sqlalchemy":
        from sqlalchemy import select

        table = store.jobs_t
        with store.engine.connect() as conn:
            return dict(conn.execute(select(table.c.id, table.c.next_run_time)).all())
    scores = store.redis.zrange(store.run_times_key, 0, -1, withscores=True)
    indexed: dict[str, float | None] = dict.fromkeys(
        (k.decode() if isinstance(k, bytes) else k for k in store.redis.hkeys(store.jobs_key)), None
    )
    indexed.update({(k.decode() if isinstance(k, bytes) else k): v for k, v in scores})
    return indexed


def read_jobs(kind: str, store: Any) -> dict[str, Any]:
    """{id: APScheduler job} of the store's scheduler_app (``job-*``) entries, by pk."""
    jobs: dict[str, Any] = {}
    for job_id, state in _raw_states(kind, store):
        if not job_id.startswith(JOB_PREFIX):
            continue
        try:
            jobs[job_id] = store._reconstitute_job(state)
        except Exception as exc:
            raise StoreMigrationError(
                f"the {kind} job store's entry {job_id} cannot be read ({type(exc).__name__}: "
                f"{exc}); nothing was moved"
            ) from None
    return dict(sorted(jobs.items(), key=lambda item: _sort_key(item[0])))


def read_entries(kind: str) -> dict[str, Entry]:
    """{id: Entry} of the store's scheduler_app entries (for tests and tools)."""
    with opened(kind) as store:
        return {job_id: Entry.of(job) for job_id, job in read_jobs(kind, store).items()}


def _sort_key(job_id: str) -> tuple[int, str]:
    suffix = job_id[len(JOB_PREFIX) :]
    return (int(suffix), job_id) if suffix.isdigit() else (1 << 62, job_id)


# -- the move -----------------------------------------------------------------------------


def migrate(
    source: str,
    destination: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Move the scheduler_app entries from ``source`` to ``destination`` (see the module
    doc). Raises StoreMigrationError, saying what was (not) changed."""
    check_store_names(source, destination)
    if not force:
        problem = live_scheduler_problem()
        if problem:
            raise StoreMigrationError(
                f"{problem}; stop every runscheduler first (the job stores must not change "
                "during the move), or pass --force if those nodes are gone"
            )
    report = MigrationReport(source, destination, dry_run)
    with opened(source) as src, opened(destination, create=not dry_run) as dst:
        jobs = read_jobs(source, src)
        before = read_jobs(destination, dst)
        report.entries = [Entry.of(job) for job in jobs.values()]
        report.replaced = [job_id for job_id in jobs if job_id in before]
        report.destination_only = [job_id for job_id in before if job_id not in jobs]
        if dry_run or not jobs:
            return report
        written: list[str] = []
        try:
            for job_id, job in jobs.items():
                if job_id in before:
                    dst.update_job(job)
                else:
                    dst.add_job(job)
                written.append(job_id)
            problems = _verify(destination, dst, report.entries)
        except Exception as exc:
            problems = [f"writing to {destination} failed: {type(exc).__name__}: {exc}"]
        if problems:
            undo = _put_back(dst, written, before)
            raise StoreMigrationError(
                f"the copy in {destination} does not match {source}: {'; '.join(problems[:5])}. "
                f"{undo} {source} was left unchanged."
            )
        if progress:
            progress(f"verified {len(jobs)} job(s) in {destination}; removing them from {source}")
        failed = []
        for job_id in jobs:
            try:
                src.remove_job(job_id)
            except JobLookupError:
                pass
            except Exception as exc:
                failed.append(f"{job_id} ({type(exc).__name__}: {exc})")
        if failed:
            raise StoreMigrationError(
                f"copied and verified all {len(jobs)} job(s) in {destination}, but could not "
                f"remove {', '.join(failed)} from {source}; switch the scheduler to "
                f"{destination} and remove them from {source} by hand (or run migratejobs again)"
            )
    return report


def _verify(kind: str, store: Any, expected: list[Entry]) -> list[str]:
    stored = read_jobs(kind, store)
    found = {job_id: Entry.of(job) for job_id, job in stored.items()}
    problems = []
    present = [e for e in expected if e.id in found]
    if len(present) != len(expected):
        missing = [e.id for e in expected if e.id not in found]
        problems.append(f"{len(present)} of {len(expected)} job(s) arrived (missing: {', '.join(missing)})")
    indexed = _indexed_times(kind, store)
    for entry in present:
        differences = entry.differences(found[entry.id])
        if differences:
            problems.append(f"{entry.id}: {', '.join(differences)}")
            continue
        want = datetime_to_utc_timestamp(entry.next_run_time)
        got = indexed.get(entry.id)
        if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-3):
            problems.append(f"{entry.id}: the store's next-run index says {got!r}, not {want!r}")
    return problems


def _put_back(store: Any, written: list[str], before: dict[str, Any]) -> str:
    """Undo what was written to the destination; a sentence saying how that went."""
    failed = []
    for job_id in written:
        try:
            if job_id in before:
                store.update_job(before[job_id])
            else:
                store.remove_job(job_id)
        except Exception as exc:
            failed.append(f"{job_id} ({exc})")
    if failed:
        return f"Could not put the destination back for {', '.join(failed)}."
    return "The destination was put back as it was."
