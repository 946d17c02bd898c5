"""Which alerts a batch of recorded runs causes, and the outbox rows for them.

Deduplication: failures of one job under one rule form one *incident* (an
:class:`~scheduler_app.models.AlertIncident` row, at most one open per rule, job and
kind). While it is open, further failures only count as suppressed, except one
reminder per ``throttle_seconds``; the job's next success closes it and, when the rule
asks for ``recovered``, sends that."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from scheduler_app.alerts import payloads
from scheduler_app.models import (
    FAILURE_STATES,
    AlertIncident,
    AlertOutbox,
    AlertRule,
    ConfigVersion,
    Job,
    JobRun,
    RunState,
)

logger = logging.getLogger(__name__)

#: Incident kinds: every failure-like event of a job shares the "failure" incident.
FAILURE = "failure"
FAILURE_EVENTS = {"failed", "retrying", "timed_out", "lost"}


def run_events(run: JobRun) -> list[str]:
    """The events a recorded run stands for, most specific first."""
    state = run.state
    if state in FAILURE_STATES:  # the one definition the dashboard and job list count by
        events = [] if state == RunState.FAILED else [str(state)]
        events.append("failed" if run.is_final else "retrying")
        return events
    if state in (RunState.CANCELLED, RunState.INTERRUPTED, RunState.SKIPPED):
        return [str(state)]
    return []


#: Where the current configuration version comes from. A scheduler node's service points
#: it at the version its definition sync last read (every 0.25 s), so evaluating a batch
#: of outcomes reads no rule at all while nothing changed; elsewhere one small query.
config_version: Callable[[], int] = ConfigVersion.current

#: The enabled rules (with tenant, scope and channels) are reused while the
#: configuration version stays the same (the alert services bump it on every change of
#: a rule, a channel or a mute), and read again at least this often (changes made beside
#: the services).
RULES_CACHE_SECONDS = 5.0
#: More enabled rules than this are not kept (read per batch, for their tenants only).
RULES_CACHE_MAX = 5000

_rules_lock = threading.Lock()
#: (database alias, configuration version) -> (monotonic read time, rules by tenant id)
_rules_cache: dict[tuple[str, int], tuple[float, dict[int, list[AlertRule]]]] = {}


def forget_rules() -> None:
    """Drop the reused rules (tests; a process that changed rules beside the services)."""
    with _rules_lock:
        _rules_cache.clear()


def _read_rules(tenant_ids: set[int] | None) -> list[AlertRule]:
    rules = AlertRule.objects.active()
    if tenant_ids is not None:
        rules = rules.filter(tenant_id__in=tenant_ids)
    return list(
        rules.select_related("tenant", "scope_job", "scope_group")
        .prefetch_related("channels")
        .order_by("pk")[: RULES_CACHE_MAX + 1 if tenant_ids is None else None]
    )


def rules_for(tenant_ids: Iterable[int]) -> list[AlertRule]:
    """The enabled rules of these tenants with their channels: reused while the
    configuration version is unchanged (no query on a scheduler node, one elsewhere),
    else two queries."""
    ids = set(tenant_ids)
    if not ids:
        return []
    from django.db import connection

    key = (connection.alias, config_version())
    clock = time.monotonic()
    with _rules_lock:
        hit = _rules_cache.get(key)
    if hit is None or clock - hit[0] >= RULES_CACHE_SECONDS:
        everything = _read_rules(None)
        if len(everything) > RULES_CACHE_MAX:
            return _read_rules(ids)
        by_tenant: dict[int, list[AlertRule]] = {}
        for rule in everything:
            by_tenant.setdefault(rule.tenant_id, []).append(rule)
        with _rules_lock:
            _rules_cache.clear()  # one version per process is enough
            _rules_cache[key] = (clock, by_tenant)
    else:
        by_tenant = hit[1]
    return [rule for tenant_id in sorted(ids) for rule in by_tenant.get(tenant_id, ())]


def applies(rule: AlertRule, job: Job) -> bool:
    if rule.tenant_id != job.tenant_id:
        return False
    if rule.scope_job_id is not None:
        return rule.scope_job_id == job.pk
    if rule.scope_group_id is not None:
        return rule.scope_group_id == job.group_id
    return True


def _muted(rule: AlertRule, now: datetime, job: Job | None = None) -> bool:
    """Whether the rule, or (per job) ``job``, is muted at ``now``."""
    if rule.muted_until is not None and rule.muted_until > now:
        return True
    return job is not None and job.alerts_muted_until is not None and job.alerts_muted_until > now


#: How many recent successful runs of a job the ``slow`` p95 is taken over, and how many
#: it needs before a factor applies (a job's first runs set its baseline).
SLOW_SAMPLE = 50
SLOW_MIN_SAMPLES = 5


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


def recent_p95(job_ids: Iterable[int], exclude: Iterable[int]) -> dict[int, float]:
    """The p95 duration of each job's last ``SLOW_SAMPLE`` successful runs (other than
    ``exclude``), for jobs with at least ``SLOW_MIN_SAMPLES`` of them: one query per job,
    only for jobs under a rule with a ``slow_factor``."""
    skip = set(exclude)
    result: dict[int, float] = {}
    for job_id in set(job_ids):
        durations = [
            d
            for pk, d in JobRun.objects.filter(
                job_id=job_id, state=RunState.SUCCEEDED, duration__isnull=False
            )
            .order_by("-finished_at", "-id")
            .values_list("pk", "duration")[: SLOW_SAMPLE + len(skip)]
            if pk not in skip
        ][:SLOW_SAMPLE]
        if len(durations) >= SLOW_MIN_SAMPLES:
            value = p95(durations)
            if value is not None:
                result[job_id] = value
    return result


def slow_threshold(rule: AlertRule, job_id: int, baselines: dict[int, float]) -> float | None:
    """The duration above which a run of the job is slow under ``rule`` (the lower of
    the absolute threshold and factor × p95), or None."""
    limits = []
    if rule.slow_after_seconds:
        limits.append(float(rule.slow_after_seconds))
    if rule.slow_factor and job_id in baselines:
        limits.append(float(rule.slow_factor) * baselines[job_id])
    return min(limits) if limits else None


def on_outcome(runs: Sequence[JobRun], now: datetime | None = None) -> int:
    """Write the outbox rows the recorded ``runs`` cause, in the current transaction
    (the one recording them). Each run must have its ``job`` loaded. Returns how many
    alerts were written. Bounded whatever the batch size: the rules come from
    :func:`rules_for` (no query while the configuration is unchanged on a node), then
    one query for open incidents, one insert of the incidents the batch opens (its jobs'
    first failures: :func:`open_incidents_at_once`), one bulk insert of the alerts, one
    update of the suppressed counts and one closing the incidents the batch's successes
    end."""
    if not runs:
        return 0
    now = now or timezone.now()
    rules = rules_for({r.tenant_id for r in runs})
    if not rules:
        return 0
    _load_jobs(runs)
    pairs: list[tuple[AlertRule, JobRun]] = [
        (rule, run) for run in runs for rule in rules if applies(rule, run.job)
    ]
    if not pairs:
        return 0
    open_incidents = {
        (i.rule_id, i.job_id, i.kind): i
        for i in AlertIncident.objects.filter(
            rule_id__in={rule.pk for rule, _ in pairs},
            job_id__in={run.job_id for _, run in pairs},
            closed_at__isnull=True,
        )
    }
    baselines = recent_p95(
        {
            run.job_id
            for rule, run in pairs
            if run.state == RunState.SUCCEEDED and rule.slow_factor and "slow" in rule.events
        },
        exclude=[run.pk for run in runs],
    )
    # The alerts in order, each with the incidents this batch opens that it depends on
    # (written only if one of them is: see open_incidents_at_once), or None.
    written: list[tuple[list[AlertIncident] | None, list[AlertOutbox]]] = []
    opening: list[AlertIncident] = []
    suppressed: Counter[int] = Counter()
    closed: list[int] = []
    for rule, run in pairs:
        if run.state == RunState.SUCCEEDED:
            written += _on_success(rule, run, now, open_incidents, baselines, closed)
            continue
        events = [e for e in run_events(run) if e in rule.events]
        if not events or _muted(rule, now, run.job):
            continue
        event = events[0]
        kind = FAILURE if event in FAILURE_EVENTS else event
        key = (rule.pk, run.job_id, kind)
        incident = open_incidents.get(key)
        if incident is None:
            # A first failure: the incident is opened with the batch's others, below.
            incident = AlertIncident(rule=rule, job=run.job, kind=kind, opened_at=now, last_alert_at=now)
            open_incidents[key] = incident
            opening.append(incident)
            written.append(([incident], outbox_rows(rule, event, run.job, run, now)))
            continue
        if incident.pk is None:  # opened by this batch: a second failure of the job in it
            incident.suppressed += 1
            continue
        if _open_or_remind(rule, run.job, kind, now, open_incidents, suppressed, closed):
            written.append((None, outbox_rows(rule, event, run.job, run, now)))
    count_suppressed(suppressed)
    if closed:  # before opening: a job that recovered and failed again in the batch
        AlertIncident.objects.filter(pk__in=closed).update(closed_at=now)
    if opening:
        open_incidents_at_once(opening)
    rows = [
        row
        for needs, alerts in written
        if needs is None or any(i.pk is not None for i in needs)
        for row in alerts
    ]
    if rows:
        AlertOutbox.objects.bulk_create(rows)
        announce()
    return len(rows)


#: Set when this process wrote alerts (or, on PostgreSQL, when the delivery loop's
#: LISTEN connection hears that any process did): the loop sends them at once.
delivery_wanted = threading.Event()

#: The PostgreSQL notification channel of new outbox rows.
NOTIFY_CHANNEL = "scheduler_app_alerts"


def wake_delivery() -> None:
    delivery_wanted.set()


def announce() -> None:
    """Call after writing outbox rows, in their transaction: this process's delivery
    loop is woken when the transaction commits, and on PostgreSQL a NOTIFY (sent by the
    server on commit only, so never for rows that were rolled back) wakes every node's."""
    from django.db import connection

    transaction.on_commit(wake_delivery)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])


