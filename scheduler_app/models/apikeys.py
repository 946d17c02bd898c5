"""API keys (``Authorization: Bearer <key>``) and the idempotency keys of API run
requests.

A key is ``sk_`` + 43 url-safe characters (32 random bytes). Only its SHA-256 digest is
stored: a key has 256 bits of entropy, so a fast hash is as strong as a slow password
hash would be (nobody can enumerate 2^256 candidates), and a per-request check stays
cheap. Its first characters (``prefix``) are kept in clear so a person can tell keys
apart in lists, logs and audit entries."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from scheduler_app.models.tenants import Role


class ApiKeyQuerySet(models.QuerySet):
    def usable(self) -> ApiKeyQuerySet:
        """Not revoked and not expired (now)."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="scheduler_api_keys",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=200, blank=True, help_text=_("What the key is for."))
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    digest = models.CharField(_("SHA-256 of the key"), max_length=64, unique=True, editable=False)
    tenant = models.ForeignKey(
        "scheduler_app.Tenant",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
        verbose_name=_("only in tenant"),
        help_text=_("Empty: every tenant the user belongs to."),
    )
    role = models.CharField(
        _("at most role"),
        max_length=16,
        choices=Role.choices,
        blank=True,
        help_text=_("Empty: the user's own roles. Otherwise the key acts with at most this role."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        label = f"{self.prefix}…"
        return f"{label} ({self.name})" if self.name else label

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class RunRequest(models.Model):
    """An ``idempotency_key`` sent with ``POST /api/jobs/{id}/run/``: a retried request
    with the same key for the same job gets the run the first one queued. The unique
    constraint decides between two identical requests racing."""

    job = models.ForeignKey(
        "scheduler_app.Job", on_delete=models.CASCADE, related_name="+", verbose_name=_("job")
    )
    key = models.CharField(_("idempotency key"), max_length=200)
    run = models.ForeignKey(
        "scheduler_app.JobRun", on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("run")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "key"], name="runrequest_unique_key")]
        verbose_name = _("run request")
        verbose_name_plural = _("run requests")

    def __str__(self) -> str:
        return f"{self.job_id}:{self.key}"
