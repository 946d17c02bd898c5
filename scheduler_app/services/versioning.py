"""Numbered job versions: a snapshot after every change, readable diffs, rollback
(in :func:`scheduler_app.services.rollback_job`)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from scheduler_app.documents.job import export_job
from scheduler_app.models import Job, JobVersion
from scheduler_app.services import summaries


def snapshot(job: Job) -> dict[str, Any]:
    """The job's configuration as a job document, with secrets as fingerprints."""
    return export_job(job, secrets="fingerprints")


def record_version(
    job: Job, *, actor: Any = None, summary: str = "", force: bool = False
) -> JobVersion | None:
    """A new version if the configuration differs from the last one (or ``force``)."""
    if job.pk is None:
        return None
    data = snapshot(job)
    last = job.versions.order_by("-number").first()
    if last is not None and last.snapshot == data and not force:
        return None
    if not summary and last is not None:
        fields = ", ".join(path for path, _, _ in diff(last.snapshot, data)[:6])
        summary = summaries.english(summaries.CHANGED, fields=fields)
    author = actor if getattr(actor, "pk", None) is not None else None
    for _ in range(3):
        number = (last.number if last else 0) + 1
        try:
            with transaction.atomic():
                return JobVersion.objects.create(
                    job=job,
                    tenant_id=job.tenant_id,
                    number=number,
                    author=author,
                    summary=(summary or "")[:300],
                    snapshot=data,
                )
        except IntegrityError:  # another writer took that number
            last = job.versions.order_by("-number").first()
    raise RuntimeError(f"could not number a new version of job {job.pk}")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    return {prefix: value}


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """[(path, old value, new value)] for every leaf that differs (lists compared whole)."""
    a, b = flatten(old), flatten(new)
    return [
        (path, a.get(path), b.get(path)) for path in sorted(set(a) | set(b)) if a.get(path) != b.get(path)
    ]
