"""Tenants, job groups, exclusion calendars (with their dates) and tenant memberships:
create, change, delete; permission-checked, audited, the configuration version bumped (a
group's or tenant's rate limit is read by the claim), and jobs that use a changed
calendar, a renamed or deleted group or a renamed tenant get a new version and reach the
scheduler. The ``check_*_save`` functions let a form report a refusal on its fields
before anything is written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.models import Calendar, CalendarDate, ConfigVersion, Job, JobGroup, Membership, Tenant
from scheduler_app.services import permissions, summaries
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


def check_group_save(group: JobGroup, actor: Any = None) -> None:
    """Raise PermissionDenied or ValidationError (by field) if ``actor`` may not save
    ``group`` as it is; writes nothing."""
    check_tenant_change(group, actor, JobGroup)
    group.full_clean()


def save_group(group: JobGroup, *, actor: Any = None) -> JobGroup:
    check_group_save(group, actor)
    with transaction.atomic(), audit.acting_as(actor):
        renamed = group.pk is not None and not JobGroup.objects.filter(pk=group.pk, name=group.name).exists()
        group.save()
        ConfigVersion.bump()  # its rate limit, read by the claim
        if renamed:  # jobs refer to their group by name in their documents
            for job in Job.objects.filter(group=group):
                notify_job_changed(
                    job, actor=actor, summary=summaries.english(summaries.GROUP_RENAMED, group=group.name)
                )
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
                notify_job_changed(job, actor=actor, summary=summaries.english(summaries.GROUP_DELETED))
            result.done.append(group)
        if result.done:
            ConfigVersion.bump()
    return result


# -- tenants ------------------------------------------------------------------------------


def check_tenant_save(tenant: Tenant, actor: Any = None) -> None:
    """Superusers create tenants; a tenant's admins change its name and slug. Its rate
    limit protects the shared cluster, so only superusers set or change it. Raises
    PermissionDenied or ValidationError (by field); writes nothing."""
    operator = permissions.sees_everything(actor)
    if tenant.pk is None:
        if not operator:
            raise PermissionDenied(_("only superusers create tenants"))
    else:
        stored = Tenant.objects.filter(pk=tenant.pk).first()
        if stored is not None:
            permissions.require(actor, "manage", stored)
            if not operator and stored.rate_limit != tenant.rate_limit:
                raise ValidationError(
                    {
                        "rate_limit": _(
                            "only superusers change a tenant's rate limit (it protects the cluster)"
                        )
                    }
                )
    tenant.full_clean()


def save_tenant(tenant: Tenant, *, actor: Any = None) -> Tenant:
    """Create or change a tenant. A new slug renames every job's ``tenant/name`` (and
    the hash key of its ``H`` cron fields): each job gets a new version."""
    check_tenant_save(tenant, actor)
    with transaction.atomic(), audit.acting_as(actor):
        renamed = tenant.pk is not None and not Tenant.objects.filter(pk=tenant.pk, slug=tenant.slug).exists()
        tenant.save()
        ConfigVersion.bump()  # its rate limit, read by the claim
        if renamed:
            for job in Job.objects.filter(tenant=tenant):
                notify_job_changed(
                    job, actor=actor, summary=summaries.english(summaries.TENANT_RENAMED, tenant=tenant.slug)
                )
    return tenant


def delete_tenants(tenants: Iterable[Tenant], *, actor: Any = None) -> BulkResult:
    """Delete tenants (superusers only) with their groups, calendars and memberships.
    A tenant that still has jobs is refused (its jobs are protected: delete or move them
    first, so that no run history goes without a decision)."""
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for tenant in tenants:
            if not permissions.sees_everything(actor):
                result.refused.append((tenant, _("only superusers delete tenants")))
                continue
            jobs = Job.objects.filter(tenant=tenant).count()
            if jobs:
                result.refused.append(
                    (tenant, _("it has %(count)d job(s); delete or move them first") % {"count": jobs})
                )
                continue
            members = [m.user for m in Membership.objects.filter(tenant=tenant).select_related("user")]
            pk = tenant.pk
            tenant.delete()
            tenant.pk = pk
            for user in members:
                permissions.forget(user)
            result.done.append(tenant)
        if result.done:
            ConfigVersion.bump()
    return result


def check_calendar_save(calendar: Calendar, actor: Any = None) -> None:
    """As :func:`check_group_save`, for a calendar (its dates are checked on save)."""
    check_tenant_change(calendar, actor, Calendar)
    calendar.full_clean()


def save_calendar(
    calendar: Calendar,
    *,
    dates: Sequence[tuple[dt.date, str]] | None = None,
    actor: Any = None,
) -> Calendar:
    """Save a calendar; ``dates`` (date, label) pairs, when given, become its complete
    list of dates. Jobs using it get a new version and reach the scheduler."""
    check_calendar_save(calendar, actor)
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
                notify_job_changed(
                    job,
                    actor=actor,
                    summary=summaries.english(summaries.CALENDAR_CHANGED, calendar=calendar.name),
                )
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
                notify_job_changed(
                    job,
                    actor=actor,
                    summary=summaries.english(summaries.CALENDAR_DELETED, calendar=calendar.name),
                )
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
