from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SchedulerAppConfig(AppConfig):
    name = "scheduler_app"
    verbose_name = _("Scheduler")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: no queries, no threads (the scheduler starts in runscheduler).
        from scheduler_app import audit, checks, plugins, tasks_loader

        checks.register()
        from scheduler_app.services import failurepause

        failurepause.connect()
        plugins.connect_signals()
        audit.register_models()
        tasks_loader.load_task_modules()
