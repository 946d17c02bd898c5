"""Objects as the API shows them. A job is its job document (the one codec,
:func:`scheduler_app.documents.job.export_job`) plus ``id``, ``version`` and read-only
status; lists read what they show in a fixed number of queries, never one per job."""

from __future__ import annotations

import operator
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.db.models import F, JSONField, Max, Model, OuterRef, QuerySet, Subquery, TextField
from django.db.models.base import ModelState
from django.db.models.functions import Cast
from django.utils import timezone

from scheduler_app.backends import joins
from scheduler_app.documents import job as job_document
from scheduler_app.engine.results import MASK
from scheduler_app.models import (
    Calendar,
    CalendarDate,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    JobRunLog,
    JobVersion,
    Membership,
    RunState,
    Tenant,
)
from scheduler_app.monitoring import nextfire, waiting
from scheduler_app.services import permissions, summaries

#: Keys of a job's representation that are not part of its document (ignored on write).
JOB_READ_ONLY = ("id", "version", "next_fire_time", "last_run", "secret_kwarg_names")


def iso(moment: datetime | None) -> str | None:
    """An aware time with seconds and its UTC offset."""
    if moment is None:
        return None
    return moment.isoformat()


#: Job columns a representation never shows (``secret_kwarg_names`` comes from
#: ``secret_names``): not read nor decoded.
JOB_UNREAD = frozenset({"secrets_token", "secret_fingerprints"})
#: The columns :func:`jobs_queryset` reads.
JOB_COLUMNS = tuple(f.attname for f in Job._meta.concrete_fields if f.attname not in JOB_UNREAD)
#: Of those, the JSON columns: read as their stored text (``_raw_<name>``), which is
#: compared as part of the document cache's key and decoded (by the field, exactly as
#: ``values()`` would) only for a job whose document is not cached.
JOB_JSON = tuple(
    f.attname for f in Job._meta.concrete_fields if f.attname in JOB_COLUMNS and isinstance(f, JSONField)
)
JOB_PLAIN = tuple(name for name in JOB_COLUMNS if name not in JOB_JSON)


def jobs_queryset(queryset: QuerySet) -> QuerySet:
    """The rows (``values()``) of jobs with what their representation needs besides
    their columns: the latest version number and the last run's id, in subqueries of the
    one query. :func:`jobs` reads the page's tenants, groups, last runs, calendars and
    dependencies in one query each, and builds the jobs from the rows without Django's
    model machinery (which cost more than half of a page's rendering)."""
    last = (
        JobRun.objects.filter(job=OuterRef("pk"))
        .exclude(state=RunState.QUEUED)
        .order_by("-scheduled_for", "-attempt")
    )
    version = (
        JobVersion.objects.filter(job=OuterRef("pk"))
        .order_by()
        .values("job")
        .annotate(n=Max("number"))
        .values("n")
    )
    return queryset.annotate(
        _version=Subquery(version),
        _last_id=Subquery(last.values("pk")[:1]),
        _tenant_slug=F("tenant__slug"),
        _group_name=F("group__name"),
        **{f"_raw_{name}": Cast(name, TextField()) for name in JOB_JSON},
    ).values(
        *JOB_PLAIN,
        *(f"_raw_{name}" for name in JOB_JSON),
        "_version",
        "_last_id",
        "_tenant_slug",
        "_group_name",
    )


def decode_row(row: dict[str, Any], db: str) -> dict[str, Any]:
    """A row of :func:`jobs_queryset` with its JSON columns decoded by their fields (as
    ``values()`` of the columns gives them)."""
    out = {k: v for k, v in row.items() if not k.startswith("_raw_")}
    connection = connections[db]
    for name in JOB_JSON:
        raw = row[f"_raw_{name}"]
        out[name] = None if raw is None else Job._meta.get_field(name).from_db_value(raw, None, connection)
    return out


def _shared(model: type[Model], cache: dict[int, Any], pk: int, db: str, **values: Any) -> Any:
    """One instance per object of a page, with only ``values`` read (its other fields
    load on access, as with ``only()``)."""
    obj = cache.get(pk)
    if obj is None:
        obj = cache[pk] = model.__new__(model)
        obj._state = ModelState()
        obj._state.adding = False
        obj._state.db = db
        obj.__dict__.update(id=pk, **values)
    return obj


