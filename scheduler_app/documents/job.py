"""The job document: a job as a JSON object (the ``jobs`` entries of a jobs file, the
snapshot of a job version), read into a :class:`~scheduler_app.models.Job` with errors
that name the entry and the field, and written back from one.

Groups and calendars are referred to by name within the job's tenant, upstream jobs
(``depends_on``) by name too. Nothing here saves: the caller decides the transaction
and saves through :mod:`scheduler_app.services`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.translation import gettext

from scheduler_app.models import Calendar, Job, JobGroup, Tenant, TriggerRule

#: The version of the job document that this release writes (a jobs file's ``version``).
FORMAT_VERSION = 1
JOB_KEYS = {
    "tenant",
    "name",
    "description",
    "group",
    "task",
    "args",
    "kwargs",
    "secret_kwargs",
    "secret_kwargs_encrypted",
    "trigger",
    "calendars",
    "enabled",
    "paused",
    "priority",
    "executor",
    "max_instances",
    "overlap_policy",
    "misfire",
    "retry",
    "timeout_seconds",
    "limits",
    "routing",
    "depends_on",
    "pause_after_failures",
    "rate_limit",
    "concurrency_key",
    "concurrency_limit",
    "throttle_policy",
    "load",
    "trigger_rule",
    "upstream_param",
}
NESTED = {
    "misfire": {"policy": "misfire_policy", "grace_seconds": "misfire_grace_seconds"},
    "retry": {
        "max_attempts": "retry_max_attempts",
        "backoff_seconds": "retry_backoff_seconds",
        "backoff_factor": "retry_backoff_factor",
        "max_backoff_seconds": "retry_max_backoff_seconds",
    },
    "limits": {"cpu_seconds": "cpu_limit_seconds", "memory_mb": "memory_limit_mb"},
    "routing": {"mode": "routing", "tags": "routing_tags"},
    "load": {"policy": "load_policy", "max_delay_seconds": "load_max_delay_seconds"},
}
FLAT = (
    "description",
    "task",
    "args",
    "kwargs",
    "trigger",
    "enabled",
    "paused",
    "priority",
    "executor",
    "max_instances",
    "overlap_policy",
    "timeout_seconds",
    "pause_after_failures",
    "rate_limit",
    "concurrency_key",
    "concurrency_limit",
    "throttle_policy",
    "trigger_rule",
    "upstream_param",
)
#: model field -> path in the document, to report model validation errors where they are.
FIELD_PATHS = {model: f"{outer}.{inner}" for outer, m in NESTED.items() for inner, model in m.items()}


class DocumentError(ValueError):
    """The document is invalid; the message names the entry and the field."""

    def __init__(self, message: str, *, validation: ValidationError | None = None) -> None:
        super().__init__(message)
        #: The model's ValidationError behind the message, for faces that show each field.
        self.validation = validation


def not_encrypted_text() -> str:
    return gettext("must be the encrypted text written by exportjobs --include-secrets")


def at(where: str, field: str, reason: str) -> str:
    """``where: field: reason``: the path in the document stays as written (faces split
    the message on it), the reason is in the reader's language."""
    return f"{where}: {field}: {reason}" if field else f"{where}: {reason}"


def validation_message(exc: ValidationError) -> str:
    """A model's ValidationError as ``path: message; ...`` with document paths."""
    if hasattr(exc, "error_dict"):
        parts = []
        for name, errors in exc.error_dict.items():
            path = FIELD_PATHS.get(name, name)
            for error in errors:
                text = " ".join(error.messages)
                if name == NON_FIELD_ERRORS:  # about the whole job: no field to name
                    parts.append(text)
                    continue
                # Trigger errors already name their key ("trigger.timezone: ...").
                if not text.startswith((f"{path}.", f"{path}:")):
                    text = f"{path}: {text}"
                parts.append(text)
        return "; ".join(parts)
    return "; ".join(exc.messages)


# -- references -------------------------------------------------------------------------


def group_name(job: Job) -> str | None:
    """The job's group as documents refer to it (``None``: no group)."""
    return job.group.name if job.group_id else None


def calendar_names(calendars: Iterable[Calendar]) -> list[str]:
    """Calendars as documents list them: their names, sorted."""
    return sorted(c.name for c in calendars)


