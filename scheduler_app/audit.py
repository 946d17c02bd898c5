"""Audit trail (django-auditlog). Field changes of every model are recorded by auditlog
itself (registered in ``apps.ready``); operations that are not field edits (run now,
cancel, stop, rollback, import, key rotation, permission grants) are recorded here.
Secret values never reach an entry: the ciphertext column is excluded, and secrets
appear only as their names and keyed fingerprints."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from django.db.models import Model

#: Details added to every entry written inside :func:`extra` (e.g. the API key used).
_extra: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "scheduler_audit_extra", default=None
)


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
    from scheduler_app.models import AlertChannel, AlertRule

    if not auditlog.contains(AlertChannel):
        auditlog.register(AlertChannel, exclude_fields=["secret_token", "updated_at"])
    if not auditlog.contains(AlertRule):
        auditlog.register(AlertRule, exclude_fields=["updated_at"], m2m_fields={"channels"})
    for model in (UserObjectPermission, GroupObjectPermission):
        if not auditlog.contains(model):
            auditlog.register(model)
    from auditlog.models import LogEntry
    from django.db.models.signals import pre_save

    pre_save.connect(_add_extra, sender=LogEntry, dispatch_uid="scheduler_app.audit.extra")


@contextlib.contextmanager
def extra(**details: Any) -> Iterator[None]:
    """Add ``details`` to the additional data of every audit entry written inside (field
    edits recorded by auditlog as well as :func:`record`'s), e.g. which API key acted."""
    token = _extra.set({**(_extra.get() or {}), **details})
    try:
        yield
    finally:
        _extra.reset(token)


def add_extra(**details: Any) -> None:
    """Add ``details`` to the innermost :func:`extra` block (which must be open)."""
    current = _extra.get()
    if current is None:
        raise RuntimeError("audit.add_extra() outside an audit.extra() block")
    current.update(details)


def _add_extra(sender: Any, instance: Any, **kwargs: Any) -> None:
    details = _extra.get()
    if details and instance.pk is None:
        instance.additional_data = {**(instance.additional_data or {}), **details}


@contextlib.contextmanager
def acting_as(actor: Any) -> Iterator[None]:
    """Attribute the audit entries written inside to ``actor``. An explicit actor always
    wins over whatever auditlog's context holds; the remote address of a live request
    is kept. ``None`` (the system) leaves the context as it is.

    django-auditlog's middleware sets its context variable for a request and never
    resets it, so a thread that served a request keeps that request's context (with
    its signal receiver already disconnected). Trusting it would record entries written
    later in that thread with no actor, or with the earlier request's user; so the
    context is replaced here and the previous one restored on exit."""
    if actor is None or getattr(actor, "pk", None) is None:
        yield
        return
    from auditlog.context import auditlog_value, set_actor

    current = auditlog_value.get(None)
    live = current is not None and _is_live(current)
    # A token to restore the variable exactly (even to "unset") however set_actor sets it.
    token = auditlog_value.set(current if current is not None else {"signal_duid": None})
    try:
        with set_actor(
            actor,
            remote_addr=current.get("remote_addr") if live else None,
            remote_port=current.get("remote_port") if live else None,
        ):
            yield
    finally:
        auditlog_value.reset(token)


def _is_live(context: dict[str, Any]) -> bool:
    """Whether the auditlog context still has its receiver connected (its request or
    ``set_actor`` block has not ended)."""
    from django.db.models.signals import pre_save

    uid = context.get("signal_duid")
    return uid is not None and any(key[0] == uid for key, *_ in pre_save.receivers)


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