def _load_jobs(runs: Sequence[JobRun]) -> None:
    """Attach the jobs (with their groups) the runs lack, in one query."""
    missing = {r.job_id for r in runs if not JobRun.job.is_cached(r)}
    if missing:
        jobs = Job.objects.select_related("group").in_bulk(missing)
        for run in runs:
            if run.job_id in jobs and not JobRun.job.is_cached(run):
                run.job = jobs[run.job_id]


def _on_success(
    rule: AlertRule,
    run: JobRun,
    now: datetime,
    open_incidents: dict[tuple[int, int, str], AlertIncident],
    baselines: dict[int, float],
    closed: list[int],
) -> list[tuple[list[AlertIncident] | None, list[AlertOutbox]]]:
    """The alerts of a success under ``rule``, each with the incidents opened by this
    batch it depends on (see :func:`on_outcome`); the incidents it ends are added to
    ``closed`` (the caller closes them in one statement)."""
    written: list[tuple[list[AlertIncident] | None, list[AlertOutbox]]] = []
    rows: list[AlertOutbox] = []
    mine = [i for key, i in open_incidents.items() if key[0] == rule.pk and key[1] == run.job_id]
    if mine:
        closed.extend(i.pk for i in mine if i.pk is not None)
        for incident in mine:
            if incident.pk is None:  # opened by this batch's earlier failure: closed after its insert
                incident.closed_at = now
        for incident in mine:
            open_incidents.pop((incident.rule_id, incident.job_id, incident.kind), None)
        if "recovered" in rule.events and not _muted(rule, now, run.job):
            # Only the batch's own incidents ended: the recovery is alerted if one of them
            # was written (not if another node had opened it: that node alerted the failure).
            opened_here = all(i.pk is None for i in mine)
            written.append((mine if opened_here else None, outbox_rows(rule, "recovered", run.job, run, now)))
    limit = slow_threshold(rule, run.job_id, baselines) if "slow" in rule.events else None
    if (
        limit is not None
        and (run.duration or 0.0) > limit
        and not _muted(rule, now, run.job)
        and _open_or_remind(rule, run.job, "slow", now, open_incidents, closing=closed)
    ):
        extra: dict[str, Any] = {"slow_after_seconds": round(limit, 3)}
        if run.job_id in baselines:
            extra["p95_seconds"] = round(baselines[run.job_id], 3)
        rows += outbox_rows(rule, "slow", run.job, run, now, extra=extra)
    written.append((None, rows))
    return written


