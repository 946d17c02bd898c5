"""The cluster's rows: one ``Node`` per ``runscheduler`` process and the leases that
decide which node runs the trigger side."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class NodeState(models.TextChoices):
    ACTIVE = "active", _("active")
    DRAINING = "draining", _("draining")
    STOPPED = "stopped", _("stopped")
    DEAD = "dead", _("dead")


LIVE_NODE_STATES = (NodeState.ACTIVE, NodeState.DRAINING)


def db_now_minus(seconds: float) -> models.Expression:
    """``now() - seconds`` evaluated by the database (its clock, not this node's)."""
    return models.ExpressionWrapper(Now() - timedelta(seconds=seconds), output_field=models.DateTimeField())


def db_now_plus(seconds: float) -> models.Expression:
    return models.ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=models.DateTimeField())


class NodeQuerySet(models.QuerySet):
    def live(self, dead_after: float) -> NodeQuerySet:
        """Registered active or draining nodes whose heartbeat is younger than
        ``dead_after`` seconds by the database's clock."""
        return self.filter(state__in=LIVE_NODE_STATES, heartbeat_at__gte=db_now_minus(dead_after))

    def overdue(self, dead_after: float) -> NodeQuerySet:
        return self.filter(state__in=LIVE_NODE_STATES, heartbeat_at__lt=db_now_minus(dead_after))


class Node(models.Model):
    """A scheduler process. ``incarnation`` changes at every start (and rejoin), so a
    node restarted under the same name is told apart from its earlier life."""

    State = NodeState

    name = models.CharField(_("name"), max_length=200, unique=True)
    host = models.CharField(_("host"), max_length=200, blank=True)
    pid = models.PositiveIntegerField(_("process id"), null=True, blank=True)
    version = models.CharField(_("version"), max_length=40, blank=True)
    incarnation = models.CharField(_("incarnation"), max_length=40, db_index=True)
    tags = models.JSONField(_("tags"), default=list, blank=True)
    capacity = models.JSONField(_("capacity"), default=dict, blank=True, help_text=_("Slots per executor."))
    used = models.JSONField(_("used slots"), default=dict, blank=True)
    load = models.FloatField(_("load per CPU"), null=True, blank=True)
    free_memory_mb = models.FloatField(_("free memory (MB)"), null=True, blank=True)
    overloaded = models.BooleanField(_("overloaded"), default=False)
    clock_offset = models.FloatField(
        _("clock offset (s)"),
        null=True,
        blank=True,
        help_text=_("The node's clock minus the database's, at its last heartbeat."),
    )
    state = models.CharField(_("state"), max_length=16, choices=NodeState.choices, default=NodeState.ACTIVE)
    started_at = models.DateTimeField(_("started at"))
    heartbeat_at = models.DateTimeField(_("last heartbeat"))
    stopped_at = models.DateTimeField(_("stopped at"), null=True, blank=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("node")
        verbose_name_plural = _("nodes")

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"

    @property
    def running(self) -> int:
        return sum(int(v) for v in (self.used or {}).values())


class Lease(models.Model):
    """A lease held by one node incarnation until ``expires_at`` (database clock).
    ``name`` is ``triggers/<shard>``; ``term`` grows at every change of holder."""

    name = models.CharField(_("name"), max_length=100, primary_key=True)
    holder = models.CharField(_("holder"), max_length=200, blank=True)
    incarnation = models.CharField(_("holder incarnation"), max_length=40, blank=True)
    acquired_at = models.DateTimeField(_("acquired at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    term = models.BigIntegerField(_("term"), default=0)

    class Meta:
        verbose_name = _("lease")
        verbose_name_plural = _("leases")

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or '-'}"
