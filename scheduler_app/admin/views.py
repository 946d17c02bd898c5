"""Extra admin pages of a job (and a group): run now with overrides, version history
with diffs and rollback, the audit trail, object permission grants, and the live cron
preview. Each checks tenant scope (404) and the action's permission (403)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django.views import View

from scheduler_app import display, i18n, services
from scheduler_app.admin.forms import AccountByNameField, LimitedJSONField
from scheduler_app.models import Job, Membership
from scheduler_app.services import permissions, summaries, versioning


class ObjectView(View):
    model_admin: Any = None
    action = "view"
    template = ""

    def get_object(self, request: HttpRequest, object_id: str) -> Any:
        obj = (
            self.model_admin.get_queryset(request).filter(pk=object_id).first()
            if object_id.isdigit()
            else None
        )
        if obj is None:
            raise Http404("not found")
        if not permissions.can(request.user, self.action, obj):
            raise PermissionDenied(f"you may not {self.action} {obj}")
        return obj

    def render(self, request: HttpRequest, obj: Any, title: str, **context: Any) -> HttpResponse:
        opts = self.model_admin.model._meta
        return TemplateResponse(
            request,
            self.template,
            {
                **self.model_admin.admin_site.each_context(request),
                "opts": opts,
                "original": obj,
                "object": obj,
                "title": title,
                "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
                **context,
            },
        )


class RunNowForm(forms.Form):
    kwargs_override = LimitedJSONField(
        label=_("Keyword arguments to override"),
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=_("A JSON object merged over the job's kwargs for this run only."),
    )
    run_at = forms.DateTimeField(
        label=_("Run at"),
        required=False,
        help_text=_("Optional, in the job's time zone (YYYY-MM-DD HH:MM:SS). Empty: now."),
    )

    def clean_kwargs_override(self) -> dict[str, Any]:
        value = self.cleaned_data.get("kwargs_override") or {}
        if not isinstance(value, dict):
            raise ValidationError(_("Enter a JSON object."))
        return value


class RunJobView(ObjectView):
    action = "run"
    template = "admin/scheduler_app/job/run.html"

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self.get_object(request, object_id)
        return self.render(request, job, _("Run %(job)s") % {"job": job}, form=RunNowForm())

    def post(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from scheduler_app.admin import job_timezone

        job = self.get_object(request, object_id)
        form = RunNowForm(request.POST)
        if form.is_valid():
            at = form.cleaned_data.get("run_at")
            if at is not None:
                at = timezone.make_aware(at.replace(tzinfo=None), job_timezone(job))
            try:
                result = services.run_jobs_now(
                    [job], actor=request.user, kwargs_override=form.cleaned_data["kwargs_override"], at=at
                )
            except ValidationError as exc:
                for field, problems in exc.message_dict.items():
                    form.add_error("run_at" if field == "at" else "kwargs_override", problems)
                return self.render(request, job, _("Run %(job)s") % {"job": job}, form=form)
            if result.done:
                messages.success(request, _("Queued run %(id)s.") % {"id": result.done[0].pk})
                return redirect(reverse("admin:scheduler_app_job_change", args=[job.pk]))
            refusal = result.refused[0]
            form.add_error("kwargs_override" if refusal.field == "kwargs" else None, refusal.reason)
        return self.render(request, job, _("Run %(job)s") % {"job": job}, form=form)


class JobHistoryView(ObjectView):
    template = "admin/scheduler_app/job/history.html"

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self.get_object(request, object_id)
        versions = list(job.versions.select_related("author").order_by("-number"))
        for v in versions:
            v.summary_shown = summaries.translate(v.summary)  # stored in English
        numbers = [v.number for v in versions]
        a = _int(request.GET.get("a"), numbers[1] if len(numbers) > 1 else None)
        b = _int(request.GET.get("b"), numbers[0] if numbers else None)
        by_number = {v.number: v for v in versions}
        changes = []
        if a in by_number and b in by_number:
            changes = readable_diff(versioning.diff(by_number[a].snapshot, by_number[b].snapshot))
        return self.render(
            request,
            job,
            _("Versions of %(job)s") % {"job": job},
            versions=versions,
            a=a,
            b=b,
            changes=changes,
            can_rollback=permissions.can(request.user, "change", job),
        )

    def post(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self.get_object(request, object_id)
        number = _int(request.POST.get("rollback"), None)
        if number is None:
            raise Http404("no version")
        try:
            services.rollback_job(job, number, actor=request.user)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, _("Restored version %(n)s as a new version.") % {"n": number})
        return redirect(reverse("admin:scheduler_app_job_history", args=[job.pk]))


class JobAuditView(ObjectView):
    template = "admin/scheduler_app/job/audit.html"

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from auditlog.models import LogEntry
        from django.contrib.contenttypes.models import ContentType
        from django.db.models import Q

        job = self.get_object(request, object_id)
        job_ct = ContentType.objects.get_for_model(Job)
        from scheduler_app.models import JobDependency

        dep_ct = ContentType.objects.get_for_model(JobDependency)
        dep_ids = [
            str(pk)
            for pk in JobDependency.objects.filter(Q(upstream=job) | Q(downstream=job)).values_list(
                "pk", flat=True
            )
        ]
        entries = (
            LogEntry.objects.filter(
                Q(content_type=job_ct, object_pk=str(job.pk)) | Q(content_type=dep_ct, object_pk__in=dep_ids)
            )
            .select_related("actor")
            .order_by("-timestamp")[:200]
        )
        rows = []
        names = _RelatedNames()
        for entry in entries:
            data = entry.additional_data or {}
            rows.append(
                {
                    "entry": entry,
                    "operation": data.get("operation") or entry.get_action_display(),
                    "changes": _changes(entry, names),
                    "details": {k: v for k, v in data.items() if k != "operation"},
                }
            )
        return self.render(request, job, _("Audit trail of %(job)s") % {"job": job}, rows=rows)


#: What each grantable permission allows, as shown on the permissions page.
ACTION_LABELS = {
    "view": pgettext_lazy("permission", "view"),
    "change": pgettext_lazy("permission", "change"),
    "delete": pgettext_lazy("permission", "delete"),
    "run": pgettext_lazy("permission", "run"),
    "pause": pgettext_lazy("permission", "pause"),
}


class PermissionForm(forms.Form):
    user = forms.ModelChoiceField(label=_("user"), queryset=get_user_model().objects.none(), required=False)
    group = forms.ModelChoiceField(label=_("group"), queryset=Group.objects.order_by("name"), required=False)
    actions = forms.MultipleChoiceField(
        choices=[(a, ACTION_LABELS.get(a, a)) for a in services.GRANTABLE],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Exactly these are kept; unticked ones are revoked."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("user")) == bool(data.get("group")):
            raise ValidationError(_("Choose a user or a group (one of them)."))
        return data


class GroupByNameField(forms.CharField):
    """A Django group given by its exact name; "no such group" otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", _("The exact name of a Django group."))
        kwargs.setdefault("max_length", 150)
        super().__init__(*args, **kwargs)

    def clean(self, value: Any) -> Any:
        text = (super().clean(value) or "").strip()
        if not text:
            return None
        group = Group.objects.filter(name=text).first()
        if group is None:
            raise ValidationError(_("No such group."), code="no_such_group")
        return group


