"""A host project that mounts the API at /ops/v2/ (not /api/) and the admin at
/api/admin/ (a path that starts with /api/ but is not the API): for the 400 handler's
tests (test_errorpages.py)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # the admin's language switcher
    path("ops/v2/", include("scheduler_app.api.urls")),
]

handler400 = "scheduler_app.admin.errorpages.bad_request"


class ReadsTheForm:
    """A host project's middleware that reads every form post before the view (as some
    logging or tracing middlewares do): Django refuses a post with too many fields
    there, before the API could, and the project's 400 handler answers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.POST  # noqa: B018
        return self.get_response(request)
