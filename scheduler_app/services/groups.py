"""Job groups, exclusion calendars (with their dates) and tenant memberships: create,
change, delete; permission-checked, audited, and jobs that use a changed calendar or a
deleted group get a new version and reach the scheduler."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.models import Calendar, CalendarDate, Job, JobGroup, Membership, Tenant
from scheduler_app.services import permissions
from scheduler_app.services.bulk import FORBIDDEN, BulkResult
from scheduler_app.services.jobs import notify_job_changed


def check_tenant_change(obj: Any, actor: Any, model: type) -> None:
    """Editors create and change; a stored object keeps its tenant (groups, calendars,
    alert channels and rules)."""
    if obj.pk is None:
        permissions.require(actor, "add", tenant_id=obj.tenant_id)
        return
    stored = model.objects.filter(pk=obj.pk).first()
    if stored is None:
        return
    permissions.require(actor, "change", stored)
    if stored.tenant_id != obj.tenant_id:
        raise ValidationError(
            {
                "tenant": _("the %(object)s cannot move to another tenant")
                % {"object": model._meta.verbose_name}
            }
        )


def save_group(group: JobGroup, *, actor: Any = None) -> JobGroup:
    check_tenant_change(group, actor, JobGroup)
    group.full_clean()
    with transaction.atomic(), audit.acting_as(actor):
        renamed = group.pk is not None and not JobGroup.objects.filter(pk=group.pk, name=group.name).exists()
        group.save()
        if renamed:  # jobs refer to their group by name in their documents
            for job in Job.objects.filter(group=group):
                notify_job_changed(job, actor=actor, summary=f"group renamed to {group.name}")
    return group


def delete_groups(groups: Iterable[JobGroup], *, actor: Any = None) -> BulkResult:
    """Delete groups; their jobs stay, without a group."""
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for group in groups:
            if not permissions.can(actor, "delete", group):
                result.refuse(group, _("you may not delete this group"), FORBIDDEN)
                continue
            jobs = list(Job.objects.filter(group=group))
            pk = group.pk
            group.delete()
            group.pk = pk
            for job in jobs:
                job.group = None
                notify_job_changed(job, actor=actor, summary="group deleted")
            result.done.append(group)
    return result


def save_calendar(
    calendar: Calendar,
    *,
    dates: Sequence[tuple[dt.date, str]] | None = None,
    actor: Any = None,
) -> Calendar:
    """Save a calendar; ``dates`` (date, label) pairs, when given, become its complete
    list of dates. Jobs using it get a new version and reach the scheduler."""
    check_tenant_change(calendar, actor, Calendar)
    calendar.full_clean()
    if dates is not None:
        seen = set()
        for index, (day, _label) in enumerate(dates):
            if day in seen:
                raise ValidationError(
                    {f"dates[{index}].date": _("%(date)s is listed twice") % {"date": day.isoformat()}}
                )
            seen.add(day)
    with transaction.atomic(), audit.acting_as(actor):
        renamed = (
            calendar.pk is not None
            and not Calendar.objects.filter(pk=calendar.pk, name=calendar.name).exists()
        )
        calendar.save()
        changed = renamed
        if dates is not None:
            current = {d.date: d for d in calendar.dates.all()}
            wanted = dict(dates)
            for day, row in current.items():
                if day not in wanted:
                    row.delete()
                    changed = True
            for day, label in wanted.items():
                row = current.get(day)
                if row is None:
                    CalendarDate.objects.create(calendar=calendar, date=day, label=label)
                    changed = True
                elif row.label != label:
                    row.label = label
                    row.save(update_fields=["label"])
        if changed:
            for job in Job.objects.filter(calendars=calendar):
                notify_job_changed(job, actor=actor, summary=f"calendar {calendar.name} changed")
    return calendar


def delete_calendars(calendars: Iterable[Calendar], *, actor: Any = None) -> BulkResult:
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for calendar in calendars:
            if not permissions.can(actor, "delete", calendar):
                result.refuse(calendar, _("you may not delete this calendar"), FORBIDDEN)
                continue
            jobs = list(Job.objects.filter(calendars=calendar))
            pk = calendar.pk
            calendar.delete()
            calendar.pk = pk
            for job in jobs:
                notify_job_changed(job, actor=actor, summary=f"calendar {calendar.name} deleted")
            result.done.append(calendar)
    return result


def set_membership(tenant: Tenant, user: Any, role: str, *, actor: Any = None) -> Membership:
    """Make ``user`` a member of ``tenant`` with ``role`` (tenant admins only)."""
    permissions.require(actor, "manage", tenant)
    membership = Membership.objects.filter(tenant=tenant, user=user).first() or Membership(
        tenant=tenant, user=user
    )
    membership.role = role
    membership.full_clean(validate_unique=False)
    with transaction.atomic(), audit.acting_as(actor):
        membership.save()
    permissions.forget(user)
    return membership


def remove_membership(membership: Membership, *, actor: Any = None) -> None:
    permissions.require(actor, "manage", membership)
    with transaction.atomic(), audit.acting_as(actor):
        membership.delete()
    permissions.forget(membership.user)