def _open_or_remind(
    rule: AlertRule,
    job: Job,
    kind: str,
    now: datetime,
    open_incidents: dict[tuple[int, int, str], AlertIncident],
    suppressed: Counter[int] | None = None,
    closing: list[int] | None = None,
) -> bool:
    """Open an incident (True: alert), or count a suppressed alert on the open one
    (False), unless its throttle window has passed (True: a reminder). With
    ``suppressed``, the count is only added there (incident id -> n), for the caller to
    write in one statement with :func:`count_suppressed`. ``closing``: incidents the
    batch ended but has not closed yet; they are closed before one is opened (one open
    incident per rule, job and kind)."""
    key = (rule.pk, job.pk, kind)
    incident = open_incidents.get(key)
    if incident is None:
        if closing:
            AlertIncident.objects.filter(pk__in=closing).update(closed_at=now)
            closing.clear()
        # The partial unique index keeps one open incident even if two nodes race; the
        # savepoint keeps the outcome's transaction usable if this one lost.
        from django.db import IntegrityError

        try:
            with transaction.atomic():
                incident = AlertIncident.objects.create(
                    rule=rule, job=job, kind=kind, opened_at=now, last_alert_at=now
                )
        except IntegrityError:
            return False
        open_incidents[key] = incident
        return True
    if rule.throttle_seconds and now - incident.last_alert_at >= timedelta(seconds=rule.throttle_seconds):
        AlertIncident.objects.filter(pk=incident.pk).update(last_alert_at=now)
        incident.last_alert_at = now
        return True
    incident.suppressed += 1
    if suppressed is not None:
        suppressed[incident.pk] += 1
    else:
        AlertIncident.objects.filter(pk=incident.pk).update(suppressed=F("suppressed") + 1)
    return False


