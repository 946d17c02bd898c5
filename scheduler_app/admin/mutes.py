"""The admin's "mute alerts until…" actions on jobs and alert rules (and "unmute"): a
form for how long (a duration, or a time with its UTC offset), then one service call
(permission-checked per object, audited with the user as actor)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from scheduler_app import display, services
from scheduler_app.admin.backfill import AwareDateTimeField

DURATIONS = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
}


class MuteAlertsForm(forms.Form):
    duration = forms.ChoiceField(
        label=_("mute for"),
        required=False,
        choices=[
            ("", _("(until the time below)")),
            ("1h", _("1 hour")),
            ("4h", _("4 hours")),
            ("1d", _("1 day")),
            ("7d", _("7 days")),
        ],
    )
    until = AwareDateTimeField(
        label=_("or until"), required=False, help_text=_("e.g. 2026-12-24T08:00:00+01:00")
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        duration, until = data.get("duration"), data.get("until")
        if self.errors:
            return data
        if bool(duration) == bool(until):
            raise ValidationError(_("choose how long, or give a time until which to mute, not both"))
        data["until"] = timezone.now() + DURATIONS[duration] if duration else until
        if data["until"] <= timezone.now():
            self.add_error("until", _("must be in the future"))
        return data


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, result: Any, until: datetime | None) -> None:
    if result.done:
        if until is None:
            text = _("Alerts unmuted: %(n)s.") % {"n": len(result.done)}
        else:
            text = _("Alerts muted until %(until)s: %(n)s.") % {
                "until": display.when(until),
                "n": len(result.done),
            }
        modeladmin.message_user(request, text, messages.SUCCESS)
    for obj, reason in result.refused:
        modeladmin.message_user(
            request, _("Refused %(obj)s: %(reason)s.") % {"obj": obj, "reason": reason}, messages.WARNING
        )


def mute(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, action: str
) -> HttpResponse | None:
    """The intermediate page, then the mute."""
    service = services.mute_jobs_alerts if action == "mute_alerts_selected" else services.mute_rules
    form = MuteAlertsForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        until = form.cleaned_data["until"]
        try:
            result = service(list(queryset), until, actor=request.user)
        except ValidationError as exc:
            form.add_error("until", exc.messages)
        else:
            _report(modeladmin, request, result, until)
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Mute alerts"),
        "opts": modeladmin.model._meta,
        "queryset": queryset,
        "form": form,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        "action": action,
        "now": display.when(timezone.now()),
    }
    return render(request, "admin/scheduler_app/mute_alerts.html", context)


def unmute(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, jobs: bool) -> None:
    service = services.mute_jobs_alerts if jobs else services.mute_rules
    _report(modeladmin, request, service(list(queryset), None, actor=request.user), None)