def job_from_row(
    row: dict[str, Any], tenants: dict[int, Tenant], groups: dict[int, JobGroup], db: str
) -> Job:
    """A :class:`Job` from a row of :func:`jobs_queryset` with its tenant (slug read)
    and group (name read), as ``Model.from_db`` would build it but without
    ``__init__``'s per-field work; columns not read load on access (as deferred fields
    do). The page's jobs share their tenants' and groups' instances."""
    row = dict(row)
    tenant_slug, group_name = row.pop("_tenant_slug"), row.pop("_group_name")
    job = Job.__new__(Job)
    job._state = ModelState()
    job._state.adding = False
    job._state.db = db
    job.__dict__.update(row)
    job._loaded_trigger = row["trigger"]
    Job.tenant.field.set_cached_value(job, _shared(Tenant, tenants, row["tenant_id"], db, slug=tenant_slug))
    if row["group_id"] is not None:
        group = _shared(JobGroup, groups, row["group_id"], db, tenant_id=row["tenant_id"], name=group_name)
        Job.group.field.set_cached_value(job, group)
    return job


def job_of_row(row: dict[str, Any]) -> Job:
    """The :class:`Job` of one row of :func:`jobs_queryset` (for a permission check on
    the job a detail shows, without reading it a second time)."""
    db = router.db_for_read(Job)
    return job_from_row(decode_row(row, db), {}, {}, db)


def _text_size(columns: tuple[Any, ...]) -> int:
    """Characters of the text columns of a document's key (what dominates its size)."""
    return sum(len(v) for v in columns if isinstance(v, str))


def current_version(job: Job) -> int:
    return job.versions.aggregate(n=Max("number"))["n"] or 0


#: Job documents kept per process (an ordinary job's costs about 6 KB; beyond this many
#: the least recently used is dropped for each new one).
MAX_CACHED_DOCUMENTS = 10_000
#: A job whose stored text (kwargs, trigger, description ...) is longer than this is not
#: kept (built on each request): the bound on memory is then documents x this, not
#: documents x the largest kwargs the API accepts.
MAX_CACHED_DOCUMENT_TEXT = 16_384
_documents_lock = threading.Lock()
#: job id -> (key, document, sorted secret names, the job built for it, its trigger as
#: :mod:`~scheduler_app.monitoring.nextfire` writes it). The key is all that the
#: document is made of -- the job's columns as read (JSON as stored text), its tenant's
#: slug, its group's name, its calendars' names, its upstream dependencies -- so any
#: change of one of them, by whichever process, gives another key: there is nothing to
#: invalidate and no stale document to serve. Who may see a job is not cached (the
#: page's query is scoped on every request), nor are version, next fire and last run.
_documents: dict[int, tuple[tuple[Any, ...], dict[str, Any], list[str], Job, str]] = {}


#: What of a row of :func:`jobs_queryset` a document is made of (not the version
#: number nor the last run, which change without changing it).
_document_columns = operator.itemgetter(
    *JOB_PLAIN, *(f"_raw_{name}" for name in JOB_JSON), "_tenant_slug", "_group_name"
)


def _among(queryset: QuerySet, column: str, ids: Sequence[int]) -> QuerySet:
    """``column IN ids``; on PostgreSQL as one array parameter (``= ANY(%s)``): a page's
    hundred ids as a hundred parameters cost more of a page's CPU, in Django's per-value
    preparation and the driver's quoting, than the rows they read."""
    if connections[queryset.db].vendor != "postgresql":
        return queryset.filter(**{f"{column}__in": ids})
    table = queryset.model._meta.db_table
    return queryset.extra(where=[f'"{table}"."{column}" = ANY(%s)'], params=[[int(pk) for pk in ids]])


def forget_documents() -> None:
    with _documents_lock:
        _documents.clear()


