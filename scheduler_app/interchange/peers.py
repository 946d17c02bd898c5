"""What the importers from peer schedulers share: the task-name mapping file, the
report of what could not be carried over, and the jobs document they build.

Each importer (:mod:`.celerybeat`, :mod:`.djangoapscheduler`) reads the peer's rows into
job documents; :func:`import_jobs` then applies them with the jobs-file importer, so the
result is all or nothing, ``--dry-run`` works the same way and the jobs are audited and
versioned like any import. A task name (celery) or callable reference (APScheduler) is
mapped to a *registered* task: through the mapping file, else when it is already a
registered task's name (or, for APScheduler, the ``module:qualname`` of a registered
task's function). Nothing is imported by the name found in the peer's tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler_app.interchange import jobsfile
from scheduler_app.models import Tenant
from scheduler_app.registry import registry
from scheduler_app.services import summaries


class PeerImportError(jobsfile.JobsFileError):
    """The peer's rows cannot be imported; the message names the row and the field."""


#: A mapping entry of ``None``: leave the peer's task out on purpose.
SKIP = None


def load_mapping(path: str | Path | None) -> dict[str, str | None]:
    """The ``--map`` file: an object of peer task name -> registered task name (or
    ``null`` to leave that task out), JSON or YAML (.yaml/.yml)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PeerImportError(f"--map {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PeerImportError(f"--map {path}: is not UTF-8 text") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PeerImportError(
            f"--map {path}: is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise PeerImportError(f"--map {path}: must be an object of peer task name -> registered task name")
    for key, value in data.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise PeerImportError(
                f"--map {path}: {key!r}: must map a name to a registered task name (or null to skip it)"
            )
        if isinstance(value, str) and value not in registry:
            raise PeerImportError(f"--map {path}: {key!r}: task {value!r} is not registered")
    return data


@dataclass
class PeerReport:
    """What an importer found beside the jobs it could build."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    #: (row label, task name) that nothing maps to a registered task.
    unmapped: list[tuple[str, str]] = field(default_factory=list)
    #: (row label, reason) left out on purpose (mapped to null, --skip-unmapped).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (row label, what was not carried over).
    notes: list[tuple[str, str]] = field(default_factory=list)
    result: jobsfile.ImportReport | None = None

    def lines(self) -> list[str]:
        out = [f"skip {label}: {why}" for label, why in self.skipped]
        out += [f"note {label}: {what}" for label, what in self.notes]
        return out


def resolve_task(
    name: str,
    mapping: dict[str, str | None],
    *,
    also: Callable[[str], str | None] | None = None,
) -> tuple[bool, str | None]:
    """(found, registered task name or None for "skip") for a peer's task name."""
    if name in mapping:
        return True, mapping[name]
    if name in registry:
        return True, name
    if also is not None:
        found = also(name)
        if found is not None:
            return True, found
    return False, None


def target_tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise PeerImportError(f"--tenant: unknown tenant {slug!r}")
    return tenant


def import_jobs(
    report: PeerReport,
    *,
    source: str,
    skip_unmapped: bool = False,
    dry_run: bool = False,
    actor: Any = None,
) -> PeerReport:
    """Apply the report's jobs as one jobs document (all or nothing). Unmapped tasks are
    an error listing every one of them, unless ``skip_unmapped``."""
    if report.unmapped and not skip_unmapped:
        listed = "; ".join(f"{label}: task {task!r}" for label, task in report.unmapped)
        raise PeerImportError(
            f"{len(report.unmapped)} task(s) map to no registered task: {listed} "
            "(map them in --map FILE, map them to null to leave them out, or pass --skip-unmapped)"
        )
    for label, task in report.unmapped:
        report.skipped.append((label, f"task {task!r} maps to no registered task"))
    doc = {"version": jobsfile.FORMAT_VERSION, "jobs": report.jobs}
    report.result = jobsfile.import_document(
        doc,
        dry_run=dry_run,
        actor=actor,
        summary=summaries.english(summaries.IMPORTED_FROM_PEER, source=source),
        source=source,
    )
    return report
