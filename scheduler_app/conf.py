"""The app's settings: one ``SCHEDULER_APP`` dict, defaults declared once, read lazily.

Read through :data:`app_settings`; values are looked up on first access and the cache is
dropped whenever Django's ``setting_changed`` signal fires (``override_settings`` in tests).
Unknown keys are reported by the system check ``scheduler_app.E001``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

SETTING_NAME = "SCHEDULER_APP"

#: Every setting, its default and what it means. The README's configuration reference
#: is written from this table.
DEFAULTS: dict[str, Any] = {
    # Modules (dotted paths in *settings*, never from a form) imported at start-up so
    # their @scheduler_app.task decorators register. Apps' ``scheduler_tasks`` modules are
    # discovered automatically as well.
    "TASK_MODULES": [],
    # Jobs declared in code (besides @scheduler_app.task(schedule=...)): job documents
    # with a "name" and a "task" (and "schedule" + "timezone", or a "trigger"), synced at
    # runscheduler start and by manage.py syncjobs.
    "JOBS": [],
    # The tenant (slug) of code-declared jobs that do not name one; created if missing.
    "CODE_JOBS_TENANT": "default",
    # APScheduler job store for the trigger side: memory | django | sqlalchemy | redis.
    "JOB_STORE": "memory",
    # SQLAlchemy URL for the sqlalchemy job store (None: derived from the default database).
    "SQLALCHEMY_URL": None,
    # Redis URL for the redis job store and wake-ups.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # Worker pool sizes per executor, and the node-wide cap on concurrent runs.
    "THREAD_POOL_SIZE": 10,
    "ASYNCIO_CONCURRENCY": 100,
    "PROCESS_POOL_SIZE": 5,
    "MAX_CONCURRENT_RUNS": 50,
    # Seconds between reconciles of job definitions changed by other processes.
    "RECONCILE_INTERVAL": 5.0,
    # Seconds between queue polls when no wake-up arrives.
    "POLL_INTERVAL": 1.0,
    # Seconds a running run may go without a heartbeat before it is considered lost.
    "HEARTBEAT_INTERVAL": 5.0,
    "LOST_AFTER": 30.0,
    # -- several nodes (see the README's "Running several nodes") --
    # This node's tags (also: runscheduler --tags gpu,eu); jobs routed by tags run only
    # on nodes having all of them.
    "NODE_TAGS": [],
    # Seconds without a heartbeat (judged by the database's clock) after which a node is
    # dead and its runs are lost and retried elsewhere; None: LOST_AFTER.
    "NODE_DEAD_AFTER": None,
    # Seconds without writing its heartbeat after which a node stops its own in-flight
    # runs (must be shorter than NODE_DEAD_AFTER); None: two thirds of NODE_DEAD_AFTER.
    "SELF_FENCE_AFTER": None,
    # A node stops claiming while its 1-minute load average per CPU is above MAX_LOAD or
    # its available memory is below MIN_FREE_MEMORY_MB, and resumes when it falls back
    # (None: no limit).
    "MAX_LOAD": None,
    "MIN_FREE_MEMORY_MB": None,
    # The cluster is overloaded while every live active node is above MAX_LOAD (or below
    # MIN_FREE_MEMORY_MB), or more due runs are queued than LOAD_QUEUE_FACTOR × the live
    # nodes' slots; jobs with load policy defer / shed then wait / skip their scheduled
    # runs (judged at most every LOAD_CHECK_INTERVAL seconds).
    "LOAD_QUEUE_FACTOR": 4.0,
    "LOAD_CHECK_INTERVAL": 2.0,
    # How far a deferred run's start moves each time it is found overloaded (seconds).
    "LOAD_DEFER_STEP": 5.0,
    # Seconds the leader lease lasts; renewed every min(HEARTBEAT_INTERVAL, lease / 3).
    "LEADER_LEASE": 10.0,
    # Seconds that running runs get to finish after SIGTERM before they are interrupted.
    "SHUTDOWN_GRACE": 30.0,
    # Upper bound on runs created for one job by the run_all misfire policy.
    "MISFIRE_RUN_ALL_CAP": 100,
    # -- plugins (scheduler_app.plugins) --
    # Plugins given as "module:attribute" references (besides the entry-point group
    # "scheduler_app.plugins"), and options per plugin name passed to its executors.
    "PLUGINS": [],
    "PLUGIN_OPTIONS": {},
    # -- the isolated executor (a fresh process per run) --
    # Runs at once per node; environment variable names copied into the run's process
    # (nothing else is); open files per run; a Unix user to run as (root only); whether
    # runs get no network (a network namespace; root only).
    "ISOLATED_POOL_SIZE": 2,
    "ISOLATED_ENVIRONMENT": ["PATH", "LANG", "LC_ALL", "TZ", "DJANGO_SETTINGS_MODULE"],
    "ISOLATED_MAX_OPEN_FILES": 256,
    "ISOLATED_USER": None,
    "ISOLATED_NO_NETWORK": False,
    # Upper bound on runs one backfill may queue (jobctl backfill, admin, API); a range
    # with more fire times is refused as a whole.
    "BACKFILL_MAX_RUNS": 1000,
    # Largest JSON result (bytes) stored on a run; larger results are replaced by a note.
    "RESULT_MAX_BYTES": 65536,
    # Largest JSON encoding (bytes) of the upstream results one dependency run receives
    # (its job's upstream_param); beyond it the largest results are replaced by
    # {"truncated": true, "size_bytes": N} until the rest fits.
    "UPSTREAM_RESULTS_MAX_BYTES": 262_144,
    # Open join rounds kept per job with a trigger rule other than all_success (rounds
    # wait for upstream jobs that have not ended yet); beyond it the oldest are dropped.
    "JOIN_OPEN_ROUNDS_MAX": 100,
    # Largest captured log (bytes, UTF-8) kept per run: what a task logs (and prints, on
    # the process and isolated executors) while it runs; beyond it the oldest lines are
    # dropped and a marker line says how many. 0 turns capture off; else at least 1024.
    "MAX_RUN_LOG_BYTES": 65536,
    # Seconds between writes of running runs' logs (only those that changed), so that a
    # running run's log can be followed.
    "RUN_LOG_FLUSH_INTERVAL": 2.0,
    # Days finished runs are kept; None keeps them forever.
    "RUN_RETENTION_DAYS": 30,
    # How many upcoming fire times the admin shows.
    "PREVIEW_COUNT": 10,
    # Fernet keys for secret kwargs, newest first; empty: read the comma-separated
    # environment variable SCHEDULER_APP_ENCRYPTION_KEYS.
    "ENCRYPTION_KEYS": [],
    # Rows per transaction when rotatekeys re-encrypts secrets.
    "ROTATE_BATCH_SIZE": 200,
    # -- input limits (scheduler_app.documents.limits) --
    # Deepest nesting of a JSON value (args, kwargs, secret kwargs, run overrides)
    # accepted anywhere input enters; deeper values are refused with a field error.
    "MAX_JSON_DEPTH": 32,
    # Largest JSON encoding (bytes) of a job's (or a run's) args + kwargs + secret kwargs.
    "MAX_ARGS_BYTES": 262_144,
    # Largest JSON encoding (bytes) of one entry of a jobs file or backup.
    "MAX_JOBS_FILE_ENTRY_BYTES": 1_048_576,
    # Largest jobs file (bytes) importjobs reads; a larger file (or stream) is refused
    # before it is read.
    "MAX_JOBS_FILE_BYTES": 16_777_216,
    # Largest backup file (bytes) restore reads (1 GB: a backup with runs holds about
    # 700 bytes per run, more with results and errors); a larger file (or stream) is
    # refused before it is read.
    "MAX_BACKUP_BYTES": 1_073_741_824,
    # Most children of one "all"/"any" trigger combination, and deepest nesting of them.
    "TRIGGER_MAX_CHILDREN": 20,
    "TRIGGER_MAX_DEPTH": 3,
    # -- operations API (scheduler_app.api) --
    # Requests per API key (or logged-in user) and period, as DRF writes rates
    # ("6000/minute"); None: no throttling. Counted in Django's default cache, so use a
    # shared cache (Redis, Memcached) to throttle across several web processes.
    "API_THROTTLE_RATE": "6000/minute",
    # Largest request body (bytes) the API reads; larger ones are answered 413.
    "API_MAX_REQUEST_BYTES": 1_048_576,
    # Largest JSON encoding (bytes) of a job's args, kwargs, secret kwargs or a run's
    # kwargs override sent through the API; larger ones are answered 413.
    "API_MAX_KWARGS_BYTES": 65_536,
    # Default and largest page size of API lists (?page_size=).
    "API_PAGE_SIZE": 50,
    "API_MAX_PAGE_SIZE": 500,
    # -- monitoring (scheduler_app.monitoring) --
    # Whether GET /api/health/scheduler needs an API key (or a logged-in user).
    "HEALTH_SCHEDULER_REQUIRES_KEY": False,
    # Seconds the readiness check keeps its "migrations applied" result (it is costly).
    "HEALTH_MIGRATIONS_CACHE_SECONDS": 10.0,
    # Who may scrape /metrics: None (anyone who can reach it), "key" (an API key of an
    # active user, as Authorization: Bearer), or {"username": ..., "password": ...} for
    # HTTP basic auth (what Prometheus' basic_auth sends).
    "METRICS_AUTH": None,
    # Seconds a scrape reuses the database-derived gauges (queue depth, running, nodes),
    # so that many scrapers do not load the database.
    "METRICS_CACHE_SECONDS": 5.0,
    # Also label run counters and histograms by job (tenant/name). Off by default: an
    # installation may have 100,000 jobs, one time series each.
    "METRICS_JOB_LABELS": False,
    # -- alerts (scheduler_app.alerts) --
    # Base of the links to run pages in alerts, e.g. "https://scheduler.example.com".
    "ALERTS_BASE_URL": "",
    # Seconds between the delivery loop's looks at the outbox when it is idle and has no
    # wake-up from other processes (PostgreSQL with its LISTEN connection down). On
    # SQLite the loop looks at most once a second (alerts this process writes wake it).
    "ALERTS_POLL_INTERVAL": 0.25,
    # PostgreSQL: every outbox insert sends NOTIFY in its transaction and each node's
    # delivery loop LISTENs, so it wakes on commit; it still looks at the outbox every
    # this many seconds (and when a retry falls due) as a safety net.
    "ALERTS_IDLE_POLL_SECONDS": 5.0,
    # Seconds a node holds the alerts it is sending; after that, another node resends them.
    "ALERTS_LEASE_SECONDS": 30.0,
    # Retries back off from this many seconds, doubling, up to the maximum.
    "ALERTS_RETRY_BASE_SECONDS": 5.0,
    "ALERTS_RETRY_MAX_SECONDS": 300.0,
    # Seconds after an alert was written when its delivery is given up ("dead").
    "ALERTS_GIVE_UP_AFTER_SECONDS": 86400.0,
    # Seconds between the late / missed checks (done by every node's delivery loop).
    "ALERTS_CHECK_INTERVAL": 5.0,
}


class AppSettings:
    """Attribute access to ``settings.SCHEDULER_APP`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, None) or {}
        return dict(value)

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown {SETTING_NAME} setting: {name!r}")
        if name not in self._cache:
            self._cache[name] = self.user_settings.get(name, DEFAULTS[name])
        return self._cache[name]

    def unknown_keys(self) -> list[str]:
        return sorted(set(self.user_settings) - set(DEFAULTS))

    def reload(self) -> None:
        self._cache.clear()


app_settings = AppSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        app_settings.reload()


setting_changed.connect(_reload, dispatch_uid="scheduler_app.conf.reload")
