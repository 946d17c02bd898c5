from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from scheduler_app.monitoring import metrics

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("scheduler_app.api.urls")),
    # Django's set_language view (POST language=..., next=...), used by the admin's switcher.
    path("i18n/", include("django.conf.urls.i18n")),
    path("metrics", metrics.MetricsView.as_view(), name="metrics"),
]

# A clear page, not a bare "Bad Request (400)", when Django refuses a post before any view
# (more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields, a body over DATA_UPLOAD_MAX_MEMORY_SIZE).
handler400 = "scheduler_app.admin.errorpages.bad_request"
