"""Each bad input of hardening #2-#5 through each face that takes it (#8): admin job
form and run-now page, API job create/update and run, jobctl; with DEBUG off, never a
500 (the test client re-raises any exception), always a field error, nothing stored. An
invalid stored trigger (old data) gets an "invalid trigger" note, and the scheduler
warns once, naming the job."""

import io
import json
import logging

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from scheduler_app.backends import bridge
from scheduler_app.models import Job, JobRun, Membership
from tests.integration.api_support import JOB, client_for, key_for
from tests.integration.test_admin import child_forms, form_values, url

pytestmark = pytest.mark.django_db


def deep_text(depth, leaf="1"):
    return '{"a":' * depth + leaf + "}" * depth


def deep_list_text(depth):
    return "[" * depth + "]" * depth


@pytest.fixture(autouse=True)
def debug_off(settings):
    settings.DEBUG = False


# -- admin -------------------------------------------------------------------------------


@pytest.fixture
def add_form(admin_client, tenant):
    data = form_values(admin_client.get(url("job", "add")))
    data.update(
        tenant=[str(tenant.pk)],
        name=["payments"],
        task=["demo.echo"],
        kwargs=["{}"],
        trigger_type=["cron"],
        cron_expression=["0 2 * * *"],
        trigger_timezone=["UTC"],
    )
    return data


CRON = {"type": "cron", "expression": "0 * * * *"}
CRON_CHILD = {"trigger_type": "cron", "cron_expression": "0 * * * *"}
ADMIN_BAD = [
    ({"kwargs": [deep_text(100_000)]}, "kwargs", "nested more than 32 levels deep"),
    ({"kwargs": [deep_text(5_000)]}, "kwargs", "nested more than 32 levels deep"),
    ({"kwargs": [deep_text(33)]}, "kwargs", "nested more than 32 levels deep"),
    ({"args": [deep_list_text(100_000)]}, "args", "nested more than 32 levels deep"),
    ({"kwargs": [json.dumps({"blob": "x" * 300_000})]}, "kwargs", "at most 256 KB"),
    ({"kwargs": ['{"k": "\\u0000"}']}, "kwargs", "NUL"),
    ({"description": ["a\x00b"]}, "description", "Null characters are not allowed."),
    ({"name": ["a\x00b"]}, "name", "Null characters are not allowed."),
    ({"secret_kwargs": [deep_text(100_000)]}, "secret_kwargs", "nested more than 32 levels deep"),
    (
        {"trigger_type": ["interval"], "interval_seconds": [str(10**20)]},
        "interval_seconds",
        "at most 3162240000 seconds",
    ),
    (
        {"trigger_type": ["interval"], "interval_seconds": ["60"], "interval_jitter": ["60"]},
        "interval_jitter",
        "less than the interval",
    ),
    (
        {
            "trigger_type": ["interval"],
            "interval_seconds": ["60"],
            "interval_start": ["9999-01-01T00:00:00+00:00"],
        },
        "interval_start",
        "between 1970",
    ),
    ({"trigger_type": ["date"], "run_at": ["9999-12-31T23:59:59-12:00"]}, "run_at", "between 1970"),
    ({"trigger_type": ["date"], "run_at": ["0001-01-01T00:00:00+14:00"]}, "run_at", "between 1970"),
    # combined triggers: the child formset (5000 children are refused before 5000 forms are built)
    # (a form of 5000 children would be 10,000 fields, over DATA_UPLOAD_MAX_NUMBER_FIELDS)
    (
        {"trigger_type": ["any"], **child_forms(*[CRON_CHILD] * 300), "child-TOTAL_FORMS": ["5000"]},
        "combination",
        "at most 20",
    ),
    ({"trigger_type": ["any"], **child_forms(*[CRON_CHILD] * 21)}, "combination", "at most 20"),
    (
        {
            "trigger_type": ["any"],
            **child_forms({"trigger_type": "json", "document": deep_list_text(100_000)}),
        },
        "combination",
        "levels deep",
    ),
]


@pytest.mark.parametrize("fields,field,message", ADMIN_BAD)
def test_admin_job_form_refuses_bad_input_on_its_field(admin_client, add_form, fields, field, message):
    add_form.update(fields)
    response = admin_client.post(url("job", "add"), add_form)
    assert response.status_code == 200
    assert not Job.objects.exists()
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert message in " ".join(errors[field]), errors


@pytest.mark.parametrize(
    "data,message",
    [
        ({"kwargs_override": deep_text(100_000)}, "nested more than 32 levels deep"),
        ({"kwargs_override": '{"k": "\\u0000"}'}, "NUL"),
        ({"kwargs_override": json.dumps({"b": "x" * 300_000})}, "at most 256 KB"),
        ({"kwargs_override": "{}", "run_at": "8999-12-31 23:00:00"}, None),  # in range
        ({"kwargs_override": "{}", "run_at": "9500-01-01 00:00:00"}, "between 1970 and 9000"),
    ],
)
def test_admin_run_now_refuses_bad_overrides(admin_client, make_job, data, message):
    job = make_job("r", task="demo.echo")
    response = admin_client.post(url("job", "run", job.pk), data)
    if message is None:
        assert response.status_code == 302 and JobRun.objects.count() == 1
        return
    assert response.status_code == 200
    assert not JobRun.objects.exists()
    assert message in " ".join(sum(response.context["form"].errors.values(), []))


