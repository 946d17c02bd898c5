# ruff: noqa: F811  (the fixtures are imported from test_admin)
"""The job form shows what the chosen trigger needs and saves only that: the fields of
other trigger types are ignored on save (so a browser without JavaScript, which shows
them all, saves correctly), the zone is a select of IANA names, routing tags are
comma-separated, group and calendar choices follow the tenant, and all/any triggers
are edited as a list of child triggers (formset prefix ``child``) with the same
widgets, errors named per child."""

import json
import re

import pytest
from django.test import override_settings

from scheduler_app.documents import job as job_document
from scheduler_app.models import Calendar, Job
from tests.integration.test_admin import (  # noqa: F401
    add_form,
    child_forms,
    escape,
    form_values,
    post_add,
    scenario,
    url,
)

# The SQLite pass leaves this module out: the job form's fields and documents have no database-
# specific behaviour.
DB_INDEPENDENT = True
pytestmark = pytest.mark.django_db


def saved(name="payments"):
    return Job.objects.get(name=name)


def test_switching_type_after_cron_fields_saves_only_the_chosen_type(admin_client, add_form):
    # cron fields were filled in (add_form has an expression and a zone), then interval chosen
    add_form.update(trigger_type=["interval"], interval_seconds=["30"], run_at=["2030-01-01T09:00:00"])
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert saved().trigger == {"type": "interval", "seconds": 30, "timezone": "Europe/Berlin"}


def test_without_javascript_hidden_fields_are_ignored_even_when_invalid(admin_client, add_form):
    # Every field is shown without JavaScript: junk in the fields of other types is ignored.
    add_form.update(interval_seconds=["every minute"], interval_jitter=["-3"], run_at=["soon"])
    add_form.update({"child-0-trigger_type": ["json"], "child-0-document": ["[not json"]})
    add_form.update({"child-1-cron_expression": ["nonsense"], "child-1-interval_seconds": ["soon"]})
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert saved().trigger == {
        "type": "cron",
        "expression": "0 2 L * *",
        "dialect": "crontab",
        "timezone": "Europe/Berlin",
    }


def test_errors_are_named_on_the_visible_fields(admin_client, add_form):
    add_form.update(
        trigger_type=["interval"], interval_seconds=["every minute"], cron_expression=["nonsense"]
    )
    response = post_add(admin_client, add_form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"interval_seconds"}  # not the (hidden) cron expression
    assert errors["interval_seconds"] == ["Enter a whole number."]
    assert not Job.objects.filter(name="payments").exists()


def test_unknown_zone_cannot_be_saved(admin_client, add_form):
    add_form["trigger_timezone"] = ["Asia/Shanghia"]  # typed, no match
    response = post_add(admin_client, add_form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "trigger_timezone": ["Unknown time zone Asia/Shanghia: choose an IANA name from the list."]
    }
    assert not Job.objects.filter(name="payments").exists()


@override_settings(TIME_ZONE="Asia/Shanghai")
def test_zone_is_a_select_of_iana_names_defaulting_to_time_zone(admin_client, scenario):
    import zoneinfo

    html = admin_client.get(url("job", "add")).content.decode()
    select = re.search(r'<select name="trigger_timezone".*?</select>', html, re.S).group(0)
    names = re.findall(r'<option value="([^"]*)"', select)
    assert set(names) - {""} == zoneinfo.available_timezones()
    assert names[1:] == sorted(names[1:])
    assert re.findall(r'<option value="([^"]+)" selected>', select) == ["Asia/Shanghai"]
    assert "data-zone-select" in select


def test_routing_tags_are_comma_separated(admin_client, add_form):
    add_form.update(routing=["tags"], routing_tags=[" gpu, eu-west,, gpu "])
    assert post_add(admin_client, add_form).status_code == 302
    job = saved()
    assert job.routing_tags == ["gpu", "eu-west"]
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    assert values["routing_tags"] == ["gpu, eu-west"]


def test_group_and_calendar_choices_follow_the_tenant(admin_client, scenario):
    invoices = scenario["jobs"]["invoices"]
    html = admin_client.get(url("job", "change", invoices.pk)).content.decode()
    group = re.search(r'<select name="group".*?</select>', html, re.S).group(0)
    assert re.findall(r"<option [^>]*>([^<]+)</option>", group)[1:] == ["billing", "etl"]  # not globex's ops
    calendars = re.search(r'<select name="calendars".*?</select>', html, re.S).group(0)
    assert "holidays" in calendars
    # the add page lists every tenant's groups, each marked with its tenant for job_form.js
    html = admin_client.get(url("job", "add")).content.decode()
    group = re.search(r'<select name="group".*?</select>', html, re.S).group(0)
    marked = {name: tenant for tenant, name in re.findall(r'data-tenant="(\d+)"[^>]*>([^<]+)<', group)}
    assert marked == {
        "billing": str(scenario["tenant"].pk),
        "etl": str(scenario["tenant"].pk),
        "ops": str(scenario["other"].pk),
    }


