"""System checks on the SCHEDULER_APP setting: stable ids, a message naming the key."""

import pytest
from django.core.checks import Error, run_checks
from django.test import override_settings

from scheduler_app.checks import check_settings
from scheduler_app.conf import DEFAULTS, app_settings


def ours(messages):
    return [m for m in messages if m.id and m.id.startswith("scheduler_app.")]


def test_the_test_settings_pass():
    assert check_settings() == []
    assert ours(run_checks()) == []


@pytest.mark.django_db
def test_our_models_pass_djangos_checks_on_this_database():
    """No warning on every command: SQLite ignores the covering indexes' INCLUDE
    columns, and Django's models.W040 saying so is left out (the demo runs on SQLite)."""
    from django.apps import apps

    found = run_checks(app_configs=[apps.get_app_config("scheduler_app")], databases=["default"])
    assert [(m.id, m.obj) for m in found] == []


def test_checks_are_registered_with_django():
    with override_settings(SCHEDULER_APP={"JOB_STOER": "memory"}):
        assert [m.id for m in ours(run_checks())] == ["scheduler_app.E001"]
        assert ours(run_checks(tags=["scheduler_app"])) == ours(run_checks())


def test_no_setting_at_all_is_fine(settings):
    del settings.SCHEDULER_APP
    assert check_settings() == []


def test_not_a_dict():
    with override_settings(SCHEDULER_APP=["JOB_STORE", "memory"]):
        assert check_settings() == [
            Error(
                "SCHEDULER_APP must be a dict.",
                hint="Set SCHEDULER_APP = {...} in your settings.",
                id="scheduler_app.E000",
            )
        ]


def test_unknown_key_is_e001():
    with override_settings(SCHEDULER_APP={"JOB_STOER": "redis", "THREADS": 4}):
        errors = check_settings()
    hint = "Known settings: " + ", ".join(sorted(DEFAULTS))
    assert errors == [
        Error("Unknown setting SCHEDULER_APP['JOB_STOER'].", hint=hint, id="scheduler_app.E001"),
        Error("Unknown setting SCHEDULER_APP['THREADS'].", hint=hint, id="scheduler_app.E001"),
    ]
    assert "THREAD_POOL_SIZE" in hint and "JOB_STORE" in hint


def test_unknown_job_store_is_e002():
    with override_settings(SCHEDULER_APP={"JOB_STORE": "mongodb"}):
        assert check_settings() == [
            Error(
                "SCHEDULER_APP['JOB_STORE'] is 'mongodb', not a known job store.",
                hint="Use one of: memory, django, sqlalchemy, redis",
                id="scheduler_app.E002",
            )
        ]


@pytest.mark.parametrize("store", ["memory", "django", "sqlalchemy", "redis"])
def test_known_job_stores_pass(store):
    with override_settings(SCHEDULER_APP={"JOB_STORE": store}):
        assert check_settings() == []


def test_django_store_needs_django_apscheduler_e003(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_apscheduler"]
    with override_settings(SCHEDULER_APP={"JOB_STORE": "django"}):
        assert check_settings() == [
            Error(
                "The 'django' job store needs django_apscheduler in INSTALLED_APPS.",
                hint="Add 'django_apscheduler' to INSTALLED_APPS and run migrate.",
                id="scheduler_app.E003",
            )
        ]
    with override_settings(SCHEDULER_APP={"JOB_STORE": "memory"}):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("THREAD_POOL_SIZE", 0),
        ("ASYNCIO_CONCURRENCY", -1),
        ("PROCESS_POOL_SIZE", "5"),
        ("MAX_CONCURRENT_RUNS", None),
        ("RECONCILE_INTERVAL", 0.0),
        ("POLL_INTERVAL", True),
        ("HEARTBEAT_INTERVAL", -0.5),
        ("LOST_AFTER", [30]),
        ("MISFIRE_RUN_ALL_CAP", 0),
        ("RESULT_MAX_BYTES", -65536),
        ("PREVIEW_COUNT", "ten"),
        ("RUN_LOG_FLUSH_INTERVAL", 0),
    ],
)
def test_bad_numbers_are_e004(key, value):
    with override_settings(SCHEDULER_APP={key: value}):
        assert check_settings() == [
            Error(
                f"SCHEDULER_APP[{key!r}] must be a positive number, not {value!r}.",
                hint=f"The default is {DEFAULTS[key]!r}.",
                id="scheduler_app.E004",
            )
        ]


def test_good_numbers_pass():
    good = {
        "THREAD_POOL_SIZE": 1,
        "POLL_INTERVAL": 0.25,
        "LOST_AFTER": 120,
        "PREVIEW_COUNT": 3,
        "RESULT_MAX_BYTES": 1,
    }
    with override_settings(SCHEDULER_APP=good):
        assert check_settings() == []
        assert app_settings.POLL_INTERVAL == 0.25  # and the values are read back


@pytest.mark.parametrize("value", [-1, 1, 1023, 64.5, "64KB", True, None])
def test_a_bad_run_log_cap_is_e022(value):
    with override_settings(SCHEDULER_APP={"MAX_RUN_LOG_BYTES": value}):
        assert check_settings() == [
            Error(
                "SCHEDULER_APP['MAX_RUN_LOG_BYTES'] must be 0 (no captured logs) or a whole number of "
                f"at least 1024, not {value!r}.",
                hint="The default is 65536.",
                id="scheduler_app.E022",
            )
        ]


@pytest.mark.parametrize("value", [0, 1024, 10_000_000])
def test_good_run_log_caps_pass(value):
    with override_settings(SCHEDULER_APP={"MAX_RUN_LOG_BYTES": value, "RUN_LOG_FLUSH_INTERVAL": 0.5}):
        assert check_settings() == []
        assert app_settings.MAX_RUN_LOG_BYTES == value


def test_task_modules_must_be_a_list_of_paths_e005():
    with override_settings(SCHEDULER_APP={"TASK_MODULES": "project.scheduler_tasks"}):
        assert [(e.id, e.msg) for e in check_settings()] == [
            ("scheduler_app.E005", "SCHEDULER_APP['TASK_MODULES'] must be a list of module paths.")
        ]
    with override_settings(SCHEDULER_APP={"TASK_MODULES": ["project.scheduler_tasks"]}):
        assert check_settings() == []


def test_several_problems_are_all_reported():
    bad = {"JOB_STORE": "disk", "THREAD_POOL_SIZE": 0, "POLL_INTERVAL": -1, "COLOR": "red"}
    with override_settings(SCHEDULER_APP=bad):
        assert [e.id for e in check_settings()] == [
            "scheduler_app.E001",
            "scheduler_app.E002",
            "scheduler_app.E004",
            "scheduler_app.E004",
        ]
        assert [e.id for e in ours(run_checks())] == [
            "scheduler_app.E001",
            "scheduler_app.E002",
            "scheduler_app.E004",
            "scheduler_app.E004",
        ]


def test_missing_encryption_key_is_e010_with_a_hint(monkeypatch):
    monkeypatch.delenv("SCHEDULER_APP_ENCRYPTION_KEYS", raising=False)
    with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": []}):
        errors = check_settings()
    assert [e.id for e in errors] == ["scheduler_app.E010"]
    assert errors[0].msg == "Secrets encryption: no encryption key is configured."
    assert "Fernet.generate_key()" in errors[0].hint


def test_malformed_encryption_key_is_e010():
    with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": ["not-a-key"]}):
        errors = check_settings()
    assert [e.msg for e in errors] == [
        "Secrets encryption: key #1 is not a valid Fernet key (32 url-safe base64 bytes)."
    ]
