from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class JobVersion(models.Model):
    """A numbered snapshot of a job's configuration after a change (fields, trigger,
    dependencies, calendars and secrets' fingerprints — never their values)."""

    job = models.ForeignKey(
        "scheduler_app.Job", on_delete=models.CASCADE, related_name="versions", verbose_name=_("job")
    )
    tenant = models.ForeignKey(
        "scheduler_app.Tenant",
        on_delete=models.CASCADE,
        related_name="job_versions",
        editable=False,
        verbose_name=_("tenant"),
    )
    number = models.PositiveIntegerField(_("version"))
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    summary = models.CharField(_("summary"), max_length=300, blank=True)
    snapshot = models.JSONField(_("snapshot"))

    class Meta:
        ordering = ["job", "-number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="jobversion_unique_number")]
        verbose_name = _("job version")
        verbose_name_plural = _("job versions")

    def __str__(self) -> str:
        return f"{self.job} v{self.number}"
