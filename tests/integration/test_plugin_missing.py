"""A stored job whose trigger (or a child of an all/any trigger) is of a plugin's type
whose plugin is no longer installed: every face opens it, shows the stored document and
names the missing type; a save that would keep it is refused with that name, nothing is
lost; replacing the trigger with another type works."""

import io
import json

import pytest
from django.core.management import call_command
from django.test import override_settings

from scheduler_app import plugins
from scheduler_app.models import Job
from tests.integration.api_support import client_for, key_for
from tests.integration.test_admin import form_values, url

DB_INDEPENDENT = True  # admin pages, commands and the API above the ORM
pytestmark = pytest.mark.django_db

LAX = "tests.plugin_fixtures:lax"
PLUGIN_TRIGGER = {"type": "every_minutes", "minutes": 5}
COMBINED = {"type": "any", "triggers": [{"type": "cron", "expression": "0 9 * * *"}, PLUGIN_TRIGGER]}


@pytest.fixture(autouse=True)
def fresh_registry():
    plugins.registry.reset()
    yield
    plugins.registry.reset()


def stored_job(make_job, trigger, name="settle"):
    """A job saved while the plugin is installed; then the plugin is gone."""
    with override_settings(SCHEDULER_APP={"PLUGINS": [LAX]}):
        plugins.registry.reset()
        job = make_job(name, trigger=trigger)
        stored = dict(job.trigger)
    plugins.registry.reset()  # the settings are back: no plugin now
    assert "every_minutes" not in plugins.registry.load().trigger_types
    return job, stored


@pytest.mark.parametrize("trigger", [PLUGIN_TRIGGER, COMBINED], ids=["top-level", "child"])
def test_the_form_opens_shows_the_document_and_refuses_naming_the_type(admin_client, make_job, trigger):
    job, stored = stored_job(make_job, trigger)
    page = admin_client.get(url("job", "change", job.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert "every_minutes" in html and "not installed" in html
    form = page.context["adminform"].form
    assert form.missing_types == ["every_minutes"]
    shown = html.split("<pre>", 1)[1].split("</pre>", 1)[0].replace("&quot;", '"')
    assert json.loads(shown) == stored  # the whole stored document, read-only
    if trigger["type"] == "every_minutes":  # its type stays selected, its settings shown
        assert form_values(page)["trigger_type"] == ["every_minutes"]
        assert json.loads(form_values(page)["plugin_config"][0]) == {"minutes": 5}
    else:  # the child is shown as its document
        assert json.loads(form_values(page)["child-1-document"][0]) == PLUGIN_TRIGGER
    values = form_values(page)
    values["description"] = ["changed while the plugin is away"]
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    where = "trigger_type" if trigger["type"] == "every_minutes" else "combination"
    assert list(errors) == [where], errors
    message = errors[where][0]
    assert "every_minutes" in message and "not installed" in message, message
    job.refresh_from_db()
    assert job.trigger == stored and job.description == ""  # nothing saved, nothing lost


def test_replacing_the_missing_trigger_saves(admin_client, make_job):
    job, _stored = stored_job(make_job, PLUGIN_TRIGGER)
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    values.update(
        trigger_type=["cron"],
        cron_expression=["0 3 * * *"],
        cron_dialect=["crontab"],
        trigger_timezone=["UTC"],
    )
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger == {"type": "cron", "expression": "0 3 * * *", "dialect": "crontab", "timezone": "UTC"}


def test_with_the_plugin_back_the_unchanged_form_saves_it_again(admin_client, make_job):
    job, stored = stored_job(make_job, COMBINED)
    with override_settings(SCHEDULER_APP={"PLUGINS": [LAX]}):
        plugins.registry.reset()
        values = form_values(admin_client.get(url("job", "change", job.pk)))
        response = admin_client.post(url("job", "change", job.pk), values)
        assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger == stored


@pytest.mark.parametrize("trigger", [PLUGIN_TRIGGER, COMBINED], ids=["top-level", "child"])
def test_commands_api_and_export_do_not_crash(make_job, admin_user, trigger):
    job, stored = stored_job(make_job, trigger)
    out = io.StringIO()
    call_command("jobctl", "list", stdout=out)
    assert "settle" in out.getvalue()
    out = io.StringIO()
    call_command("jobctl", "status", "acme/settle", stdout=out)
    assert "every_minutes" in out.getvalue()
    out = io.StringIO()
    call_command("exportjobs", stdout=out, stderr=io.StringIO())
    assert json.dumps(stored["type"]) in out.getvalue() or "every_minutes" in out.getvalue()
    api = client_for(key_for(admin_user))
    one = api.get(f"/api/jobs/{job.pk}/")
    assert one.status_code == 200, one.content
    assert one.json()["trigger"] == stored
    listed = api.get("/api/jobs/")
    assert listed.status_code == 200
    # a change that keeps the trigger is refused naming the type (the API's field error)
    refused = api.patch(f"/api/jobs/{job.pk}/", {"description": "x"}, format="json")
    assert refused.status_code == 400, refused.content
    assert "every_minutes" in refused.content.decode()
    assert Job.objects.get(pk=job.pk).trigger == stored


def test_the_missing_plugin_message_is_translated(admin_client, make_job):
    job, _stored = stored_job(make_job, PLUGIN_TRIGGER)
    page = admin_client.get(url("job", "change", job.pk), HTTP_ACCEPT_LANGUAGE="zh-hans")
    html = page.content.decode()
    assert "every_minutes（插件未安装）" in html
    assert "触发器类型 &#x27;every_minutes&#x27; 不可用：提供它的插件未安装" in html
