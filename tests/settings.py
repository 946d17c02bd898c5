"""Test settings: the demo project's, with the database chosen by ``DATABASE_URL``
(SQLite file by default; CI runs the suite on PostgreSQL too) and Redis db 15."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")


def _per_worker_redis(url: str, worker: str) -> str:
    """pytest-xdist worker gwN (N > 0) uses Redis db (db - N) mod 16, so that two
    workers' job stores never share keys. The variable is exported, so the real
    runscheduler processes a worker starts use the same db."""
    if not worker.startswith("gw") or not worker[2:].isdigit() or worker == "gw0":
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - int(worker[2:])) % 16}" if db.isdigit() else url


if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("SCHEDULER_REDIS_PER_WORKER"):
    os.environ["REDIS_URL"] = _per_worker_redis(os.environ["REDIS_URL"], os.environ["PYTEST_XDIST_WORKER"])
    os.environ["SCHEDULER_REDIS_PER_WORKER"] = "1"  # once per process tree

from project.settings import *  # noqa: E402,F403
from project.settings import DATABASES, SCHEDULER_APP, VAR_DIR  # noqa: E402

SECRET_KEY = "tests-only-not-secret"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that real runscheduler processes started by the
    # acceptance tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # SCHEDULER_TEST_DB lets several checkouts run their suites side by side on one server.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("SCHEDULER_TEST_DB", "test_scheduler_app")}

import json  # noqa: E402

# Test-only keys (newest first). Also in the environment, so tests that replace the
# whole SCHEDULER_APP dict still have keys, as a deployment reading the variable would.
TEST_KEYS = [
    "ZpHbUZ9Y4rS2Dp8wFZsCq0uGmKf6PqH6kD8WbC3aQ1E=",
    "jR5vXk3cYpNq7hL2mT9sB4dF6gW1zE8aU0iO5yK3xQc=",
]
os.environ.setdefault("SCHEDULER_APP_ENCRYPTION_KEYS", ",".join(TEST_KEYS))

# Real runscheduler processes started by the acceptance tests use these settings too;
# a test passes per-process overrides as JSON in SCHEDULER_TEST_OVERRIDES.
SCHEDULER_APP = {
    **SCHEDULER_APP,
    "JOB_STORE": os.environ.get("SCHEDULER_JOB_STORE", "memory"),
    "TASK_MODULES": ["tests.tasks"],
    "ENCRYPTION_KEYS": TEST_KEYS,
    **json.loads(os.environ.get("SCHEDULER_TEST_OVERRIDES", "{}")),
}

# django-celery-beat's real tables, for `importjobs --from celery-beat` tests.
INSTALLED_APPS = [*INSTALLED_APPS, "django_celery_beat"]  # noqa: F405

# Alert tests: real runscheduler processes send mail to a local SMTP server (aiosmtpd).
if os.environ.get("SCHEDULER_TEST_SMTP_PORT"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = int(os.environ["SCHEDULER_TEST_SMTP_PORT"])

# SCHEDULER_TEST_SQL_LOG=FILE: this process logs every SQL statement to FILE (tests/sqllog.py).
from tests import sqllog  # noqa: E402

sqllog.install()