#: Incidents opened per INSERT statement (a batch of outcomes is at most a few hundred).
OPEN_STATEMENT_ROWS = 500


def open_incidents_at_once(incidents: Sequence[AlertIncident]) -> None:
    """Insert the incidents a batch opens (in batch order), setting the pk of each one
    written: open, in one statement per round (``ON CONFLICT DO NOTHING`` on the partial
    unique index of open incidents), then those the batch's later successes ended are
    closed in the same transaction. A job that failed, recovered and failed again in the
    batch has a second round (its second incident); one round in practice.

    One that another node opened meanwhile (even uncommitted: the insert waits for it)
    keeps ``pk`` None, and so do the job's later incidents in the batch: its alerts are
    that node's (the batch writes none for it, nor the recovery from it), as the
    savepoint and IntegrityError of one INSERT per incident did before. Rows are
    inserted in (rule, job, kind) order, so two nodes opening the same incidents wait for
    each other in one order (no deadlock)."""
    rounds: list[list[AlertIncident]] = []
    seen: Counter[tuple[int, int, str]] = Counter()
    for incident in incidents:
        key = (incident.rule_id, incident.job_id, incident.kind)
        if seen[key] == len(rounds):
            rounds.append([])
        rounds[seen[key]].append(incident)
        seen[key] += 1
    lost: set[tuple[int, int, str]] = set()
    for batch in rounds:
        todo = sorted(
            (i for i in batch if (i.rule_id, i.job_id, i.kind) not in lost),
            key=lambda i: (i.rule_id, i.job_id, i.kind),
        )
        _insert_open(todo)
        lost.update((i.rule_id, i.job_id, i.kind) for i in todo if i.pk is None)
        closing: dict[datetime, list[int]] = {}
        for incident in todo:
            if incident.pk is not None and incident.closed_at is not None:
                closing.setdefault(incident.closed_at, []).append(incident.pk)
        for closed_at, pks in closing.items():
            AlertIncident.objects.filter(pk__in=pks).update(closed_at=closed_at)


