from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Tenant(models.Model):
    """A team sharing the scheduler; every job, group, calendar and run belongs to one."""

    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    rate_limit = models.CharField(
        _("rate limit"),
        max_length=32,
        blank=True,
        help_text=_(
            'At most N runs of the tenant\'s jobs started per period, together: "10/m", "1000/h" '
            "(units s, m, h, d); empty: no limit."
        ),
    )

    class Meta:
        ordering = ["slug"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return self.name or self.slug

    def clean(self) -> None:
        from scheduler_app.documents import throttle as throttle_document

        throttle_document.clean_rate(self)


class Role(models.TextChoices):
    VIEWER = "viewer", _("viewer: read")
    OPERATOR = "operator", _("operator: also run, pause, resume, cancel")
    EDITOR = "editor", _("editor: also create, change, delete")
    ADMIN = "admin", _("admin: also members and permissions")


class Membership(models.Model):
    """A user's role in a tenant."""

    Role = Role

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("tenant")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="scheduler_memberships",
        verbose_name=_("user"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        ordering = ["tenant__slug", "user__username"]
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"
