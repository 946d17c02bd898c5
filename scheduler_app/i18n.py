"""The engine's words (cron and trigger descriptions, cron and trigger errors) in the
active language: the engine cannot use Django's catalogs, so faces go through here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import translation

from scheduler_app.engine import cron_zh, triggerspec

if TYPE_CHECKING:
    from scheduler_app.engine.cron import CronExpression, CronSyntaxError


def language() -> str:
    return translation.get_language() or settings.LANGUAGE_CODE


def describe_cron(expr: CronExpression) -> str:
    return expr.describe(language())


def describe_trigger(spec: triggerspec.TriggerSpec, *, hash_key: str | None = None) -> str:
    return triggerspec.describe(spec, hash_key=hash_key, language=language())


def cron_error(exc: CronSyntaxError) -> str:
    """str(exc), or its Chinese when the active language is Chinese."""
    return cron_zh.error_message(exc) if cron_zh.is_chinese(language()) else str(exc)


def trigger_error(exc: triggerspec.TriggerSpecError, *, with_path: bool = False) -> str:
    """exc.message (or str(exc) with its path) in the active language."""
    if not cron_zh.is_chinese(language()):
        return str(exc) if with_path else exc.message
    message = cron_zh.trigger_message(exc)
    return f"{exc.path}：{message}" if with_path else message
