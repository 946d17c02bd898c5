"""Audit trail (django-auditlog). Field changes of every model are recorded by auditlog
itself (registered in ``apps.ready``); operations that are not field edits (run now,
cancel, stop, rollback, import, key rotation, permission grants) are recorded here.
Secret values never reach an entry: the ciphertext column is excluded, and secrets
appear only as their names and keyed fingerprints."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db.models import Model


def register_models() -> None:
    from auditlog.registry import auditlog
    from guardian.models import GroupObjectPermission, UserObjectPermission

    from scheduler_app.models import (
        Calendar,
        CalendarDate,
        Job,
        JobDependency,
        JobGroup,
        Membership,
        Tenant,
    )

    for model in (Tenant, Membership, JobGroup, JobDependency, Calendar, CalendarDate):
        if not auditlog.contains(model):
            auditlog.register(model)
    if not auditlog.contains(Job):
        auditlog.register(
            Job,
            exclude_fields=["secrets_token", "updated_at", "trigger_changed_at"],
            m2m_fields={"calendars"},
        )
    for model in (UserObjectPermission, GroupObjectPermission):
        if not auditlog.contains(model):
            auditlog.register(model)


@contextlib.contextmanager
def acting_as(actor: Any) -> Iterator[None]:
    """Attribute the audit entries written inside to ``actor`` (outside a request,
    where auditlog's middleware does this)."""
    from auditlog.context import auditlog_value, set_actor

    try:
        current = auditlog_value.get()
    except LookupError:
        current = None
    # Inside a request auditlog's middleware has set the actor and remote address;
    # nesting would replace them for the rest of the request.
    if actor is None or getattr(actor, "pk", None) is None or (current and current.get("actor")):
        yield
        return
    with set_actor(actor):
        yield
    if current is not None:
        auditlog_value.set(current)


def record(obj: Model, operation: str, actor: Any = None, **details: Any) -> None:
    """One audit entry for an operation on ``obj`` that is not a field edit."""
    from auditlog.models import LogEntry

    with acting_as(actor):
        LogEntry.objects.log_create(
            obj,
            force_log=True,
            action=LogEntry.Action.ACCESS,
            changes={"operation": [None, operation]},
            additional_data={"operation": operation, **details},
        )
