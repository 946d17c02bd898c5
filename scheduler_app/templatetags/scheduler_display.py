"""Template filters for the scheduler's pages: the same formats as
:mod:`scheduler_app.display` (``{{ value|when }}``, ``{{ value|when:"Asia/Shanghai" }}``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from scheduler_app import display

register = template.Library()


@register.filter
def when(value: datetime | None, tz: Any = None) -> str:
    return display.when(value, tz or None)


@register.filter
def seconds(value: float | None) -> str:
    return display.seconds(value)


@register.filter
def megabytes(value: float | None) -> str:
    return display.megabytes(value)