def jobs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Representations of the rows of :func:`jobs_queryset`, in at most four more
    queries whatever their number (last runs, dependencies, calendars, calendar dates;
    last runs and dates only when there are some). A job's document is reused while
    what it is made of is unchanged (:data:`_documents`); next fire times are reused
    across requests while they hold (:mod:`scheduler_app.monitoring.nextfire`)."""
    ids = [row["id"] for row in rows]
    tenants: dict[int, Tenant] = {}
    groups: dict[int, JobGroup] = {}
    last_runs = {
        pk: rest
        for pk, *rest in _among(
            JobRun.objects.all(), "id", [row["_last_id"] for row in rows if row["_last_id"] is not None]
        ).values_list("pk", "state", "scheduled_for", "finished_at")
    }
    deps: dict[int, list[dict[str, str]]] = defaultdict(list)
    for down, up_name, condition in (
        _among(JobDependency.objects.all(), "downstream_id", ids)
        .order_by("upstream__name")
        .values_list("downstream_id", "upstream__name", "condition")
    ):
        deps[down].append({"job": up_name, "condition": condition})
    # The page's calendars in one query, shared by the jobs that use them (not
    # prefetch_related: it builds and filters a related manager's queryset per job,
    # which cost more than the rest of a page's rendering).
    job_calendars: dict[int, list[Calendar]] = defaultdict(list)
    shared: dict[int, Calendar] = {}
    for link in _among(Job.calendars.through.objects.all(), "job_id", ids).select_related("calendar"):
        job_calendars[link.job_id].append(shared.setdefault(link.calendar_id, link.calendar))
    calendar_ids = set(shared)
    dates: dict[int, list[Any]] = defaultdict(list)
    if calendar_ids:
        for cal_id, day in CalendarDate.objects.filter(calendar_id__in=calendar_ids).values_list(
            "calendar_id", "date"
        ):
            dates[cal_id].append(day)
    now = timezone.now()
    db = router.db_for_read(Job)
    out = []
    for row in rows:
        pk = row["id"]
        calendars = job_calendars.get(pk, [])
        depends_on = deps[pk]
        key = (
            db,
            _document_columns(row),
            tuple(c.name for c in calendars),
            tuple((d["job"], d["condition"]) for d in depends_on),
        )
        cached = _documents.get(pk)
        if cached is not None and cached[0] == key:
            _, doc, secret_names, job, trigger_text = cached
            with _documents_lock:  # the least recently used is dropped first
                if _documents.pop(pk, None) is not None:
                    _documents[pk] = cached
        else:
            job = job_from_row(decode_row(row, db), tenants, groups, db)
            doc = job_document.export_job(job, calendars=calendars, depends_on=depends_on)
            secret_names = sorted(job.secret_names or [])
            trigger_text = nextfire.trigger_text(job)
            if _text_size(key[1]) <= MAX_CACHED_DOCUMENT_TEXT:
                with _documents_lock:
                    _documents.pop(pk, None)
                    while len(_documents) >= MAX_CACHED_DOCUMENTS:
                        _documents.pop(next(iter(_documents)))
                    _documents[pk] = (key, doc, secret_names, job, trigger_text)
        excluded = [d for c in calendars for d in dates[c.pk]]
        last_id = row["_last_id"]
        last_run = last_runs.get(last_id)
        out.append(
            {
                "id": pk,
                **doc,
                "secret_kwarg_names": list(secret_names),
                "version": row["_version"] or 0,
                "next_fire_time": iso(nextfire.next_fire_time(job, excluded, now, trigger_text=trigger_text)),
                "last_run": _last_run(last_id, last_run),
            }
        )
    return out


def _last_run(last_id: int | None, last_run: Sequence[Any] | None) -> dict[str, Any] | None:
    if last_id is None or last_run is None:
        return None
    return {
        "id": last_id,
        "state": last_run[0],
        "scheduled_for": iso(last_run[1]),
        "finished_at": iso(last_run[2]),
    }


def job(row: dict[str, Any]) -> dict[str, Any]:
    return jobs([row])[0]


# -- runs -------------------------------------------------------------------------------

RUN_LIST_FIELDS = (
    "id",
    "job_id",
    "tenant_id",
    "scheduled_for",
    "attempt",
    "state",
    "reason",
    "priority",
    "not_before",
    "node",
    "executor",
    "queued_at",
    "claimed_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "duration",
    "error_type",
    "error",
    "wait_reason",
    "stop_requested",
    "is_final",
    "triggered_by_id",
    "kwargs_override",
)


#: What :func:`run` reads of a run's job (and :func:`waiting.wait_reason` of its routing).
RUN_LIST_JOB_FIELDS = (
    "job__name",
    "job__tenant_id",
    "job__group_id",
    "job__secret_names",
    "job__routing",
    "job__routing_tags",
    "job__tenant__slug",
    "job__group__name",
)


def runs_queryset(queryset: QuerySet) -> QuerySet:
    return queryset.select_related("job__tenant", "job__group")


def runs_list_rows(queryset: QuerySet) -> QuerySet:
    """Runs for a list: only the columns a list item shows (not the result, traceback,
    resource figures, nor the job's document), so a page decodes no JSON it does not
    show; as rows (``values()``), from which :func:`runs_from_rows` builds the runs
    without Django's model machinery (four model instances per run cost a third of a
    page)."""
    return queryset.values(*RUN_LIST_FIELDS, "target_node", *RUN_LIST_JOB_FIELDS)


def runs_from_rows(rows: Iterable[dict[str, Any]]) -> list[JobRun]:
    """:class:`JobRun` objects of rows of :func:`runs_list_rows`, with their job (its
    tenant's slug and its group's name read), as ``select_related`` and ``only`` would
    build them; the page's runs of one job share its instance."""
    db = router.db_for_read(JobRun)
    jobs: dict[int, Job] = {}
    tenants: dict[int, Tenant] = {}
    groups: dict[int, JobGroup] = {}
    out = []
    for row in rows:
        job_id, tenant_id, group_id = row["job_id"], row["job__tenant_id"], row["job__group_id"]
        job = jobs.get(job_id)
        if job is None:
            job = jobs[job_id] = _shared(
                Job,
                {},
                job_id,
                db,
                name=row["job__name"],
                tenant_id=tenant_id,
                group_id=group_id,
                secret_names=row["job__secret_names"],
                routing=row["job__routing"],
                routing_tags=row["job__routing_tags"],
            )
            Job.tenant.field.set_cached_value(
                job, _shared(Tenant, tenants, tenant_id, db, slug=row["job__tenant__slug"])
            )
            if group_id is not None:
                group = _shared(
                    JobGroup, groups, group_id, db, tenant_id=tenant_id, name=row["job__group__name"]
                )
                Job.group.field.set_cached_value(job, group)
        item = JobRun.__new__(JobRun)
        item._state = ModelState()
        item._state.adding = False
        item._state.db = db
        item.__dict__.update({name: row[name] for name in RUN_LIST_FIELDS}, target_node=row["target_node"])
        JobRun.job.field.set_cached_value(item, job)
        out.append(item)
    return out


