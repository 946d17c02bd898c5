"""Admin forms. The job form edits the trigger document through plain fields (type,
expression, time zone, ...) and reports every error on the field it concerns."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from scheduler_app.engine import triggerspec
from scheduler_app.models import Job, JobGroup
from scheduler_app.registry import registry

TRIGGER_TYPE_CHOICES = [
    ("cron", _("Cron expression")),
    ("interval", _("Every N seconds")),
    ("date", _("Once, at a date and time")),
    ("manual", _("Manual (run now / dependencies only)")),
    ("all", _("All of several triggers (AND)")),
    ("any", _("Any of several triggers (OR)")),
]

#: trigger document key -> form field, for putting errors where they belong.
TRIGGER_FIELDS = {
    "type": "trigger_type",
    "expression": "cron_expression",
    "dialect": "cron_dialect",
    "timezone": "trigger_timezone",
    "run_at": "run_at",
    "seconds": "interval_seconds",
    "start": "interval_start",
    "end": "interval_end",
    "jitter": "interval_jitter",
}


class JobAdminForm(forms.ModelForm):
    task = forms.ChoiceField(choices=(), help_text=_("A task registered in code."))
    trigger_type = forms.ChoiceField(label=_("Trigger"), choices=TRIGGER_TYPE_CHOICES)
    cron_expression = forms.CharField(
        label=_("Cron expression"),
        required=False,
        help_text=_('e.g. "0 2 L * *" (02:00 on the last day of the month), "0 9 * * MON-FRI".'),
        widget=forms.TextInput(attrs={"class": "vTextField", "data-cron-preview": "1"}),
    )
    cron_dialect = forms.ChoiceField(
        label=_("Dialect"),
        choices=[("crontab", "crontab"), ("quartz", "Quartz")],
        required=False,
        initial="crontab",
    )
    trigger_timezone = forms.CharField(
        label=_("Time zone"),
        required=False,
        initial="UTC",
        help_text=_("IANA name, e.g. Europe/Berlin. Times on this page are shown in it."),
    )
    run_at = forms.CharField(
        label=_("Run at"),
        required=False,
        help_text=_("ISO 8601, e.g. 2026-12-01T09:00:00 (in the time zone) or with an offset."),
    )
    interval_seconds = forms.IntegerField(label=_("Every (seconds)"), required=False, min_value=1)
    interval_start = forms.CharField(label=_("Start"), required=False, help_text=_("ISO 8601; optional."))
    interval_end = forms.CharField(label=_("End"), required=False, help_text=_("ISO 8601; optional."))
    interval_jitter = forms.IntegerField(label=_("Jitter (seconds)"), required=False, min_value=0)
    combination = forms.JSONField(
        label=_("Combined triggers"),
        required=False,
        help_text=_(
            'For AND/OR: a JSON list of triggers, e.g. [{"type": "cron", "expression": '
            '"0 9 * * *"}, {"type": "interval", "seconds": 3600}].'
        ),
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
    )

    class Meta:
        model = Job
        exclude = ["trigger"]
        widgets = {
            "args": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "kwargs": forms.Textarea(attrs={"rows": 3, "cols": 80}),
            "secret_kwargs": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "routing_tags": forms.Textarea(attrs={"rows": 1, "cols": 80}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = registry.names()
        current = self.instance.task if self.instance.pk else None
        choices = [("", "---------")] + [(n, str(registry.get(n))) for n in names]
        if current and current not in registry:
            choices.append((current, f"{current} (not registered)"))
        self.fields["task"].choices = choices
        if self.instance.pk:
            self._load_trigger(self.instance.trigger or {"type": "manual"})
        else:
            self.initial.setdefault("trigger_type", "cron")
        if "group" in self.fields and self.instance.tenant_id:
            self.fields["group"].queryset = JobGroup.objects.filter(tenant_id=self.instance.tenant_id)

    def _load_trigger(self, doc: dict[str, Any]) -> None:
        kind = doc.get("type", "manual")
        self.initial["trigger_type"] = kind
        if kind == "cron":
            self.initial.update(
                cron_expression=doc.get("expression", ""),
                cron_dialect=doc.get("dialect", "crontab"),
                trigger_timezone=doc.get("timezone", "UTC"),
            )
        elif kind == "date":
            self.initial.update(run_at=doc.get("run_at"), trigger_timezone=doc.get("timezone") or "")
        elif kind == "interval":
            self.initial.update(
                interval_seconds=doc.get("seconds"),
                interval_start=doc.get("start") or "",
                interval_end=doc.get("end") or "",
                interval_jitter=doc.get("jitter"),
                trigger_timezone=doc.get("timezone") or "",
            )
        elif kind in ("all", "any"):
            self.initial["combination"] = doc.get("triggers", [])

    def _trigger_document(self, data: dict[str, Any]) -> dict[str, Any]:
        kind = data.get("trigger_type")
        tz = (data.get("trigger_timezone") or "").strip()
        if kind == "cron":
            return {
                "type": "cron",
                "expression": data.get("cron_expression") or "",
                "dialect": data.get("cron_dialect") or "crontab",
                "timezone": tz or "UTC",
            }
        if kind == "date":
            doc: dict[str, Any] = {"type": "date", "run_at": (data.get("run_at") or "").strip()}
        elif kind == "interval":
            doc = {
                "type": "interval",
                "seconds": data.get("interval_seconds"),
                "start": (data.get("interval_start") or "").strip() or None,
                "end": (data.get("interval_end") or "").strip() or None,
                "jitter": data.get("interval_jitter") or None,
            }
        elif kind in ("all", "any"):
            return {"type": kind, "triggers": data.get("combination")}
        else:
            return {"type": "manual"}
        if tz:
            doc["timezone"] = tz
        return doc

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "trigger_type" not in data:
            return data
        doc = self._trigger_document(data)
        try:
            spec = triggerspec.parse_trigger(doc)
        except triggerspec.TriggerSpecError as exc:
            kind = data["trigger_type"]
            field = "combination" if kind in ("all", "any") else TRIGGER_FIELDS.get(exc.key)
            message = exc.message if field and field != "combination" else str(exc)
            self.add_error(field if field in self.fields else None, message)
        else:
            self.instance.trigger = spec.to_dict()
        tenant = data.get("tenant")
        group = data.get("group")
        if tenant and group and group.tenant_id != tenant.pk:
            self.add_error("group", _("The group belongs to another tenant."))
        calendars = data.get("calendars")
        if tenant and calendars:
            foreign = [c.name for c in calendars if c.tenant_id != tenant.pk]
            if foreign:
                self.add_error("calendars", f"Calendar(s) of another tenant: {', '.join(foreign)}.")
        return data


class MoveToGroupForm(forms.Form):
    group = forms.ModelChoiceField(
        queryset=JobGroup.objects.none(), required=False, empty_label=_("(no group)")
    )


class RunNowForm(forms.Form):
    kwargs_override = forms.JSONField(
        required=False,
        initial=dict,
        label=_("Keyword arguments to override"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
