"""The operations API. A host project mounts it with
``path("api/", include("scheduler_app.api.urls"))``.

Resources are registered in :data:`RESOURCES`, the one place to add one."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from scheduler_app.api import docs, jobs, ops, resources, runs

app_name = "scheduler_api"

#: (URL prefix, view set, basename) of every resource.
RESOURCES = [
    ("tenants", resources.TenantViewSet, "tenant"),
    ("groups", resources.GroupViewSet, "group"),
    ("calendars", resources.CalendarViewSet, "calendar"),
    ("jobs", jobs.JobViewSet, "job"),
    ("dependencies", resources.DependencyViewSet, "dependency"),
    ("runs", runs.RunViewSet, "run"),
    ("nodes", ops.NodeViewSet, "node"),
    ("alert-channels", ops.AlertChannelViewSet, "alert-channel"),
    ("alert-rules", ops.AlertRuleViewSet, "alert-rule"),
]

router = SimpleRouter()
for prefix, viewset, basename in RESOURCES:
    router.register(prefix, viewset, basename=basename)

urlpatterns = [
    path("schema/", docs.SchemaView.as_view(), name="schema"),
    path("docs/", docs.DocsView.as_view(), name="docs"),
    path("health/", include("scheduler_app.monitoring.urls")),
    # one object, not a list: the admin dashboard's JSON
    path("dashboard/", ops.DashboardViewSet.as_view({"get": "show"}), name="dashboard"),
    path("cron/preview", resources.CronViewSet.as_view({"get": "preview"}), name="cron-preview"),
    *router.urls,
]
