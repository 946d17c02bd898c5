"""API keys in the admin: every staff user manages their own keys, superusers all.
A new key is shown once, in the confirmation message; only its digest is stored."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from scheduler_app.admin.base import ReadableTimesMixin
from scheduler_app.models import ApiKey, Tenant
from scheduler_app.services import keys, permissions


class ApiKeyForm(forms.ModelForm):
    actor: Any = None

    class Meta:
        model = ApiKey
        fields = ["user", "name", "tenant", "role", "expires_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("user") is not None:
            try:
                keys.check_new_key(
                    data["user"],
                    name=data.get("name") or "",
                    tenant=data.get("tenant"),
                    role=data.get("role") or None,
                    expires_at=data.get("expires_at"),
                    actor=self.actor,
                )
            except PermissionDenied as exc:
                raise ValidationError(str(exc)) from None
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(ReadableTimesMixin, admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "__str__",
        "user",
        "tenant",
        "role",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["role", "revoked_at"]
    search_fields = ["prefix", "name", "user__username"]
    actions = ["revoke_selected"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return keys.visible_keys(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request) and (
            obj is None or request.user.is_superuser or obj.user_id == request.user.pk
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key is created and revoked, never edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the key stays listed with when it was revoked

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user
        if "user" in form.base_fields:
            field = form.base_fields["user"]
            if request.user.is_superuser:
                field.queryset = get_user_model().objects.filter(is_active=True)
            else:
                field.queryset = get_user_model().objects.filter(pk=request.user.pk)
                field.initial = request.user.pk
        if "tenant" in form.base_fields:
            form.base_fields["tenant"].queryset = permissions.scope(request.user, Tenant.objects.all(), "pk")
        return form

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            new = keys.create_key(
                data["user"],
                name=data.get("name") or "",
                tenant=data.get("tenant"),
                role=data.get("role") or None,
                expires_at=data.get("expires_at"),
                actor=request.user,
            )
        except (ValidationError, PermissionDenied) as exc:
            raise PermissionDenied("; ".join(getattr(exc, "messages", [str(exc)]))) from None
        obj.pk = new.key.pk
        self.message_user(
            request,
            _("API key created. Copy it now, it is not shown again: %(token)s") % {"token": new.token},
            messages.WARNING,
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # saved by the service

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> None:
        pass  # audited by the service

    @admin.action(description=_("Revoke selected API keys"))
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = sum(keys.revoke_key(key, actor=request.user) for key in queryset)
        self.message_user(request, _("Revoked: %(n)s.") % {"n": revoked}, messages.SUCCESS)
