"""Imports the modules that register tasks: every installed app's ``scheduler_tasks``
module and the modules listed in ``SCHEDULER_APP["TASK_MODULES"]`` (code, not input)."""

from __future__ import annotations

import importlib

from django.utils.module_loading import autodiscover_modules

from scheduler_app.conf import app_settings


def load_task_modules() -> None:
    autodiscover_modules("scheduler_tasks")
    for dotted in app_settings.TASK_MODULES:
        importlib.import_module(dotted)
