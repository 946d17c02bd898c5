"""The admin's backfill action on jobs: a form for the range (times with a UTC offset),
priority and a dry run, then one :func:`services.backfill_job` per selected job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from scheduler_app import services


class AwareDateTimeField(forms.CharField):
    """An ISO 8601 time that must carry its UTC offset (never the browser's guess)."""

    def to_python(self, value: Any) -> datetime | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(_("%(v)r is not an ISO 8601 time") % {"v": text}) from None
        if parsed.tzinfo is None:
            raise ValidationError(_("add a UTC offset, e.g. 2026-12-01T00:00:00+00:00"))
        return parsed


class BackfillForm(forms.Form):
    start = AwareDateTimeField(label=_("from"), help_text=_("e.g. 2026-11-23T00:00:00+00:00"))
    end = AwareDateTimeField(label=_("to"), help_text=_("inclusive"))
    priority = forms.IntegerField(label=_("priority"), required=False, help_text=_("default: the job's"))
    dry_run = forms.BooleanField(label=_("dry run (count only)"), required=False)


@admin.action(description=_("Backfill selected jobs (a run per fire time in a range)"), permissions=["run"])
def backfill_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    form = BackfillForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        data = form.cleaned_data
        for job in queryset.select_related("tenant"):
            try:
                plan = services.backfill_job(
                    job,
                    data["start"],
                    data["end"],
                    actor=request.user,
                    priority=data["priority"],
                    dry_run=data["dry_run"],
                )
            except PermissionDenied as exc:
                text = _("Refused %(obj)s: %(reason)s.") % {"obj": job, "reason": exc}
                modeladmin.message_user(request, text, messages.WARNING)
                continue
            except ValidationError as exc:
                reason = "; ".join(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())
                text = _("Refused %(obj)s: %(reason)s.") % {"obj": job, "reason": reason}
                modeladmin.message_user(request, text, messages.WARNING)
                continue
            if data["dry_run"]:
                text = _("%(job)s: %(n)d run(s) would be queued, %(e)d fire time(s) already have a run.")
                count = len(plan.to_queue)
            else:
                text = _("%(job)s: %(n)d run(s) queued, %(e)d fire time(s) already had a run.")
                count = len(plan.queued)
            modeladmin.message_user(
                request, text % {"job": job, "n": count, "e": len(plan.existing)}, messages.SUCCESS
            )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Backfill jobs"),
        "opts": modeladmin.model._meta,
        "queryset": queryset,
        "form": form,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        "action": "backfill_selected",
    }
    return render(request, "admin/scheduler_app/job/backfill.html", context)
