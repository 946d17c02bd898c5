"""``/api/schema/`` (OpenAPI 3, YAML or JSON) and ``/api/docs/`` (Swagger UI served
from drf-spectacular-sidecar's static files: no CDN, works offline). Both public: the
schema describes the API, it holds no data."""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView, _get_sidecar_url
from rest_framework import permissions

from scheduler_app.api import schemas
from scheduler_app.api.base import OpenApiInspector

SETTINGS = {
    "TITLE": "scheduler_app operations API",
    "DESCRIPTION": (
        "Jobs, runs, versions, tenants, groups, calendars and dependencies of scheduler_app. "
        "Authenticate with `Authorization: Bearer <API key>`. Every 4xx answer has the body "
        '`{"errors": [{"field": ..., "message": ...}]}`.'
    ),
    "VERSION": "1",
    "PREPROCESSING_HOOKS": ["scheduler_app.api.schemas.only_this_api"],
    # Not drf-spectacular's enum hook: the enums stay inline in the components below.
    "POSTPROCESSING_HOOKS": ["scheduler_app.api.schemas.add_error_responses"],
    "APPEND_COMPONENTS": {"schemas": schemas.COMPONENTS},
    "COMPONENT_NO_READ_ONLY_REQUIRED": False,
    "DISABLE_ERRORS_AND_WARNINGS": False,
}


class SchemaView(SpectacularAPIView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list[Any] = []
    schema = OpenApiInspector()

    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # drf-spectacular changes the components it is given while it builds a schema:
        # each build gets its own copy, with the plugins' trigger types loaded now.
        self.custom_settings = {**SETTINGS, "APPEND_COMPONENTS": {"schemas": schemas.components()}}
        return super().get(request, *args, **kwargs)


class DocsView(SpectacularSwaggerView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list[Any] = []
    url_name = "scheduler_api:schema"
    title = SETTINGS["TITLE"]
    schema = OpenApiInspector()

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return _get_sidecar_url(f"swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return _get_sidecar_url("swagger-ui-dist/favicon-32x32.png")
