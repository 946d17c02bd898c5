"""Django admin for the scheduler: thin, every change goes through services."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from scheduler_app import display, services
from scheduler_app.admin import datehierarchy
from scheduler_app.admin.backfill import backfill_selected
from scheduler_app.admin.base import (
    ScopedChoicesFilter,
    ScopedInlineMixin,
    ScopedRelatedFilter,
    TenantScopedAdmin,
)
from scheduler_app.admin.forms import (
    CalendarAdminForm,
    DependencyAdminForm,
    DependencyFormSet,
    JobAdminForm,
    JobGroupAdminForm,
    MoveToGroupForm,
    TenantAdminForm,
    UpstreamEdgeForm,
)
from scheduler_app.admin.joblist import OperatorJobListMixin
from scheduler_app.admin.runs import OperatorRunAdminMixin
from scheduler_app.backends import joins
from scheduler_app.conf import app_settings
from scheduler_app.engine import rules
from scheduler_app.models import (
    Calendar,
    CalendarDate,
    Job,
    JobDependency,
    JobGroup,
    JobJoin,
    JobRun,
    JobRunLog,
    Membership,
    RunState,
    Tenant,
)
from scheduler_app.models.jobs import MASK
from scheduler_app.monitoring.waiting import wait_reason_display as waiting_reason
from scheduler_app.services import permissions, summaries

# Badge backgrounds under white text: each at least 4.5:1 against white (WCAG AA), so a
# badge reads the same in the light and dark themes (tests/browser/test_contrast.py).
STATE_COLOURS = {
    RunState.QUEUED: "#6b7280",
    RunState.RUNNING: "#2563eb",
    RunState.SUCCEEDED: "#15803d",
    RunState.FAILED: "#dc2626",
    RunState.TIMED_OUT: "#c2410c",
    RunState.CANCELLED: "#6b7280",
    RunState.SKIPPED: "#737373",
    RunState.LOST: "#9333ea",
    RunState.INTERRUPTED: "#a16207",
}


def job_timezone(job: Job) -> ZoneInfo:
    try:
        return ZoneInfo(job.trigger_spec.timezone_name)
    except Exception:  # an invalid stored trigger still gets a page
        return ZoneInfo("UTC")


def local(moment: datetime | None, tz: ZoneInfo) -> str:
    return display.when(moment, tz)


def state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#6b7280")
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</span>',
        colour,
        RunState(state).label if state in RunState.values else state,
    )


def report(
    modeladmin: admin.ModelAdmin, request: HttpRequest, verb: str, result: services.BulkResult
) -> None:
    if result.done:
        text = _("%(verb)s: %(n)s.") % {"verb": verb, "n": len(result.done)}
        modeladmin.message_user(request, text, messages.SUCCESS)
    for obj, reason in result.refused:
        text = _("Refused %(obj)s: %(reason)s.") % {"obj": obj, "reason": reason}
        modeladmin.message_user(request, text, messages.WARNING)


class UserByNameMixin:
    """Superusers keep the full user picker; anyone else (a tenant admin) names the user
    exactly, by user name or e-mail, and is never shown the installation's accounts."""

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user" and not request.user.is_superuser:
            from scheduler_app.admin.forms import AccountByNameField

            return AccountByNameField(label=db_field.verbose_name.capitalize())
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]


def report_scope_operation(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, operation: str
) -> None:
    """Run a group (or tenant) operation on each selected object; report per object."""
    for target in queryset:
        if isinstance(target, JobGroup):
            result = services.operate_on_group(target, operation, actor=request.user)
        else:
            result = services.operate_on_tenant(target, operation, actor=request.user)
        modeladmin.message_user(
            request,
            _("%(kind)s %(target)s: %(operation)s %(done)d job(s), %(refused)d refused.")
            % {
                "kind": target._meta.verbose_name,
                "target": target,
                "operation": operation,
                "done": len(result.done),
                "refused": len(result.refused),
            },
            messages.SUCCESS if not result.refused else messages.WARNING,
        )
        for job, reason in result.refused:
            modeladmin.message_user(
                request, _("Refused %(obj)s: %(reason)s.") % {"obj": job, "reason": reason}, messages.WARNING
            )


