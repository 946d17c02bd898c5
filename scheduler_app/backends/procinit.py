"""Start-up of a process-executor worker: set Django up (which imports the task
modules) and return the resolver from task name to callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def setup() -> Callable[[str], Callable[..., Any]]:
    import django

    django.setup()
    from scheduler_app.registry import registry

    def resolve(name: str) -> Callable[..., Any]:
        return registry.get(name).func

    return resolve