def run_log(item: JobRun) -> JobRunLog | None:
    """The run's captured log: from ``select_related("captured_log")`` when the query
    had it, else one query."""
    if "captured_log" in item._state.fields_cache:
        return item._state.fields_cache["captured_log"]
    return JobRunLog.objects.filter(run_id=item.pk).first()


def log_fields(log: JobRunLog | None, offset: int | None = None) -> dict[str, Any]:
    """``log``: the stored text (the marker first if lines were dropped), or with an
    ``offset`` only the lines numbered from it (from the first kept line if it is
    older), to follow a running run: call again with ``log_next_offset``."""
    if log is None:
        return {"log": "", "log_offset": 0, "log_next_offset": 0, "log_lines_dropped": 0}
    if offset is None:
        text, first = log.text, int(log.lines_dropped)
    else:
        lines, first = log.lines_from(offset)
        text = "\n".join(lines)
    return {
        "log": text,
        "log_offset": first,
        "log_next_offset": int(log.lines_total),
        "log_lines_dropped": int(log.lines_dropped),
    }


def viewable_causes(items: list[JobRun], viewer: Any) -> set[int]:
    """The ids of the runs that caused ``items`` (``triggered_by``) which ``viewer`` may
    view: a cause is a link, not a scope (a restored history may point into another
    tenant). One query for a page."""
    ids = {i.triggered_by_id for i in items if i.triggered_by_id is not None}
    if not ids:
        return set()
    causes = JobRun.objects.filter(pk__in=ids).select_related("job").only("pk", "job__tenant", "job__group")
    return permissions.viewable(viewer, causes)


