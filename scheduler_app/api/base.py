"""What every API view shares, set on the views themselves so that the host project's
``REST_FRAMEWORK`` settings neither change this API nor are changed by it:
authentication, permission, throttling, parsing (with the size cap), rendering,
pagination, the error body and the OpenAPI inspector. Objects are looked up in the
caller's tenants first (another tenant's object is 404, exactly like a missing one),
and only then is the action's permission checked (403)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from django.db.models import Model, QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, parsers, renderers, serializers, viewsets
from rest_framework.metadata import SimpleMetadata
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.schemas.inspectors import DefaultSchema

from scheduler_app import audit
from scheduler_app.api import auth, errors
from scheduler_app.conf import app_settings
from scheduler_app.documents import limits
from scheduler_app.models import ApiKey
from scheduler_app.services import permissions

#: The largest id a database stores (a signed 64-bit integer); larger numbers in a
#: path or query name nothing, rather than overflowing the database driver.
MAX_ID = 2**63 - 1
_WHOLE = re.compile(r"[0-9]{1,19}")
#: Times given to the API: within what the run store and the triggers handle.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def whole_number(raw: Any) -> int | None:
    """``raw`` as a whole number of at most 64 bits written in ASCII digits, else None."""
    if not isinstance(raw, str) or not _WHOLE.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


def id_param(name: str, raw: str) -> int:
    """The id a query parameter names, or a 400 that names the parameter."""
    value = whole_number(raw)
    if value is None:
        raise errors.FieldError([(name, _("must be an id (a whole number)"))])
    return value


def aware_time(name: str, raw: Any) -> datetime:
    """An ISO 8601 time with a UTC offset, between 1970 and 9000, or a 400 naming ``name``."""
    if not isinstance(raw, str):
        raise errors.FieldError([(name, _("an ISO 8601 time with a UTC offset"))])
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise errors.FieldError([(name, _("%(v)r is not an ISO 8601 time") % {"v": raw})]) from None
    if value.tzinfo is None:
        raise errors.FieldError([(name, _("add a UTC offset, e.g. 2026-12-01T09:00:00+01:00"))])
    try:
        in_range = EARLIEST <= value < LATEST
    except OverflowError:  # an offset that pushes year 1 or 9999 out of range
        in_range = False
    if not in_range:
        raise errors.FieldError([(name, _("must lie between 1970 and 9000"))])
    return value


class OpenApiInspector(DefaultSchema):
    """drf-spectacular's inspector for our views whatever DEFAULT_SCHEMA_CLASS says."""

    def __get__(self, instance: Any, owner: Any) -> Any:
        result = super(DefaultSchema, self).__get__(instance, owner)
        if not isinstance(result, DefaultSchema):
            return result
        inspector = AutoSchema()
        inspector.view = instance
        return inspector


def doc(**kwargs: Any) -> Any:
    """drf-spectacular's ``extend_schema`` based on its own inspector, so that it works
    whatever the host's ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` is (extend_schema
    otherwise builds on that setting)."""

    def decorator(func: Any) -> Any:
        if not (getattr(func, "schema", None) or getattr(func, "kwargs", {}).get("schema")):
            func.schema = AutoSchema
        return extend_schema(**kwargs)(func)

    return decorator


