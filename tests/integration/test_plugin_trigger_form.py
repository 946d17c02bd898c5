"""Plugin trigger types in the admin job form (a choice of the trigger select, settings
as a JSON object checked by the plugin's schema and validate(), errors on that field)
and in the OpenAPI schema (one more choice of Trigger's oneOf)."""

import json

import pytest

from scheduler_app import plugins
from scheduler_app.documents import job as job_document
from scheduler_app.models import Job
from tests.integration.test_admin import child_forms, form_values, url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_registry(settings):
    plugins.registry.reset()
    settings.SCHEDULER_APP = {
        **settings.SCHEDULER_APP,
        "PLUGINS": ["tests.plugin_fixtures:lax", "tests.plugin_fixtures:never"],
    }
    yield
    plugins.registry.reset()


def add_data(admin_client, tenant, kind, config):
    page = admin_client.get(url("job", "add"))
    data = form_values(page)
    data.update(
        tenant=[str(tenant.pk)],
        name=["settle"],
        task=["demo.noop"],
        trigger_type=[kind],
        plugin_config=[config],
    )
    return page, data


def test_a_plugin_trigger_is_chosen_edited_and_saved_like_the_codec(admin_client, tenant):
    page, data = add_data(
        admin_client,
        tenant,
        "business_days",
        json.dumps({"every": 2, "at": "9:30", "timezone": "Europe/Berlin"}),
    )
    html = page.content.decode()
    assert '<option value="business_days">business_days (plugin example)</option>' in html
    assert "every (integer, required)" in html  # the schema, in the field's help
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get(name="settle")
    expected = {
        "type": "business_days",
        "every": 2,
        "at": "09:30",
        "timezone": "Europe/Berlin",
        "start": "2026-01-05",
    }
    assert job.trigger == expected
    assert job_document.export_job(job)["trigger"] == expected
    # the change page shows it again, and saving it unchanged keeps it
    change = admin_client.get(url("job", "change", job.pk))
    values = form_values(change)
    assert values["trigger_type"] == ["business_days"]
    assert json.loads(values["plugin_config"][0]) == {k: v for k, v in expected.items() if k != "type"}
    values["plugin_config"] = [json.dumps({**json.loads(values["plugin_config"][0]), "every": 5})]
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger["every"] == 5


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        pytest.param(
            "business_days",
            '{"every": 0, "at": "09:30"}',
            "every: must be a whole number of business days from 1 to 250",
            id="plugin-validate",
        ),
        pytest.param(
            "business_days", '{"every": 2, "at": "09:30", "colour": "red"}', "colour: unknown key", id="key"
        ),
        pytest.param(
            "business_days", "[1, 2]", "Enter a JSON object of the trigger's settings", id="not-object"
        ),
        pytest.param("every_minutes", '{"minutes": 0}', "minutes: must be at least 1", id="schema-minimum"),
        pytest.param("every_minutes", "{}", "minutes: required", id="schema-required"),
        pytest.param(
            "every_minutes", '{"minutes": "ten"}', "minutes: must be of type integer", id="schema-type"
        ),
        pytest.param(
            "never", "{}", "trigger type 'never' (plugin never): this trigger never fires", id="never-fires"
        ),
    ],
)
def test_bad_settings_are_field_errors(admin_client, tenant, kind, config, message):
    _page, data = add_data(admin_client, tenant, kind, config)
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["plugin_config"], errors
    assert errors["plugin_config"][0].startswith(message), errors
    assert not Job.objects.exists()


# -- a plugin's trigger as a child of an all/any trigger ------------------------------

CRON_CHILD = {"trigger_type": "cron", "cron_expression": "0 9 * * *", "trigger_timezone": "UTC"}