class ObjectPermissionsView(ObjectView):
    action = "manage"
    template = "admin/scheduler_app/permissions.html"

    def form(self, obj: Any, data: Any = None, *, user: Any = None) -> PermissionForm:
        form = PermissionForm(data)
        members = Membership.objects.filter(tenant_id=obj.tenant_id).values("user")
        accounts = get_user_model().objects.filter(pk__in=members).order_by("username")
        if user is not None and user.is_superuser:
            form.fields["user"].queryset = accounts
        else:
            # A tenant admin names the user (a member of the tenant) or the Django group
            # exactly; neither list is shown.
            form.fields["user"] = AccountByNameField(label=_("User"), required=False, among=accounts)
            form.fields["group"] = GroupByNameField(label=_("Group"), required=False)
        return form

    def grants(self, obj: Any) -> list[tuple[str, Any, list[str]]]:
        from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

        suffix = "job" if isinstance(obj, Job) else "jobgroup"

        def actions(codenames: list[str]) -> list[str]:
            return sorted(c.rsplit("_", 1)[0] for c in codenames if c.endswith(f"_{suffix}"))

        rows = [
            ("user", u, actions(p))
            for u, p in get_users_with_perms(obj, attach_perms=True, with_group_users=False).items()
        ]
        rows += [("group", g, actions(p)) for g, p in get_groups_with_perms(obj, attach_perms=True).items()]
        return [r for r in rows if r[2]]

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self.get_object(request, object_id)
        return self.render(
            request,
            obj,
            _("Permissions on %(obj)s") % {"obj": obj},
            form=self.form(obj, user=request.user),
            grants=self.grants(obj),
        )

    def post(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self.get_object(request, object_id)
        form = self.form(obj, request.POST, user=request.user)
        if form.is_valid():
            holder = form.cleaned_data["user"] or form.cleaned_data["group"]
            try:
                granted, revoked = services.set_object_permissions(
                    obj, holder, form.cleaned_data["actions"], actor=request.user
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(
                    request,
                    _("%(holder)s: granted %(g)s; revoked %(r)s.")
                    % {
                        "holder": holder,
                        "g": ", ".join(granted) or "nothing",
                        "r": ", ".join(revoked) or "nothing",
                    },
                )
                opts = obj._meta
                return redirect(reverse(f"admin:scheduler_app_{opts.model_name}_permissions", args=[obj.pk]))
        return self.render(
            request, obj, _("Permissions on %(obj)s") % {"obj": obj}, form=form, grants=self.grants(obj)
        )


def cron_preview(request: HttpRequest) -> JsonResponse:
    """Live preview while typing: description and next fire times, or the error."""
    from scheduler_app.engine.cron import CronExpression, CronSyntaxError

    if not request.user.is_staff:
        raise PermissionDenied
    expression = request.GET.get("expression", "")
    try:
        expr = CronExpression.parse(
            expression,
            dialect=request.GET.get("dialect") or "crontab",
            timezone=request.GET.get("timezone") or "UTC",
        )
    except CronSyntaxError as exc:
        return JsonResponse({"ok": False, "error": i18n.cron_error(exc)})
    except ValueError as exc:
        return JsonResponse({"ok": False, "error": str(exc)})
    times = expr.fire_times(datetime.now(expr.zone), 5)
    return JsonResponse(
        {
            "ok": True,
            "description": i18n.describe_cron(expr),
            "times": [display.when(t, expr.zone) for t in times],
        }
    )


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _show(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def readable_diff(changes: list[tuple[str, Any, Any]]) -> list[tuple[str, str, str]]:
    """The version diff for people: a key added inside ``kwargs`` is a change of
    ``kwargs.key``, not also "kwargs {} → —" (the empty object it replaced)."""
    paths = {path for path, _old, _new in changes}
    out = []
    for path, old, new in changes:
        emptied = (old == {} and new is None) or (new == {} and old is None)
        if emptied and any(p.startswith(path + ".") for p in paths):
            continue
        out.append((path, _show(old), _show(new)))
    return out


def _when(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return display.when(moment)


class _RelatedNames:
    """Names of related objects for the audit trail, looked up once per (model, pk)."""

    def __init__(self) -> None:
        self.cache: dict[tuple[Any, str], str] = {}

    def __call__(self, model: Any, pk: str) -> str:
        key = (model, pk)
        if key not in self.cache:
            obj = model._default_manager.filter(pk=pk).first() if str(pk).isdigit() else None
            self.cache[key] = str(obj) if obj is not None else _("%(pk)s (deleted)") % {"pk": pk}
        return self.cache[key]


def _changes(entry: Any, names: _RelatedNames | None = None) -> list[tuple[str, str, str]]:
    """An audit entry's changes with names, not ids, for related objects, and without
    reverse relations (``runs: None → scheduler_app.JobRun.None``)."""
    changes = entry.changes if isinstance(entry.changes, dict) else {}
    model = entry.content_type.model_class() if entry.content_type_id else None
    out = []
    for name, pair in (changes or {}).items():
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            continue
        field = None
        if model is not None:
            try:
                field = model._meta.get_field(name)
            except Exception:  # a field since removed: show it as recorded
                field = None
        if field is not None and (field.auto_created and not field.concrete):
            continue  # a reverse relation: not a change of this object
        old, new = (str(v) for v in pair)
        if old.endswith(".None") or new.endswith(".None"):
            continue
        if field is not None and getattr(field, "primary_key", False):
            continue  # the object's own id, on creation
        if field is not None and field.get_internal_type() == "DateTimeField":
            old, new = (_when(v) for v in (old, new))
        if field is not None and field.many_to_one and names is not None:
            old, new = (names(field.related_model, v) if v not in ("None", "") else "—" for v in (old, new))
        label = str(field.verbose_name) if field is not None and hasattr(field, "verbose_name") else name
        out.append((label, "—" if old == "None" else old, "—" if new == "None" else new))
    return out
