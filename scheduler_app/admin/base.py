"""Tenant scoping and permissions for every scheduler admin page.

Every queryset (lists, search, filters, autocomplete, related-object choices) is limited
to the user's tenants; a direct URL to another tenant's object answers 404; what a user
may do on an object comes from :mod:`scheduler_app.services.permissions` (roles, then grants)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone

from scheduler_app import display
from scheduler_app.models import AlertChannel, Calendar, Job, JobGroup, Tenant
from scheduler_app.services import permissions

#: Related models scoped by their tenant when offered as choices.
SCOPED_MODELS = {
    Job: "tenant",
    JobGroup: "tenant",
    Calendar: "tenant",
    AlertChannel: "tenant",
    Tenant: "pk",
}


def scoped_choices(request: HttpRequest, model: Any, queryset: QuerySet | None) -> QuerySet | None:
    field = SCOPED_MODELS.get(model)
    if field is None:
        return queryset
    qs = queryset if queryset is not None else model._default_manager.all()
    return permissions.scope(request.user, qs, field)


@cache
def time_column(model: Any, name: str) -> Callable[[Any], str]:
    """A list column or read-only field showing the date-time field ``name`` as
    :func:`scheduler_app.display.when` does, in the admin's current zone (seconds and
    offset, never Django's ``Dec. 3, 2026, 11:10 p.m.``); sorted by the field."""
    field = model._meta.get_field(name)

    def show(obj: Any) -> str:
        return display.when(getattr(obj, name), timezone.get_current_timezone())

    show.__name__ = name  # keeps the admin's CSS classes (column-<name>, field-<name>)
    show.short_description = field.verbose_name  # type: ignore[attr-defined]
    show.admin_order_field = name  # type: ignore[attr-defined]
    return show


def _is_time_field(model: Any, name: Any) -> bool:
    if not isinstance(name, str):
        return False
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return isinstance(field, models.DateTimeField)


class ReadableTimesMixin:
    """Every date-time field of the model shown in a list column or as a read-only field
    goes through :func:`time_column` (editable date-time inputs are left alone)."""

    model: Any

    def _timed(self, names: Sequence[Any], only: Sequence[Any] | None = None) -> list[Any]:
        return [
            time_column(self.model, n) if _is_time_field(self.model, n) and (only is None or n in only) else n
            for n in names
        ]

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._timed(super().get_list_display(request))  # type: ignore[misc]

    def get_list_display_links(self, request: HttpRequest, list_display: Sequence[Any]) -> Any:
        links = super().get_list_display_links(request, list_display)  # type: ignore[misc]
        return self._timed(links) if links else links

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if obj is not None and not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            # A view-only page shows every field read-only: its times too.
            names += [
                f.name
                for f in self.model._meta.fields
                if isinstance(f, models.DateTimeField) and f.editable and f.name not in names
            ]
        return self._timed(names)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = [getattr(f, "__name__", f) for f in self.get_readonly_fields(request, obj)]
        return [
            (title, {**options, "fields": [self._timed_line(line, readonly) for line in options["fields"]]})
            for title, options in super().get_fieldsets(request, obj)  # type: ignore[misc]
        ]

    def _timed_line(self, line: Any, readonly: Sequence[Any]) -> Any:
        if isinstance(line, list | tuple):
            return type(line)(self._timed(line, readonly))
        return self._timed([line], readonly)[0]


class ScopedFormfieldsMixin:
    """Related-object dropdowns, autocompletes and filters offer only the user's tenants."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        model = db_field.remote_field.model
        if model in SCOPED_MODELS:
            kwargs["queryset"] = scoped_choices(request, model, kwargs.get("queryset"))
            if model is Tenant and not permissions.sees_everything(request.user):
                # New objects go only into tenants where the user may add.
                kwargs["queryset"] = kwargs["queryset"].filter(
                    pk__in=permissions.tenant_ids_with(request.user, "add")
                    | permissions.tenant_ids_with(request.user, "manage")
                )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        model = db_field.remote_field.model
        if model in SCOPED_MODELS:
            kwargs["queryset"] = scoped_choices(request, model, kwargs.get("queryset"))
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class TenantScopedAdmin(ReadableTimesMixin, ScopedFormfieldsMixin, admin.ModelAdmin):
    tenant_field = "tenant"
    #: role action needed to add objects of this model
    add_action = "add"

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # A NUL in a filter's value reaches PostgreSQL (which refuses it: a 500); treated
        # as Django treats a lookup it cannot use: the list again, with its error flag.
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
            from django.contrib.admin.views.main import ERROR_FLAG
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return permissions.scope(request.user, super().get_queryset(request), self.tenant_field)

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> Any:
        # Another tenant's object must look exactly like a missing one: 404, no redirect.
        raise Http404(f"{opts.verbose_name} not found")

    def _visible_or_404(self, request: HttpRequest, object_id: str) -> None:
        # Checked before Django's has_*_permission(request, None), which would answer 403.
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404(f"{self.opts.verbose_name} not found")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        self._visible_or_404(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        self._visible_or_404(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        field = form.base_fields.get("tenant")
        if field is not None and obj is not None and self.tenant_field == "tenant":
            # A grant holder may keep the object in its tenant (where they cannot add).
            field.queryset = (field.queryset | Tenant.objects.filter(pk=obj.tenant_id)).distinct()
        return form

    def has_module_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return (
            user.is_active
            and user.is_staff
            and (permissions.sees_everything(user) or bool(permissions.member_tenant_ids(user)))
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return self.has_module_permission(request)
        return permissions.can(request.user, "view", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and permissions.has_any(request.user, self.add_action)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return request.user.is_staff and permissions.has_any(request.user, "change")
        return permissions.can(request.user, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return request.user.is_staff and permissions.has_any(request.user, "delete")
        return permissions.can(request.user, "delete", obj)

    def has_run_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can(request.user, "run", obj) if obj else permissions.has_any(request.user, "run")

    def has_pause_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            permissions.can(request.user, "pause", obj) if obj else permissions.has_any(request.user, "pause")
        )


class ScopedInlineMixin(ScopedFormfieldsMixin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or permissions.can(request.user, "change", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or permissions.can(request.user, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or permissions.can(request.user, "change", obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or permissions.can(request.user, "view", obj)


class ScopedRelatedFilter(admin.RelatedOnlyFieldListFilter):
    """Offers only related objects present in the (tenant-scoped) list. Unlike Django's,
    a value given in the URL is applied even when the filter has a single choice and is
    therefore hidden."""

    def has_output(self) -> bool:
        return super().has_output() or bool(self.lookup_val)


class ScopedChoicesFilter(ScopedRelatedFilter):
    """For a list with very many rows (the run list): the choices are the related
    model's objects in the user's tenants, read as ids and names only, at most
    :attr:`cap` of them by name (plus the chosen one), instead of Django's ``DISTINCT``
    over every row of the list and a full instance per choice. Filter by another object
    through its own page's link (a job's "All runs of this job") or the search box."""

    cap = 100

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        model = field.related_model
        scoped = permissions.scope(
            request.user, model._default_manager.all(), "pk" if model is Tenant else "tenant"
        )
        name = "slug" if model is Tenant else "name"
        choices = list(scoped.order_by(name, "pk").values_list("pk", name)[: self.cap])
        chosen = str(self.lookup_val[0]) if self.lookup_val else None
        if chosen is not None and chosen.isdigit() and all(str(pk) != chosen for pk, _n in choices):
            choices += list(scoped.filter(pk=int(chosen)).values_list("pk", name))
        return choices
