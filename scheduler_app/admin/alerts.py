"""Admin for alert channels, rules and the outbox (with each delivery attempt). Thin:
forms validate through services.alerts and every change is saved by it (audited, with
the user as actor); channel secrets are write-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from scheduler_app import services
from scheduler_app.admin.base import (
    ReadableTimesMixin,
    ScopedInlineMixin,
    ScopedRelatedFilter,
    TenantScopedAdmin,
)
from scheduler_app.models import AlertChannel, AlertDelivery, AlertEvent, AlertOutbox, AlertRule, ChannelType
from scheduler_app.models.alerts import channel_type_choices
from scheduler_app.services import alerts as alert_services


def _apply_errors(form: forms.ModelForm, error: ValidationError, mapping: dict[str, str]) -> None:
    for key, messages_ in error.message_dict.items():
        field = mapping.get(key, key)
        form.add_error(field if field in form.fields else None, messages_)


class AlertChannelForm(forms.ModelForm):
    to = forms.CharField(
        label=_("to"), required=False, help_text=_("E-mail: addresses, separated by commas.")
    )
    url = forms.CharField(label=_("webhook URL"), required=False, help_text=_("Webhook: http(s) URL."))
    timeout = forms.FloatField(label=_("timeout (s)"), required=False, help_text=_("Webhook: default 10."))
    secret = forms.CharField(
        label=_("secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "Webhook: the HMAC-SHA256 key; apprise: the apprise URL. Stored encrypted; "
            "leave empty to keep the stored one."
        ),
    )
    clear_secret = forms.BooleanField(label=_("remove the stored secret"), required=False)
    settings = forms.JSONField(
        label=_("plugin settings"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=_(
            'A channel type from a plugin: its settings as a JSON object, e.g. {"path": "/var/alerts.jsonl"}. '
            "Its secret fields go in the secret field."
        ),
    )

    class Meta:
        model = AlertChannel
        fields = ["tenant", "name", "type", "language", "subject_template", "body_template", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.instance.config or {}
        self.fields["to"].initial = ", ".join(config.get("to") or [])
        self.fields["url"].initial = config.get("url", "")
        self.fields["timeout"].initial = config.get("timeout")
        self.fields["type"].choices = channel_type_choices()
        if self.instance.type not in ChannelType.values and self.instance.pk:
            self.fields["settings"].initial = config

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        channel = self.instance
        for name in ("tenant", "name", "type", "language", "subject_template", "body_template", "enabled"):
            if name in data:
                setattr(channel, name, data[name])
        if data.get("type") == ChannelType.EMAIL:
            channel.config = {"to": [a.strip() for a in (data.get("to") or "").split(",") if a.strip()]}
        elif data.get("type") == ChannelType.WEBHOOK:
            channel.config = {"url": (data.get("url") or "").strip()}
            if data.get("timeout") is not None:
                channel.config["timeout"] = data["timeout"]
        elif data.get("type") == ChannelType.APPRISE:
            channel.config = {}
        else:  # a plugin's type
            settings = data.get("settings")
            if settings is None:
                settings = {}
            if not isinstance(settings, dict):
                self.add_error("settings", _("must be a JSON object"))
                return data
            channel.config = settings
        self.new_secret = "" if data.get("clear_secret") else (data.get("secret") or None)
        if channel.tenant_id is not None:
            try:
                alert_services.validate_channel(channel, self.new_secret)
            except ValidationError as exc:
                mapping = {"url": "secret" if data.get("type") == "apprise" else "url", "config": "settings"}
                for key, messages_ in exc.message_dict.items():
                    if key.startswith("config."):
                        self.add_error("settings", [f"{key[len('config.') :]}: {m}" for m in messages_])
                    else:
                        field = mapping.get(key, key)
                        self.add_error(field if field in self.fields else None, messages_)
        return data


class AlertDeliveryInline(ReadableTimesMixin, ScopedInlineMixin, admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ["attempted_at", "node", "ok", "status", "error", "response", "duration"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AlertChannel)
class AlertChannelAdmin(TenantScopedAdmin):
    form = AlertChannelForm
    list_display = ["name", "tenant", "type", "target", "enabled", "has_secret"]
    list_filter = [("tenant", ScopedRelatedFilter), "type", "enabled"]
    search_fields = ["name"]
    actions = ["send_test"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("tenant")

    @admin.display(description=_("sends to"))
    def target(self, obj: AlertChannel) -> str:
        if obj.type == ChannelType.EMAIL:
            return ", ".join(obj.config.get("to") or [])
        if obj.type == ChannelType.WEBHOOK:
            return obj.config.get("url", "")
        if obj.type == ChannelType.APPRISE:
            return _("(apprise URL, encrypted)")
        return ", ".join(f"{k}: {v}" for k, v in sorted((obj.config or {}).items()))

    @admin.display(description=_("secret"), boolean=True)
    def has_secret(self, obj: AlertChannel) -> bool:
        return bool(obj.secret_token)

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: Any, change: bool) -> None:
        services.save_channel(obj, secret=form.new_secret, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        services.delete_alert_objects(queryset, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: AlertChannel) -> None:
        services.delete_alert_objects([obj], actor=request.user)

    @admin.action(description=_("Send a test alert through the selected channels"))
    def send_test(self, request: HttpRequest, queryset: QuerySet) -> None:
        sent = 0
        for channel in queryset:
            try:
                services.send_test_alert(channel, actor=request.user)
                sent += 1
            except (ValidationError, PermissionError) as exc:
                self.message_user(request, f"{channel}: {exc}", messages.ERROR)
            except Exception as exc:  # PermissionDenied
                self.message_user(request, f"{channel}: {exc}", messages.ERROR)
        if sent:
            self.message_user(
                request,
                _("%(n)s test alert(s) queued; see Alerts (outbox) for the delivery.") % {"n": sent},
                messages.SUCCESS,
            )


class AlertRuleForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        label=_("events"),
        choices=[(e.value, e.label) for e in AlertEvent if e.value in alert_services.RULE_EVENTS],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = AlertRule
        fields = [
            "tenant",
            "name",
            "scope_job",
            "scope_group",
            "events",
            "channels",
            "late_after_seconds",
            "missed_after_seconds",
            "slow_after_seconds",
            "slow_factor",
            "throttle_seconds",
            "digest",
            "muted_until",
            "enabled",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        rule = self.instance
        for name in self.Meta.fields:
            if name != "channels" and name in data:
                setattr(rule, name, data[name])
        if rule.tenant_id is not None and not self.errors:
            try:
                alert_services.validate_rule(rule, list(data.get("channels") or []))
            except ValidationError as exc:
                _apply_errors(self, exc, {"scope": "scope_job"})
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(TenantScopedAdmin):
    form = AlertRuleForm
    list_display = [
        "name",
        "tenant",
        "scope_text",
        "events_text",
        "throttle_seconds",
        "muted_until",
        "enabled",
    ]
    list_filter = [("tenant", ScopedRelatedFilter), "enabled"]
    search_fields = ["name"]
    actions = ["mute_selected", "unmute_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("tenant", "scope_job", "scope_group")

    @admin.action(description=_("Mute selected rules until…"), permissions=["change"])
    def mute_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        from scheduler_app.admin import mutes

        return mutes.mute(self, request, queryset, action="mute_selected")

    @admin.action(description=_("Unmute selected rules"), permissions=["change"])
    def unmute_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        from scheduler_app.admin import mutes

        mutes.unmute(self, request, queryset, jobs=False)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "channels":
            from scheduler_app.services import permissions

            kwargs["queryset"] = permissions.scope(request.user, AlertChannel.objects.all())
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description=_("scope"))
    def scope_text(self, obj: AlertRule) -> str:
        scope = obj.scope
        if "job" in scope:
            return _("job %(name)s") % {"name": scope["job"]}
        if "group" in scope:
            return _("group %(name)s") % {"name": scope["group"]}
        return _("whole tenant")

    @admin.display(description=_("events"))
    def events_text(self, obj: AlertRule) -> str:
        labels = dict(AlertEvent.choices)
        return ", ".join(str(labels.get(e, e)) for e in obj.events or [])

    def save_model(self, request: HttpRequest, obj: AlertRule, form: Any, change: bool) -> None:
        services.save_rule(obj, channels=list(form.cleaned_data.get("channels") or []), actor=request.user)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # channels are set by services.save_rule

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        services.delete_alert_objects(queryset, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: AlertRule) -> None:
        services.delete_alert_objects([obj], actor=request.user)


@admin.register(AlertOutbox)
class AlertOutboxAdmin(TenantScopedAdmin):
    list_display = ["created_at", "event", "channel", "job", "state", "attempts", "sent_at", "last_error"]
    list_filter = [("tenant", ScopedRelatedFilter), "state", "event"]
    search_fields = ["alert_id", "job__name", "channel__name"]
    readonly_fields = [
        "alert_id",
        "tenant",
        "rule",
        "channel",
        "event",
        "job",
        "run",
        "payload",
        "state",
        "attempts",
        "created_at",
        "next_attempt_at",
        "leased_by",
        "leased_until",
        "sent_at",
        "last_error",
    ]
    fields = readonly_fields
    inlines = [AlertDeliveryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("channel", "job")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
