"""scheduler_app: an enterprise job scheduler as a reusable Django app."""

from scheduler_app.registry import registry, task

__all__ = ["registry", "task"]
__version__ = "0.1.0"