def _insert_open(incidents: Sequence[AlertIncident]) -> None:
    """Insert ``incidents`` open (each key once), ``ON CONFLICT DO NOTHING``; sets the pk
    of each one written."""
    from django.db import connection

    fields = [
        AlertIncident._meta.get_field(name)
        for name in ("rule", "job", "kind", "opened_at", "last_alert_at", "suppressed")
    ]
    q = connection.ops.quote_name
    table = q(AlertIncident._meta.db_table)
    rule_c, job_c, kind_c, closed_c = (
        q(AlertIncident._meta.get_field(n).column) for n in ("rule", "job", "kind", "closed_at")
    )
    columns = ", ".join(q(f.column) for f in fields)
    row = f"({', '.join(['%s'] * len(fields))})"
    for start in range(0, len(incidents), OPEN_STATEMENT_ROWS):
        chunk = incidents[start : start + OPEN_STATEMENT_ROWS]
        params = [f.get_db_prep_save(getattr(i, f.attname), connection) for i in chunk for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(chunk))} "
                f"ON CONFLICT ({rule_c}, {job_c}, {kind_c}) WHERE {closed_c} IS NULL DO NOTHING "
                f"RETURNING id, {rule_c}, {job_c}, {kind_c}",
                params,
            )
            returned = cursor.fetchall()
        by_key = {(i.rule_id, i.job_id, i.kind): i for i in chunk}
        for pk, rule_id, job_id, kind in returned:
            incident = by_key[(rule_id, job_id, kind)]
            incident.pk = pk
            incident._state.adding = False


def count_suppressed(suppressed: Counter[int]) -> None:
    """Add the suppressed alerts to their incidents: one UPDATE per distinct count
    (one in practice: each job fails once per batch), never one per failure."""
    by_count: dict[int, list[int]] = {}
    for pk, n in suppressed.items():
        by_count.setdefault(n, []).append(pk)
    for n, pks in by_count.items():
        AlertIncident.objects.filter(pk__in=pks).update(suppressed=F("suppressed") + n)


def outbox_rows(
    rule: AlertRule | None,
    event: str,
    job: Job | None,
    run: JobRun | None,
    now: datetime,
    channels: Sequence[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[AlertOutbox]:
    """One unsaved outbox row per enabled channel of ``rule`` (or ``channels``)."""
    targets = list(channels if channels is not None else rule.channels.all() if rule else [])
    rows = []
    for channel in targets:
        if not channel.enabled:
            continue
        row = AlertOutbox(
            tenant_id=channel.tenant_id,
            rule=rule,
            channel=channel,
            event=event,
            job=job,
            run=run if run is not None and run.pk is not None else None,
            next_attempt_at=now,
        )
        row.payload = payloads.build(row, rule, job, run, now, extra)
        rows.append(row)
    return rows


def on_nodes_dead(names: Sequence[str], now: datetime | None = None) -> int:
    """Write ``node_down`` alerts for nodes just declared dead, in the caller's
    transaction (the one marking them dead). Nodes serve every tenant, so every enabled
    tenant-wide rule with the ``node_down`` event gets one alert per node; the
    transition to dead happens once per node incarnation, so there is nothing to
    deduplicate."""
    if not names:
        return 0
    now = now or timezone.now()
    rules = [
        r
        for r in AlertRule.objects.active()
        .filter(scope_job__isnull=True, scope_group__isnull=True)
        .select_related("tenant")
        .prefetch_related("channels")
        if "node_down" in (r.events or []) and not _muted(r, now)
    ]
    rows: list[AlertOutbox] = []
    for rule in rules:
        for name in names:
            rows += outbox_rows(
                rule,
                "node_down",
                None,
                None,
                now,
                extra={"node": name, "error": f"node {name} declared dead"},
            )
    if rows:
        AlertOutbox.objects.bulk_create(rows)
        announce()
    return len(rows)
