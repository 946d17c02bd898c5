"""Backup and restore of the whole scheduler_app configuration as one JSON document.

A backup holds tenants, the users and Django groups that memberships, object
permissions and job versions refer to, memberships, job groups, calendars with their
dates, jobs (every field), dependencies, job versions, django-guardian object
permissions on jobs and job groups, alert channels and alert rules and, with
``with_runs``, the run history with each run's captured log, as stored (secrets
masked), and the open rounds of joins (``JobJoin``) (per-job alert mutes are a field of
the job). Runs refer to runs (``triggered_by``, ``upstream_runs``, a round's ends) by
natural key (tenant, job, scheduled_for, attempt and, for a broadcast fire's per-node
copies, target_node). Objects are
keyed by natural keys (tenant slug + name, username, group name), never by database ids,
so a backup restores into any database.

* **Consistency.** Everything is read inside one transaction: on PostgreSQL a
  ``REPEATABLE READ, READ ONLY`` transaction (one snapshot for the whole file); on SQLite
  a deferred read transaction, which in WAL mode (the project's setting) is a snapshot
  that does not block the scheduler's writes; other databases get Django's default
  isolation inside ``transaction.atomic()``.
* **Secrets** are written only as the existing ciphertext (a job's ``secrets_token``
  with the names and fingerprints, an alert channel's ``secret_token`` with its
  fingerprint); nothing is decrypted to back up. Restore checks that every ciphertext
  still decrypts with a configured key and refuses otherwise.
* **Users.** Password hashes are never written. A restored user who does not exist yet
  is created with an unusable password (set one with ``changepassword`` or log in
  through SSO); an existing user (same username) keeps its password and account fields
  and is only added to the Django groups listed for it.
* **Restore** is all or nothing: any error rolls everything back, and the message names
  the entry (``jobs[3] (acme/invoices): priority: ...``).

The document is written one entry per line, so it is readable and diffable::

    {
    "format": "scheduler_app-backup",
    "version": 1,
    "created_at": "2026-...",
    "with_runs": false,
    "auth_groups": [
    {"name": "ops"}
    ],
    ...
    "counts": {"auth_groups": 1, ...}
    }
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Case, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from scheduler_app import documents
from scheduler_app.backends import joins
from scheduler_app.documents import job as job_document
from scheduler_app.documents import limits
from scheduler_app.engine import rules
from scheduler_app.engine.results import MASK
from scheduler_app.models import (
    AlertChannel,
    AlertRule,
    Calendar,
    CalendarDate,
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobJoin,
    JobRun,
    JobRunLog,
    JobVersion,
    Membership,
    Tenant,
)

FORMAT = "scheduler_app-backup"
FORMAT_VERSION = 1
#: Sections in file (and restore) order.
SECTIONS = (
    "auth_groups",
    "users",
    "tenants",
    "memberships",
    "groups",
    "calendars",
    "jobs",
    "dependencies",
    "job_versions",
    "object_permissions",
    "alert_channels",
    "alert_rules",
    "runs",
    "join_rounds",
)
HEADER_KEYS = ("format", "version", "created_at", "with_runs")
TOP_LEVEL_KEYS = {*HEADER_KEYS, *SECTIONS, "counts"}
USER_FIELDS = ("email", "first_name", "last_name", "is_active", "is_staff", "is_superuser")
#: Object permissions are backed up for these models (their ``model`` value in the file).
PERMISSION_MODELS = {"job": Job, "jobgroup": JobGroup}
PROGRESS_EVERY = 1000
BATCH_SIZE = 500
#: Deepest nesting of a run's stored result that a backup may hold.
RESULT_DEPTH = 200

Progress = Callable[[str, int], None]
Warn = Callable[[str], None]


class BackupError(ValueError):
    """The backup cannot be written or restored; the message names the entry and field."""


# -- fields -----------------------------------------------------------------------------


def _plain_fields(model: type[models.Model], skip: Iterable[str] = ()) -> list[models.Field]:
    """Concrete, non-relational fields except the primary key: what a backup copies."""
    skipped = set(skip)
    return [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key and not f.is_relation and f.name not in skipped
    ]


def _dump(field: models.Field, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(field, models.DateTimeField):
        return (value.astimezone(UTC) if timezone.is_aware(value) else value).isoformat()
    if isinstance(field, models.DateField | models.TimeField):
        return value.isoformat()
    if isinstance(field, models.DecimalField | models.UUIDField):
        return str(value)
    return value


def _when(value: datetime | None) -> str | None:
    return None if value is None else _dump(models.DateTimeField(), value)


# -- backup -----------------------------------------------------------------------------


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """One consistent read of the database for everything inside (see the module doc)."""
    if connection.in_atomic_block:
        yield  # the caller's transaction decides
        return
    if connection.vendor == "sqlite":
        # Django's atomic() would BEGIN IMMEDIATE (the project's setting) and block every
        # writer for the whole backup; a deferred transaction is a read snapshot in WAL.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("COMMIT")
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def write_backup(
    path: str | Path, *, with_runs: bool = False, progress: Progress | None = None
) -> dict[str, int]:
    """Write the backup to ``path`` (atomically: a temporary file renamed at the end, mode
    0600); returns the count of entries per section."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackupError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out, snapshot():
            counts = _write(out, with_runs, progress)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return counts


