# ruff: noqa: F811  (the fixtures are imported from test_admin)
"""The job form shows what the chosen trigger needs and saves only that: the fields of
other trigger types are ignored on save (so a browser without JavaScript, which shows
them all, saves correctly), the zone is a select of IANA names, routing tags are
comma-separated, and group choices follow the tenant."""

import re

import pytest
from django.test import override_settings

from scheduler_app.models import Job
from tests.integration.test_admin import add_form, form_values, post_add, scenario, url  # noqa: F401

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