def run(
    item: JobRun,
    *,
    viewer: Any,
    detail: bool = False,
    log_offset: int | None = None,
    causes: set[int] | None = None,
) -> dict[str, Any]:
    """A run as the API shows it to ``viewer``: the runs around it (its cause, its
    upstream runs) only if the viewer may view them (``causes``: from
    :func:`viewable_causes` for a page of runs)."""
    job = item.job
    if causes is None:
        causes = viewable_causes([item], viewer)
    secret = set(job.secret_names or [])
    override = {k: (MASK if k in secret else v) for k, v in (item.kwargs_override or {}).items()}
    out: dict[str, Any] = {
        "id": item.pk,
        "job": job.pk,
        "job_name": job.name,
        "tenant": job.tenant.slug,
        "group": job.group.name if job.group_id else None,
        "scheduled_for": iso(item.scheduled_for),
        "attempt": item.attempt,
        "state": item.state,
        "reason": item.reason,
        "priority": item.priority,
        "not_before": iso(item.not_before),
        "node": item.node,
        "executor": item.executor,
        "queued_at": iso(item.queued_at),
        "claimed_at": iso(item.claimed_at),
        "started_at": iso(item.started_at),
        "finished_at": iso(item.finished_at),
        "heartbeat_at": iso(item.heartbeat_at),
        "duration": item.duration,
        "error_type": item.error_type,
        "error": item.error,
        "wait_reason": (reason := waiting.wait_reason(item)),
        "wait_reason_display": waiting.translate(reason),
        "stop_requested": item.stop_requested,
        "is_final": item.is_final,
        "triggered_by": item.triggered_by_id if item.triggered_by_id in causes else None,
        "kwargs_override": override,
    }
    if detail:
        entries = joins.upstream_of(item)
        shown = permissions.viewable(viewer, [e["run"] for e in entries if e["run"] is not None])
        hidden = {e["id"] for e in entries if e["run"] is not None and e["id"] not in shown}
        out.update(
            cpu_seconds=item.cpu_seconds,
            peak_memory_mb=item.peak_memory_mb,
            result=item.result,
            traceback=item.traceback,
            upstream_runs=[e["id"] for e in entries if e["id"] not in hidden],
            upstream=[_upstream(e) for e in entries if e["id"] not in hidden],
            **log_fields(run_log(item), log_offset),
        )
    return out


def _upstream(entry: dict[str, Any]) -> dict[str, Any]:
    up = entry["run"]
    return {
        "id": entry["id"],
        "job": up.job_id if up else None,
        "job_name": up.job.name if up else None,
        "state": up.state if up else None,
        "finished_at": iso(up.finished_at) if up else None,
        "passed": entry.get("passed"),
    }


# -- the rest ---------------------------------------------------------------------------


def version(item: JobVersion, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": item.number,
        "created_at": iso(item.created_at),
        "author": item.author.get_username() if item.author_id else None,
        "summary": summaries.translate(item.summary),
    }
    if detail:
        out["snapshot"] = item.snapshot
    return out


def tenant(item: Tenant, roles: dict[int, str]) -> dict[str, Any]:
    return {
        "id": item.pk,
        "slug": item.slug,
        "name": item.name,
        "created_at": iso(item.created_at),
        "role": roles.get(item.pk),
    }


def member(item: Membership) -> dict[str, Any]:
    return {"user": item.user.get_username(), "user_id": item.user_id, "role": item.role}


def group(item: JobGroup) -> dict[str, Any]:
    return {
        "id": item.pk,
        "tenant": item.tenant.slug,
        "name": item.name,
        "description": item.description,
        "rate_limit": item.rate_limit,
    }


def calendar(item: Calendar) -> dict[str, Any]:
    return {
        "id": item.pk,
        "tenant": item.tenant.slug,
        "name": item.name,
        "description": item.description,
        "dates": [{"date": d.date.isoformat(), "label": d.label} for d in item.dates.all()],
    }


def dependency(item: JobDependency) -> dict[str, Any]:
    return {
        "id": item.pk,
        "tenant": item.tenant.slug,
        "upstream": item.upstream_id,
        "upstream_name": item.upstream.name,
        "downstream": item.downstream_id,
        "downstream_name": item.downstream.name,
        "condition": item.condition,
    }
