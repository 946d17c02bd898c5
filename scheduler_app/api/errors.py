"""One error body for every 4xx answer of the API::

    {"errors": [{"field": "trigger.expression", "message": "field 3 (day of month): '32' is outside 1-31"}]}

``field`` is the path in the request document (``null`` when the error is not about one
field: a permission, a missing object, a conflict); ``message`` is worded as in the admin
and in jobs files. The exception handler turns every exception the views raise (DRF's,
Django's ``ValidationError`` / ``PermissionDenied`` / ``Http404`` and the job document's
:class:`~scheduler_app.documents.job.DocumentError`) into that shape."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from scheduler_app.documents import job as job_document
from scheduler_app.services import bulk

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The object changed since you read it.")
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "too_large"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class FieldError(exceptions.APIException):
    """A 400 about named fields: ``errors`` is a list of (field, message)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, errors: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in errors))
        self.errors = errors


def refused(item: tuple[Any, Any]) -> exceptions.APIException:
    """The exception answering a service's refusal, chosen by its kind (never by the
    reason's words, which are in the request's language): forbidden 403, invalid 400
    naming the field, not found 404, a conflict 409."""
    refusal = bulk.refusal(item)
    if refusal.kind == bulk.FORBIDDEN:
        return exceptions.PermissionDenied(str(refusal.reason))
    if refusal.kind == bulk.INVALID:
        return FieldError([(refusal.field, str(refusal.message))])
    if refusal.kind == bulk.NOT_FOUND:
        return exceptions.NotFound(str(refusal.reason))
    return Conflict(str(refusal.reason))


def error(field: str | None, message: Any) -> dict[str, Any]:
    return {"field": field, "message": str(message)}


def body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"errors": errors}


# -- turning exceptions into field errors -----------------------------------------------


def split_path(text: str) -> tuple[str | None, str]:
    """``"trigger.expression: field 3 ..."`` -> (``trigger.expression``, ``field 3 ...``)."""
    head, sep, rest = text.partition(": ")
    if sep and head and " " not in head and len(head) <= 200:
        return head, rest
    return None, text


def document_errors(exc: job_document.DocumentError, where: str) -> list[tuple[str | None, str]]:
    """A job document error (``"<where>: field: message"``) as (field, message) pairs."""
    text = str(exc)
    prefix = f"{where}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if exc.validation is not None:
        return validation_errors(exc.validation)
    return [split_path(text)]


def validation_errors(exc: DjangoValidationError) -> list[tuple[str | None, str]]:
    """A model's ValidationError as (document path, message) pairs."""
    if not hasattr(exc, "error_dict"):
        return [(None, m) for m in exc.messages]
    out: list[tuple[str | None, str]] = []
    for name, errors in exc.error_dict.items():
        path: str | None = job_document.FIELD_PATHS.get(name, name)
        if path == "__all__":
            path = None
        for item in errors:
            for text in item.messages:
                # Trigger errors already name their key ("trigger.expression: ...").
                if path and text.startswith(f"{path}."):
                    out.append(split_path(text))
                else:
                    out.append((path, text))
    return out


def _flatten(detail: Any, path: str = "") -> list[tuple[str | None, str]]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            key = str(key)
            sub = None if key == "non_field_errors" else (f"{path}.{key}" if path else key)
            out.extend(_flatten(value, sub or path))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [(path or None, str(item)) for item in detail]
        out = []
        for index, item in enumerate(detail):
            out.extend(_flatten(item, f"{path}[{index}]"))
        return out
    return [(path or None, str(detail))]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status codes, ``WWW-Authenticate``, ``Retry-After``), then the
    uniform body."""
    if isinstance(exc, job_document.DocumentError):
        exc = FieldError(document_errors(exc, ""))
    elif isinstance(exc, DjangoValidationError):
        exc = FieldError(validation_errors(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(_("Not found."))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, FieldError):
        errors = [error(f, m) for f, m in exc.errors]
    elif isinstance(exc, PayloadTooLarge):
        errors = [error(exc.field, exc.detail)]
    elif isinstance(exc, exceptions.ValidationError):
        errors = [error(f, m) for f, m in _flatten(exc.detail)]
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        errors = [error(f, m) for f, m in _flatten(detail)]
    response.data = body(errors or [error(None, response.status_text)])
    return response
