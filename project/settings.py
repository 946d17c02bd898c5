"""Settings of the demo project. Everything deployment-specific comes from the environment:

- ``DATABASE_URL``  (default: SQLite file ``var/demo.sqlite3``), e.g.
  ``postgres://postgres@127.0.0.1:5432/scheduler``
- ``REDIS_URL``     (default: ``redis://127.0.0.1:6379/0``)
- ``DJANGO_SECRET_KEY`` (default: a random key kept in ``var/secret_key``, never committed)
- ``DJANGO_DEBUG``  (``1`` to enable debug pages; off by default)
- ``DJANGO_DB_POOL`` (``1``: the web side uses psycopg 3's connection pool on PostgreSQL;
  ``DJANGO_DB_POOL_MIN`` / ``DJANGO_DB_POOL_MAX``, default 2 / 20)

Static files are served by WhiteNoise, from ``var/static`` (``STATIC_ROOT``), which
``rundemo`` fills with ``collectstatic`` before it starts the web server; so the admin is
styled with DEBUG off, as a deployment would serve it.
"""

import os
import secrets
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SCHEDULER_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    from_env = os.environ.get("DJANGO_SECRET_KEY")
    if from_env:
        return from_env
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()


def _encryption_keys() -> list[str]:
    """Fernet keys for job secrets, newest first: SCHEDULER_APP_ENCRYPTION_KEYS, or for
    the demo a key generated into var/ (never committed)."""
    from_env = os.environ.get("SCHEDULER_APP_ENCRYPTION_KEYS")
    if from_env:
        return [k.strip() for k in from_env.split(",") if k.strip()]
    path = VAR_DIR / "encryption_key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return [path.read_text().strip()]


DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: with DJANGO_DEBUG=1, WhiteNoise (not runserver) still serves
    # /static/, so debug and non-debug runs serve files the same way.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_apscheduler",
    "guardian",
    "auditlog",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "scheduler_app",
    "project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: picks the language from the django_language cookie
    # (set by the switcher), then Accept-Language; anything we do not ship -> LANGUAGE_CODE.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'demo.sqlite3'}"),
        conn_max_age=0,
    )
}
if (
    DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    and os.environ.get("DJANGO_DB_POOL") == "1"
    and "runscheduler" not in sys.argv[1:2]
):
    # The web side (API, admin, /metrics) borrows connections from psycopg 3's pool
    # instead of opening one per request; runscheduler keeps its own persistent ones.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": int(os.environ.get("DJANGO_DB_POOL_MIN", "2")),
            "max_size": int(os.environ.get("DJANGO_DB_POOL_MAX", "20")),
            "timeout": 10,
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the admin read while the scheduler writes; IMMEDIATE avoids lock upgrades
    # that fail with "database is locked" instead of waiting.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# The language of pages when the browser asks for none we ship, and of the management
# commands (their help and messages; DJANGO_LANGUAGE_CODE=zh-hans for Chinese).
LANGUAGE_CODE = os.environ.get("DJANGO_LANGUAGE_CODE", "en")
# The languages we ship (scheduler_app/locale, project/locale); the switcher offers these.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "project" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Present before collectstatic fills it, so WhiteNoise does not warn on every handler the
# test client builds.
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed (gzip) but not the manifest variant: manifest storage makes every page
    # that uses {% static %} fail with DEBUG off until collectstatic has run, and the test
    # suite, a bare `manage.py runserver` or a command rendering a template would hit that.
    # Unhashed names cost only caching: WhiteNoise lets browsers keep them for 60 s.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

SCHEDULER_APP = {
    "ENCRYPTION_KEYS": _encryption_keys(),
    "REDIS_URL": REDIS_URL,
    "JOB_STORE": os.environ.get("SCHEDULER_JOB_STORE", "memory"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            # times with milliseconds and the UTC offset (logging's default has neither zone nor offset)
            "()": "scheduler_app.logutils.OffsetTimeFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "scheduler_app": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "apscheduler": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
