"""API keys: create (the key is returned once and never stored), revoke, and find the
key a request presents.

A key is ``sk_`` followed by 43 url-safe characters (32 random bytes, 256 bits). Only
its SHA-256 digest is stored. A slow password hash (PBKDF2, argon2) protects *low*
entropy secrets against guessing; a 256-bit random key cannot be guessed, so SHA-256 is
as safe here and keeps the check per request cheap. The digest is looked up through a
unique index and compared again in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from scheduler_app import audit
from scheduler_app.models import ApiKey, Membership, Role, Tenant
from scheduler_app.services import permissions

TOKEN_PREFIX = "sk_"
#: Characters of the key kept in clear to tell keys apart ("sk_" + 8).
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
#: ``last_used_at`` is written at most this often, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
ROLE_ORDER = permissions.ROLE_ORDER


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    token: str  # shown once; only its digest is stored


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _may_manage(actor: Any, user: Any) -> bool:
    """Users manage their own keys; superusers everyone's; ``None`` is the system (a
    management command run by an operator)."""
    if actor is None:
        return True
    return bool(actor.is_active and (actor.pk == user.pk or actor.is_superuser))


def create_key(
    user: Any,
    *,
    name: str = "",
    tenant: Tenant | None = None,
    role: str | None = None,
    expires_at: datetime | None = None,
    actor: Any = None,
) -> NewKey:
    """A new key for ``user``; raises ValidationError naming the field, PermissionDenied
    if ``actor`` may not create keys for ``user``."""
    role = role or None
    check_new_key(user, name=name, tenant=tenant, role=role, expires_at=expires_at, actor=actor)
    for _attempt in range(5):
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            user=user,
            name=name,
            prefix=token[:PREFIX_LENGTH],
            digest=digest(token),
            tenant=tenant,
            role=role or "",
            expires_at=expires_at,
        )
        try:
            with transaction.atomic(), audit.acting_as(actor):
                key.save()
                audit.record(
                    key,
                    "create_api_key",
                    actor,
                    prefix=key.prefix,
                    user=user.get_username(),
                    tenant=tenant.slug if tenant else None,
                    role=role,
                    expires_at=expires_at.isoformat() if expires_at else None,
                )
        except IntegrityError:  # the same prefix drawn twice: draw again
            continue
        return NewKey(key=key, token=token)
    raise RuntimeError("could not draw a unique API key prefix")


def check_new_key(
    user: Any,
    *,
    name: str = "",
    tenant: Tenant | None = None,
    role: str | None = None,
    expires_at: datetime | None = None,
    actor: Any = None,
) -> None:
    """What :func:`create_key` refuses: another user's key (unless superuser), a tenant
    the user is not in, a role above the user's, an expiry in the past."""
    if not _may_manage(actor, user):
        raise PermissionDenied(_("you may only create API keys for yourself"))
    if not user.is_active:
        raise ValidationError({"user": _("%(user)s is not active") % {"user": user}})
    if role is not None and role not in Role.values:
        raise ValidationError(
            {
                "role": _("%(role)r is not a role; use one of %(roles)s")
                % {"role": role, "roles": ", ".join(Role.values)}
            }
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": _("must be in the future")})
    if len(name) > 200:
        raise ValidationError({"name": _("at most 200 characters")})
    if not user.is_superuser:
        roles = dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        if tenant is not None and tenant.pk not in roles:
            raise ValidationError(
                {
                    "tenant": _("%(user)s is not a member of %(tenant)s")
                    % {"user": user, "tenant": tenant.slug}
                }
            )
        if not roles:
            raise ValidationError({"user": _("%(user)s is not a member of any tenant") % {"user": user}})
        highest = roles[tenant.pk] if tenant is not None else max(roles.values(), key=ROLE_ORDER.index)
        if role is not None and ROLE_ORDER.index(role) > ROLE_ORDER.index(highest):
            if tenant is not None:
                text = _("%(role)s is above %(user)s's role in %(tenant)s (%(highest)s)")
            else:
                text = _("%(role)s is above %(user)s's role (%(highest)s)")
            values = {"role": role, "user": user, "tenant": getattr(tenant, "slug", ""), "highest": highest}
            raise ValidationError({"role": text % values})


def revoke_key(key: ApiKey, *, actor: Any = None) -> bool:
    """Revoke ``key`` at once (requests using it get 401); whether it was usable."""
    if not _may_manage(actor, key.user):
        raise PermissionDenied("you may only revoke your own API keys")
    with transaction.atomic(), audit.acting_as(actor):
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
        if updated:
            audit.record(key, "revoke_api_key", actor, prefix=key.prefix, user=key.user.get_username())
    return bool(updated)


def visible_keys(actor: Any) -> Any:
    """The keys ``actor`` may list and revoke."""
    qs = ApiKey.objects.select_related("user", "tenant")
    if actor is None or actor.is_superuser:
        return qs
    return qs.filter(user=actor)


def find_key(token: str) -> ApiKey | None:
    """The usable key ``token`` is, with its user; None for an unknown, revoked or
    expired key or an inactive user. Records the use (at most once a minute)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    wanted = digest(token)
    key = ApiKey.objects.select_related("user").filter(digest=wanted).first()
    if key is None or not hmac.compare_digest(key.digest, wanted):
        return None
    if not key.is_usable or not key.user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so concurrent requests write it once.
        ApiKey.objects.filter(pk=key.pk).exclude(last_used_at__gt=now - LAST_USED_RESOLUTION).update(
            last_used_at=now
        )
        key.last_used_at = now
    return key


def acting_user(key: ApiKey) -> Any:
    """The key's user, narrowed to what the key allows (tenant, role cap)."""
    user = key.user
    if key.tenant_id is not None or key.role:
        permissions.restrict(user, tenant_id=key.tenant_id, role=key.role or None)
    return user
