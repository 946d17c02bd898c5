"""The plugin API: discovery through the installed example package's entry point and
SCHEDULER_APP["PLUGINS"], system checks naming broken plugins, plugin trigger types
(field errors, never-firing, describe and preview, jobs-file and API round trip),
executor choices and the limits rule."""

import datetime as dt

import pytest
from django.core import checks
from django.core.exceptions import ValidationError
from django.test import override_settings

from scheduler_app import plugins, services
from scheduler_app.engine import triggerspec
from scheduler_app.models import Job

pytestmark = pytest.mark.django_db
BDAYS = {
    "type": "business_days",
    "every": 2,
    "at": "09:30",
    "timezone": "Europe/Berlin",
    "start": "2026-11-02",
}


@pytest.fixture(autouse=True)
def fresh_registry():
    plugins.registry.reset()
    yield
    plugins.registry.reset()


def plugin_errors():
    return [(m.id, m.msg) for m in checks.run_checks() if m.id and m.id.startswith("scheduler_app.E03")]


def test_the_installed_example_plugin_is_discovered_by_its_entry_point():
    registry = plugins.registry.load()
    assert "example" in registry.plugins
    assert set(registry.trigger_types) == {"business_days"}
    assert set(registry.executors) == {"serial"}
    assert registry.alert_channels["jsonfile"].secret_fields == ("token",)
    assert ("serial", "serial (example plugin)") in plugins.executor_choices()
    assert plugin_errors() == []


@pytest.mark.parametrize(
    ("reference", "check_id", "text"),
    [
        ("tests.nope_module:plugin", "scheduler_app.E030", "cannot be loaded: ModuleNotFoundError"),
        ("tests.plugin_fixtures:missing", "scheduler_app.E030", "has no 'missing'"),
        ("tests.plugin_fixtures:old", "scheduler_app.E031", "declares plugin API version 0"),
        ("tests.plugin_fixtures:duplicate", "scheduler_app.E034", "executor 'serial' is already registered"),
        ("tests.plugin_fixtures:raises", "scheduler_app.E034", "RuntimeError: boom in register"),
    ],
    ids=["import-error", "no-attribute", "api-version", "duplicate-name", "raises"],
)
def test_a_broken_plugin_is_a_system_check_error_naming_it(reference, check_id, text):
    with override_settings(SCHEDULER_APP={"PLUGINS": [reference]}):
        plugins.registry.reset()
        errors = plugin_errors()
        assert len(errors) == 1, errors
        assert errors[0][0] == check_id and text in errors[0][1]
        assert "halfway" not in plugins.registry.executors  # nothing half-registered
        assert "example" in plugins.registry.plugins  # the others still load


def test_plugin_trigger_validation_describe_preview(make_job):
    job = make_job("bd", trigger=BDAYS)
    assert job.describe_trigger() == "Every 2 business days at 09:30 (Europe/Berlin), counted from 2026-11-02"
    times = job.upcoming_fire_times(dt.datetime(2026, 11, 2, tzinfo=dt.UTC), 4)
    # Mon 2, Wed 4, Fri 6, Tue 10 (every 2nd business day), at 09:30 Berlin = 08:30 UTC
    assert [t.astimezone(dt.UTC).strftime("%a %d %H:%M") for t in times] == [
        "Mon 02 08:30",
        "Wed 04 08:30",
        "Fri 06 08:30",
        "Tue 10 08:30",
    ]
    with pytest.raises(ValidationError) as info:
        make_job("bad", trigger={**BDAYS, "every": 0})
    assert info.value.message_dict["trigger"] == [
        "trigger.every: must be a whole number of business days from 1 to 250"
    ]
    with pytest.raises(ValidationError, match="'nope' is not a trigger type; use one of .*business_days"):
        make_job("bad2", trigger={"type": "nope"})


def test_a_plugin_trigger_that_never_fires_is_refused(make_job):
    with override_settings(SCHEDULER_APP={"PLUGINS": ["tests.plugin_fixtures:never"]}):
        plugins.registry.reset()
        with pytest.raises(
            ValidationError, match="trigger type 'never' \\(plugin never\\): this trigger never fires"
        ):
            make_job("n", trigger={"type": "never"})


def test_jobs_file_and_api_round_trip(make_job, tenant):
    from django.contrib.auth import get_user_model

    from scheduler_app.documents import job as job_document
    from scheduler_app.models import Membership
    from tests.integration.api_support import client_for, key_for

    job = make_job("bd", trigger=BDAYS)
    exported = job_document.export_job(Job.objects.get(pk=job.pk), secrets="fingerprints")
    assert exported["trigger"] == BDAYS
    assert triggerspec.parse_trigger(exported["trigger"]).to_dict() == BDAYS
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    api = client_for(key_for(user))
    body = api.get(f"/api/jobs/{job.pk}/").json()
    assert body["trigger"] == BDAYS
    response = api.post(
        "/api/jobs/",
        {"tenant": "acme", "name": "bd2", "task": "demo.noop", "trigger": {**BDAYS, "at": "25:00"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].endswith("'25:00' is not a time of day HH:MM")


def test_limits_on_an_executor_that_cannot_enforce_them_are_refused(make_job):
    for executor in ("thread", "asyncio", "serial"):
        with pytest.raises(ValidationError) as info:
            make_job(f"j-{executor}", executor=executor, memory_limit_mb=64)
        assert info.value.message_dict["memory_limit_mb"] == [
            f"The {executor} executor cannot enforce CPU or memory limits; "
            "use the process or isolated executor, or clear the limits."
        ]
    assert make_job("iso", executor="isolated", cpu_limit_seconds=2, memory_limit_mb=64).pk
    with pytest.raises(ValidationError) as info:
        make_job("x", executor="nope")
    assert "executor" in info.value.message_dict
    assert services  # the one write path was used (make_job -> services.save_job)
