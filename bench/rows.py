"""What the benchmarks' Django-side steps (bench_django.py, cluster_django.py) write:
the benchmark tenant and queued runs with exactly the fields ``enqueue_run`` sets.
Import after ``django.setup()``. Not a product module."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from scheduler_app.models import Job, JobRun, RunReason, RunState, Tenant


def bench_tenant() -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Benchmark"})
    return tenant


def queue_runs(jobs: list[Job], now: datetime) -> int:
    """One queued manual run per job, due ``now``, bulk-created in one transaction."""
    rows = [
        JobRun(
            job_id=j.pk,
            tenant_id=j.tenant_id,
            scheduled_for=now,
            attempt=1,
            reason=RunReason.MANUAL,
            priority=j.priority,
            not_before=now,
            kwargs_override={},
            state=RunState.QUEUED,
            executor=j.executor,
        )
        for j in jobs
    ]
    with transaction.atomic():
        JobRun.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None
