from django.db import models
from django.utils.translation import gettext_lazy as _


class Tenant(models.Model):
    """A team sharing the scheduler; every job, group, calendar and run belongs to one."""

    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return self.name or self.slug
