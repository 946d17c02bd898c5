"""Object permissions: what a tenant admin grants a user or a Django group on one job or
a job group (see :mod:`scheduler_app.services.permissions` for how they count)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.models import Job, JobGroup
from scheduler_app.services import permissions

GRANTABLE = ("view", "change", "delete", "run", "pause")


def set_object_permissions(
    obj: Job | JobGroup, holder: Any, actions: Iterable[str], *, actor: Any = None
) -> tuple[list[str], list[str]]:
    """Make ``holder`` (a user or a Django group) have exactly ``actions`` on ``obj``
    (a job, or a group, whose grants apply to its jobs). Only tenant admins may.
    Returns (granted, revoked)."""
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm, get_group_perms, get_user_perms, remove_perm

    permissions.require(actor, "manage", obj)
    wanted = set(actions)
    unknown = sorted(wanted - set(GRANTABLE))
    if unknown:
        raise ValidationError(
            {
                "actions": _("%(action)r cannot be granted; use %(actions)s")
                % {"action": unknown[0], "actions": ", ".join(GRANTABLE)}
            }
        )
    suffix = "job" if isinstance(obj, Job) else "jobgroup"
    is_group = isinstance(holder, Group)
    if not is_group:
        from scheduler_app.models import Membership

        if not Membership.objects.filter(user=holder, tenant_id=obj.tenant_id).exists():
            raise ValidationError(
                {
                    "user": _("%(user)s is not a member of %(tenant)s; add them first")
                    % {"user": holder, "tenant": obj.tenant}
                }
            )
    current_codenames = get_group_perms(holder, obj) if is_group else get_user_perms(holder, obj)
    current = {c.rsplit("_", 1)[0] for c in current_codenames if c.endswith(f"_{suffix}")}
    granted, revoked = sorted(wanted - current), sorted(current & set(GRANTABLE) - wanted)
    with transaction.atomic(), audit.acting_as(actor):
        for action in granted:
            assign_perm(f"scheduler_app.{action}_{suffix}", holder, obj)
        for action in revoked:
            remove_perm(f"scheduler_app.{action}_{suffix}", holder, obj)
        if granted or revoked:
            audit.record(
                obj,
                "permissions",
                actor,
                holder=str(holder),
                holder_type="group" if is_group else "user",
                granted=granted,
                revoked=revoked,
            )
    return granted, revoked
