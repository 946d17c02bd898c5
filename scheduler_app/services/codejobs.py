"""Jobs declared in code: ``@scheduler_app.task(schedule=...)`` and
``SCHEDULER_APP["JOBS"]``, made real in the database by :func:`sync_code_jobs`
(``runscheduler`` start and ``manage.py syncjobs``).

A synced job carries ``Job.managed_by`` (the declaring module). The sync creates jobs
that are new in the code, updates those whose declaration changed and deletes those no
longer declared, in one transaction, audited with the deploy as actor (audit details
``actor: deploy`` and the module; versions summarised ``deploy: ...``). Operators may pause
and resume a code job (``paused`` is theirs and survives deploys); any other edit is
refused naming the owning module (:func:`check_code_owned`). Two declarations of one job
name, or a declaration whose name a hand-made job already uses, are refused naming both.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.documents import job as job_document
from scheduler_app.models import Job, Tenant
from scheduler_app.registry import CodeJob, code_jobs
from scheduler_app.services import summaries

SETTINGS_MODULE = "settings SCHEDULER_APP['JOBS']"
#: Job fields that stay the operators' on a code job.
OPERATOR_FIELDS = {"paused"}
_syncing: contextvars.ContextVar[bool] = contextvars.ContextVar("scheduler_codejobs_sync", default=False)


class CodeJobError(ValueError):
    """The declarations cannot be synced; the message names the declarations involved."""


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.created or self.changed or self.deleted)

    def lines(self) -> list[str]:
        return (
            [f"create {n}" for n in self.created]
            + [f"change {n}" for n in self.changed]
            + [f"delete {n}" for n in self.deleted]
        )


def declarations() -> list[CodeJob]:
    """Every declaration: the decorator's, then the settings' (documents checked here)."""
    from scheduler_app.conf import app_settings

    found = list(code_jobs)
    raw = app_settings.JOBS
    if not isinstance(raw, list):
        raise CodeJobError(_("%(where)s: must be a list of job documents") % {"where": SETTINGS_MODULE})
    for index, item in enumerate(raw):
        where = f"{SETTINGS_MODULE}[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item.get("name"):
            raise CodeJobError(_("%(where)s: name: required, a non-empty string") % {"where": where})
        doc = dict(item)
        name = doc.pop("name")
        if "schedule" in doc:
            if "trigger" in doc:
                raise CodeJobError(
                    _("%(where)s (%(name)s): schedule: give schedule or trigger, not both")
                    % {"where": where, "name": name}
                )
            doc["trigger"] = {
                "type": "cron",
                "expression": doc.pop("schedule"),
                "timezone": doc.pop("timezone", "UTC"),
            }
        found.append(CodeJob(name, f"{SETTINGS_MODULE}[{index}]", doc))
    return found


def check_declarations() -> dict[tuple[str, str], CodeJob]:
    """The declarations by (tenant slug, name); :class:`CodeJobError` naming both
    declarations of a name declared twice."""
    seen: dict[tuple[str, str], CodeJob] = {}
    for decl in declarations():
        key = _key(decl)
        if key in seen:
            raise CodeJobError(
                _("job %(tenant)s/%(name)s is declared twice: in %(first)s and in %(second)s")
                % {"tenant": key[0], "name": key[1], "first": seen[key].module, "second": decl.module}
            )
        seen[key] = decl
    return seen


def _key(decl: CodeJob) -> tuple[str, str]:
    from scheduler_app.conf import app_settings

    return (str(decl.document.get("tenant") or app_settings.CODE_JOBS_TENANT), decl.name)


@contextlib.contextmanager
def _as_deploy() -> Iterator[None]:
    token = _syncing.set(True)
    try:
        with audit.extra(actor="deploy"):
            yield
    finally:
        _syncing.reset(token)


def sync_code_jobs(*, dry_run: bool = False) -> SyncReport:
    """Make the database's code jobs what the code declares; all or nothing."""
    from scheduler_app import services

    seen = check_declarations()
    report = SyncReport()
    with transaction.atomic(), _as_deploy():
        keep: set[int] = set()
        for (slug, name), decl in seen.items():
            label = f"job {slug}/{name} ({decl.module})"
            tenant, _created = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug})
            job = Job.objects.filter(tenant=tenant, name=name).first()
            if job is not None and not job.managed_by:
                raise CodeJobError(
                    _(
                        "job %(tenant)s/%(name)s declared in %(module)s clashes with the hand-made job "
                        "%(tenant)s/%(name)s (id %(id)s); rename one of them"
                    )
                    % {"tenant": slug, "name": name, "module": decl.module, "id": job.pk}
                )
            created = job is None
            if created:
                job = Job(tenant=tenant, name=name)
            before = None if created else job_document.export_job(job, secrets="fingerprints")
            doc = {k: v for k, v in decl.document.items() if k not in ("tenant", "name", *OPERATOR_FIELDS)}
            try:
                calendars = job_document.apply_job_document(
                    job, doc, where=f"code job {slug}/{name} ({decl.module})"
                )
            except job_document.DocumentError as exc:
                raise CodeJobError(str(exc)) from None
            moved_module = job.managed_by != decl.module
            job.managed_by = decl.module
            after = job_document.export_job(job, secrets="fingerprints", calendars=calendars)
            with audit.extra(module=decl.module):
                if created or before != after or moved_module:
                    services.save_job(job, calendars=calendars, notify=False)
                    services.notify_job_changed(
                        job,
                        created=created,
                        summary=summaries.english(
                            summaries.DEPLOY_CREATED if created else summaries.DEPLOY_UPDATED,
                            module=decl.module,
                        ),
                    )
                    (report.created if created else report.changed).append(label)
                else:
                    report.unchanged.append(label)
            keep.add(job.pk)
        stale = list(Job.objects.managed_by_code().exclude(pk__in=keep).select_related("tenant"))
        for job in stale:
            report.deleted.append(f"job {job.tenant.slug}/{job.name} ({job.managed_by}; no longer declared)")
            audit.record(job, "code_job_removed", None, module=job.managed_by)
        services.delete_jobs(stale)
        if dry_run:
            transaction.set_rollback(True)
    return report


def check_code_owned(job: Job, stored: Job) -> None:
    """Refuse changes to a code job's code-owned fields (outside a sync)."""
    if not stored.managed_by or _syncing.get():
        return
    before = job_document.export_job(stored, secrets="fingerprints")
    after = job_document.export_job(job, secrets="fingerprints", calendars=list(stored.calendars.all()))
    changed = sorted(
        k for k in after if k not in OPERATOR_FIELDS and k != "depends_on" and before.get(k) != after.get(k)
    )
    if changed or job.managed_by != stored.managed_by:
        raise ValidationError(
            {
                NON_FIELD_ERRORS: [
                    _(
                        "job %(name)s is managed by code in %(module)s; change %(fields)s there "
                        "(operators may only pause and resume it)"
                    )
                    % {
                        "name": stored.name,
                        "module": stored.managed_by,
                        "fields": ", ".join(changed) or "managed_by",
                    }
                ]
            }
        )
