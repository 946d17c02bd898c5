from django.db import models
from django.utils.translation import gettext_lazy as _


class Calendar(models.Model):
    """An exclusion calendar (Quartz style): dates on which referencing jobs do not fire."""

    tenant = models.ForeignKey(
        "scheduler_app.Tenant", on_delete=models.CASCADE, related_name="calendars", verbose_name=_("tenant")
    )
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="calendar_unique_name")]
        verbose_name = _("exclusion calendar")
        verbose_name_plural = _("exclusion calendars")

    def __str__(self) -> str:
        return self.name

    def excluded_dates(self) -> list:
        return list(self.dates.values_list("date", flat=True))


class CalendarDate(models.Model):
    calendar = models.ForeignKey(
        Calendar, on_delete=models.CASCADE, related_name="dates", verbose_name=_("calendar")
    )
    date = models.DateField(_("date"))
    label = models.CharField(_("label"), max_length=200, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["calendar", "date"], name="calendar_date_unique")]
        verbose_name = _("excluded date")
        verbose_name_plural = _("excluded dates")

    def __str__(self) -> str:
        return f"{self.date.isoformat()} {self.label}".strip()
