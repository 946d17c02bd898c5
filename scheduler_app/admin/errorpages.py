"""A clear page instead of Django's bare "Bad Request (400)" when a form post is refused
before any view sees it: more fields than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (a job form
claiming thousands of child triggers) or a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

Django refuses such a post while parsing it (the CSRF check reads ``request.POST``
first), so neither the job form nor its limits can name the problem; the project's 400
handler can. Use it in your root URLconf::

    handler400 = "scheduler_app.admin.errorpages.bad_request"

A request to the operations API (a path that resolves into ``scheduler_app.api.urls``,
wherever the host project mounts it), a JSON body or a client that prefers JSON to HTML
gets the API's error body instead of the page. (Until 0.x this module was
``scheduler_app.errorpages``; that path still works, with a deprecation warning.)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import Resolver404, resolve
from django.utils.translation import gettext as _
from django.views import defaults

from scheduler_app.conf import app_settings


def refusal(exception: Any) -> str | None:
    """What to tell a person whose post Django refused, or None for other bad requests."""
    if isinstance(exception, TooManyFieldsSent):
        return _(
            "The form sent more fields than this site accepts (DATA_UPLOAD_MAX_NUMBER_FIELDS = "
            "%(limit)s), so nothing was read and nothing was saved. A combined trigger has at "
            "most %(children)s child triggers: use your browser's Back button (it keeps what you "
            "typed), remove child triggers and save again."
        ) % {"limit": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS, "children": app_settings.TRIGGER_MAX_CHILDREN}
    if isinstance(exception, RequestDataTooBig):
        size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _(
            "The form is larger than this site accepts (DATA_UPLOAD_MAX_MEMORY_SIZE = %(size)s "
            "bytes), so nothing was read and nothing was saved. Use your browser's Back button (it "
            "keeps what you typed), shorten the largest values (arguments, keyword arguments) and "
            "save again."
        ) % {"size": f"{size:,}" if size is not None else "—"}
    return None


#: The application namespace of ``scheduler_app.api.urls``.
API_NAMESPACE = "scheduler_api"


def is_api_request(request: HttpRequest) -> bool:
    """Whether the request's path resolves into the operations API's URLconf, wherever
    the host project mounted it (the request's own URLconf if a middleware set one)."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return API_NAMESPACE in match.app_names


def wants_json(request: HttpRequest) -> bool:
    if request.content_type == "application/json" or is_api_request(request):
        return True
    accept = request.headers.get("Accept", "")
    if not accept:
        return False
    # A client that lists JSON and not HTML (a script's "Accept: application/json").
    return request.accepts("application/json") and "text/html" not in accept and "*/*" not in accept


def bad_request(request: HttpRequest, exception: Any = None, **kwargs: Any) -> HttpResponse:
    message = refusal(exception)
    if message is None:
        return defaults.bad_request(request, exception, **kwargs)
    if wants_json(request):
        # The API's one error body (scheduler_app.api.errors): not about one field.
        return JsonResponse({"errors": [{"field": None, "message": message}]}, status=400)
    response = TemplateResponse(
        request,
        "admin/scheduler_app/bad_request.html",
        {"title": _("The form was not saved"), "message": message},
        status=400,
    )
    return response.render()
