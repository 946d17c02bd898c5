"""System checks with stable ids (``scheduler_app.E001`` ...), each with a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.translation import gettext as _

from scheduler_app.conf import DEFAULTS, SETTING_NAME, app_settings
from scheduler_app.engine.runlog import MIN_MAX_BYTES as MIN_RUN_LOG_BYTES

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
    "UPSTREAM_RESULTS_MAX_BYTES",
    "JOIN_OPEN_ROUNDS_MAX",
    "RUN_LOG_FLUSH_INTERVAL",
    "LOAD_QUEUE_FACTOR",
    "LOAD_CHECK_INTERVAL",
    "LOAD_DEFER_STEP",
    "PREVIEW_COUNT",
    "ROTATE_BATCH_SIZE",
)

#: Input limits (scheduler_app.documents.limits, trigger caps): whole numbers >= 1.
LIMITS = (
    "MAX_JSON_DEPTH",
    "MAX_ARGS_BYTES",
    "MAX_JOBS_FILE_ENTRY_BYTES",
    "MAX_JOBS_FILE_BYTES",
    "MAX_BACKUP_BYTES",
    "TRIGGER_MAX_CHILDREN",
    "TRIGGER_MAX_DEPTH",
)
MAX_SAFE_DEPTH = 200


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    raw = getattr(settings, SETTING_NAME, {})
    if not isinstance(raw, dict):
        return [
            checks.Error(
                _("%(setting)s must be a dict.") % {"setting": SETTING_NAME},
                hint=_("Set %(setting)s = {...} in your settings.") % {"setting": SETTING_NAME},
                id="scheduler_app.E000",
            )
        ]
    for key in app_settings.unknown_keys():
        errors.append(
            checks.Error(
                _("Unknown setting %(setting)s[%(key)r].") % {"setting": SETTING_NAME, "key": key},
                hint=_("Known settings: %(names)s") % {"names": ", ".join(sorted(DEFAULTS))},
                id="scheduler_app.E001",
            )
        )
    store = raw.get("JOB_STORE", DEFAULTS["JOB_STORE"])
    if store not in JOB_STORES:
        errors.append(
            checks.Error(
                _("%(setting)s['JOB_STORE'] is %(store)r, not a known job store.")
                % {"setting": SETTING_NAME, "store": store},
                hint=_("Use one of: %(names)s") % {"names": ", ".join(JOB_STORES)},
                id="scheduler_app.E002",
            )
        )
    if store == "django" and "django_apscheduler" not in settings.INSTALLED_APPS:
        errors.append(
            checks.Error(
                _("The 'django' job store needs django_apscheduler in INSTALLED_APPS."),
                hint=_("Add 'django_apscheduler' to INSTALLED_APPS and run migrate."),
                id="scheduler_app.E003",
            )
        )
    for key in POSITIVE_NUMBERS:
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                checks.Error(
                    _("%(setting)s[%(key)r] must be a positive number, not %(value)r.")
                    % {"setting": SETTING_NAME, "key": key, "value": value},
                    hint=_("The default is %(default)r.") % {"default": DEFAULTS[key]},
                    id="scheduler_app.E004",
                )
            )
    for key in LIMITS:
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                checks.Error(
                    _("%(setting)s[%(key)r] must be a whole number of at least 1, not %(value)r.")
                    % {"setting": SETTING_NAME, "key": key, "value": value},
                    hint=_("The default is %(default)r.") % {"default": DEFAULTS[key]},
                    id="scheduler_app.E020",
                )
            )
    depth = raw.get("MAX_JSON_DEPTH", DEFAULTS["MAX_JSON_DEPTH"])
    if isinstance(depth, int) and depth > MAX_SAFE_DEPTH:
        errors.append(
            checks.Error(
                _(
                    "%(setting)s['MAX_JSON_DEPTH'] is %(depth)s; above %(safe)s parsing and "
                    "encoding such values may exhaust Python's recursion limit."
                )
                % {"setting": SETTING_NAME, "depth": depth, "safe": MAX_SAFE_DEPTH},
                hint=_("Use at most %(safe)s (the default is %(default)s).")
                % {"safe": MAX_SAFE_DEPTH, "default": DEFAULTS["MAX_JSON_DEPTH"]},
                id="scheduler_app.E021",
            )
        )
    log_bytes = raw.get("MAX_RUN_LOG_BYTES", DEFAULTS["MAX_RUN_LOG_BYTES"])
    if (
        isinstance(log_bytes, bool)
        or not isinstance(log_bytes, int)
        or (log_bytes != 0 and log_bytes < MIN_RUN_LOG_BYTES)
    ):
        errors.append(
            checks.Error(
                _(
                    "%(setting)s['MAX_RUN_LOG_BYTES'] must be 0 (no captured logs) or a whole "
                    "number of at least %(minimum)s, not %(value)r."
                )
                % {"setting": SETTING_NAME, "minimum": MIN_RUN_LOG_BYTES, "value": log_bytes},
                hint=_("The default is %(default)r.") % {"default": DEFAULTS["MAX_RUN_LOG_BYTES"]},
                id="scheduler_app.E022",
            )
        )
    from scheduler_app import crypto

    for problem in crypto.key_problems():
        errors.append(
            checks.Error(
                _("Secrets encryption: %(problem)s.") % {"problem": problem},
                hint=crypto.GENERATE_HINT,
                id="scheduler_app.E010",
            )
        )
    modules = raw.get("TASK_MODULES", [])
    if not isinstance(modules, list | tuple) or not all(isinstance(m, str) for m in modules):
        errors.append(
            checks.Error(
                _("%(setting)s['TASK_MODULES'] must be a list of module paths.") % {"setting": SETTING_NAME},
                id="scheduler_app.E005",
            )
        )
    return errors


def check_code_jobs(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E070: the jobs declared in code cannot be read (SCHEDULER_APP["JOBS"] malformed)
    or one name is declared twice. No queries: clashes with hand-made jobs are found
    by the sync itself."""
    from scheduler_app.services import codejobs

    try:
        codejobs.check_declarations()
    except codejobs.CodeJobError as exc:
        return [
            checks.Error(
                _("Jobs declared in code: %(error)s.") % {"error": exc},
                hint=_("Fix the @scheduler_app.task(schedule=...) declarations or SCHEDULER_APP['JOBS']."),
                id="scheduler_app.E070",
            )
        ]
    return []


