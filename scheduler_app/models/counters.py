"""Cluster-wide run counters for Prometheus, kept in the database.

A counter must never go backwards, must agree between web workers and must survive
the pruning of old runs, so it cannot be a ``COUNT(*)`` over runs nor a per-process
number. Instead whoever records a run's outcome adds it here, in the same transaction
(:func:`scheduler_app.monitoring.counters.count_finished`): one row per label set
(tenant, group, task, state; job only when ``METRICS_JOB_LABELS`` is on) with the
count, the sums and the per-bucket counts of the duration and lateness histograms.
Labels are stored as text, so renaming or deleting a group starts a new series instead
of moving the old one's count."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

#: Upper bounds (seconds) of the histogram buckets; +Inf is the count. Fixed: stored
#: counts are per bucket, so changing them would mix old and new bounds.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _bucket_fields(kind: str, bounds: tuple[float, ...]) -> dict[str, models.BigIntegerField]:
    return {f"{kind}_b{i}": models.BigIntegerField(default=0) for i in range(len(bounds))}


class RunCounterBase(models.Model):
    tenant = models.CharField(_("tenant"), max_length=64)
    group = models.CharField(_("group"), max_length=200, blank=True)
    task = models.CharField(_("task"), max_length=200)
    job = models.CharField(_("job"), max_length=200, blank=True)
    state = models.CharField(_("state"), max_length=16)
    count = models.BigIntegerField(default=0)
    retries = models.BigIntegerField(default=0, help_text=_("of count: runs that were retries"))
    duration_sum = models.FloatField(default=0.0)
    duration_count = models.BigIntegerField(default=0)
    lateness_sum = models.FloatField(default=0.0)
    lateness_count = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


RunCounter = type(
    "RunCounter",
    (RunCounterBase,),
    {
        "__module__": __name__,
        "__doc__": "Finished runs per label set, with histogram buckets (see the module).",
        **_bucket_fields("duration", DURATION_BUCKETS),
        **_bucket_fields("lateness", LATENESS_BUCKETS),
        "Meta": type(
            "Meta",
            (),
            {
                "constraints": [
                    models.UniqueConstraint(
                        fields=["tenant", "group", "task", "job", "state"], name="runcounter_unique_labels"
                    )
                ],
                "verbose_name": _("run counter"),
                "verbose_name_plural": _("run counters"),
            },
        ),
        "__str__": lambda self: f"{self.tenant}/{self.group}/{self.task}/{self.state}: {self.count}",
    },
)


class AlertCounter(models.Model):
    """Alerts that reached a final delivery state, per label set, kept like the run
    counters: added to by whichever node records the delivery, in the same transaction,
    so that pruning delivered alerts never makes ``scheduler_alerts_*_total`` go back."""

    tenant = models.CharField(_("tenant"), max_length=64)
    channel_type = models.CharField(_("channel type"), max_length=64)
    event = models.CharField(_("event"), max_length=16)
    outcome = models.CharField(_("outcome"), max_length=16, help_text=_("sent, or gave up"))
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "channel_type", "event", "outcome"], name="alertcounter_unique_labels"
            )
        ]
        verbose_name = _("alert counter")
        verbose_name_plural = _("alert counters")

    def __str__(self) -> str:
        return f"{self.tenant}/{self.channel_type}/{self.event}/{self.outcome}: {self.count}"