def test_job_page_loads_the_form_script_and_styles(admin_client, scenario):
    html = admin_client.get(url("job", "add")).content.decode()
    assert "scheduler_app/job_form.js" in html
    assert "scheduler_app/scheduler.css" in html


def test_calendars_carry_their_tenant_for_the_filter_boxes(admin_client, scenario):
    closures = Calendar.objects.create(tenant=scenario["other"], name="closures")
    html = admin_client.get(url("job", "add")).content.decode()
    select = re.search(r'<select name="calendars".*?>', html, re.S).group(0)
    owners = json.loads(
        re.search(r"data-calendar-tenants=\"([^\"]*)\"", select).group(1).replace("&quot;", '"')
    )
    assert owners == {
        str(scenario["holidays"].pk): str(scenario["tenant"].pk),
        str(closures.pk): str(scenario["other"].pk),
    }


# -- combined triggers: child triggers -----------------------------------------------------

TWO_CRONS = (
    {"trigger_type": "cron", "cron_expression": "0 9 * * MON-FRI", "trigger_timezone": "Asia/Shanghai"},
    {"trigger_type": "cron", "cron_expression": "0 12 L * *", "cron_dialect": "crontab"},
)


def combined_errors(admin_client, data):
    response = post_add(admin_client, data)
    assert response.status_code == 200
    assert not Job.objects.filter(name="payments").exists()
    errors = response.context["adminform"].form.errors
    html = response.content.decode()
    for message in errors.get("combination", []):
        assert str(escape(message)) in html
    return errors, response


def test_any_of_two_crons_through_the_admin_then_edit(admin_client, scenario, add_form):
    add_form.update(trigger_type=["any"], **child_forms(*TWO_CRONS))
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get(name="payments")
    expected = {
        "type": "any",
        "triggers": [
            {
                "type": "cron",
                "expression": "0 9 * * MON-FRI",
                "dialect": "crontab",
                "timezone": "Asia/Shanghai",
            },
            {"type": "cron", "expression": "0 12 L * *", "dialect": "crontab", "timezone": "UTC"},
        ],
    }
    assert job.trigger == expected
    # the same document the jobs-file codec makes of it
    twin = Job(tenant=scenario["tenant"], name="twin")
    job_document.apply_job_document(
        twin, {"task": "demo.sleep", "kwargs": {"seconds": 2}, "trigger": expected}, where="jobs[0]"
    )
    assert twin.trigger == job.trigger
    assert job_document.export_job(job)["trigger"] == expected

    # the change page shows the children in the widgets, plus two empty ones
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    assert values["trigger_type"] == ["any"]
    assert (values["child-TOTAL_FORMS"], values["child-INITIAL_FORMS"]) == (["4"], ["2"])
    assert values["child-0-cron_expression"] == ["0 9 * * MON-FRI"]
    assert values["child-0-trigger_timezone"] == ["Asia/Shanghai"]
    assert values["child-1-cron_expression"] == ["0 12 L * *"]
    assert values["child-2-cron_expression"] == values["child-3-cron_expression"] == [""]

    # edit: change the second, delete the first, add an interval in an empty form
    values.update(
        {
            "child-1-cron_expression": ["30 6 * * *"],
            "child-0-DELETE": ["on"],
            "child-2-trigger_type": ["interval"],
            "child-2-interval_seconds": ["3600"],
            "child-2-trigger_timezone": [""],
        }
    )
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger == {
        "type": "any",
        "triggers": [
            {"type": "cron", "expression": "30 6 * * *", "dialect": "crontab", "timezone": "UTC"},
            {"type": "interval", "seconds": 3600},
        ],
    }
    version = job.versions.order_by("-number").first()
    assert version is not None and version.snapshot["trigger"] == job.trigger


def test_a_child_with_a_bad_cron_is_refused_naming_the_child_and_field(admin_client, add_form):
    add_form.update(
        trigger_type=["all"],
        **child_forms(
            TWO_CRONS[0],
            {"trigger_type": "cron", "cron_expression": "0 25 * * *"},
            {"trigger_type": "interval", "interval_seconds": "hourly"},
            {"trigger_type": "date", "run_at": "next tuesday"},
        ),
    )
    errors, response = combined_errors(admin_client, add_form)
    assert errors == {
        "combination": [
            "child 2 — cron expression: field 2 (hour): '25' is outside 0-23",
            "child 3 — every (seconds): Enter a whole number.",
            "child 4 — run at: 'next tuesday' is not an ISO 8601 date-time (e.g. 2026-12-01T09:00:00+01:00)",
        ]
    }
    # ... and each next to its field inside the child
    children = response.context["adminform"].form.child_triggers
    assert children.forms[1].errors == {"cron_expression": ["field 2 (hour): '25' is outside 0-23"]}
    assert children.forms[2].errors == {"interval_seconds": ["Enter a whole number."]}
    assert children.forms[0].errors == {}