class LimitedJSONParser(parsers.JSONParser):
    """JSON bodies up to ``API_MAX_REQUEST_BYTES``; larger ones are 413. NaN and
    Infinity are refused (they are not JSON)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        limit = app_settings.API_MAX_REQUEST_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise errors.PayloadTooLarge(_("The request body is larger than %(n)s bytes.") % {"n": limit})
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.ParseError(_("The request body is not UTF-8 text.")) from None

        def refuse(name: str) -> Any:
            raise ValueError(f"{name} is not allowed in JSON")

        try:
            # Nesting bounded before parsing (no RecursionError); each value is then
            # checked against the input limits where it is used.
            limits.scan_json_depth(text, depth=limits.max_depth() + limits.DOCUMENT_SLACK, field="body")
        except limits.LimitError as exc:
            raise errors.FieldError([(None, str(exc))]) from None
        try:
            body = json.loads(text, parse_constant=refuse)
        except json.JSONDecodeError as exc:
            raise exceptions.ParseError(
                _("Malformed JSON: %(msg)s at line %(line)s column %(col)s")
                % {"msg": exc.msg, "line": exc.lineno, "col": exc.colno}
            ) from None
        except ValueError as exc:
            raise exceptions.ParseError(_("Malformed JSON: %(msg)s") % {"msg": exc}) from None
        refuse_nul(body)
        return body


def refuse_nul(body: Any) -> None:
    """No NUL character anywhere in a body (PostgreSQL refuses it in text, SQLite would
    store it): a 400 naming the top-level field that holds it, before any query."""
    items = body.items() if isinstance(body, dict) else [(None, body)]
    for key, value in items:
        field = key if isinstance(key, str) and limits.NUL not in key else None
        try:
            if key is not None:
                limits.check_text(key, "body")
            limits.check_value(value, field or "body", depth=limits.max_depth() + limits.DOCUMENT_SLACK)
        except limits.LimitError as exc:
            raise errors.FieldError([(field, exc.message)]) from None


class PagePagination(PageNumberPagination):
    page_size_query_param = "page_size"

    def get_page_size(self, request: Any) -> int:
        default = app_settings.API_PAGE_SIZE
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise errors.FieldError([("page_size", _("must be a whole number"))]) from None
        if value < 1:
            raise errors.FieldError([("page_size", _("must be at least 1"))])
        return min(value, app_settings.API_MAX_PAGE_SIZE)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        out = super().get_paginated_response_schema(schema)
        out["required"] = ["count", "next", "previous", "results"]
        return out


class RunCursorPagination(CursorPagination):
    """Stable under inserts and no COUNT(*) over the run table. ``ordering`` from a
    whitelist; ties are broken by id."""

    page_size_query_param = "page_size"
    ORDERINGS = ("-id", "id", "-scheduled_for", "scheduled_for", "-queued_at", "queued_at")
    ordering = "-id"

    def get_page_size(self, request: Any) -> int:
        return PagePagination().get_page_size(request)

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        wanted = request.query_params.get("ordering") or "-id"
        if wanted not in self.ORDERINGS:
            raise errors.FieldError([("ordering", _("use one of %(o)s") % {"o": ", ".join(self.ORDERINGS)})])
        if wanted.lstrip("-") == "id":
            return (wanted,)
        return (wanted, "-id" if wanted.startswith("-") else "id")

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        out = super().get_paginated_response_schema(schema)
        out["required"] = ["next", "previous", "results"]
        return out


class ApiViewSet(viewsets.GenericViewSet):
    authentication_classes = [auth.ApiKeyAuthentication, auth.SessionAuthentication]
    permission_classes = [auth.IsActiveUser]
    throttle_classes = [auth.KeyRateThrottle]
    renderer_classes = [renderers.JSONRenderer, renderers.BrowsableAPIRenderer]
    parser_classes = [LimitedJSONParser]
    content_negotiation_class = DefaultContentNegotiation
    metadata_class = SimpleMetadata
    versioning_class = None
    filter_backends: list[Any] = []
    pagination_class = PagePagination
    schema = OpenApiInspector()
    # Bodies are job documents and plain objects (see schemas.py); this only gives the
    # browsable API's raw-data form something to start from.
    serializer_class = serializers.Serializer
    #: the queryset's tenant lookup, for scoping
    tenant_field = "tenant"

    def get_exception_handler(self) -> Any:
        return errors.exception_handler

    # -- request life cycle ----------------------------------------------------------------

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # One audit context for the whole request, entered and left in this frame (a
        # context variable must be reset in the context that set it); :meth:`initial`
        # adds the API key to it once the request is authenticated.
        with audit.extra():
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        length = request.META.get("CONTENT_LENGTH") or "0"
        limit = app_settings.API_MAX_REQUEST_BYTES
        if length.isdigit() and int(length) > limit:
            raise errors.PayloadTooLarge(_("The request body is larger than %(n)s bytes.") % {"n": limit})
        # A NUL in a query parameter would reach a filter as a PostgreSQL DataError.
        bad = sorted(
            {name for name, values in request.GET.lists() for v in [name, *values] if limits.NUL in v}
        )
        if bad:
            raise errors.FieldError([(name, _("must not contain NUL characters (\\u0000)")) for name in bad])
        super().initial(request, *args, **kwargs)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        if key is not None:
            # Audit entries written for this request name the key as well as its user.
            audit.add_extra(api_key=key.prefix, api_key_id=key.pk)

    # -- scoping ---------------------------------------------------------------------------

    @property
    def actor(self) -> Any:
        return self.request.user

    def scoped(self, queryset: QuerySet, tenant_field: str | None = None) -> QuerySet:
        return permissions.scope(self.actor, queryset, tenant_field or self.tenant_field)

    def get_queryset(self) -> QuerySet:
        return self.scoped(self.base_queryset())

    def base_queryset(self) -> QuerySet:
        raise NotImplementedError

    def get_object(self) -> Any:
        """The object of the URL among the caller's tenants' (404 otherwise); the
        permission is the caller's business (:meth:`require`)."""
        lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        pk = whole_number(str(lookup)) if lookup is not None else None
        if pk is None:
            raise exceptions.NotFound(_("Not found."))
        obj = self.get_queryset().filter(pk=pk).first()
        if obj is None:
            raise exceptions.NotFound(_("Not found."))
        return obj

    def require(self, action: str, obj: Model | None = None, *, tenant_id: int | None = None) -> None:
        permissions.require(self.actor, action, obj, tenant_id=tenant_id)

    def page(self, queryset: QuerySet, render: Any) -> Any:
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(render(list(page)))
