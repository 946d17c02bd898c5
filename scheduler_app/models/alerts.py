"""Alert channels, rules, open incidents, the outbox and its delivery attempts.

An alert is born as an :class:`AlertOutbox` row written in the transaction that records
the run outcome causing it, and leaves it only through the delivery loop (leased rows,
retries with backoff); every attempt is an :class:`AlertDelivery` row."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from scheduler_app import display


class ChannelType(models.TextChoices):
    EMAIL = "email", _("e-mail")
    WEBHOOK = "webhook", _("webhook (JSON POST, HMAC-SHA256 signed)")
    APPRISE = "apprise", _("apprise URL (Slack, Teams, …)")


def channel_type_choices() -> list[tuple[str, Any]]:
    """The built-in channel types and those registered by plugins (evaluated when used,
    so installing a plugin needs no migration)."""
    from scheduler_app import plugins

    return [*ChannelType.choices, *plugins.alert_channel_choices()]


class AlertEvent(models.TextChoices):
    FAILED = "failed", _("failed (final, after retries)")
    RETRYING = "retrying", _("failed, retrying")
    TIMED_OUT = "timed_out", _("timed out")
    LOST = "lost", _("lost")
    CANCELLED = "cancelled", _("cancelled")
    INTERRUPTED = "interrupted", _("interrupted")
    SKIPPED = "skipped", _("skipped (misfire or overlap)")
    LATE = "late", _("late (not started in time)")
    MISSED = "missed", _("missed (no success in time)")
    SLOW = "slow", _("slow")
    RECOVERED = "recovered", _("recovered")
    NODE_DOWN = "node_down", _("node declared dead")
    TEST = "test", _("test")


class AlertChannel(models.Model):
    tenant = models.ForeignKey(
        "scheduler_app.Tenant",
        on_delete=models.CASCADE,
        related_name="alert_channels",
        verbose_name=_("tenant"),
    )
    name = models.CharField(_("name"), max_length=200)
    type = models.CharField(_("type"), max_length=16, choices=channel_type_choices)
    #: email: ``to`` (list of addresses); webhook: ``url``, ``timeout``; a plugin type:
    #: its configuration without the secret fields.
    config = models.JSONField(_("settings"), default=dict, blank=True)
    # webhook: the HMAC secret; apprise: the URL (it holds tokens); a plugin type: its
    # secret fields, as one encrypted object. Ciphertext only.
    secret_token = models.TextField(_("encrypted secret"), blank=True, editable=False)
    secret_fingerprint = models.CharField(_("secret fingerprint"), max_length=32, blank=True, editable=False)
    language = models.CharField(_("language"), max_length=16, blank=True)
    subject_template = models.TextField(_("subject template"), blank=True)
    body_template = models.TextField(_("body template"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="alertchannel_unique_name")]
        verbose_name = _("alert channel")
        verbose_name_plural = _("alert channels")

    def __str__(self) -> str:
        return self.name

    def reveal_secret(self) -> str:
        from scheduler_app import crypto

        return str(crypto.decrypt(self.secret_token).get("secret", "")) if self.secret_token else ""

    def reveal_secrets(self) -> dict[str, Any]:
        """A plugin channel's secret fields, decrypted (only for sending)."""
        from scheduler_app import crypto

        return crypto.decrypt(self.secret_token) if self.secret_token else {}

    def set_secrets(self, values: dict[str, Any]) -> None:
        """Store a plugin channel's secret fields (an empty dict removes them)."""
        from scheduler_app import crypto

        values = {k: v for k, v in values.items() if v not in (None, "")}
        if not values:
            self.secret_token, self.secret_fingerprint = "", ""
            return
        self.secret_token = crypto.encrypt(values)
        self.secret_fingerprint = crypto.fingerprint(f"channel:{self.name}", values)

    def set_secret(self, value: str | None) -> None:
        from scheduler_app import crypto

        if not value:
            self.secret_token, self.secret_fingerprint = "", ""
            return
        self.secret_token = crypto.encrypt({"secret": value})
        self.secret_fingerprint = crypto.fingerprint(f"channel:{self.name}", value)


class AlertRuleQuerySet(models.QuerySet):
    def active(self) -> AlertRuleQuerySet:
        return self.filter(enabled=True)