def test_child_fields_of_other_types_are_ignored(admin_client, add_form):
    # without JavaScript every child shows every field: junk in the unused ones is ignored
    add_form.update(
        trigger_type=["any"],
        **child_forms(
            {**TWO_CRONS[0], "interval_seconds": "junk", "run_at": "soon", "document": "[not json"},
            {"trigger_type": "interval", "interval_seconds": "60", "cron_expression": "nonsense"},
        ),
    )
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Job.objects.get(name="payments").trigger["triggers"][1] == {
        "type": "interval",
        "seconds": 60,
        "timezone": "UTC",  # the page's default zone (TIME_ZONE)
    }


def test_empty_children_are_ignored_and_at_least_two_are_needed(admin_client, add_form):
    # the two empty forms of the add page, and one filled in
    add_form.update(trigger_type=["any"], **{"child-0-cron_expression": ["0 9 * * *"]})
    errors, _response = combined_errors(admin_client, add_form)
    assert errors == {"combination": ["trigger.triggers: a combination needs a list of at least 2 triggers"]}


def test_nested_combination_as_an_advanced_child(admin_client, add_form, settings):
    nested = {
        "type": "all",
        "triggers": [{"type": "interval", "seconds": 60}, {"type": "interval", "seconds": 90}],
    }
    add_form.update(
        trigger_type=["any"],
        **child_forms(TWO_CRONS[0], {"trigger_type": "json", "document": json.dumps(nested)}),
    )
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get(name="payments")
    assert job.trigger["triggers"][1] == nested
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    assert values["child-1-trigger_type"] == ["json"]
    assert json.loads(values["child-1-document"][0]) == nested


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"type": "manual"}, "child 2 — trigger (JSON): type: a manual trigger cannot be combined"),
        (
            {"type": "all", "triggers": [{"type": "cron", "expression": "61 * * * *"}, {"type": "manual"}]},
            "child 2 — trigger (JSON): triggers[0].expression: field 1 (minute): '61' is outside 0-59",
        ),
        (
            {
                "type": "all",
                "triggers": [{"type": "any", "triggers": []}, {"type": "interval", "seconds": 9}],
            },
            "child 2 — trigger (JSON): triggers[0]: combinations may nest at most 2 deep",
        ),
        ("", "child 2 — trigger (JSON): a trigger document is required"),
    ],
    ids=["manual", "nested-bad-cron", "too-deep", "empty"],
)
def test_advanced_child_errors(admin_client, add_form, settings, document, message):
    settings.SCHEDULER_APP = {**getattr(settings, "SCHEDULER_APP", {}), "TRIGGER_MAX_DEPTH": 2}
    text = json.dumps(document) if document else ""
    add_form.update(
        trigger_type=["any"], **child_forms(TWO_CRONS[0], {"trigger_type": "json", "document": text})
    )
    errors, _response = combined_errors(admin_client, add_form)
    assert errors == {"combination": [message]}


def test_child_cron_gets_the_live_preview(admin_client, scenario):
    html = admin_client.get(url("job", "add")).content.decode()
    child = re.search(r'<input type="text" name="child-0-cron_expression"[^>]*>', html).group(0)
    assert "data-cron-preview" in child
    assert 'data-cron-preview-url="/admin/scheduler_app/job/cron-preview/"' in child
    # the empty form that "Add another child trigger" clones
    assert 'name="child-__prefix__-cron_expression"' in html
    assert "Add another child trigger" in html


def test_job_page_shows_created_and_updated_with_seconds_and_offset(admin_client, scenario):
    from scheduler_app import display
    from scheduler_app.admin import job_timezone

    job = Job.objects.get(name="invoices")
    html = admin_client.get(url("job", "change", job.pk)).content.decode()
    zone = job_timezone(job)
    for moment in (job.created_at, job.updated_at):
        shown = display.when(moment, zone)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d( \(.+\))?", shown)
        assert escape(shown) in html


@pytest.mark.parametrize("combined", [False, True], ids=["job", "child"])
def test_a_stored_zone_the_system_does_not_list_stays_selected_and_saved(admin_client, make_job, combined):
    """posix/Europe/Berlin is a zone zoneinfo loads but available_timezones() does not list:
    the select keeps it (it was shown unselected, and a save put the default zone in)."""
    cron = {
        "type": "cron",
        "expression": "0 9 * * *",
        "dialect": "crontab",
        "timezone": "posix/Europe/Berlin",
    }
    other = {"type": "interval", "seconds": 3600}
    trigger = {"type": "any", "triggers": [cron, other]} if combined else cron
    job = make_job("zoned", trigger=trigger)
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    field = "child-0-trigger_timezone" if combined else "trigger_timezone"
    assert values[field] == ["posix/Europe/Berlin"]
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger == trigger
