"""Jobs files ("jobs as code"): export the configuration to a JSON/YAML document and
import it back.

Import is keyed by (tenant slug, job name), idempotent (a second import of the same file
changes nothing) and atomic (any error rolls everything back and names the job and the
field). See the README for the schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from scheduler_app import documents, services
from scheduler_app.documents import alert as alert_document
from scheduler_app.documents import job as job_document
from scheduler_app.documents import limits
from scheduler_app.documents.job import FORMAT_VERSION, JOB_KEYS, DocumentError, at
from scheduler_app.models import (
    AlertChannel,
    AlertRule,
    Calendar,
    CalendarDate,
    Job,
    JobGroup,
    Tenant,
)
from scheduler_app.services import summaries

TOP_LEVEL_KEYS = {"version", "tenants", "groups", "calendars", "jobs", "alert_channels", "alert_rules"}
TENANT_KEYS = {"slug", "name", "rate_limit"}
GROUP_KEYS = {"tenant", "name", "description", "rate_limit"}
CALENDAR_KEYS = {"tenant", "name", "description", "dates"}


class JobsFileError(DocumentError):
    """The jobs file is invalid; the message names the entry and the field."""


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.created or self.changed or self.deleted)

    #: the kinds of object a jobs file holds, in the order they are reported.
    KINDS = ("tenant", "group", "calendar", "job")
    #: reported after those, only when the file had any of them.
    ALERT_KINDS = ("alert channel", "alert rule")

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind (tenant, group, calendar, job): how many were created, changed,
        unchanged and deleted. Every kind is present, with zeros, on every run; alert
        channels and rules when the file had any alert entries."""
        labels = [
            label
            for outcome in ("created", "changed", "unchanged", "deleted")
            for label in getattr(self, outcome)
        ]
        kinds = list(self.KINDS)
        if any(label.startswith("alert ") for label in labels):
            kinds += self.ALERT_KINDS
        out = {kind: dict.fromkeys(("created", "changed", "unchanged", "deleted"), 0) for kind in kinds}
        for outcome in ("created", "changed", "unchanged", "deleted"):
            for label in getattr(self, outcome):
                kind = next(
                    (k for k in self.ALERT_KINDS if label.startswith(f"{k} ")), label.split(" ", 1)[0]
                )
                out[kind][outcome] += 1
        return out

    def lines(self) -> list[str]:
        out = [_("create %(name)s") % {"name": name} for name in self.created]
        out += [_("change %(name)s") % {"name": name} for name in self.changed]
        out += [_("delete %(name)s") % {"name": name} for name in self.deleted]
        return out


