"""Tenant scoping and permissions for every scheduler admin page.

Every queryset (lists, search, filters, autocomplete, related-object choices) is limited
to the user's tenants; a direct URL to another tenant's object answers 404; what a user
may do on an object comes from :mod:`scheduler_app.services.permissions` (roles, then grants)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

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


class TenantScopedAdmin(ScopedFormfieldsMixin, admin.ModelAdmin):
    tenant_field = "tenant"
    #: role action needed to add objects of this model
    add_action = "add"

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