class AlertRule(models.Model):
    tenant = models.ForeignKey(
        "scheduler_app.Tenant", on_delete=models.CASCADE, related_name="alert_rules", verbose_name=_("tenant")
    )
    name = models.CharField(_("name"), max_length=200)
    scope_job = models.ForeignKey(
        "scheduler_app.Job",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
        verbose_name=_("job"),
    )
    scope_group = models.ForeignKey(
        "scheduler_app.JobGroup",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
        verbose_name=_("group"),
    )
    events = models.JSONField(_("events"), default=list)
    channels = models.ManyToManyField(AlertChannel, related_name="rules", verbose_name=_("channels"))
    missed_after_seconds = models.PositiveIntegerField(
        _("missed after (s)"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    late_after_seconds = models.PositiveIntegerField(
        _("late after (s)"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    slow_after_seconds = models.FloatField(
        _("slow after (s)"), null=True, blank=True, validators=[MinValueValidator(0.001)]
    )
    slow_factor = models.FloatField(
        _("slow above × p95"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1.0)],
        help_text=_("A run taking longer than this many times the p95 of the job's recent runs is slow."),
    )
    throttle_seconds = models.PositiveIntegerField(
        _("throttle (s)"),
        default=3600,
        help_text=_("At most one message per job and event within this window."),
    )
    digest = models.BooleanField(
        _("digest"),
        default=False,
        help_text=_("When a channel was down, send what piled up as one message."),
    )
    muted_until = models.DateTimeField(_("muted until"), null=True, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="alertrule_unique_name")]
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> dict[str, Any]:
        if self.scope_job_id:
            return {"job": self.scope_job.name}
        if self.scope_group_id:
            return {"group": self.scope_group.name}
        return {"tenant": True}


class AlertIncident(models.Model):
    """One open problem of one job under one rule: while it is open, further failures
    of the job send nothing (until a reminder is due); a success closes it with a
    ``recovered`` alert."""

    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, related_name="incidents", verbose_name=_("rule")
    )
    job = models.ForeignKey(
        "scheduler_app.Job", on_delete=models.CASCADE, related_name="alert_incidents", verbose_name=_("job")
    )
    kind = models.CharField(_("kind"), max_length=16, default="failure")
    opened_at = models.DateTimeField(_("opened"))
    last_alert_at = models.DateTimeField(_("last alert"))
    suppressed = models.PositiveIntegerField(_("suppressed alerts"), default=0)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "job", "kind"],
                condition=models.Q(closed_at__isnull=True),
                name="alertincident_one_open",
            )
        ]
        verbose_name = _("alert incident")
        verbose_name_plural = _("alert incidents")

    def __str__(self) -> str:
        return f"{self.rule} / {self.job} ({self.kind})"


class OutboxState(models.TextChoices):
    PENDING = "pending", _("pending")
    SENT = "sent", _("sent")
    DEAD = "dead", _("gave up")


class AlertOutbox(models.Model):
    alert_id = models.UUIDField(_("alert id"), default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(
        "scheduler_app.Tenant", on_delete=models.CASCADE, related_name="+", verbose_name=_("tenant")
    )
    rule = models.ForeignKey(
        AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("rule")
    )
    channel = models.ForeignKey(
        AlertChannel, on_delete=models.CASCADE, related_name="outbox", verbose_name=_("channel")
    )
    event = models.CharField(_("event"), max_length=16, choices=AlertEvent.choices)
    job = models.ForeignKey(
        "scheduler_app.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("job"),
    )
    run = models.ForeignKey(
        "scheduler_app.JobRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("run"),
    )
    payload = models.JSONField(_("payload"), default=dict)
    state = models.CharField(
        _("state"), max_length=16, choices=OutboxState.choices, default=OutboxState.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    leased_by = models.CharField(_("leased by"), max_length=200, blank=True)
    leased_until = models.DateTimeField(_("leased until"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                "next_attempt_at",
                "id",
                condition=models.Q(state="pending"),
                name="alertoutbox_due_idx",
            )
        ]
        verbose_name = _("alert")
        verbose_name_plural = _("alerts (outbox)")

    def __str__(self) -> str:
        return f"{self.event} → {self.channel} ({self.state})"


class AlertDelivery(models.Model):
    outbox = models.ForeignKey(
        AlertOutbox, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("outbox")
    )
    attempted_at = models.DateTimeField(_("attempted"))
    node = models.CharField(_("node"), max_length=200, blank=True)
    ok = models.BooleanField(_("ok"), default=False)
    status = models.CharField(_("status"), max_length=32, blank=True)
    response = models.TextField(_("response"), blank=True)
    error = models.TextField(_("error"), blank=True)
    duration = models.FloatField(_("duration (s)"), null=True, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")

    def __str__(self) -> str:
        return f"{self.outbox_id} @ {display.when(self.attempted_at)} ({'ok' if self.ok else 'failed'})"
