"""How API requests authenticate and are throttled: ``Authorization: Bearer <key>``
(an :class:`~scheduler_app.models.ApiKey`), or a Django session with CSRF for the
browsable API; throttled per key (or per logged-in user)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from scheduler_app.conf import app_settings
from scheduler_app.models import ApiKey
from scheduler_app.services import keys


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, ApiKey] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Send the key as 'Authorization: Bearer <key>'."))
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid, revoked or expired API key.")) from None
        key = keys.find_key(token)
        if key is None:
            raise exceptions.AuthenticationFailed(_("Invalid, revoked or expired API key."))
        return keys.acting_user(key), key

    def authenticate_header(self, request: Any) -> str:
        return f'{self.keyword} realm="scheduler_app"'


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session (the browsable API for logged-in users); CSRF enforced."""


class IsActiveUser(permissions.BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active)


class KeyRateThrottle(throttling.SimpleRateThrottle):
    """``API_THROTTLE_RATE`` requests per key (per user for sessions)."""

    scope = "scheduler_api"

    def get_rate(self) -> str | None:
        return app_settings.API_THROTTLE_RATE

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if isinstance(request.auth, ApiKey):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return f"throttle_{self.scope}_{ident}"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`manage.py apikey create`, or the admin's API keys page).",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = SessionAuthentication
    name = "session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
