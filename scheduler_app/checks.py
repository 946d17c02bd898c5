"""System checks with stable ids (``scheduler_app.E001`` ...), each with a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from scheduler_app.conf import DEFAULTS, SETTING_NAME, app_settings

JOB_STORES = ("memory", "django", "sqlalchemy", "redis")
POSITIVE_NUMBERS = (
    "THREAD_POOL_SIZE",
    "ASYNCIO_CONCURRENCY",
    "PROCESS_POOL_SIZE",
    "MAX_CONCURRENT_RUNS",
    "RECONCILE_INTERVAL",
    "POLL_INTERVAL",
    "HEARTBEAT_INTERVAL",
    "LOST_AFTER",
    "MISFIRE_RUN_ALL_CAP",
    "RESULT_MAX_BYTES",
    "PREVIEW_COUNT",
    "ROTATE_BATCH_SIZE",
)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    raw = getattr(settings, SETTING_NAME, {})
    if not isinstance(raw, dict):
        return [
            checks.Error(
                f"{SETTING_NAME} must be a dict.",
                hint=f"Set {SETTING_NAME} = {{...}} in your settings.",
                id="scheduler_app.E000",
            )
        ]
    for key in app_settings.unknown_keys():
        errors.append(
            checks.Error(
                f"Unknown setting {SETTING_NAME}[{key!r}].",
                hint="Known settings: " + ", ".join(sorted(DEFAULTS)),
                id="scheduler_app.E001",
            )
        )
    store = raw.get("JOB_STORE", DEFAULTS["JOB_STORE"])
    if store not in JOB_STORES:
        errors.append(
            checks.Error(
                f"{SETTING_NAME}['JOB_STORE'] is {store!r}, not a known job store.",
                hint="Use one of: " + ", ".join(JOB_STORES),
                id="scheduler_app.E002",
            )
        )
    if store == "django" and "django_apscheduler" not in settings.INSTALLED_APPS:
        errors.append(
            checks.Error(
                "The 'django' job store needs django_apscheduler in INSTALLED_APPS.",
                hint="Add 'django_apscheduler' to INSTALLED_APPS and run migrate.",
                id="scheduler_app.E003",
            )
        )
    for key in POSITIVE_NUMBERS:
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                checks.Error(
                    f"{SETTING_NAME}[{key!r}] must be a positive number, not {value!r}.",
                    hint=f"The default is {DEFAULTS[key]!r}.",
                    id="scheduler_app.E004",
                )
            )
    from scheduler_app import crypto

    for problem in crypto.key_problems():
        errors.append(
            checks.Error(
                f"Secrets encryption: {problem}.",
                hint=crypto.GENERATE_HINT,
                id="scheduler_app.E010",
            )
        )
    modules = raw.get("TASK_MODULES", [])
    if not isinstance(modules, list | tuple) or not all(isinstance(m, str) for m in modules):
        errors.append(
            checks.Error(
                f"{SETTING_NAME}['TASK_MODULES'] must be a list of module paths.",
                id="scheduler_app.E005",
            )
        )
    return errors


def check_cluster(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Node tags and cluster timings (scheduler_app.E050 / E051)."""
    from scheduler_app.backends import cluster as cluster_backend
    from scheduler_app.engine.cluster import ClusterError

    errors: list[checks.CheckMessage] = []
    try:
        cluster_backend.node_tags()
    except ClusterError as exc:
        errors.append(checks.Error(str(exc), hint="e.g. NODE_TAGS = ['gpu', 'eu']", id="scheduler_app.E050"))
    try:
        cluster_backend.timings()
    except (ClusterError, TypeError, ValueError) as exc:
        errors.append(
            checks.Error(
                str(exc),
                hint="Defaults: HEARTBEAT_INTERVAL 5, SELF_FENCE_AFTER 2/3 of NODE_DEAD_AFTER, "
                "NODE_DEAD_AFTER = LOST_AFTER (30), LEADER_LEASE 10.",
                id="scheduler_app.E051",
            )
        )
    return errors


def register() -> None:
    checks.register(check_settings, "scheduler_app")
    checks.register(check_cluster, "scheduler_app")