def check_plugins(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A plugin that fails to load or to register is an error naming it (E030-E034),
    never a crash; jobs whose executor is no longer available are warned about (W030)."""
    from scheduler_app import plugins

    registry = plugins.registry.load()
    found: list[checks.CheckMessage] = [
        checks.Error(
            f"Plugin {problem.plugin!r} {problem.message}",
            hint=_("Fix or uninstall the plugin, or remove it from SCHEDULER_APP['PLUGINS']."),
            id=f"scheduler_app.{problem.check_id}",
        )
        for problem in registry.problems
    ]
    from scheduler_app.conf import app_settings

    if app_settings.ISOLATED_USER is not None or app_settings.ISOLATED_NO_NETWORK:
        import os

        if os.geteuid() != 0:
            found.append(
                checks.Error(
                    _("ISOLATED_USER and ISOLATED_NO_NETWORK need runscheduler to run as root."),
                    hint=_("Run as root, or clear these settings."),
                    id="scheduler_app.E035",
                )
            )
    return found


def check_cluster(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Node tags and cluster timings (scheduler_app.E050 / E051)."""
    from scheduler_app.backends import cluster as cluster_backend
    from scheduler_app.engine.cluster import ClusterError

    errors: list[checks.CheckMessage] = []
    try:
        cluster_backend.node_tags()
    except ClusterError as exc:
        errors.append(
            checks.Error(str(exc), hint=_("e.g. NODE_TAGS = ['gpu', 'eu']"), id="scheduler_app.E050")
        )
    try:
        cluster_backend.timings()
    except (ClusterError, TypeError, ValueError) as exc:
        errors.append(
            checks.Error(
                str(exc),
                hint=_(
                    "Defaults: HEARTBEAT_INTERVAL 5, SELF_FENCE_AFTER 2/3 of NODE_DEAD_AFTER, "
                    "NODE_DEAD_AFTER = LOST_AFTER (30), LEADER_LEASE 10."
                ),
                id="scheduler_app.E051",
            )
        )
    return errors


def register() -> None:
    checks.register(check_settings, "scheduler_app")
    checks.register(check_code_jobs, "scheduler_app")
    checks.register(check_plugins, "scheduler_app")
    checks.register(check_cluster, "scheduler_app")