def test_stored_invalid_trigger_and_deep_kwargs_still_get_a_page(admin_client, make_job):
    job = make_job("old", task="demo.echo")
    Job.objects.filter(pk=job.pk).update(
        trigger={"type": "interval", "seconds": 10**20}, kwargs=json.loads(deep_text(900))
    )
    response = admin_client.get(url("job", "change", job.pk))
    assert response.status_code == 200
    assert "invalid trigger" in response.content.decode()
    assert "invalid trigger" in admin_client.get(url("job")).content.decode()
    Job.objects.filter(pk=job.pk).update(trigger={"type": "date", "run_at": "9999-12-31T23:59:59-12:00"})
    assert "invalid trigger" in admin_client.get(url("job", "change", job.pk)).content.decode()


# -- API ---------------------------------------------------------------------------------


@pytest.fixture
def api(tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return client_for(key_for(user))


def field_errors(response):
    assert response.status_code == 400, (response.status_code, response.content[:300])
    return [(e["field"], e["message"]) for e in response.json()["errors"]]


API_BAD = [
    ({"kwargs": json.loads(deep_text(33))}, "kwargs", "nested more than 32"),
    ({"kwargs": {"k": "\x00"}}, "kwargs", "NUL"),
    ({"name": "a\x00b"}, "name", "NUL"),
    ({"trigger": {"type": "interval", "seconds": 10**20}}, "trigger", "at most"),
    ({"trigger": {"type": "date", "run_at": "0001-01-01T00:00:00+14:00"}}, "trigger", "between 1970"),
    ({"trigger": {"type": "any", "triggers": [CRON] * 5000}}, "trigger", "at most 20"),
]


@pytest.mark.parametrize("fields,field,message", API_BAD)
def test_api_job_create_refuses_bad_input(api, fields, field, message):
    errors = field_errors(api.post("/api/jobs/", {**JOB, **fields}, format="json"))
    assert any((f or "").startswith(field) and message in m for f, m in errors), errors
    assert not Job.objects.exists()


def test_api_refuses_deep_bodies_before_parsing(api, make_job):
    body = '{"tenant": "acme", "name": "x", "task": "demo.echo", "kwargs": ' + deep_text(100_000) + "}"
    errors = field_errors(api.post("/api/jobs/", body, content_type="application/json"))
    assert "nested more than" in errors[0][1]
    job = make_job("r", task="demo.echo")
    body = '{"kwargs": ' + deep_text(100_000) + "}"
    assert (
        "nested more than"
        in field_errors(api.post(f"/api/jobs/{job.pk}/run/", body, content_type="application/json"))[0][1]
    )
    errors = field_errors(api.post(f"/api/jobs/{job.pk}/run/", {"kwargs": {"a": "\x00"}}, format="json"))
    assert "NUL" in errors[0][1]
    assert not JobRun.objects.exists()


def test_api_job_update_refuses_bad_input(api, make_job):
    job = make_job("u", task="demo.echo")
    response = api.patch(f"/api/jobs/{job.pk}/", {"kwargs": json.loads(deep_text(34))}, format="json")
    assert "nested more than 32" in " ".join(m for _, m in field_errors(response))
    assert Job.objects.get(pk=job.pk).kwargs == {}


# -- jobctl ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (deep_text(100_000), "--kwargs: nested more than 32 levels deep"),
        ('{"k": "\\u0000"}', "NUL"),
        (json.dumps({"b": "x" * 300_000}), "at most 256 KB"),
    ],
)
def test_jobctl_run_refuses_bad_overrides(make_job, kwargs, message):
    make_job("r", task="demo.echo")
    with pytest.raises(CommandError) as info:
        call_command(
            "jobctl", "run", "acme/r", "--kwargs", kwargs, stdout=io.StringIO(), stderr=io.StringIO()
        )
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not JobRun.objects.exists()


def test_jobctl_run_at_out_of_range(make_job):
    make_job("r", task="demo.echo")
    with pytest.raises(CommandError, match="between 1970 and 9000"):
        call_command("jobctl", "run", "acme/r", "--at", "9500-01-01T00:00:00+00:00", stdout=io.StringIO())


# -- scheduler ---------------------------------------------------------------------------


def test_scheduler_warns_once_about_an_invalid_stored_trigger(make_job, caplog):
    good = make_job("good")
    bad = make_job("bad")
    Job.objects.filter(pk=bad.pk).update(trigger={"type": "interval", "seconds": 10**20})
    scheduler = BackgroundScheduler(
        jobstores={bridge.STORE_ALIAS: bridge.make_job_store("memory")},
        executors={bridge.EXECUTOR_ALIAS: bridge.EnqueueExecutor(lambda fire: None)},
    )
    scheduler.start(paused=True)
    try:
        sync = bridge.JobSync(scheduler)
        with caplog.at_level(logging.WARNING, logger="scheduler_app.backends.bridge"):
            sync.reconcile()
            sync.reconcile()
        warnings = [r for r in caplog.records if "invalid trigger" in r.getMessage()]
        assert len(warnings) == 1 and "acme/bad" in warnings[0].getMessage()
        assert not warnings[0].exc_info
        assert scheduler.get_job(bridge.aps_job_id(good.pk), jobstore=bridge.STORE_ALIAS) is not None
        assert scheduler.get_job(bridge.aps_job_id(bad.pk), jobstore=bridge.STORE_ALIAS) is None
    finally:
        scheduler.shutdown(wait=False)