# -- reading ----------------------------------------------------------------------------


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML (.yaml/.yml) jobs file; raise JobsFileError if unreadable."""
    path = Path(path)
    try:
        text = _read_capped(path).decode("utf-8")
    except OSError as exc:
        raise JobsFileError(
            _("cannot read %(path)s: %(reason)s") % {"path": path, "reason": exc.strerror or exc}
        ) from None
    except UnicodeDecodeError:
        raise JobsFileError(_("%(path)s is not UTF-8 text") % {"path": path}) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = limits.load_yaml(text)
        except yaml.YAMLError as exc:
            raise JobsFileError(
                _("%(path)s is not valid YAML: %(problem)s") % {"path": path, "problem": _yaml_problem(exc)}
            ) from None
    else:
        try:
            data = limits.loads_json(text)
        except limits.LimitError as exc:
            raise JobsFileError(f"{path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise JobsFileError(
                _("%(path)s is not valid JSON: %(problem)s at line %(line)s column %(column)s")
                % {"path": path, "problem": exc.msg, "line": exc.lineno, "column": exc.colno}
            ) from None
    if not isinstance(data, dict):
        raise JobsFileError(f"{path}: " + _("the document must be an object with a 'version'"))
    return data


def _read_capped(path: Path) -> bytes:
    """The file's bytes, at most ``MAX_JOBS_FILE_BYTES`` (:func:`limits.read_capped`)."""
    try:
        return limits.read_capped(path, limits.max_jobs_file_bytes())
    except limits.FileTooLarge as exc:
        if exc.size is not None:
            raise JobsFileError(
                _("%(path)s is %(size)s bytes; a jobs file may be at most %(limit)s (MAX_JOBS_FILE_BYTES)")
                % {"path": path, "size": f"{exc.size:,}", "limit": limits.size_text(exc.limit)}
            ) from None
        raise JobsFileError(
            _(
                "%(path)s holds more than %(limit)s; a jobs file may be at most %(limit)s (MAX_JOBS_FILE_BYTES)"
            )
            % {"path": path, "limit": limits.size_text(exc.limit)}
        ) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (PyYAML's own text quotes the
    source over several lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _check_version(doc: Mapping[str, Any]) -> None:
    documents.check_header(
        doc,
        error=JobsFileError,
        supported=FORMAT_VERSION,
        allowed=TOP_LEVEL_KEYS,
        kind=pgettext("jobs file version", "format"),
        verb=pgettext("jobs file version", "import"),
    )


def _entries(doc: Mapping[str, Any], key: str, allowed: set[str]) -> list[dict[str, Any]]:
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise JobsFileError(f"{key}: " + _("must be a list"))
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise JobsFileError(f"{where}: " + _("must be an object"))
        try:
            limits.check_entry(item, where)
        except limits.LimitError as exc:
            raise JobsFileError(str(exc)) from None
        unknown = sorted(set(item) - allowed)
        if unknown:
            label = _label(item)
            raise JobsFileError(at(f"{where}{label}", unknown[0], _("unknown field")))
        for required in ("name",) if key != "tenants" else ("slug",):
            if not isinstance(item.get(required), str) or not item[required]:
                raise JobsFileError(at(where, required, _("required, a non-empty string")))
    return items


def _label(item: Mapping[str, Any]) -> str:
    if "name" in item:
        return f" ({item.get('tenant', '?')}/{item['name']})"
    return ""


# -- import -----------------------------------------------------------------------------


def import_document(
    doc: Mapping[str, Any],
    *,
    dry_run: bool = False,
    prune: bool = False,
    actor: Any = None,
    summary: str = "",
    source: str = "",
) -> ImportReport:
    """Apply a jobs document; all or nothing. ``dry_run`` reports without changing.
    Changed jobs get a new version with ``summary``; each tenant touched gets an
    ``import`` audit entry (``summary``: by default "imported from a jobs file")."""
    summary = summary or summaries.english(summaries.IMPORTED)
    _check_version(doc)
    tenants = _entries(doc, "tenants", TENANT_KEYS)
    groups = _entries(doc, "groups", GROUP_KEYS)
    calendars = _entries(doc, "calendars", CALENDAR_KEYS)
    jobs = _entries(doc, "jobs", JOB_KEYS)
    alert_channels = _entries(doc, "alert_channels", alert_document.CHANNEL_KEYS)
    alert_rules = _entries(doc, "alert_rules", alert_document.RULE_KEYS)
    report = ImportReport()
    try:
        with transaction.atomic():
            tenant_map = _import_tenants(tenants, report)
            group_map = _import_groups(groups, tenant_map, report)
            calendar_map = _import_calendars(calendars, tenant_map, report, actor)
            saved: dict[int, tuple[Job, bool]] = {}
            job_map = _import_jobs(jobs, tenant_map, group_map, calendar_map, report, actor, summary, saved)
            _import_dependencies(jobs, tenant_map, job_map, report, actor, prune=prune, saved=saved)
            alert_document.import_alerts(
                alert_channels,
                alert_rules,
                lambda item, where: _tenant_for(item, where, tenant_map),
                report,
                actor,
            )
            # Versions and notifications once each job's fields *and* dependencies are in place.
            for job, created in saved.values():
                services.notify_job_changed(job, actor=actor, created=created, summary=summary)
            if prune:
                _prune(tenant_map, job_map, report, actor)
            if dry_run:
                transaction.set_rollback(True)
            elif report.has_changes:
                from scheduler_app import audit

                for tenant in tenant_map.values():
                    audit.record(
                        tenant,
                        "import",
                        actor,
                        source=source,
                        created=len(report.created),
                        changed=len(report.changed),
                        deleted=len(report.deleted),
                    )
    except JobsFileError:
        raise
    except DocumentError as exc:  # from the job document: same message, this module's type
        raise JobsFileError(str(exc)) from None
    return report


def _tenant_for(item: Mapping[str, Any], where: str, tenant_map: dict[str, Tenant]) -> Tenant:
    slug = item.get("tenant")
    if not isinstance(slug, str) or not slug:
        raise JobsFileError(at(where, "tenant", _("required, a tenant slug")))
    if slug in tenant_map:
        return tenant_map[slug]
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise JobsFileError(
            at(where, "tenant", _("unknown tenant %(slug)r (add it to 'tenants')") % {"slug": slug})
        )
    tenant_map[slug] = tenant
    return tenant


def _import_tenants(items: list[dict[str, Any]], report: ImportReport) -> dict[str, Tenant]:
    result: dict[str, Tenant] = {}
    for index, item in enumerate(items):
        where = f"tenants[{index}] ({item['slug']})"
        tenant = Tenant.objects.filter(slug=item["slug"]).first()
        name = item.get("name") or item["slug"]
        if tenant is None:
            tenant = Tenant(slug=item["slug"], name=name, rate_limit=item.get("rate_limit") or "")
            _full_clean(tenant, where)
            tenant.save()
            report.created.append(f"tenant {tenant.slug}")
        else:
            before = (tenant.name, tenant.rate_limit)
            tenant.name = name
            if "rate_limit" in item:  # left out: keeps the current limit
                tenant.rate_limit = item["rate_limit"] or ""
            _full_clean(tenant, where)
            changed = [
                f
                for f, a, b in zip(
                    ("name", "rate_limit"), before, (tenant.name, tenant.rate_limit), strict=True
                )
                if a != b
            ]
            if changed:
                tenant.save()
                report.changed.append(f"tenant {tenant.slug} ({', '.join(changed)})")
            else:
                report.unchanged.append(f"tenant {tenant.slug}")
        result[tenant.slug] = tenant
    return result


def _full_clean(obj: Any, where: str, **kwargs: Any) -> None:
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        raise JobsFileError(f"{where}: {job_document.validation_message(exc)}") from None


def _import_groups(
    items: list[dict[str, Any]], tenant_map: dict[str, Tenant], report: ImportReport
) -> dict[tuple[int, str], JobGroup]:
    result: dict[tuple[int, str], JobGroup] = {}
    for index, item in enumerate(items):
        where = f"groups[{index}] ({item.get('tenant')}/{item['name']})"
        tenant = _tenant_for(item, where, tenant_map)
        group = JobGroup.objects.filter(tenant=tenant, name=item["name"]).first()
        description = item.get("description", "")
        label = f"group {tenant.slug}/{item['name']}"
        if group is None:
            group = JobGroup(
                tenant=tenant,
                name=item["name"],
                description=description,
                rate_limit=item.get("rate_limit") or "",
            )
            _full_clean(group, where)
            group.save()
            report.created.append(label)
        else:
            before = (group.description, group.rate_limit)
            group.description = description
            if "rate_limit" in item:  # left out: keeps the current limit
                group.rate_limit = item["rate_limit"] or ""
            _full_clean(group, where)
            after = (group.description, group.rate_limit)
            changed = [
                f for f, a, b in zip(("description", "rate_limit"), before, after, strict=True) if a != b
            ]
            if changed:
                group.save()
                report.changed.append(f"{label} ({', '.join(changed)})")
            else:
                report.unchanged.append(label)
        result[(tenant.pk, group.name)] = group
    return result


def _import_calendars(
    items: list[dict[str, Any]],
    tenant_map: dict[str, Tenant],
    report: ImportReport,
    actor: Any = None,
) -> dict[tuple[int, str], Calendar]:
    import datetime as dt

    result: dict[tuple[int, str], Calendar] = {}
    for index, item in enumerate(items):
        where = f"calendars[{index}] ({item.get('tenant')}/{item['name']})"
        tenant = _tenant_for(item, where, tenant_map)
        raw_dates = item.get("dates", [])
        if not isinstance(raw_dates, list):
            raise JobsFileError(at(where, "dates", _("must be a list of YYYY-MM-DD dates")))
        wanted: dict[dt.date, str] = {}
        for d_index, raw in enumerate(raw_dates):
            text, label = (raw.get("date"), raw.get("label", "")) if isinstance(raw, dict) else (raw, "")
            try:
                wanted[dt.date.fromisoformat(str(text))] = str(label or "")
            except ValueError:
                raise JobsFileError(
                    at(where, f"dates[{d_index}]", _("%(text)r is not a YYYY-MM-DD date") % {"text": text})
                ) from None
        calendar = Calendar.objects.filter(tenant=tenant, name=item["name"]).first()
        label = f"calendar {tenant.slug}/{item['name']}"
        created = calendar is None
        if created:
            calendar = Calendar(tenant=tenant, name=item["name"])
        changed = calendar.description != item.get("description", "")
        calendar.description = item.get("description", "")
        _full_clean(calendar, where)
        calendar.save()
        current = {d.date: d.label for d in calendar.dates.all()}
        if current != wanted:
            changed = True
            calendar.dates.all().delete()
            CalendarDate.objects.bulk_create(
                CalendarDate(calendar=calendar, date=d, label=lbl) for d, lbl in sorted(wanted.items())
            )
        if created:
            report.created.append(label)
        elif changed:
            report.changed.append(label)
            # Jobs using this calendar must pick up the new dates (as in the admin).
            for job in calendar.jobs.all():
                services.notify_job_changed(job, actor=actor)
        else:
            report.unchanged.append(label)
        result[(tenant.pk, calendar.name)] = calendar
    return result


def _import_jobs(
    items: list[dict[str, Any]],
    tenant_map: dict[str, Tenant],
    group_map: dict[tuple[int, str], JobGroup],
    calendar_map: dict[tuple[int, str], Calendar],
    report: ImportReport,
    actor: Any,
    summary: str = "",
    saved: dict[int, tuple[Job, bool]] | None = None,
) -> dict[tuple[int, str], Job]:
    result: dict[tuple[int, str], Job] = {}
    for index, item in enumerate(items):
        where = f"jobs[{index}] ({item.get('tenant')}/{item['name']})"
        tenant = _tenant_for(item, where, tenant_map)
        key = (tenant.pk, item["name"])
        if key in result:
            raise JobsFileError(
                at(
                    where,
                    "name",
                    _("job %(name)r appears twice in tenant %(tenant)s")
                    % {"name": item["name"], "tenant": tenant.slug},
                )
            )
        job = Job.objects.filter(tenant=tenant, name=item["name"]).first()
        created = job is None
        before = None if created else job_document.export_job(job, secrets="fingerprints")
        if created:
            job = Job(tenant=tenant, name=item["name"])
        calendars = job_document.apply_job_document(
            job, item, where=where, groups=group_map, calendars=calendar_map
        )
        after = job_document.export_job(job, secrets="fingerprints", calendars=calendars)
        label = f"job {tenant.slug}/{job.name}"
        if before is not None:
            before.pop("depends_on", None)
        after.pop("depends_on", None)
        if created:
            services.save_job(job, actor=actor, calendars=calendars, notify=False)
            report.created.append(label)
        elif before != after:
            try:
                services.save_job(job, actor=actor, calendars=calendars, notify=False)
            except ValidationError as exc:  # e.g. a job managed by code
                raise JobsFileError(f"{where}: {job_document.validation_message(exc)}") from None
            fields = sorted(
                "secret_kwargs" if k == "secret_fingerprints" else k
                for k in after
                if before.get(k) != after.get(k)
            )
            report.changed.append(f"{label} ({', '.join(fields)})")
        else:
            report.unchanged.append(label)
        if saved is not None and (created or before != after):
            saved[job.pk] = (job, created)
        result[key] = job
    return result


def _import_dependencies(
    items: list[dict[str, Any]],
    tenant_map: dict[str, Tenant],
    job_map: dict[tuple[int, str], Job],
    report: ImportReport,
    actor: Any = None,
    *,
    prune: bool = False,
    saved: dict[int, tuple[Job, bool]] | None = None,
) -> None:
    """Make each listed job's upstream edges exactly its ``depends_on``.

    All removals happen before any addition, so replacing an edge that a new edge would
    close into a cycle is not mistaken for a cycle."""
    plans: list[tuple[str, Job, dict[int, str]]] = []
    in_file = {j.pk for j in job_map.values()}
    for index, item in enumerate(items):
        if "depends_on" not in item:
            continue
        where = f"jobs[{index}] ({item.get('tenant')}/{item['name']})"
        job = job_map[(tenant_map[item["tenant"]].pk, item["name"])]
        wanted: dict[int, str] = {}
        for d_index, (upstream, condition) in enumerate(
            job_document.dependencies(job, item["depends_on"], where=where, jobs=job_map)
        ):
            if prune and upstream.pk not in in_file:
                raise JobsFileError(
                    at(
                        f"{where}: depends_on[{d_index}]",
                        "job",
                        _("%(name)r is not in the file, so --prune would delete it")
                        % {"name": upstream.name},
                    )
                )
            wanted[upstream.pk] = condition
        plans.append((where, job, wanted))
    changed_jobs: set[int] = set()
    for _where, job, wanted in plans:
        if services.drop_dependencies(job, keep=wanted, actor=actor):
            changed_jobs.add(job.pk)
    for where, job, wanted in plans:
        try:
            if services.put_dependencies(job, wanted, actor=actor):
                changed_jobs.add(job.pk)
        except ValidationError as exc:
            raise job_document.dependency_error(exc, where=where) from None
    for _where, job, _wanted in plans:
        if job.pk not in changed_jobs:
            continue
        label = f"job {job.tenant.slug}/{job.name}"
        if label in report.created:
            continue
        entry = next((c for c in report.changed if c.startswith(label + " ")), None)
        if entry is None:
            report.changed.append(f"{label} (depends_on)")
            if label in report.unchanged:
                report.unchanged.remove(label)
            if saved is not None:
                saved.setdefault(job.pk, (job, False))  # not saved, so not yet told
            else:
                services.notify_job_changed(job, actor=actor)
        else:
            report.changed[report.changed.index(entry)] = entry[:-1] + ", depends_on)"


def _prune(
    tenant_map: dict[str, Tenant],
    job_map: dict[tuple[int, str], Job],
    report: ImportReport,
    actor: Any,
) -> None:
    """Delete jobs of the document's tenants that the document does not list."""
    keep = {job.pk for job in job_map.values()}
    stale = Job.objects.filter(tenant__in=tenant_map.values()).exclude(pk__in=keep)
    stale = list(stale.select_related("tenant"))
    for job in stale:
        report.deleted.append(f"job {job.tenant.slug}/{job.name}")
    services.delete_jobs(stale, actor=actor)


# -- export -----------------------------------------------------------------------------


def export_document(
    *, tenant: str | None = None, include_secrets: bool = False, skipped: list[str] | None = None
) -> dict[str, Any]:
    """The configuration as a jobs document. A job whose stored values break the input
    limits (old data: nested deeper than ``MAX_JSON_DEPTH``, NUL characters) could not be
    imported back and may not even be written as YAML: it is left out, with a line naming
    it and the field appended to ``skipped``, so one such job never fails the export."""
    tenants = Tenant.objects.order_by("slug")
    if tenant is not None:
        tenants = tenants.filter(slug=tenant)
        if not tenants.exists():
            raise JobsFileError("tenant: " + _("unknown tenant %(slug)r") % {"slug": tenant})
    tenants = list(tenants)
    groups = (
        JobGroup.objects.filter(tenant__in=tenants).select_related("tenant").order_by("tenant__slug", "name")
    )
    calendars = (
        Calendar.objects.filter(tenant__in=tenants)
        .select_related("tenant")
        .prefetch_related("dates")
        .order_by("tenant__slug", "name")
    )
    jobs = (
        Job.objects.filter(tenant__in=tenants)
        .select_related("tenant", "group")
        .prefetch_related("calendars")
        .order_by("tenant__slug", "name")
    )
    return {
        "version": FORMAT_VERSION,
        # rate_limit only when set: documents of tenants and groups without one keep their shape
        "tenants": [
            {"slug": t.slug, "name": t.name} | ({"rate_limit": t.rate_limit} if t.rate_limit else {})
            for t in tenants
        ],
        "groups": [
            {"tenant": g.tenant.slug, "name": g.name, "description": g.description}
            | ({"rate_limit": g.rate_limit} if g.rate_limit else {})
            for g in groups
        ],
        "calendars": [
            {
                "tenant": c.tenant.slug,
                "name": c.name,
                "description": c.description,
                "dates": [{"date": d.date.isoformat(), "label": d.label} for d in c.dates.all()],
            }
            for c in calendars
        ],
        "jobs": [
            job_document.export_job(j, secrets="encrypted" if include_secrets else "omit")
            for j in jobs
            if _exportable(j, skipped)
        ],
        "alert_channels": [
            alert_document.export_channel(c, secrets="encrypted" if include_secrets else "omit")
            for c in AlertChannel.objects.filter(tenant__in=tenants)
            .select_related("tenant")
            .order_by("tenant__slug", "name")
        ],
        "alert_rules": [
            alert_document.export_rule(r)
            for r in AlertRule.objects.filter(tenant__in=tenants)
            .select_related("tenant", "scope_job", "scope_group")
            .prefetch_related("channels")
            .order_by("tenant__slug", "name")
        ],
    }


def _exportable(job: Job, skipped: list[str] | None) -> bool:
    errors = limits.check_instance(job)
    if not errors:
        return True
    if skipped is not None:
        field, message = next(iter(errors.items()))
        skipped.append(f"job {job.tenant.slug}/{job.name}: {field}: {message}; left out of the export")
    return False


def dump_document(doc: Mapping[str, Any], fmt: str = "json") -> str:
    if fmt == "yaml":
        return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