def test_a_plugin_trigger_inside_a_combination_has_the_plugin_form(admin_client, tenant):
    page, data = add_data(admin_client, tenant, "any", "")
    html = page.content.decode()
    # the child's type select offers the plugin types; its settings field lists their keys
    child_select = html.split('name="child-0-trigger_type"', 1)[1].split("</select>", 1)[0]
    assert '<option value="every_minutes">every_minutes (plugin lax)</option>' in child_select
    child_help = html.split('name="child-0-plugin_config"', 1)[1].split('<div class="help">', 1)[1]
    assert child_help.split("</div>", 1)[0].count("minutes (integer, required)") == 1
    data.update(
        child_forms(CRON_CHILD, {"trigger_type": "every_minutes", "plugin_config": '{"minutes": 15}'})
    )
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get(name="settle")
    expected = {
        "type": "any",
        "triggers": [
            {"type": "cron", "expression": "0 9 * * *", "dialect": "crontab", "timezone": "UTC"},
            {"type": "every_minutes", "minutes": 15},
        ],
    }
    assert job.trigger == expected
    assert job_document.export_job(job)["trigger"] == expected
    # shown again with the plugin's form (not as "Advanced (JSON)"), saved unchanged as it was
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    assert values["child-1-trigger_type"] == ["every_minutes"]
    assert json.loads(values["child-1-plugin_config"][0]) == {"minutes": 15}
    assert values["child-1-document"] == [""]
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger == expected
    assert job.versions.count() == 1  # nothing changed, no new version
    values["child-1-plugin_config"] = ['{"minutes": 30}']
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger["triggers"][1] == {"type": "every_minutes", "minutes": 30}


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        pytest.param(
            "business_days",
            '{"every": 0, "at": "09:30"}',
            "every: must be a whole number of business days from 1 to 250",
            id="plugin-validate",
        ),
        pytest.param(
            "business_days", '{"every": 2, "at": "09:30", "colour": "red"}', "colour: unknown key", id="key"
        ),
        pytest.param(
            "business_days", "[1, 2]", "Enter a JSON object of the trigger's settings", id="not-object"
        ),
        pytest.param("every_minutes", '{"minutes": 0}', "minutes: must be at least 1", id="schema-minimum"),
        pytest.param("every_minutes", "{}", "minutes: required", id="schema-required"),
        pytest.param(
            "never", "{}", "trigger type 'never' (plugin never): this trigger never fires", id="never"
        ),
    ],
)
def test_a_plugin_childs_bad_settings_are_errors_naming_child_and_key(
    admin_client, tenant, kind, config, message
):
    _page, data = add_data(admin_client, tenant, "all", "")
    data.update(child_forms(CRON_CHILD, {"trigger_type": kind, "plugin_config": config}))
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.errors) == ["combination"], form.errors
    expected = f"child 2 — plugin trigger settings (JSON): {message}"
    assert form.errors["combination"][0].startswith(expected), form.errors
    # and on the child's own field
    child = form.child_triggers.forms[1]
    assert list(child.errors) == ["plugin_config"], child.errors
    assert child.errors["plugin_config"][0].startswith(message)
    assert not Job.objects.exists()


def test_the_schema_is_enforced_in_jobs_files_and_the_api_too(make_job):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        make_job("j", trigger={"type": "every_minutes", "minutes": 5000})
    assert "trigger.minutes: must be at most 1440" in str(info.value)


def test_openapi_describes_the_plugin_trigger_types(client):
    schema = client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    bdays = components["PluginTrigger_business_days"]
    assert bdays["properties"]["type"] == {"type": "string", "enum": ["business_days"]}
    assert bdays["properties"]["every"] == {"type": "integer", "minimum": 1, "maximum": 250}
    assert bdays["required"] == ["type", "every", "at"] and bdays["additionalProperties"] is False
    trigger = components["Trigger"]
    refs = [choice["$ref"] for choice in trigger["oneOf"]]
    assert "#/components/schemas/PluginTrigger_business_days" in refs
    assert "#/components/schemas/PluginTrigger_every_minutes" in refs
    assert (
        trigger["discriminator"]["mapping"]["every_minutes"]
        == "#/components/schemas/PluginTrigger_every_minutes"
    )
    assert "#/components/schemas/CronTrigger" in refs  # the built-in ones stay
