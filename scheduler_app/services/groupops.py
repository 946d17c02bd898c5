"""Operations on every job of a job group or a tenant at once: pause, resume, enable,
disable and run now.

Each job is checked on its own (a grant on the group applies to its jobs, a role to its
tenant's), through the same per-job services as the single-job actions, and the whole
operation is one transaction with one audit entry on the group (or tenant) that lists
the jobs it touched and those it refused, with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.models import Job, JobGroup, Tenant
from scheduler_app.services import jobs as job_services
from scheduler_app.services import runs as run_services
from scheduler_app.services.bulk import BulkResult

#: Operation name -> the per-job service it applies.
OPERATIONS: dict[str, Callable[..., BulkResult]] = {
    "pause": job_services.pause_jobs,
    "resume": job_services.resume_jobs,
    "enable": job_services.enable_jobs,
    "disable": job_services.disable_jobs,
    "run": run_services.run_jobs_now,
}


def _label(job: Job) -> str:
    return f"{job.tenant.slug}/{job.name}"


def _operate(target: JobGroup | Tenant, jobs: list[Job], operation: str, actor: Any, kind: str) -> BulkResult:
    service = OPERATIONS.get(operation)
    if service is None:
        raise ValidationError(
            {
                "operation": _("unknown operation %(operation)r; choose one of %(operations)s")
                % {"operation": operation, "operations": ", ".join(OPERATIONS)}
            }
        )
    with transaction.atomic(), audit.acting_as(actor):
        result = service(jobs, actor=actor)
        # run now answers None for a run that already exists (same job and time)
        result.done = [obj for obj in result.done if obj is not None]
        touched = [obj.job if operation == "run" else obj for obj in result.done]
        audit.record(
            target,
            f"{kind}_{operation}",
            actor,
            jobs=[_label(job) for job in touched],
            refused=[[_label(job), reason] for job, reason in result.refused],
        )
    return result


def operate_on_group(group: JobGroup, operation: str, *, actor: Any = None) -> BulkResult:
    """Apply ``operation`` (a key of :data:`OPERATIONS`) to every job of ``group``."""
    jobs = list(Job.objects.filter(group=group).select_related("tenant", "group").order_by("name"))
    return _operate(group, jobs, operation, actor, "group")


def operate_on_tenant(tenant: Tenant, operation: str, *, actor: Any = None) -> BulkResult:
    """Apply ``operation`` (a key of :data:`OPERATIONS`) to every job of ``tenant``."""
    jobs = list(Job.objects.filter(tenant=tenant).select_related("tenant", "group").order_by("name"))
    return _operate(tenant, jobs, operation, actor, "tenant")