def _write(out: IO[str], with_runs: bool, progress: Progress | None) -> dict[str, int]:
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": _when(timezone.now()),
        "with_runs": with_runs,
    }
    out.write("{\n")
    for key, value in header.items():
        out.write(f"{json.dumps(key)}: {json.dumps(value)},\n")
    counts: dict[str, int] = {}
    for name, rows in _sections(with_runs):
        out.write(f"{json.dumps(name)}: [")
        count = 0
        for row in rows:
            out.write(("\n" if count == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
            count += 1
            if progress and count % PROGRESS_EVERY == 0:
                progress(name, count)
        out.write("\n],\n" if count else "],\n")
        counts[name] = count
    out.write(f'"counts": {json.dumps(counts)}\n}}\n')
    return counts


def _sections(with_runs: bool) -> Iterator[tuple[str, Iterable[dict[str, Any]]]]:
    from guardian.models import GroupObjectPermission, UserObjectPermission

    User = get_user_model()
    content_types = _permission_content_types()
    user_perms = UserObjectPermission.objects.filter(content_type__in=content_types.values())
    group_perms = GroupObjectPermission.objects.filter(content_type__in=content_types.values())
    user_ids = (
        set(Membership.objects.values_list("user_id", flat=True))
        | set(user_perms.values_list("user_id", flat=True))
        | set(JobVersion.objects.exclude(author=None).values_list("author_id", flat=True))
    )
    users = list(User._default_manager.filter(pk__in=user_ids).prefetch_related("groups"))
    users.sort(key=lambda u: u.get_username())
    group_names = set(group_perms.values_list("group__name", flat=True))
    for user in users:
        group_names.update(g.name for g in user.groups.all())

    yield "auth_groups", ({"name": name} for name in sorted(group_names))
    yield "users", (_user_entry(u) for u in users)
    yield "tenants", (_entry(t, {}) for t in Tenant.objects.order_by("slug"))
    yield (
        "memberships",
        (
            _entry(m, {"tenant": m.tenant.slug, "user": m.user.get_username()})
            for m in sorted(
                Membership.objects.select_related("tenant", "user"),
                key=lambda m: (m.tenant.slug, m.user.get_username()),
            )
        ),
    )
    yield (
        "groups",
        (
            _entry(g, {"tenant": g.tenant.slug})
            for g in JobGroup.objects.select_related("tenant").order_by("tenant__slug", "name")
        ),
    )
    yield (
        "calendars",
        (
            _entry(
                c,
                {"tenant": c.tenant.slug},
                dates=[_entry(d, {}) for d in sorted(c.dates.all(), key=lambda d: d.date)],
            )
            for c in Calendar.objects.select_related("tenant")
            .prefetch_related("dates")
            .order_by("tenant__slug", "name")
        ),
    )
    yield (
        "jobs",
        (
            _entry(
                j,
                {
                    "tenant": j.tenant.slug,
                    "name": j.name,
                    "group": job_document.group_name(j),
                    "calendars": job_document.calendar_names(j.calendars.all()),
                },
            )
            for j in Job.objects.select_related("tenant", "group")
            .prefetch_related("calendars")
            .order_by("tenant__slug", "name")
        ),
    )
    yield (
        "dependencies",
        (
            _entry(
                d,
                {
                    "tenant": d.tenant.slug,
                    "upstream": d.upstream.name,
                    "downstream": d.downstream.name,
                },
            )
            for d in JobDependency.objects.select_related("tenant", "upstream", "downstream").order_by(
                "tenant__slug", "downstream__name", "upstream__name"
            )
        ),
    )
    yield "job_versions", _versions()
    yield "object_permissions", _object_permissions(user_perms, group_perms, content_types)
    yield (
        "alert_channels",
        (
            _entry(c, {"tenant": c.tenant.slug})
            for c in AlertChannel.objects.select_related("tenant").order_by("tenant__slug", "name")
        ),
    )
    yield (
        "alert_rules",
        (
            _entry(
                r,
                {
                    "tenant": r.tenant.slug,
                    "name": r.name,
                    "scope": r.scope,
                    "channels": sorted(c.name for c in r.channels.all()),
                },
            )
            for r in AlertRule.objects.select_related("tenant", "scope_job", "scope_group")
            .prefetch_related("channels")
            .order_by("tenant__slug", "name")
        ),
    )
    if with_runs:
        yield "runs", _runs()
        yield "join_rounds", _join_rounds()


def _entry(obj: models.Model, keys: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    skip = set(keys) | set(extra)
    row = dict(keys)
    for field in _plain_fields(type(obj), skip):
        row[field.name] = _dump(field, field.value_from_object(obj))
    row.update(extra)
    return row


def _user_entry(user: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"username": user.get_username()}
    for name in USER_FIELDS:
        if hasattr(user, name):
            row[name] = getattr(user, name)
    row["groups"] = sorted(g.name for g in user.groups.all())
    return row


def _versions() -> Iterator[dict[str, Any]]:
    User = get_user_model()
    qs = (
        JobVersion.objects.select_related("tenant", "job")
        .order_by("tenant__slug", "job__name", "number")
        .values(
            "tenant__slug",
            "job__name",
            f"author__{User.USERNAME_FIELD}",
            *[f.name for f in _plain_fields(JobVersion)],
        )
    )
    fields = _plain_fields(JobVersion)
    for row in qs.iterator(chunk_size=2000):
        entry = {"tenant": row["tenant__slug"], "job": row["job__name"]}
        entry["number"] = row["number"]
        entry["author"] = row[f"author__{User.USERNAME_FIELD}"]
        for field in fields:
            entry[field.name] = _dump(field, row[field.name])
        yield entry


def _permission_content_types() -> dict[str, ContentType]:
    return {key: ContentType.objects.get_for_model(model) for key, model in PERMISSION_MODELS.items()}


def _object_permissions(
    user_perms: Any, group_perms: Any, content_types: dict[str, ContentType]
) -> list[dict[str, Any]]:
    keys = {}
    by_ct = {ct.pk: name for name, ct in content_types.items()}
    for name, model in PERMISSION_MODELS.items():
        for pk, slug, obj_name in model.objects.values_list("pk", "tenant__slug", "name"):
            keys[(name, str(pk))] = (slug, obj_name)
    rows = []
    for kind, qs in (
        (
            "user",
            user_perms.values_list(
                f"user__{get_user_model().USERNAME_FIELD}",
                "permission__codename",
                "content_type_id",
                "object_pk",
            ),
        ),
        (
            "group",
            group_perms.values_list("group__name", "permission__codename", "content_type_id", "object_pk"),
        ),
    ):
        for holder, codename, ct_id, object_pk in qs:
            model_name = by_ct[ct_id]
            target = keys.get((model_name, str(object_pk)))
            if target is None:
                continue  # orphaned grant on a deleted object (guardian does not cascade)
            rows.append(
                {
                    kind: holder,
                    "permission": codename,
                    "model": model_name,
                    "tenant": target[0],
                    "name": target[1],
                }
            )
    rows.sort(
        key=lambda r: (
            "user" not in r,
            r.get("user") or r.get("group"),
            r["model"],
            r["tenant"],
            r["name"],
            r["permission"],
        )
    )
    return rows


#: A run's captured log (``JobRunLog``) rides with the run as ``"log"``: the text as
#: stored, i.e. with the run's secrets already masked (nothing is unmasked to back up).
LOG = "captured_log__"
LOG_FIELDS = ("text", "lines_total", "lines_dropped", "updated_at")


def _run_refs(ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Run id -> the run's natural key in a backup (ids of deleted runs are absent)."""
    refs: dict[int, dict[str, Any]] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), BATCH_SIZE * 4):
        for pk, tenant, job, when, attempt, node in JobRun.objects.filter(
            pk__in=wanted[start : start + BATCH_SIZE * 4]
        ).values_list("pk", "tenant__slug", "job__name", "scheduled_for", "attempt", "target_node"):
            refs[pk] = _ref(tenant, job, when, attempt, node)
    return refs


def _ref(tenant: str, job: str, when: datetime, attempt: int, target_node: str) -> dict[str, Any]:
    """A run's natural key: a broadcast fire has one run per node (``target_node``),
    written only when set (a run for any node, and backups before it, leave it out)."""
    ref: dict[str, Any] = {"tenant": tenant, "job": job, "scheduled_for": _when(when), "attempt": attempt}
    if target_node:
        ref["target_node"] = target_node
    return ref


def _runs() -> Iterator[dict[str, Any]]:
    fields = _plain_fields(JobRun)
    # upstream_runs hold run ids: written as the runs' natural keys (ids differ in the
    # database restored into); ids of runs deleted since are left out.
    upstream = _run_refs(
        int(i)
        for ids in JobRun.objects.exclude(upstream_runs=[]).values_list("upstream_runs", flat=True).iterator()
        for i in ids or ()
    )
    ref = "triggered_by__"
    qs = JobRun.objects.order_by(
        "tenant__slug", "job__name", "scheduled_for", "attempt", "target_node"
    ).values(
        "tenant__slug",
        "job__name",
        f"{ref}tenant__slug",
        f"{ref}job__name",
        f"{ref}scheduled_for",
        f"{ref}attempt",
        f"{ref}target_node",
        *[f"{LOG}{name}" for name in LOG_FIELDS],
        "job__secret_names",
        *[f.name for f in fields],
    )
    for row in qs.iterator(chunk_size=2000):
        entry: dict[str, Any] = {"tenant": row["tenant__slug"], "job": row["job__name"]}
        for field in fields:
            entry[field.name] = _dump(field, row[field.name])
        secret = set(row["job__secret_names"] or [])
        if secret and isinstance(entry.get("kwargs_override"), dict):
            # A run cannot override a secret any more; an older run may hold one in
            # clear: it is masked, never written to a backup.
            entry["kwargs_override"] = {
                k: (MASK if k in secret else v) for k, v in entry["kwargs_override"].items()
            }
        if row[f"{LOG}updated_at"] is not None:  # the run captured a log
            entry["log"] = {
                "text": row[f"{LOG}text"],
                "lines_total": row[f"{LOG}lines_total"],
                "lines_dropped": row[f"{LOG}lines_dropped"],
                "updated_at": _when(row[f"{LOG}updated_at"]),
            }
        entry["upstream_runs"] = [
            upstream[int(i)] for i in entry.get("upstream_runs") or () if int(i) in upstream
        ]
        if row[f"{ref}job__name"] is None:
            entry["triggered_by"] = None
        else:
            entry["triggered_by"] = _ref(
                row[f"{ref}tenant__slug"],
                row[f"{ref}job__name"],
                row[f"{ref}scheduled_for"],
                row[f"{ref}attempt"],
                row[f"{ref}target_node"],
            )
        yield entry


def _join_rounds() -> Iterator[dict[str, Any]]:
    """Open rounds of joins (``JobJoin``): their ends name the upstream job and run by
    natural keys (``run`` null for a run deleted since)."""
    rounds = list(
        JobJoin.objects.select_related("job__tenant").order_by(
            "job__tenant__slug", "job__name", "opened_at", "pk"
        )
    )
    job_ids = {int(k) for r in rounds for k in r.ends}
    names = dict(Job.objects.filter(pk__in=job_ids).values_list("pk", "name"))
    runs = _run_refs(int(end["run"]) for r in rounds for end in r.ends.values() if end.get("run") is not None)
    for r in rounds:
        ends = []
        for key, end in sorted(r.ends.items(), key=lambda item: names.get(int(item[0]), "")):
            if int(key) not in names:
                continue  # the upstream job was deleted: its end no longer counts
            run_id = end.get("run")
            ends.append(
                {
                    "upstream": names[int(key)],
                    "run": runs.get(int(run_id)) if run_id is not None else None,
                    "end": joins.stored_end(end),
                }
            )
        yield {
            "tenant": r.job.tenant.slug,
            "job": r.job.name,
            "opened_at": _when(r.opened_at),
            "fired": r.fired,
            "ends": ends,
        }


# -- reading ----------------------------------------------------------------------------


def load_backup(path: str | Path) -> dict[str, Any]:
    """Read and check a backup file's header; raise BackupError if it is unusable (the
    messages do not repeat the path: callers put it in front)."""
    path = Path(path)
    try:
        text = limits.read_capped(path, limits.max_backup_bytes()).decode("utf-8")
        data = limits.loads_json(text, depth=RESULT_DEPTH + limits.DOCUMENT_SLACK)
    except limits.FileTooLarge as exc:
        if exc.size is not None:
            raise BackupError(
                _("the file is %(size)s bytes; a backup may be at most %(limit)s (MAX_BACKUP_BYTES)")
                % {"size": f"{exc.size:,}", "limit": limits.size_text(exc.limit)}
            ) from None
        raise BackupError(
            _("the file holds more than %(limit)s; a backup may be at most %(limit)s (MAX_BACKUP_BYTES)")
            % {"limit": limits.size_text(exc.limit)}
        ) from None
    except limits.LimitError as exc:
        raise BackupError(str(exc)) from None
    except OSError as exc:
        raise BackupError(f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BackupError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BackupError(
            f"not valid JSON (truncated or damaged?): {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    check_header(data)
    return data


def check_header(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise BackupError("the document must be a JSON object with 'format' and 'version'")
    fmt = doc.get("format")
    if fmt != FORMAT:
        hint = ""
        if fmt is None and "jobs" in doc and "version" in doc:
            hint = "; this looks like a jobs file: load it with importjobs"
        raise BackupError(f"format: {fmt!r} is not a scheduler_app backup (expected {FORMAT!r}){hint}")
    documents.check_header(
        doc,
        error=BackupError,
        supported=FORMAT_VERSION,
        allowed=TOP_LEVEL_KEYS,
        kind=pgettext("backup version", "backup format"),
        verb=pgettext("backup version", "restore"),
    )


# -- restore ----------------------------------------------------------------------------


def restore_document(
    doc: Mapping[str, Any],
    *,
    replace: bool = False,
    source: str = "",
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> dict[str, int]:
    """Load a backup into an empty scheduler_app database (``replace``: delete the
    current configuration first); all or nothing. Returns counts of what was restored."""
    check_header(doc)
    sections: dict[str, list[dict[str, Any]]] = {}
    for name in SECTIONS:
        items = doc.get(name, [])
        if not isinstance(items, list):
            raise BackupError(f"{name}: must be a list")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise BackupError(f"{name}[{index}]: must be an object")
            # Depth, NUL and size of each entry before anything walks it; a run's result
            # (written by the app, bounded by RESULT_MAX_BYTES) may nest deeper than input.
            try:
                if name == "runs":
                    limits.check_entry(item, f"{name}[{index}]", depth=RESULT_DEPTH, max_bytes=0)
                elif name == "job_versions":  # a snapshot holds a job's values one level down
                    limits.check_entry(item, f"{name}[{index}]", depth=limits.max_depth() + 1)
                else:
                    limits.check_entry(item, f"{name}[{index}]")
            except limits.LimitError as exc:
                raise BackupError(str(exc)) from None
        sections[name] = items
    counts = doc.get("counts")
    if counts is not None:
        if not isinstance(counts, dict):
            raise BackupError("counts: must be an object")
        for name, expected in counts.items():
            if name in sections and expected != len(sections[name]):
                raise BackupError(
                    f"counts: the file lists {len(sections[name])} {name} but says {expected}; "
                    "it was edited or damaged"
                )
    with transaction.atomic():
        tenants, jobs = Tenant.objects.count(), Job.objects.count()
        if (tenants or jobs) and not replace:
            raise BackupError(
                f"the database already holds scheduler_app configuration ({tenants} tenant(s), "
                f"{jobs} job(s)); restore into an empty database, or pass --replace to "
                "delete the current configuration first"
            )
        if replace:
            delete_configuration()
        restorer = _Restorer(sections, progress or (lambda name, n: None), warn or (lambda text: None))
        try:
            result = restorer.run()
        except job_document.DocumentError as exc:  # a job reference: the same message, as a BackupError
            raise BackupError(str(exc)) from None
        ConfigVersion.bump()
        from scheduler_app import audit

        for tenant in restorer.tenants.values():
            audit.record(tenant, "restore", None, source=source)
    return result


def delete_configuration() -> None:
    """Delete every scheduler_app tenant with everything in it (jobs, runs, versions,
    groups, calendars, memberships) and the object permissions on jobs and job groups.
    Users and Django groups stay."""
    from guardian.models import GroupObjectPermission, UserObjectPermission

    content_types = list(_permission_content_types().values())
    UserObjectPermission.objects.filter(content_type__in=content_types).delete()
    GroupObjectPermission.objects.filter(content_type__in=content_types).delete()
    with connection.cursor() as cursor:
        # Runs and versions can be many and carry no signals: delete them in one statement.
        for model in (JobRun, JobVersion):
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
    JobDependency.objects.all().delete()
    Job.objects.all().delete()
    Tenant.objects.all().delete()


def _messages(exc: ValidationError) -> str:
    return "; ".join(m.rstrip(".") for m in exc.messages)


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise BackupError(f"{where}: {key}: required, a non-empty string")
    return value


#: A run's natural key in a restore: tenant slug, job name, scheduled_for, attempt,
#: target_node ("" for a run any node may take).
RunKey = tuple[Any, Any, datetime, int, str]


def _key_text(key: RunKey) -> str:
    node = f" for {key[4]}" if key[4] else ""
    return f"{key[0]}/{key[1]} @ {key[2].isoformat()} #{key[3]}{node}"


def _no_runs(entry: Mapping[str, Any], where: str) -> RunKey:
    raise BackupError(f"{where}: no run in the file (a backup without runs)")


class _Restorer:
    def __init__(self, sections: dict[str, list[dict[str, Any]]], progress: Progress, warn: Warn) -> None:
        self.sections = sections
        self.progress = progress
        self.warn = warn
        self.counts: dict[str, int] = {}
        self.auth_groups: dict[str, Group] = {}
        self.users: dict[str, Any] = {}
        self.tenants: dict[str, Tenant] = {}
        self.groups: dict[tuple[int, str], JobGroup] = {}
        self.calendars: dict[tuple[int, str], Calendar] = {}
        self.jobs: dict[tuple[int, str], Job] = {}
        self.channels: dict[tuple[int, str], AlertChannel] = {}
        self.run_pks: dict[RunKey, int] = {}
        self.find_run: Callable[[Mapping[str, Any], str], RunKey] = _no_runs

    def run(self) -> dict[str, int]:
        for name in SECTIONS:
            getattr(self, f"_restore_{name}")(self.sections[name])
        return self.counts

    # -- helpers --------------------------------------------------------------------------

    def _build(
        self, model: type[models.Model], entry: Mapping[str, Any], where: str, keys: Iterable[str]
    ) -> Any:
        """An unsaved instance with the entry's plain fields, each validated."""
        fields = {f.name: f for f in _plain_fields(model)}
        unknown = sorted(set(entry) - set(fields) - set(keys))
        if unknown:
            raise BackupError(f"{where}: {unknown[0]}: unknown field")
        obj = model()
        for name, field in fields.items():
            if name not in entry:
                continue  # an older backup without this field: the model default
            try:
                value = field.clean(entry[name], obj)
            except ValidationError as exc:
                raise BackupError(f"{where}: {name}: {_messages(exc)}") from None
            setattr(obj, field.attname, value)
        return obj

    def _insert(self, model: type[models.Model], objs: list[Any], section: str, offset: int = 0) -> None:
        """bulk_create, then put back the auto_now/auto_now_add values bulk_create
        replaced with the current time. ``offset``: rows of the section already done."""
        auto = [
            f
            for f in model._meta.concrete_fields
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        ]
        done = offset
        for start in range(0, len(objs), BATCH_SIZE):
            batch = objs[start : start + BATCH_SIZE]
            kept = {f.attname: [getattr(o, f.attname) for o in batch] for f in auto}
            model._base_manager.bulk_create(batch)
            for field in auto:
                pairs = [(o.pk, v) for o, v in zip(batch, kept[field.attname], strict=True) if v is not None]
                if pairs:
                    model._base_manager.filter(pk__in=[pk for pk, _ in pairs]).update(
                        **{
                            field.attname: Case(
                                *[When(pk=pk, then=Value(v, output_field=type(field)())) for pk, v in pairs],
                                output_field=type(field)(),
                            )
                        }
                    )
                for obj, value in zip(batch, kept[field.attname], strict=True):
                    if value is not None:
                        setattr(obj, field.attname, value)
            before, done = done, done + len(batch)
            if done // PROGRESS_EVERY > before // PROGRESS_EVERY:
                self.progress(section, done // PROGRESS_EVERY * PROGRESS_EVERY)

    def _tenant(self, entry: Mapping[str, Any], where: str) -> Tenant:
        slug = _text(entry, "tenant", where)
        tenant = self.tenants.get(slug)
        if tenant is None:
            raise BackupError(f"{where}: tenant: unknown tenant {slug!r} (not in 'tenants')")
        return tenant

    def _user(self, username: Any, where: str, key: str = "user") -> Any:
        if not isinstance(username, str) or not username:
            raise BackupError(f"{where}: {key}: required, a username")
        user = self.users.get(username)
        if user is None:
            User = get_user_model()
            user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
            if user is None:
                raise BackupError(f"{where}: {key}: unknown user {username!r} (not in 'users')")
            self.users[username] = user
        return user

    def _job(self, tenant: Tenant, name: Any, where: str, key: str = "job") -> Job:
        job = self.jobs.get((tenant.pk, name)) if isinstance(name, str) else None
        if job is None:
            raise BackupError(f"{where}: {key}: unknown job {name!r} in tenant {tenant.slug}")
        return job

    # -- sections -------------------------------------------------------------------------

    def _restore_auth_groups(self, items: list[dict[str, Any]]) -> None:
        created = 0
        for index, entry in enumerate(items):
            where = f"auth_groups[{index}]"
            name = _text(entry, "name", where)
            if set(entry) - {"name"}:
                raise BackupError(f"{where} ({name}): {sorted(set(entry) - {'name'})[0]}: unknown field")
            group, was_created = Group.objects.get_or_create(name=name)
            created += was_created
            self.auth_groups[name] = group
        self.counts["auth_groups"] = len(items)
        self.counts["auth_groups_created"] = created

    def _restore_users(self, items: list[dict[str, Any]]) -> None:
        User = get_user_model()
        created = 0
        for index, entry in enumerate(items):
            where = f"users[{index}]"
            username = _text(entry, "username", where)
            where = f"{where} ({username})"
            unknown = sorted(set(entry) - {"username", "groups", *USER_FIELDS})
            if unknown:
                raise BackupError(f"{where}: {unknown[0]}: unknown field")
            if username in self.users:
                raise BackupError(f"{where}: username: user {username!r} appears twice")
            groups = entry.get("groups", [])
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise BackupError(f"{where}: groups: must be a list of group names")
            for name in groups:
                if name not in self.auth_groups:
                    raise BackupError(f"{where}: groups: unknown group {name!r} (not in 'auth_groups')")
            user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
            values = {k: entry[k] for k in USER_FIELDS if k in entry and hasattr(User, k)}
            if user is None:
                user = User(**{User.USERNAME_FIELD: username})
                for key, value in values.items():
                    setattr(user, key, value)
                user.set_unusable_password()
                try:
                    user.full_clean(exclude=["password"], validate_unique=False)
                except ValidationError as exc:
                    raise BackupError(f"{where}: {_messages(exc)}") from None
                user.save()
                created += 1
            else:
                differ = sorted(k for k, v in values.items() if getattr(user, k) != v)
                if differ:
                    self.warn(
                        f"{where}: the user exists; kept its password and account fields "
                        f"({', '.join(differ)} differ from the backup)"
                    )
            missing = [self.auth_groups[g] for g in groups if not user.groups.filter(name=g).exists()]
            if missing:
                user.groups.add(*missing)
            self.users[username] = user
        self.counts["users"] = len(items)
        self.counts["users_created"] = created

    def _restore_tenants(self, items: list[dict[str, Any]]) -> None:
        objs = []
        for index, entry in enumerate(items):
            where = f"tenants[{index}]"
            slug = _text(entry, "slug", where)
            where = f"{where} ({slug})"
            if slug in self.tenants:
                raise BackupError(f"{where}: slug: tenant {slug!r} appears twice")
            tenant = self._build(Tenant, entry, where, ())
            self.tenants[slug] = tenant
            objs.append(tenant)
        self._insert(Tenant, objs, "tenants")
        self.counts["tenants"] = len(objs)

    def _restore_memberships(self, items: list[dict[str, Any]]) -> None:
        objs, seen = [], set()
        for index, entry in enumerate(items):
            where = f"memberships[{index}] ({entry.get('tenant')}/{entry.get('user')})"
            tenant = self._tenant(entry, where)
            user = self._user(entry.get("user"), where)
            if (tenant.slug, user.pk) in seen:
                raise BackupError(f"{where}: user: appears twice in tenant {tenant.slug}")
            seen.add((tenant.slug, user.pk))
            membership = self._build(Membership, entry, where, ("tenant", "user"))
            membership.tenant, membership.user = tenant, user
            objs.append(membership)
        self._insert(Membership, objs, "memberships")
        self.counts["memberships"] = len(objs)

    def _restore_groups(self, items: list[dict[str, Any]]) -> None:
        objs = []
        for index, entry in enumerate(items):
            where = f"groups[{index}] ({entry.get('tenant')}/{entry.get('name')})"
            tenant = self._tenant(entry, where)
            name = _text(entry, "name", where)
            if (tenant.pk, name) in self.groups:
                raise BackupError(f"{where}: name: group {name!r} appears twice in tenant {tenant.slug}")
            group = self._build(JobGroup, entry, where, ("tenant",))
            group.tenant = tenant
            self.groups[(tenant.pk, name)] = group
            objs.append(group)
        self._insert(JobGroup, objs, "groups")
        self.counts["groups"] = len(objs)

    def _restore_calendars(self, items: list[dict[str, Any]]) -> None:
        objs, dates = [], []
        for index, entry in enumerate(items):
            where = f"calendars[{index}] ({entry.get('tenant')}/{entry.get('name')})"
            tenant = self._tenant(entry, where)
            name = _text(entry, "name", where)
            if (tenant.pk, name) in self.calendars:
                raise BackupError(f"{where}: name: calendar {name!r} appears twice in tenant {tenant.slug}")
            calendar = self._build(Calendar, entry, where, ("tenant", "dates"))
            calendar.tenant = tenant
            raw_dates = entry.get("dates", [])
            if not isinstance(raw_dates, list):
                raise BackupError(f"{where}: dates: must be a list")
            seen: set[date] = set()
            for d_index, raw in enumerate(raw_dates):
                d_where = f"{where}: dates[{d_index}]"
                if not isinstance(raw, dict):
                    raise BackupError(f"{d_where}: must be an object with 'date' and 'label'")
                day = self._build(CalendarDate, raw, d_where, ())
                if day.date is None:
                    raise BackupError(f"{d_where}: date: required")
                if day.date in seen:
                    raise BackupError(f"{d_where}: date: {day.date.isoformat()} appears twice")
                seen.add(day.date)
                dates.append((calendar, day))
            self.calendars[(tenant.pk, name)] = calendar
            objs.append(calendar)
        self._insert(Calendar, objs, "calendars")
        for calendar, day in dates:
            day.calendar = calendar
        self._insert(CalendarDate, [day for _, day in dates], "calendar dates")
        self.counts["calendars"] = len(objs)
        self.counts["calendar_dates"] = len(dates)

    def _restore_jobs(self, items: list[dict[str, Any]]) -> None:
        from scheduler_app import crypto
        from scheduler_app.registry import TaskNotRegistered, registry

        objs, links = [], []
        for index, entry in enumerate(items):
            where = f"jobs[{index}] ({entry.get('tenant')}/{entry.get('name')})"
            tenant = self._tenant(entry, where)
            name = _text(entry, "name", where)
            if (tenant.pk, name) in self.jobs:
                raise BackupError(f"{where}: name: job {name!r} appears twice in tenant {tenant.slug}")
            job = self._build(Job, entry, where, ("tenant", "group", "calendars"))
            job.tenant = tenant
            group_name = entry.get("group")
            if group_name not in (None, ""):
                job.group = job_document.find_group(tenant, group_name, where=where, known=self.groups)
            calendar_names = entry.get("calendars", [])
            if not isinstance(calendar_names, list):
                raise BackupError(f"{where}: calendars: must be a list of calendar names")
            for cal_name in calendar_names:
                calendar = self.calendars.get((tenant.pk, cal_name)) if isinstance(cal_name, str) else None
                if calendar is None:
                    raise BackupError(
                        f"{where}: calendars: unknown calendar {cal_name!r} in tenant {tenant.slug}"
                    )
                links.append((job, calendar))
            try:
                job.trigger_spec  # noqa: B018 (validates, with the app's combination caps)
            except ValueError as exc:
                raise BackupError(f"{where}: trigger: {exc}") from None
            if job.secrets_token:
                try:
                    revealed = crypto.decrypt(job.secrets_token)
                except crypto.SecretsError as exc:
                    raise BackupError(
                        f"{where}: secrets_token: {exc}; configure the key that encrypted them "
                        "(SCHEDULER_APP['ENCRYPTION_KEYS']) and restore again"
                    ) from None
                if sorted(revealed) != sorted(job.secret_names or []):
                    raise BackupError(
                        f"{where}: secret_names: {sorted(job.secret_names or [])} do not match the "
                        f"encrypted secrets ({sorted(revealed)}); the file was edited or damaged"
                    )
            elif job.secret_names:
                raise BackupError(f"{where}: secret_names: listed, but there is no secrets_token")
            try:
                registry.get(job.task)
            except TaskNotRegistered:
                self.warn(
                    f"{where}: task {job.task!r} is not registered in this installation; "
                    "its runs will fail until it is"
                )
            self.jobs[(tenant.pk, name)] = job
            objs.append(job)
        self._insert(Job, objs, "jobs")
        through = Job.calendars.through
        through.objects.bulk_create(
            [through(job_id=job.pk, calendar_id=calendar.pk) for job, calendar in links],
            batch_size=BATCH_SIZE,
        )
        self.counts["jobs"] = len(objs)

    def _restore_dependencies(self, items: list[dict[str, Any]]) -> None:
        objs, seen = [], set()
        for index, entry in enumerate(items):
            where = (
                f"dependencies[{index}] ({entry.get('tenant')}/{entry.get('upstream')} → "
                f"{entry.get('downstream')})"
            )
            tenant = self._tenant(entry, where)
            upstream = self._job(tenant, entry.get("upstream"), where, "upstream")
            downstream = self._job(tenant, entry.get("downstream"), where, "downstream")
            if upstream is downstream:
                raise BackupError(f"{where}: downstream: a job cannot depend on itself")
            if (upstream.pk, downstream.pk) in seen:
                raise BackupError(f"{where}: the dependency appears twice")
            seen.add((upstream.pk, downstream.pk))
            edge = self._build(JobDependency, entry, where, ("tenant", "upstream", "downstream"))
            edge.tenant, edge.upstream, edge.downstream = tenant, upstream, downstream
            objs.append(edge)
        self._insert(JobDependency, objs, "dependencies")
        self.counts["dependencies"] = len(objs)

    def _restore_job_versions(self, items: list[dict[str, Any]]) -> None:
        objs, seen = [], set()
        for index, entry in enumerate(items):
            label = f"{entry.get('tenant')}/{entry.get('job')} v{entry.get('number')}"
            where = f"job_versions[{index}] ({label})"
            tenant = self._tenant(entry, where)
            job = self._job(tenant, entry.get("job"), where)
            version = self._build(JobVersion, entry, where, ("tenant", "job", "author"))
            if version.number is None:
                raise BackupError(f"{where}: number: required")
            if (job.pk, version.number) in seen:
                raise BackupError(f"{where}: number: version {version.number} appears twice")
            seen.add((job.pk, version.number))
            version.job, version.tenant = job, tenant
            if entry.get("author") is not None:
                version.author = self._user(entry["author"], where, "author")
            objs.append(version)
        self._insert(JobVersion, objs, "job_versions")
        self.counts["job_versions"] = len(objs)

    def _restore_object_permissions(self, items: list[dict[str, Any]]) -> None:
        from guardian.models import GroupObjectPermission, UserObjectPermission

        content_types = _permission_content_types()
        perms: dict[tuple[int, str], Permission] = {}
        user_rows, group_rows, seen = [], [], set()
        for index, entry in enumerate(items):
            holder_kind = "user" if "user" in entry else "group"
            holder = entry.get(holder_kind)
            where = (
                f"object_permissions[{index}] ({entry.get('permission')} on {entry.get('model')} "
                f"{entry.get('tenant')}/{entry.get('name')} for {holder_kind} {holder})"
            )
            unknown = sorted(set(entry) - {holder_kind, "permission", "model", "tenant", "name"})
            if unknown:
                raise BackupError(f"{where}: {unknown[0]}: unknown field")
            model_name = entry.get("model")
            if model_name not in PERMISSION_MODELS:
                raise BackupError(f"{where}: model: must be one of {', '.join(PERMISSION_MODELS)}")
            tenant = self._tenant(entry, where)
            name = entry.get("name")
            target = (self.jobs if model_name == "job" else self.groups).get((tenant.pk, name))
            if target is None:
                raise BackupError(f"{where}: name: unknown {model_name} {name!r} in tenant {tenant.slug}")
            ct = content_types[model_name]
            codename = entry.get("permission")
            if (ct.pk, codename) not in perms:
                perm = Permission.objects.filter(content_type=ct, codename=codename).first()
                if perm is None:
                    raise BackupError(
                        f"{where}: permission: unknown permission {codename!r} for {model_name}"
                    )
                perms[(ct.pk, codename)] = perm
            perm = perms[(ct.pk, codename)]
            if holder_kind == "user":
                holder_obj = self._user(holder, where)
            else:
                holder_obj = self.auth_groups.get(holder) if isinstance(holder, str) else None
                if holder_obj is None:
                    raise BackupError(f"{where}: group: unknown group {holder!r} (not in 'auth_groups')")
            key = (holder_kind, holder_obj.pk, perm.pk, target.pk)
            if key in seen:
                raise BackupError(f"{where}: appears twice")
            seen.add(key)
            row = {
                "permission": perm,
                "content_type": ct,
                "object_pk": str(target.pk),
                holder_kind: holder_obj,
            }
            (user_rows if holder_kind == "user" else group_rows).append(row)
        self._insert(
            UserObjectPermission,
            [UserObjectPermission(**r) for r in user_rows],
            "object_permissions",
        )
        self._insert(
            GroupObjectPermission,
            [GroupObjectPermission(**r) for r in group_rows],
            "object_permissions",
        )
        self.counts["object_permissions"] = len(items)

    def _restore_alert_channels(self, items: list[dict[str, Any]]) -> None:
        from scheduler_app import crypto, plugins
        from scheduler_app.services import alerts as alert_services

        objs = []
        for index, entry in enumerate(items):
            where = f"alert_channels[{index}] ({entry.get('tenant')}/{entry.get('name')})"
            tenant = self._tenant(entry, where)
            name = _text(entry, "name", where)
            if (tenant.pk, name) in self.channels:
                raise BackupError(
                    f"{where}: name: alert channel {name!r} appears twice in tenant {tenant.slug}"
                )
            kind = entry.get("type")
            missing_plugin = (
                isinstance(kind, str)
                and kind not in plugins.BUILTIN_CHANNELS
                and plugins.alert_channel_type(kind) is None
            )
            if missing_plugin:
                # As for an unregistered task: restored, with a warning; it cannot be
                # checked or delivered until the plugin is installed.
                if len(kind) > AlertChannel._meta.get_field("type").max_length:
                    raise BackupError(f"{where}: type: {kind!r} is longer than 16 characters")
                channel = self._build(AlertChannel, {**entry, "type": "email"}, where, ("tenant",))
                channel.type = kind
                self.warn(
                    f"{where}: alert channel type {kind!r} is not provided by any installed plugin; "
                    "its alerts will fail until it is"
                )
            else:
                channel = self._build(AlertChannel, entry, where, ("tenant",))
            channel.tenant = tenant
            if channel.secret_token:
                try:
                    crypto.decrypt(channel.secret_token)
                except crypto.SecretsError:
                    raise BackupError(
                        f"{where}: secret_token: the channel's secret cannot be decrypted with any "
                        "configured key; configure the key that encrypted it "
                        "(SCHEDULER_APP['ENCRYPTION_KEYS']) and restore again"
                    ) from None
            try:
                if not missing_plugin:
                    alert_services.validate_channel(channel, None)
            except ValidationError as exc:
                field, messages = next(iter(exc.message_dict.items()))
                raise BackupError(f"{where}: {field}: {'; '.join(messages)}") from None
            self.channels[(tenant.pk, name)] = channel
            objs.append(channel)
        self._insert(AlertChannel, objs, "alert_channels")
        self.counts["alert_channels"] = len(objs)

    def _restore_alert_rules(self, items: list[dict[str, Any]]) -> None:
        from scheduler_app.services import alerts as alert_services

        objs, links, seen = [], [], set()
        for index, entry in enumerate(items):
            where = f"alert_rules[{index}] ({entry.get('tenant')}/{entry.get('name')})"
            tenant = self._tenant(entry, where)
            name = _text(entry, "name", where)
            if (tenant.pk, name) in seen:
                raise BackupError(f"{where}: name: alert rule {name!r} appears twice in tenant {tenant.slug}")
            seen.add((tenant.pk, name))
            rule = self._build(AlertRule, entry, where, ("tenant", "scope", "channels"))
            rule.tenant = tenant
            scope = entry.get("scope", {"tenant": True})
            key, value = (
                next(iter(scope.items())) if isinstance(scope, dict) and len(scope) == 1 else ("", None)
            )
            if key == "job":
                rule.scope_job = self._job(tenant, value, where, "scope.job")
            elif key == "group":
                rule.scope_group = self.groups.get((tenant.pk, value)) if isinstance(value, str) else None
                if rule.scope_group is None:
                    raise BackupError(
                        f"{where}: scope.group: unknown group {value!r} in tenant {tenant.slug}"
                    )
            elif key != "tenant" or value is not True:
                raise BackupError(
                    f'{where}: scope: must be {{"job": NAME}}, {{"group": NAME}} or {{"tenant": true}}'
                )
            names = entry.get("channels", [])
            if not isinstance(names, list):
                raise BackupError(f"{where}: channels: must be a list of channel names")
            channels = []
            for c_index, c_name in enumerate(names):
                found = self.channels.get((tenant.pk, c_name)) if isinstance(c_name, str) else None
                if found is None:
                    raise BackupError(
                        f"{where}: channels[{c_index}]: unknown alert channel {c_name!r} in tenant {tenant.slug}"
                    )
                channels.append(found)
            try:
                alert_services.validate_rule(rule, channels)
            except ValidationError as exc:
                field, messages = next(iter(exc.message_dict.items()))
                raise BackupError(f"{where}: {field}: {'; '.join(messages)}") from None
            objs.append(rule)
            links.extend((rule, c) for c in channels)
        self._insert(AlertRule, objs, "alert_rules")
        through = AlertRule.channels.through
        through.objects.bulk_create(
            [through(alertrule_id=r.pk, alertchannel_id=c.pk) for r, c in links], batch_size=BATCH_SIZE
        )
        self.counts["alert_rules"] = len(objs)

    def _build_log(self, entry: Any, where: str) -> JobRunLog:
        if not isinstance(entry, dict):
            raise BackupError(f"{where}: must be null or an object with the run's log")
        log = self._build(JobRunLog, entry, where, ())
        if log.updated_at is None:
            raise BackupError(f"{where}: updated_at: This field cannot be null.")
        if log.lines_dropped > log.lines_total:
            raise BackupError(
                f"{where}: lines_dropped: {log.lines_dropped} is more than lines_total {log.lines_total}"
            )
        return log

    def _restore_runs(self, items: list[dict[str, Any]]) -> None:
        when_field = JobRun._meta.get_field("scheduled_for")
        keys: dict[RunKey, int] = {}
        # (tenant, job, scheduled_for, attempt) -> the keys of its runs (one per node for
        # a broadcast fire): a reference without target_node (an older backup) names the
        # fire's only run.
        fires: dict[tuple[Any, Any, datetime, int], list[RunKey]] = {}
        refs: list[tuple[int, RunKey]] = []
        upstream: list[tuple[int, list[RunKey]]] = []
        pending: list[tuple[int, str, Mapping[str, Any], str]] = []
        old_ids = 0

        def where_of(index: int, entry: Mapping[str, Any]) -> str:
            node = entry.get("target_node")
            return (
                f"runs[{index}] ({entry.get('tenant')}/{entry.get('job')} @ "
                f"{entry.get('scheduled_for')} #{entry.get('attempt')}{f' for {node}' if node else ''})"
            )

        def run_key(entry: Mapping[str, Any], where: str) -> RunKey:
            try:
                when = when_field.clean(entry.get("scheduled_for"), None)
            except ValidationError as exc:
                raise BackupError(f"{where}: scheduled_for: {_messages(exc)}") from None
            attempt = entry.get("attempt", 1)
            if isinstance(attempt, bool) or not isinstance(attempt, int):
                raise BackupError(f"{where}: attempt: must be a whole number")
            node = entry.get("target_node") or ""
            if not isinstance(node, str):
                raise BackupError(f"{where}: target_node: must be a string")
            return (entry.get("tenant"), entry.get("job"), when, attempt, node)

        def find(ref: Mapping[str, Any], where: str) -> RunKey:
            """The key of the run ``ref`` names, refused when not in the file."""
            key = run_key(ref, where)
            if key in keys:
                return key
            if "target_node" not in ref and len(fires.get(key[:4], ())) == 1:
                return fires[key[:4]][0]
            raise BackupError(f"{where}: no run {_key_text(key)} in the file")

        # First the identities and the links between runs (light), ...
        for index, entry in enumerate(items):
            key = run_key(entry, where_of(index, entry))
            if key in keys:
                raise BackupError(f"{where_of(index, entry)}: the run appears twice")
            keys[key] = index
            fires.setdefault(key[:4], []).append(key)
            ref = entry.get("triggered_by")
            if ref is not None:
                where = f"{where_of(index, entry)}: triggered_by"
                if not isinstance(ref, dict):
                    raise BackupError(f"{where}: must be null or an object naming a run")
                cause = run_key(ref, where)  # checked now, found once every run is known
                if cause[0] != key[0]:
                    # The run's page and API would link it to another tenant's run.
                    raise BackupError(
                        f"{where}: names a run of tenant {cause[0]}, not of {key[0]} "
                        "(a run is never triggered by another tenant's run)"
                    )
                pending.append((index, "triggered_by", ref, where))
            ups = entry.get("upstream_runs")
            if ups:
                where = f"{where_of(index, entry)}: upstream_runs"
                if not isinstance(ups, list):
                    raise BackupError(f"{where}: must be a list of objects naming runs")
                if all(isinstance(u, int) and not isinstance(u, bool) for u in ups):
                    old_ids += 1  # an older backup: ids of the database it came from
                    continue
                for i, u in enumerate(ups):
                    if not isinstance(u, dict):
                        raise BackupError(f"{where}[{i}]: must be an object naming a run")
                    up_key = run_key(u, f"{where}[{i}]")
                    if up_key[0] != key[0]:
                        # Its result would reach this tenant's task, run page and API.
                        raise BackupError(
                            f"{where}[{i}]: names a run of tenant {up_key[0]}, not of {key[0]} "
                            "(upstream runs never cross tenants)"
                        )
                pending.append((index, "upstream_runs", {"runs": ups}, where))
        for index, field, ref, where in pending:
            if field == "triggered_by":
                refs.append((index, find(ref, where)))
            else:
                upstream.append((index, [find(u, f"{where}[{i}]") for i, u in enumerate(ref["runs"])]))
        if old_ids:
            self.warn(
                f"{old_ids} run(s) list their upstream runs by the ids of the database the backup "
                "came from (an older backup): not restored; a re-run of those gets no upstream results"
            )
        # ... then the runs, a chunk at a time (a history can be large), with their logs.
        pks: list[int] = []
        logs: list[tuple[JobRun, JobRunLog]] = []
        chunk = BATCH_SIZE * 10
        for start in range(0, len(items), chunk):
            objs = []
            for index in range(start, min(start + chunk, len(items))):
                entry, where = items[index], where_of(index, items[index])
                tenant = self._tenant(entry, where)
                job = self._job(tenant, entry.get("job"), where)
                run = self._build(
                    JobRun, {**entry, "upstream_runs": []}, where, ("tenant", "job", "triggered_by", "log")
                )
                run.job, run.tenant = job, tenant
                objs.append(run)
                if entry.get("log") is not None:
                    logs.append((run, self._build_log(entry["log"], f"{where}: log")))
            self._insert(JobRun, objs, "runs", offset=start)
            pks.extend(run.pk for run in objs)
            for run, log in logs:
                log.run_id = run.pk
            JobRunLog.objects.bulk_create([log for _run, log in logs], batch_size=BATCH_SIZE)
            logs = []
        links = [(pks[index], pks[keys[ref_key]]) for index, ref_key in refs]
        for start in range(0, len(links), BATCH_SIZE):
            batch = links[start : start + BATCH_SIZE]
            JobRun.objects.filter(pk__in=[pk for pk, _ in batch]).update(
                triggered_by_id=Case(
                    *[When(pk=pk, then=Value(target)) for pk, target in batch],
                    output_field=models.BigIntegerField(),
                )
            )
        with_upstream = [
            JobRun(pk=pks[index], upstream_runs=[pks[keys[k]] for k in named]) for index, named in upstream
        ]
        JobRun.objects.bulk_update(with_upstream, ["upstream_runs"], batch_size=BATCH_SIZE)
        self.run_pks = {key: pks[index] for key, index in keys.items()}
        self.find_run = find
        self.counts["runs"] = len(items)

    def _restore_join_rounds(self, items: list[dict[str, Any]]) -> None:
        objs = []
        for index, entry in enumerate(items):
            where = f"join_rounds[{index}] ({entry.get('tenant')}/{entry.get('job')})"
            tenant = self._tenant(entry, where)
            job = self._job(tenant, entry.get("job"), where)
            ends = entry.get("ends")
            if not isinstance(ends, list):
                raise BackupError(f"{where}: ends: must be a list")
            join = self._build(
                JobJoin, {k: v for k, v in entry.items() if k != "ends"}, where, ("tenant", "job")
            )
            if join.opened_at is None:
                raise BackupError(f"{where}: opened_at: This field cannot be null.")
            join.job, join.ends = job, {}
            for i, end in enumerate(ends):
                at = f"{where}: ends[{i}]"
                if not isinstance(end, dict):
                    raise BackupError(f"{at}: must be an object")
                upstream = self._job(tenant, end.get("upstream"), at, "upstream")
                kind = end.get("end")
                if kind not in (rules.END_SUCCESS, rules.END_FAILED, rules.END_SKIPPED):
                    raise BackupError(
                        f"{at}: end: must be one of {rules.END_SUCCESS}, {rules.END_FAILED}, {rules.END_SKIPPED}"
                    )
                run_id = None
                if end.get("run") is not None:
                    if not isinstance(end["run"], dict):
                        raise BackupError(f"{at}: run: must be null or an object naming a run")
                    key = self.find_run(end["run"], f"{at}: run")
                    if (key[0], key[1]) != (entry.get("tenant"), end.get("upstream")):
                        raise BackupError(
                            f"{at}: run: names a run of {key[0]}/{key[1]}, not of the end's upstream "
                            f"{entry.get('tenant')}/{end.get('upstream')}"
                        )
                    run_id = self.run_pks[key]
                if str(upstream.pk) in join.ends:
                    raise BackupError(f"{at}: upstream: {upstream.name} ends twice in the round")
                join.ends[str(upstream.pk)] = {"run": run_id, "ok": kind == rules.END_SUCCESS, "end": kind}
            objs.append(join)
        self._insert(JobJoin, objs, "join_rounds")
        self.counts["join_rounds"] = len(objs)