class ServiceSavedAdmin:
    """Saves and deletions of a model admin through its services (``save_service``:
    ``(obj, actor=)``; ``delete_service``: ``(objects, actor=) -> BulkResult``), with
    the form checked by the same rules first (``ServiceCheckedForm``); what a deletion
    refuses is reported, the rest is deleted."""

    save_service: Any = None
    delete_service: Any = None

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        form.actor = request.user
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        type(self).save_service(obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._delete(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._delete(request, list(queryset))

    def _delete(self, request: HttpRequest, objects: list[Any]) -> None:
        result = type(self).delete_service(objects, actor=request.user)
        for obj, reason in result.refused:
            self.message_user(  # type: ignore[attr-defined]
                request, _("Refused %(obj)s: %(reason)s.") % {"obj": obj, "reason": reason}, messages.ERROR
            )


class ScopeOperationActions:
    """Admin actions that act on every job of the selected groups or tenants."""

    actions = ["pause_all", "resume_all", "enable_all", "disable_all", "run_all_now"]

    @admin.action(description=_("Pause all their jobs"), permissions=["pause"])
    def pause_all(self, request: HttpRequest, queryset: QuerySet) -> None:
        report_scope_operation(self, request, queryset, "pause")  # type: ignore[arg-type]

    @admin.action(description=_("Resume all their jobs"), permissions=["pause"])
    def resume_all(self, request: HttpRequest, queryset: QuerySet) -> None:
        report_scope_operation(self, request, queryset, "resume")  # type: ignore[arg-type]

    @admin.action(description=_("Enable all their jobs"), permissions=["change"])
    def enable_all(self, request: HttpRequest, queryset: QuerySet) -> None:
        report_scope_operation(self, request, queryset, "enable")  # type: ignore[arg-type]

    @admin.action(description=_("Disable all their jobs"), permissions=["change"])
    def disable_all(self, request: HttpRequest, queryset: QuerySet) -> None:
        report_scope_operation(self, request, queryset, "disable")  # type: ignore[arg-type]

    @admin.action(description=_("Run all their jobs now"), permissions=["run"])
    def run_all_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        report_scope_operation(self, request, queryset, "run")  # type: ignore[arg-type]


class MembershipInline(UserByNameMixin, ScopedInlineMixin, admin.TabularInline):
    model = Membership
    extra = 0

    def _manages(self, request: HttpRequest, obj: Any) -> bool:
        return obj is not None and permissions.can(request.user, "manage", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._manages(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._manages(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._manages(request, obj)


@admin.register(Tenant)
class TenantAdmin(ServiceSavedAdmin, ScopeOperationActions, TenantScopedAdmin):
    """Superusers create tenants (and set their rate limits); a tenant's admins manage
    its name and members. Saved through services (audited, configuration version)."""

    form = TenantAdminForm
    save_service = staticmethod(services.save_tenant)
    delete_service = staticmethod(services.delete_tenants)
    tenant_field = "pk"
    list_display = ["slug", "name", "job_count", "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_jobs=Count("jobs")).order_by(*Tenant._meta.ordering)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return permissions.has_any(request.user, "manage")
        return permissions.can(request.user, "manage", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        save_memberships(request, form.instance, formset)
        permissions.forget(request.user)

    @admin.display(description=_("jobs"), ordering="_jobs")
    def job_count(self, obj: Tenant) -> int:
        return obj._jobs


def save_memberships(request: HttpRequest, tenant: Tenant, formset: Any) -> None:
    """The members inline of a tenant page, through services.set_membership and
    remove_membership (audited, permission-checked) instead of the formset's own save;
    the formset's lists of what changed are kept for the admin's change message."""
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for inline in formset.initial_forms:
        if formset.can_delete and formset._should_delete_form(inline) and inline.instance.pk:
            services.remove_membership(inline.instance, actor=request.user)
            formset.deleted_objects.append(inline.instance)
    for inline in formset.forms:
        if inline in formset.deleted_forms or not inline.has_changed():
            continue
        member = inline.instance
        stored = Membership.objects.filter(pk=member.pk).first() if member.pk else None
        if stored is not None and stored.user_id != member.user_id:  # another user in this row
            services.remove_membership(stored, actor=request.user)
        saved = services.set_membership(tenant, member.user, member.role, actor=request.user)
        inline.instance = saved
        if stored is None:
            formset.new_objects.append(saved)
        else:
            formset.changed_objects.append((saved, inline.changed_data))


@admin.register(JobGroup)
class JobGroupAdmin(ServiceSavedAdmin, ScopeOperationActions, TenantScopedAdmin):
    form = JobGroupAdminForm
    save_service = staticmethod(services.save_group)
    delete_service = staticmethod(services.delete_groups)
    list_display = ["name", "tenant", "rate_limit", "job_count", "permissions_link"]
    list_filter = [("tenant", ScopedRelatedFilter)]
    search_fields = ["name", "description"]

    @admin.display(description=_("object permissions"))
    def permissions_link(self, obj: JobGroup) -> str:
        return format_html(
            "<a href='{}'>{}</a>",
            reverse("admin:scheduler_app_jobgroup_permissions", args=[obj.pk]),
            _("grants"),
        )

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from scheduler_app.admin import views

        return [
            path(
                "<path:object_id>/permissions/",
                self.admin_site.admin_view(views.ObjectPermissionsView.as_view(model_admin=self)),
                name="scheduler_app_jobgroup_permissions",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("tenant")
            .annotate(_jobs=Count("jobs"))
            .order_by(*JobGroup._meta.ordering)
        )

    @admin.display(description=_("jobs"), ordering="_jobs")
    def job_count(self, obj: JobGroup) -> int:
        return obj._jobs


class CalendarDateInline(ScopedInlineMixin, admin.TabularInline):
    model = CalendarDate
    extra = 3


@admin.register(Calendar)
class CalendarAdmin(ServiceSavedAdmin, TenantScopedAdmin):
    """Saved with its dates in one services.save_calendar call (audited, jobs that use
    it get a version when its dates change); deleted by services.delete_calendars."""

    form = CalendarAdminForm
    delete_service = staticmethod(services.delete_calendars)
    list_display = ["name", "tenant", "date_count", "next_excluded"]
    list_filter = [("tenant", ScopedRelatedFilter)]
    search_fields = ["name", "description"]
    inlines = [CalendarDateInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("tenant")
            .annotate(_dates=Count("dates"))
            .order_by(*Calendar._meta.ordering)
        )

    @admin.display(description=_("dates"), ordering="_dates")
    def date_count(self, obj: Calendar) -> int:
        return obj._dates

    @admin.display(description=_("next excluded date"))
    def next_excluded(self, obj: Calendar) -> str:
        upcoming = obj.dates.filter(date__gte=timezone.now().date()).first()
        return str(upcoming) if upcoming else "—"

    def save_model(self, request: HttpRequest, obj: Calendar, form: Any, change: bool) -> None:
        pass  # saved with its dates by save_related, in one service call

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        dates = None
        for formset in formsets:
            if formset.model is CalendarDate:
                dates = calendar_dates(formset)
        services.save_calendar(form.instance, dates=dates, actor=request.user)
        form.save_m2m()


def edge_rows(formset: DependencyFormSet) -> dict[int, str]:
    """{other job id: condition} of a job page's dependency list, for
    services.set_job_edges; the formset's lists of what changed are set for the admin's
    change message (the formset itself saves nothing)."""
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for index, row in enumerate(formset.forms):
        initial = index < formset.initial_form_count()
        if formset.can_delete and formset._should_delete_form(row):
            if initial and row.instance.pk:
                formset.deleted_objects.append(row.instance)
        elif not initial and row.has_changed():
            formset.new_objects.append(row.instance)
        elif initial and row.has_changed():
            formset.changed_objects.append((row.instance, row.changed_data))
    return {other.pk: (row.cleaned_data.get("condition") or "success") for row, other in formset.kept_rows()}


def calendar_dates(formset: Any) -> list[tuple[Any, str]]:
    """The complete list of (date, label) of a calendar's dates inline, for
    services.save_calendar; the formset's lists of what changed are set for the admin's
    change message (the formset itself saves nothing)."""
    dates = []
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for index, row in enumerate(formset.forms):
        data = getattr(row, "cleaned_data", None) or {}
        initial = index < formset.initial_form_count()
        if formset.can_delete and formset._should_delete_form(row):
            if initial and row.instance.pk:
                formset.deleted_objects.append(row.instance)
            continue
        if not data.get("date"):
            continue
        dates.append((data["date"], data.get("label") or ""))
        if not initial:
            formset.new_objects.append(row.instance)
        elif row.has_changed():
            formset.changed_objects.append((row.instance, row.changed_data))
    return dates


class UpstreamInline(ScopedInlineMixin, admin.TabularInline):
    model = JobDependency
    form = UpstreamEdgeForm
    formset = DependencyFormSet
    fk_name = "downstream"
    fields = ["upstream", "condition"]
    extra = 0
    verbose_name = _("depends on")
    verbose_name_plural = _("depends on (upstream jobs)")
    autocomplete_fields = ["upstream"]


class DownstreamInline(ScopedInlineMixin, admin.TabularInline):
    model = JobDependency
    formset = DependencyFormSet
    fk_name = "upstream"
    fields = ["downstream", "condition"]
    extra = 0
    verbose_name = _("dependent")
    verbose_name_plural = _("dependents (downstream jobs)")
    autocomplete_fields = ["downstream"]


class TriggerTypeFilter(admin.SimpleListFilter):
    title = _("trigger")
    parameter_name = "trigger_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from scheduler_app.admin.forms import TRIGGER_TYPE_CHOICES

        return list(TRIGGER_TYPE_CHOICES)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(trigger__type=self.value())
        return queryset


@admin.register(Job)
class JobAdmin(OperatorJobListMixin, TenantScopedAdmin):
    form = JobAdminForm
    change_form_template = "admin/scheduler_app/job/change_form.html"
    list_display = [
        "name",
        "code_badge",
        "tenant",
        "group",
        "task",
        "trigger_text",
        "enabled",
        "paused",
        "paused_because",
        "priority",
        "executor",
        *OperatorJobListMixin.operator_columns,
    ]
    list_filter = [
        ("tenant", ScopedRelatedFilter),
        ("group", ScopedRelatedFilter),
        "enabled",
        "paused",
        "executor",
        TriggerTypeFilter,
    ]
    list_select_related = ["tenant", "group"]
    search_fields = ["name", "description", "task", "tenant__slug", "group__name"]
    filter_horizontal = ["calendars"]
    inlines = [UpstreamInline, DownstreamInline]
    actions = [
        "enable_selected",
        "disable_selected",
        "pause_selected",
        "resume_selected",
        "run_selected_now",
        "move_selected_to_group",
        "mute_alerts_selected",
        "unmute_alerts_selected",
        backfill_selected,
        "delete_selected",
    ]
    readonly_fields = [
        "schedule_preview",
        "recent_runs",
        "run_chart",
        "secret_names_masked",
        "created_display",
        "updated_display",
        "paused_because",
        "code_badge",
        "alerts_muted",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "code_badge",
                    "tenant",
                    "group",
                    "name",
                    "description",
                    "enabled",
                    "paused",
                    "paused_because",
                    "alerts_muted",
                ]
            },
        ),
        (_("Task"), {"fields": ["task", "args", "kwargs", "secret_names_masked", "secret_kwargs"]}),
        (
            _("Trigger"),
            {
                "fields": [
                    "trigger_type",
                    "cron_expression",
                    "cron_dialect",
                    "trigger_timezone",
                    "run_at",
                    ("interval_seconds", "interval_jitter"),
                    ("interval_start", "interval_end"),
                    "plugin_config",
                    "combination",
                    "calendars",
                    "schedule_preview",
                ]
            },
        ),
        (
            _("Execution"),
            {
                "fields": [
                    "priority",
                    "executor",
                    ("max_instances", "overlap_policy"),
                    ("misfire_policy", "misfire_grace_seconds"),
                    "timeout_seconds",
                    ("cpu_limit_seconds", "memory_limit_mb"),
                    ("routing", "routing_tags"),
                ]
            },
        ),
        (
            _("Rate and concurrency limits"),
            {
                "fields": [
                    "rate_limit",
                    ("concurrency_key", "concurrency_limit"),
                    "throttle_policy",
                    ("load_policy", "load_max_delay_seconds"),
                ]
            },
        ),
        (
            _("Retries"),
            {
                "fields": [
                    ("retry_max_attempts", "retry_backoff_seconds"),
                    ("retry_backoff_factor", "retry_max_backoff_seconds"),
                    "pause_after_failures",
                ]
            },
        ),
        (
            _("After upstream jobs"),
            {
                "fields": [("trigger_rule", "upstream_param")],
                "description": _("How the job follows the jobs it depends on (the “depends on” rows below)."),
            },
        ),
        (_("Recent runs"), {"fields": ["run_chart", "recent_runs", "created_display", "updated_display"]}),
    ]

    # -- columns ------------------------------------------------------------------------

    @admin.display(description=_("alerts muted until"))
    def alerts_muted(self, obj: Job) -> str:
        from django.utils import timezone

        from scheduler_app import display

        until = obj.alerts_muted_until
        if until is None or until <= timezone.now():
            return _("not muted (use the action “Mute alerts of selected jobs until…”)")
        return display.when(until)

    @admin.display(description=_("code"))
    def code_badge(self, obj: Job) -> str:
        if not obj.managed_by:
            return ""
        return format_html(
            '<span class="sa-badge sa-badge-code" title="{}">{}</span>',
            _("Declared in %(module)s; its schedule and task are edited in code.")
            % {"module": obj.managed_by},
            _("managed by code (%(module)s)") % {"module": obj.managed_by},
        )

    @admin.display(description=_("trigger"))
    def trigger_text(self, obj: Job) -> str:
        page = getattr(obj, "_page", None)  # the change list's, shared by the page's rows
        return page.trigger(obj)[0] if page is not None else obj.describe_trigger()

    @admin.display(description=_("created"))
    def created_display(self, obj: Job) -> str:
        return local(obj.created_at, job_timezone(obj)) if obj.pk else "—"

    @admin.display(description=_("updated"))
    def updated_display(self, obj: Job) -> str:
        return local(obj.updated_at, job_timezone(obj)) if obj.pk else "—"

    @admin.display(description=_("stored secrets"))
    def secret_names_masked(self, obj: Job) -> str:
        if not obj.secret_names:
            return "—"
        return ", ".join(f"{name}={MASK}" for name in obj.secret_names)

    @admin.display(description=_("schedule"))
    def schedule_preview(self, obj: Job) -> str:
        if obj.pk is None:
            return _("Save the job to see its next fire times.")
        tz = job_timezone(obj)
        try:
            times = obj.upcoming_fire_times(timezone.now(), app_settings.PREVIEW_COUNT)
        except ValueError as exc:
            return _("invalid trigger: %(error)s") % {"error": exc}
        items = format_html_join("", "<li>{}</li>", ((local(t, tz),) for t in times))
        if not times:
            items = format_html("<li>{}</li>", _("no upcoming fire time"))
        return format_html(
            "<p><strong>{}</strong></p><p>{}</p><ol>{}</ol>",
            obj.describe_trigger(),
            _("Next fire times (%(tz)s):") % {"tz": tz.key},
            items,
        )

    @admin.display(description=_("paused because"), ordering="paused_reason")
    def paused_because(self, obj: Job) -> str:
        return summaries.translate(obj.paused_reason)  # stored in English

    @admin.display(description=_("recent runs"))
    def recent_runs(self, obj: Job) -> str:
        if obj.pk is None:
            return "—"
        tz = job_timezone(obj)
        runs = list(obj.runs.select_related("triggered_by__job").order_by("-queued_at")[:10])
        if not runs:
            return _("No runs yet.")
        rows = format_html_join(
            "",
            "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:scheduler_app_jobrun_change", args=[r.pk]),
                    local(r.scheduled_for, tz),
                    r.attempt,
                    state_badge(r.state),
                    r.get_reason_display(),
                    display.seconds(r.duration),
                    r.error[:120],
                )
                for r in runs
            ),
        )
        link = reverse("admin:scheduler_app_jobrun_changelist") + f"?job__id__exact={obj.pk}"
        return format_html(
            "<table><thead><tr><th>{}</th><th>#</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th></tr></thead><tbody>{}</tbody></table><p><a href='{}'>{}</a></p>",
            _("scheduled for"),
            _("state"),
            _("reason"),
            _("duration"),
            _("error"),
            rows,
            link,
            _("All runs of this job"),
        )

    def get_formsets_with_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        # The two dependency inlines check cycles across each other's rows.
        siblings: dict[str, Any] = {}
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            if issubclass(formset, DependencyFormSet):
                formset = type(formset.__name__, (formset,), {"siblings": siblings, "user": request.user})
            yield formset, inline

    # -- saving -------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        calendars = form.cleaned_data["calendars"] if "calendars" in form.cleaned_data else None
        services.save_job(obj, actor=request.user, notify=False, calendars=calendars)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The calendars went with save_job; the two dependency lists go through
        # set_job_edges (which versions the other jobs whose edges changed); other
        # inlines (none today) save as Django does.
        edges: dict[str, dict[int, str]] = {}
        for formset in formsets:
            if isinstance(formset, DependencyFormSet):
                if formset.chosen_field in formset.form.base_fields:  # not a read-only list
                    edges[formset.chosen_field] = edge_rows(formset)
            else:
                self.save_formset(request, form, formset, change=change)
        services.set_job_edges(
            form.instance,
            upstream=edges.get("upstream"),
            downstream=edges.get("downstream"),
            actor=request.user,
        )
        services.notify_job_changed(form.instance, actor=request.user, created=not change)

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        services.delete_jobs([obj], actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        services.delete_jobs(list(queryset), actor=request.user)

    # -- actions ------------------------------------------------------------------------

    @admin.action(description=_("Enable selected jobs"), permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Enabled"), services.enable_jobs(queryset, actor=request.user))

    @admin.action(description=_("Disable selected jobs"), permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Disabled"), services.disable_jobs(queryset, actor=request.user))

    @admin.action(description=_("Pause selected jobs"), permissions=["pause"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Paused"), services.pause_jobs(queryset, actor=request.user))

    @admin.action(description=_("Resume selected jobs"), permissions=["pause"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Resumed"), services.resume_jobs(queryset, actor=request.user))

    @admin.action(description=_("Run selected jobs now"), permissions=["run"])
    def run_selected_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Queued runs"), services.run_jobs_now(queryset, actor=request.user))

    @admin.action(description=_("Delete selected jobs"), permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Django's confirmation and deletion, for the jobs the user may delete; the others
        are reported, as by the other bulk actions."""
        from django.contrib.admin.actions import delete_selected as confirm_and_delete

        allowed = [job.pk for job in queryset if permissions.can(request.user, "delete", job)]
        for job in queryset.exclude(pk__in=allowed):
            text = _("Refused %(obj)s: %(reason)s.") % {
                "obj": job,
                "reason": _("you may not delete this job"),
            }
            self.message_user(request, text, messages.WARNING)
        if not allowed:
            return None
        return confirm_and_delete(self, request, queryset.filter(pk__in=allowed))

    @admin.action(description=_("Mute alerts of selected jobs until…"), permissions=["change"])
    def mute_alerts_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        from scheduler_app.admin import mutes

        return mutes.mute(self, request, queryset, action="mute_alerts_selected")

    @admin.action(description=_("Unmute alerts of selected jobs"), permissions=["change"])
    def unmute_alerts_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        from scheduler_app.admin import mutes

        mutes.unmute(self, request, queryset, jobs=True)

    @admin.action(description=_("Move selected jobs to a group"), permissions=["change"])
    def move_selected_to_group(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        tenants = set(queryset.values_list("tenant_id", flat=True))
        form = MoveToGroupForm(request.POST if "apply" in request.POST else None)
        form.fields["group"].queryset = permissions.scope(
            request.user, JobGroup.objects.filter(tenant_id__in=tenants).select_related("tenant")
        )
        if "apply" in request.POST and form.is_valid():
            result = services.move_jobs_to_group(
                list(queryset), form.cleaned_data["group"], actor=request.user
            )
            report(self, request, _("Moved"), result)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Move jobs to a group"),
            "opts": self.model._meta,
            "queryset": queryset,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "action": "move_selected_to_group",
        }
        return render(request, "admin/scheduler_app/job/move_to_group.html", context)

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from scheduler_app.admin import views

        def wrap(view: Any, name: str) -> Any:
            return path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(view.as_view(model_admin=self)),
                name=f"scheduler_app_job_{name}",
            )

        return [
            path(
                "cron-preview/",
                self.admin_site.admin_view(views.cron_preview),
                name="scheduler_app_cron_preview",
            ),
            wrap(views.RunJobView, "run"),
            wrap(views.JobHistoryView, "history"),
            wrap(views.JobAuditView, "audit"),
            wrap(views.ObjectPermissionsView, "permissions"),
            *super().get_urls(),
        ]

    class Media:
        js = ["scheduler_app/cron_preview.js", "scheduler_app/job_form.js"]
        css = {"all": ["scheduler_app/scheduler.css"]}

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        cron = form.base_fields.get("cron_expression")
        if cron is not None:
            cron.widget.attrs["data-cron-preview-url"] = reverse("admin:scheduler_app_cron_preview")
        return form


@admin.register(JobDependency)
class JobDependencyAdmin(ServiceSavedAdmin, TenantScopedAdmin):
    form = DependencyAdminForm
    save_service = staticmethod(services.save_dependency)
    delete_service = staticmethod(services.delete_dependencies)
    list_display = ["upstream", "downstream", "condition", "tenant"]
    list_filter = [("tenant", ScopedRelatedFilter), "condition"]
    search_fields = ["upstream__name", "downstream__name"]
    autocomplete_fields = ["upstream", "downstream"]
    list_select_related = ["upstream", "downstream", "tenant"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return super().has_change_permission(request)
        return permissions.can(request.user, "change", obj.downstream)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)


@admin.register(JobRun)
class JobRunAdmin(OperatorRunAdminMixin, TenantScopedAdmin):
    list_display = [*OperatorRunAdminMixin.operator_columns, "waiting"]
    list_filter = [
        "state",
        "reason",
        ("tenant", ScopedChoicesFilter),
        ("job", ScopedChoicesFilter),
        ("job__group", ScopedChoicesFilter),
        *OperatorRunAdminMixin.operator_filters[2:],
    ]
    search_fields = ["job__name", "error", "node"]
    # Counting every run of a large history for "(N total)" costs as much as the page.
    show_full_result_count = False
    date_hierarchy = "scheduled_for"
    actions = ["cancel_selected", "stop_selected"]
    readonly_fields = [f.name for f in JobRun._meta.fields] + [
        *OperatorRunAdminMixin.panel_fields,
        "log_display",
        "waiting",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Django's change list applies list_select_related only to a queryset without
        # select_related, so everything the columns follow is named here. The date
        # drill-down lists its periods from index probes (admin/datehierarchy.py).
        return datehierarchy.bounded(super().get_queryset(request).select_related("job__tenant", "tenant"))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No bulk deletion of history (retention and prunejobruns do that), but a job's
        # deletion takes its finished and queued runs along; running runs block it.
        return (
            obj is not None
            and obj.state != RunState.RUNNING
            and permissions.can(request.user, "delete", obj.job)
        )

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, obj: JobRun) -> str:
        return state_badge(obj.state)

    @admin.display(description=_("duration"), ordering="duration")
    def duration_display(self, obj: JobRun) -> str:
        return display.seconds(obj.duration)

    @admin.display(description=_("log"))
    def log_display(self, obj: JobRun) -> str:
        """What the run logged, monospaced (secrets were masked before it was stored)."""
        log = JobRunLog.objects.filter(run_id=obj.pk).first()
        if log is None or not log.text:
            return display.EMPTY
        return format_html(
            '<pre class="sa-run-log" style="font-family: var(--font-family-monospace, monospace); '
            'white-space: pre-wrap; word-break: break-word; max-height: 40em; overflow: auto; margin: 0;">'
            "{}</pre>",
            display.run_log_text(log.text, log.lines_dropped),
        )

    @admin.display(description=_("waiting because"))
    def waiting(self, obj: JobRun) -> str:
        """Why a queued run does not start: a limit the claim recorded, or no live node
        with the job's tags (monitoring.waiting)."""
        return waiting_reason(obj) or display.EMPTY

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fieldsets = list(super().get_fieldsets(request, obj))
        at = next((i + 1 for i, (name, _opts) in enumerate(fieldsets) if name == _("Error")), len(fieldsets))
        fieldsets.insert(at, (_("Log"), {"fields": ["log_display"]}))
        if obj is not None and obj.state == "queued":
            fieldsets.insert(1, (_("Waiting"), {"fields": ["waiting"]}))
        return fieldsets

    @admin.action(description=_("Cancel selected queued runs"), permissions=["run"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Cancelled"), services.cancel_runs(queryset, actor=request.user))

    @admin.action(description=_("Stop selected running runs"), permissions=["run"])
    def stop_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        report(self, request, _("Stop requested"), services.stop_runs(queryset, actor=request.user))


@admin.register(JobJoin)
class JobJoinAdmin(TenantScopedAdmin):
    """Open rounds of joins (trigger rules other than all_success), read-only: which
    upstream jobs have ended in each and which the round still waits for."""

    tenant_field = "job__tenant"
    list_display = ["job", "round_number", "ends_display", "waiting_for", "fired", "opened_at"]
    list_filter = [("job__tenant", ScopedChoicesFilter), ("job", ScopedChoicesFilter), "fired"]
    search_fields = ["job__name"]
    fields = ["job", "round_number", "ends_display", "waiting_for", "fired", "opened_at"]
    readonly_fields = fields
    ordering = ["job__name", "opened_at", "id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("job__tenant")
            .prefetch_related("job__upstream_edges__upstream")
            .annotate(
                # 1 = the job's oldest open round: the one the next end goes into
                number=Window(
                    RowNumber(), partition_by=[F("job_id")], order_by=[F("opened_at").asc(), F("id").asc()]
                )
            )
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return self.has_module_permission(request)
        return permissions.can(request.user, "view", obj.job)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only so that a job's deletion takes its rounds along (Django asks for each
        # related row); a round itself is never deleted here (delete_view refuses).
        return obj is not None and permissions.can(request.user, "delete", obj.job)

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        self._visible_or_404(request, object_id)
        raise PermissionDenied("join rounds are read-only")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "show_delete": False}
        )

    @admin.display(description=_("round"), ordering="opened_at")
    def round_number(self, obj: JobJoin) -> Any:
        return getattr(obj, "number", None) or display.EMPTY

    @staticmethod
    def _upstreams(obj: JobJoin) -> dict[int, str]:
        return {edge.upstream_id: edge.upstream.name for edge in obj.job.upstream_edges.all()}

    @admin.display(description=_("upstream jobs ended"))
    def ends_display(self, obj: JobJoin) -> str:
        names = self._upstreams(obj)
        labels = {
            rules.END_SUCCESS: RunState.SUCCEEDED.label,
            rules.END_FAILED: RunState.FAILED.label,
            rules.END_SKIPPED: RunState.SKIPPED.label,
        }
        rows = []
        for key, end in sorted(obj.ends.items(), key=lambda item: names.get(int(item[0]), item[0])):
            name = names.get(int(key), f"#{key}")
            kind = labels[joins.stored_end(end)]
            if end.get("run") is None:
                rows.append(format_html("{} ({})", name, kind))
            else:
                link = reverse("admin:scheduler_app_jobrun_change", args=[end["run"]])
                rows.append(format_html("<a href='{}'>{} #{}</a> ({})", link, name, end["run"], kind))
        return format_html_join(", ", "{}", ((row,) for row in rows)) if rows else display.EMPTY

    @admin.display(description=_("waiting for"))
    def waiting_for(self, obj: JobJoin) -> str:
        names = self._upstreams(obj)
        missing = sorted(name for pk, name in names.items() if str(pk) not in obj.ends)
        return ", ".join(missing) or display.EMPTY


@admin.register(Membership)
class MembershipAdmin(UserByNameMixin, TenantScopedAdmin):
    list_display = ["user", "tenant", "role"]
    list_filter = [("tenant", ScopedRelatedFilter), "role"]
    search_fields = ["user__username", "user__email", "tenant__slug"]
    add_action = "manage"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return permissions.has_any(request.user, "manage")
        return permissions.can(request.user, "manage", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        stored = Membership.objects.filter(pk=obj.pk).first() if change else None
        if stored is not None and (stored.tenant_id, stored.user_id) != (obj.tenant_id, obj.user_id):
            services.remove_membership(stored, actor=request.user)  # the row now names another
        saved = services.set_membership(obj.tenant, obj.user, obj.role, actor=request.user)
        obj.pk = saved.pk
        permissions.forget(request.user)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.remove_membership(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for membership in queryset:
            services.remove_membership(membership, actor=request.user)


from scheduler_app.admin import alerts, apikeys  # noqa: E402,F401  (register their admins)
from scheduler_app.admin import dashboard as _dashboard  # noqa: E402
from scheduler_app.admin import nodes as _nodes  # noqa: E402,F401  (registers the nodes admin)

_dashboard.install(admin.site)


def _hide_unless_django_store() -> None:
    """django-apscheduler registers its tables in the admin; they are empty unless its
    job store is in use, so the index lists them only when JOB_STORE is "django" (read
    per request, not at import)."""
    try:
        from django_apscheduler.models import DjangoJob, DjangoJobExecution
    except ImportError:  # pragma: no cover - django-apscheduler is a dependency
        return
    for model in (DjangoJob, DjangoJobExecution):
        model_admin = admin.site._registry.get(model)
        if model_admin is None:
            continue
        original = model_admin.has_module_permission

        def has_module_permission(request: HttpRequest, _original: Any = original) -> bool:
            return app_settings.JOB_STORE == "django" and _original(request)

        model_admin.has_module_permission = has_module_permission  # type: ignore[method-assign]


_hide_unless_django_store()
