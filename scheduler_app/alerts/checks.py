"""Checks that need no outcome: ``late`` (a due run has not started within the rule's
``late_after_seconds`` of its scheduled time) and ``missed`` (a dead man's switch: no
successful run within ``missed_after_seconds``, counted from the last success or, for a
job that never succeeded, from when the rule or job was last changed, whichever is later).

Run by the delivery loop of every node, so they fire even when the node that would
have run the job is the one that is down. Each rule's check runs in a transaction
holding the rule's row lock (PostgreSQL), and incidents are unique per rule, job and
kind, so two nodes checking at once write one alert."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Max, Min, Q

from scheduler_app.alerts import evaluate
from scheduler_app.models import AlertOutbox, AlertRule, Job, JobRun, RunState

logger = logging.getLogger(__name__)


def _scoped_jobs(rule: AlertRule):
    jobs = Job.objects.filter(tenant_id=rule.tenant_id, enabled=True, paused=False)
    if rule.scope_job_id:
        jobs = jobs.filter(pk=rule.scope_job_id)
    elif rule.scope_group_id:
        jobs = jobs.filter(group_id=rule.scope_group_id)
    return jobs


def run_periodic_checks(now: datetime) -> int:
    written = 0
    # Few rules per installation: their events are filtered here, portably.
    wanted = [
        pk
        for pk, events in AlertRule.objects.active().values_list("pk", "events")
        if {"late", "missed"} & set(events or [])
    ]
    for rule_id in wanted:
        with transaction.atomic():
            qs = AlertRule.objects.filter(pk=rule_id, enabled=True).select_related("tenant", "scope_group")
            if connection.vendor == "postgresql":
                qs = qs.select_for_update(of=("self",))
            rule = qs.prefetch_related("channels").first()
            if rule is None or (rule.muted_until is not None and rule.muted_until > now):
                continue
            rows: list[AlertOutbox] = []
            if "late" in rule.events and rule.late_after_seconds:
                rows += _late(rule, now)
            if "missed" in rule.events and rule.missed_after_seconds:
                rows += _missed(rule, now)
            if rows:
                AlertOutbox.objects.bulk_create(rows)
                evaluate.announce()
                written += len(rows)
    return written


def _open_incidents(rule: AlertRule, kind: str) -> dict:
    from scheduler_app.models import AlertIncident

    return {
        (i.rule_id, i.job_id, i.kind): i
        for i in AlertIncident.objects.filter(rule=rule, kind=kind, closed_at__isnull=True)
    }


def _late(rule: AlertRule, now: datetime) -> list[AlertOutbox]:
    cutoff = now - timedelta(seconds=rule.late_after_seconds or 0)
    late = (
        JobRun.objects.filter(
            state=RunState.QUEUED,
            scheduled_for__lte=cutoff,
            job__in=_scoped_jobs(rule),
            tenant_id=rule.tenant_id,
        )
        .values("job_id")
        .annotate(first=Min("id"))
        .order_by()[:500]
    )
    firsts = {row["job_id"]: row["first"] for row in late}
    if not firsts:
        return []
    incidents = _open_incidents(rule, "late")
    runs = JobRun.objects.filter(pk__in=list(firsts.values())).select_related("job", "job__group")
    rows: list[AlertOutbox] = []
    for run in runs:
        if evaluate._muted(rule, now, run.job):
            continue
        if evaluate._open_or_remind(rule, run.job, "late", now, incidents):
            late_by = (now - run.scheduled_for).total_seconds()
            rows += evaluate.outbox_rows(
                rule, "late", run.job, run, now, extra={"late_seconds": round(late_by, 1)}
            )
    return rows


def _missed(rule: AlertRule, now: datetime) -> list[AlertOutbox]:
    window = timedelta(seconds=rule.missed_after_seconds or 0)
    jobs = (
        _scoped_jobs(rule)
        .annotate(last_success=Max("runs__finished_at", filter=Q(runs__state=RunState.SUCCEEDED)))
        .select_related("group")
        .order_by("pk")[:5000]
    )
    incidents = _open_incidents(rule, "missed")
    rows: list[AlertOutbox] = []
    for job in jobs:
        since = job.last_success or max(job.created_at, rule.updated_at)
        if now - since < window or evaluate._muted(rule, now, job):
            continue
        if evaluate._open_or_remind(rule, job, "missed", now, incidents):
            extra = {
                "last_success_at": job.last_success.isoformat() if job.last_success else None,
                "missed_after_seconds": rule.missed_after_seconds,
            }
            rows += evaluate.outbox_rows(rule, "missed", job, None, now, extra=extra)
    return rows
