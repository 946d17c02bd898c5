"""Who may do what: tenant roles, then per-object grants (django-guardian).

Roles apply to a whole tenant:

========  =====================================================
viewer    view
operator  view, run (run now, cancel, stop), pause (pause/resume)
editor    operator's, plus add, change, delete
admin     editor's, plus manage (members and object grants)
========  =====================================================

On top of roles, a user (or a Django group the user is in) can be granted ``view``,
``change``, ``delete``, ``run`` or ``pause`` on one job (``<action>_job``) or on a job
group (``<action>_jobgroup``, which applies to every job in the group). Grants count only
inside tenants the user belongs to: nobody sees another tenant. Superusers may do
everything.

An API key can narrow its user's rights (:func:`restrict`): to one tenant, and to at
most a role. A restricted key of a superuser acts like a member of that tenant (or of
every tenant) with that role; grants count only for actions the key's role allows.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "run", "pause"}),
    "editor": frozenset({"view", "run", "pause", "add", "change", "delete"}),
    "admin": frozenset({"view", "run", "pause", "add", "change", "delete", "manage"}),
}
OBJECT_ACTIONS = ("view", "change", "delete", "run", "pause")
ROLE_ORDER = ("viewer", "operator", "editor", "admin")


def restrict(user: Any, *, tenant_id: int | None = None, role: str | None = None) -> None:
    """Narrow what ``user`` (this request's user object) may do: only in ``tenant_id``,
    with at most ``role``. Used for API keys; lasts as long as the object."""
    user._scheduler_scope = (tenant_id, role or None)
    forget(user)


def _scope_of(user: Any) -> tuple[int | None, str | None] | None:
    return getattr(user, "_scheduler_scope", None)


def _capped(role: str, cap: str | None) -> str:
    if cap is None or role not in ROLE_ORDER:
        return role
    return ROLE_ORDER[min(ROLE_ORDER.index(role), ROLE_ORDER.index(cap))]


def is_system(user: Any) -> bool:
    """No user: the engine or a management command acting for the operator."""
    return user is None


def roles(user: Any) -> dict[int, str]:
    """{tenant id: role} for the user, cached on the user object for the request."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, "_scheduler_roles", None)
    if cached is None:
        from scheduler_app.models import Membership

        scope = _scope_of(user)
        if scope is not None and getattr(user, "is_superuser", False):
            from scheduler_app.models import Tenant

            tenants = Tenant.objects.all() if scope[0] is None else Tenant.objects.filter(pk=scope[0])
            cached = dict.fromkeys(tenants.values_list("pk", flat=True), "admin")
        else:
            cached = dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        if scope is not None:
            tenant_id, cap = scope
            cached = {
                tid: _capped(role, cap)
                for tid, role in cached.items()
                if tenant_id is None or tid == tenant_id
            }
        user._scheduler_roles = cached
    return cached


def forget(user: Any) -> None:
    if user is not None and hasattr(user, "_scheduler_roles"):
        del user._scheduler_roles


def member_tenant_ids(user: Any) -> set[int]:
    return set(roles(user))


def tenant_ids_with(user: Any, action: str) -> set[int]:
    return {tid for tid, role in roles(user).items() if action in ROLE_ACTIONS.get(role, ())}


def sees_everything(user: Any) -> bool:
    if is_system(user):
        return True
    return bool(getattr(user, "is_superuser", False) and user.is_active and _scope_of(user) is None)


def scope(user: Any, queryset: QuerySet, tenant_field: str = "tenant") -> QuerySet:
    """Only the rows of tenants the user belongs to."""
    if sees_everything(user):
        return queryset
    lookup = "pk__in" if tenant_field == "pk" else f"{tenant_field}__in"
    return queryset.filter(**{lookup: member_tenant_ids(user)})


def _tenant_id(obj: Model) -> int | None:
    from scheduler_app.models import Tenant

    if isinstance(obj, Tenant):
        return obj.pk
    return getattr(obj, "tenant_id", None)


def can(user: Any, action: str, obj: Model | None = None, *, tenant_id: int | None = None) -> bool:
    """May ``user`` do ``action`` on ``obj`` (or, with ``tenant_id``, in that tenant)?"""
    if sees_everything(user):
        return True
    if user is None or not getattr(user, "is_active", False):
        return False
    tid = tenant_id if obj is None else _tenant_id(obj)
    role = roles(user).get(tid) if tid is not None else None
    if role is None:
        return False  # not a member: no role and no grant counts
    if action in ROLE_ACTIONS.get(role, ()):
        return True
    if not _cap_allows(user, action):
        return False
    return obj is not None and _granted(user, action, obj)


def _cap_allows(user: Any, action: str) -> bool:
    """Grants count only for actions the key's role cap (if any) allows."""
    scope = _scope_of(user)
    return scope is None or scope[1] is None or action in ROLE_ACTIONS.get(scope[1], ())


def _granted(user: Any, action: str, obj: Model) -> bool:
    from scheduler_app.models import Job, JobGroup, JobRun

    if action not in OBJECT_ACTIONS:
        return False
    if isinstance(obj, JobRun):
        obj = obj.job
    if isinstance(obj, Job):
        if user.has_perm(f"scheduler_app.{action}_job", obj):
            return True
        return obj.group_id is not None and user.has_perm(f"scheduler_app.{action}_jobgroup", obj.group)
    if isinstance(obj, JobGroup):
        return user.has_perm(f"scheduler_app.{action}_jobgroup", obj)
    return False


#: The actions' verbs as a refusal says them ("you may not pause job acme/export").
ACTION_VERBS = {
    "add": pgettext_lazy("refusal verb", "add"),
    "change": pgettext_lazy("refusal verb", "change"),
    "delete": pgettext_lazy("refusal verb", "delete"),
    "manage": pgettext_lazy("refusal verb", "manage"),
    "pause": pgettext_lazy("refusal verb", "pause"),
    "run": pgettext_lazy("refusal verb", "run"),
    "view": pgettext_lazy("refusal verb", "view"),
}


def require(user: Any, action: str, obj: Model | None = None, *, tenant_id: int | None = None) -> None:
    if not can(user, action, obj, tenant_id=tenant_id):
        verb = ACTION_VERBS.get(action, action)
        if obj is None:
            raise PermissionDenied(_("you may not %(action)s in this tenant") % {"action": verb})
        raise PermissionDenied(
            _("you may not %(action)s %(kind)s %(object)s")
            % {"action": verb, "kind": obj._meta.verbose_name, "object": obj}
        )


def has_any(user: Any, action: str) -> bool:
    """Whether the user may do ``action`` on anything at all (to show a button or an
    action; each object is still checked)."""
    if sees_everything(user):
        return True
    if tenant_ids_with(user, action):
        return True
    if action not in OBJECT_ACTIONS or not member_tenant_ids(user) or not _cap_allows(user, action):
        return False
    from guardian.models import GroupObjectPermission, UserObjectPermission

    codenames = [f"{action}_job", f"{action}_jobgroup"]
    return (
        UserObjectPermission.objects.filter(user=user, permission__codename__in=codenames).exists()
        or GroupObjectPermission.objects.filter(
            group__in=user.groups.all(), permission__codename__in=codenames
        ).exists()
    )


def viewable(user: Any, runs: Any) -> set[int]:
    """The pks of those ``runs`` (with their jobs loaded) that ``user`` may view: for the
    runs a run's page and API show around it (its cause, its upstream runs, the runs it
    started), which are links, not a scope (one check per job)."""
    allowed: dict[int, bool] = {}
    out = set()
    for run in runs:
        if run.job_id not in allowed:
            allowed[run.job_id] = can(user, "view", run.job)
        if allowed[run.job_id]:
            out.add(run.pk)
    return out
