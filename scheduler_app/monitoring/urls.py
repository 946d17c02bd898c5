"""Health endpoints, mountable on their own: ``path("health/", include("scheduler_app.monitoring.urls"))``."""

from django.urls import path

from scheduler_app.monitoring import health

app_name = "scheduler_health"

urlpatterns = [
    path("live", health.LiveView.as_view(), name="live"),
    path("ready", health.ReadyView.as_view(), name="ready"),
    path("scheduler", health.SchedulerView.as_view(), name="scheduler"),
]