def find_group(
    tenant: Tenant,
    name: Any,
    *,
    where: str,
    known: Mapping[tuple[int, str], JobGroup] | None = None,
) -> JobGroup:
    """The group ``name`` of ``tenant``: from ``known`` ((tenant id, name) -> group, for
    groups the caller already has in hand), else from the database."""
    group = None
    if isinstance(name, str):
        group = (known or {}).get((tenant.pk, name)) or JobGroup.objects.filter(
            tenant=tenant, name=name
        ).first()
    if group is None:
        raise DocumentError(
            at(
                where,
                "group",
                gettext("unknown group %(name)r in tenant %(tenant)s")
                % {"name": name, "tenant": tenant.slug},
            )
        )
    return group


# -- document -> model ------------------------------------------------------------------


def _job_values(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in FLAT:
        if key in item:
            values[key] = item[key]
    if "secret_kwargs" in item and "secret_kwargs_encrypted" in item:
        raise DocumentError(
            at(where, "secret_kwargs", gettext("give secret_kwargs or secret_kwargs_encrypted, not both"))
        )
    if "secret_kwargs" in item:
        values["secret_kwargs"] = item["secret_kwargs"]
    for outer, mapping in NESTED.items():
        if outer not in item:
            continue
        block = item[outer]
        if not isinstance(block, dict):
            raise DocumentError(at(where, outer, gettext("must be an object")))
        unknown = sorted(set(block) - set(mapping))
        if unknown:
            raise DocumentError(at(where, f"{outer}.{unknown[0]}", gettext("unknown field")))
        for inner, model_field in mapping.items():
            if inner in block:
                values[model_field] = block[inner]
    return values


def apply_job_document(
    job: Job,
    item: Mapping[str, Any],
    *,
    where: str,
    groups: Mapping[tuple[int, str], JobGroup] | None = None,
    calendars: Mapping[tuple[int, str], Calendar] | None = None,
) -> list[Calendar]:
    """Set the fields of ``job`` (new and unsaved, or stored; its tenant set) from the job
    document ``item`` and validate it (``full_clean``); saves nothing.

    A key left out keeps the job's current value. The entry's ``tenant`` and ``name``
    identify the job (the caller's business), and ``depends_on`` needs the other jobs
    saved first (see :func:`dependencies`). ``groups`` / ``calendars``: ones the caller
    already has, keyed by (tenant id, name); others are looked up in the job's tenant.
    Returns the calendars the job is to have (``services.save_job(calendars=...)``).
    Raises :class:`DocumentError` naming ``where`` and the field."""
    unknown = sorted(set(item) - JOB_KEYS)
    if unknown:
        raise DocumentError(at(where, unknown[0], gettext("unknown field")))
    tenant = job.tenant
    created = job.pk is None
    if "group" not in item:
        pass  # left out: keeps the current group
    elif item["group"] in (None, ""):
        job.group = None
    else:
        job.group = find_group(tenant, item["group"], where=where, known=groups)
    for name, value in _job_values(item, where).items():
        setattr(job, name, value)
    if "secret_kwargs_encrypted" in item:
        token = item["secret_kwargs_encrypted"]
        try:
            if not isinstance(token, str):
                raise ValueError(not_encrypted_text())
            job.set_secrets_token(token)
        except ValueError as exc:
            raise DocumentError(at(where, "secret_kwargs_encrypted", str(exc))) from None
    # Left out: keeps the current calendars.
    result = [] if created or "calendars" in item else list(job.calendars.all())
    for cal_name in item.get("calendars", []) or []:
        calendar = (calendars or {}).get((tenant.pk, cal_name)) or Calendar.objects.filter(
            tenant=tenant, name=cal_name
        ).first()
        if calendar is None:
            raise DocumentError(
                at(where, "calendars", gettext("unknown calendar %(name)r") % {"name": cal_name})
            )
        result.append(calendar)
    try:
        job.full_clean()
    except ValidationError as exc:
        raise DocumentError(f"{where}: {validation_message(exc)}", validation=exc) from None
    if "depends_on" not in item and job.pk and job.trigger_rule != TriggerRule.ALL_SUCCESS:
        # The stored edges stay: they must suit the rule (a given depends_on is checked
        # by dependencies()).
        edge = job.upstream_edges.exclude(condition="success").select_related("upstream").first()
        if edge is not None:
            message = _rule_message(edge.condition, job)
            raise DocumentError(
                at(where, "trigger_rule", message),
                validation=ValidationError({"trigger_rule": message}),
            )
    return result


def _rule_message(condition: str, job: Job) -> str:
    return gettext(
        "the trigger rule %(rule)s decides on the upstream outcomes itself; every dependency "
        "needs the condition success, not %(condition)s (only all_success uses conditions)"
    ) % {"rule": job.trigger_rule, "condition": condition}


def dependencies(
    job: Job,
    deps: Any,
    *,
    where: str,
    jobs: Mapping[tuple[int, str], Job] | None = None,
) -> Iterator[tuple[Job, str]]:
    """The (upstream job, condition) pairs of a ``depends_on`` list, in order; upstream
    jobs by name in ``job``'s tenant, from ``jobs`` ((tenant id, name) -> job) or the
    database. Raises :class:`DocumentError` at the first bad entry."""
    if not isinstance(deps, list):
        raise DocumentError(at(where, "depends_on", gettext("must be a list")))
    for index, dep in enumerate(deps):
        path = f"{where}: depends_on[{index}]"
        if not isinstance(dep, dict) or set(dep) - {"job", "condition"}:
            raise DocumentError(f"{path}: " + gettext("must be an object with 'job' and 'condition'"))
        upstream = (jobs or {}).get((job.tenant_id, dep.get("job"))) or Job.objects.filter(
            tenant_id=job.tenant_id, name=dep.get("job")
        ).first()
        if upstream is None:
            raise DocumentError(
                at(
                    path,
                    "job",
                    gettext("unknown job %(name)r in tenant %(tenant)s")
                    % {"name": dep.get("job"), "tenant": job.tenant.slug},
                )
            )
        condition = dep.get("condition", "success")
        if condition != "success" and job.trigger_rule != TriggerRule.ALL_SUCCESS:
            raise DocumentError(f"{path}.condition: {_rule_message(condition, job)}")
        yield upstream, condition


def dependency_error(exc: ValidationError, *, where: str) -> DocumentError:
    """A dependency edge the model refused (a cycle, a bad condition), as ``depends_on``."""
    return DocumentError(f"{where}: depends_on: {validation_message(exc).replace('downstream: ', '')}")


# -- model -> document ------------------------------------------------------------------


def export_job(
    job: Job,
    *,
    secrets: str = "omit",
    calendars: Iterable[Calendar] | None = None,
    depends_on: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A job as a job document. ``secrets``: ``omit``; ``encrypted`` (the ciphertext,
    as ``secret_kwargs_encrypted``); ``fingerprints`` (for comparing versions).
    ``calendars`` / ``depends_on``: already read by the caller (lists of many jobs)."""
    doc: dict[str, Any] = {
        "tenant": job.tenant.slug,
        "name": job.name,
        "description": job.description,
        "group": group_name(job),
        "task": job.task,
        "args": job.args,
        "kwargs": job.kwargs,
    }
    if secrets == "encrypted" and job.secrets_token:
        doc["secret_kwargs_encrypted"] = job.secrets_token
    elif secrets == "fingerprints":
        doc["secret_fingerprints"] = dict(job.secret_fingerprints or {})
    if calendars is None:
        calendars = job.calendars.all() if job.pk else []
    doc.update(
        {
            "trigger": job.trigger,
            "calendars": calendar_names(calendars),
            "enabled": job.enabled,
            "paused": job.paused,
            "priority": job.priority,
            "executor": job.executor,
            "max_instances": job.max_instances,
            "overlap_policy": job.overlap_policy,
            "misfire": {"policy": job.misfire_policy, "grace_seconds": job.misfire_grace_seconds},
            "retry": {
                "max_attempts": job.retry_max_attempts,
                "backoff_seconds": job.retry_backoff_seconds,
                "backoff_factor": job.retry_backoff_factor,
                "max_backoff_seconds": job.retry_max_backoff_seconds,
            },
            "timeout_seconds": job.timeout_seconds,
            "limits": {"cpu_seconds": job.cpu_limit_seconds, "memory_mb": job.memory_limit_mb},
            "routing": {"mode": job.routing, "tags": job.routing_tags},
            "pause_after_failures": job.pause_after_failures,
            "rate_limit": job.rate_limit,
            "concurrency_key": job.concurrency_key,
            "concurrency_limit": job.concurrency_limit,
            "throttle_policy": job.throttle_policy,
            "load": {"policy": job.load_policy, "max_delay_seconds": job.load_max_delay_seconds},
            "trigger_rule": job.trigger_rule,
            "upstream_param": job.upstream_param,
        }
    )
    if depends_on is not None:
        doc["depends_on"] = depends_on
    elif job.pk:
        doc["depends_on"] = [
            {"job": edge.upstream.name, "condition": edge.condition}
            for edge in job.upstream_edges.select_related("upstream").order_by("upstream__name")
        ]
    return doc
