"""Input limits (hardening #2-#5): JSON depth and size, NUL characters, trigger time
ranges and combination caps, refused with a field error by the one validation that every
face shares (``scheduler_app.documents.limits`` through ``Job.clean``)."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from scheduler_app import services
from scheduler_app.documents import limits
from scheduler_app.models import Job

pytestmark = pytest.mark.django_db


def nested(depth, leaf=1):
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth):
    return '{"a":' * depth + "1" + "}" * depth


def errors_of(tenant, **fields):
    fields.setdefault("task", "demo.echo")
    fields.setdefault("trigger", {"type": "manual"})
    name = fields.pop("name", "j")
    job = Job(tenant=tenant, name=name, **fields)
    before = Job.objects.filter(tenant=tenant).count()
    with pytest.raises(ValidationError) as info:
        services.save_job(job)
    assert Job.objects.filter(tenant=tenant).count() == before
    return info.value.message_dict


# -- #2 depth and size -------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 5_000, 100_000])
def test_deep_kwargs_refused_with_field_error(tenant, depth):
    errors = errors_of(tenant, kwargs=nested(depth))
    assert errors == {"kwargs": ["nested more than 32 levels deep"]}


def test_depth_limit_accepts_its_bound_and_follows_the_setting(tenant):
    services.save_job(Job(tenant=tenant, name="ok", task="demo.echo", kwargs=nested(32)))
    with override_settings(SCHEDULER_APP={"MAX_JSON_DEPTH": 4}):
        assert "kwargs" in errors_of(tenant, name="deep", kwargs=nested(5))


def test_deep_args_and_secret_kwargs_refused(tenant):
    assert "args" in errors_of(tenant, args=[nested(40)])
    job = Job(tenant=tenant, name="s", task="demo.echo", trigger={"type": "manual"})
    job.secret_kwargs = {"token": nested(40)}
    with pytest.raises(ValidationError) as info:
        services.save_job(job)
    assert "secret_kwargs" in info.value.message_dict


def test_ten_megabyte_kwargs_refused(tenant):
    errors = errors_of(tenant, kwargs={"blob": "x" * 10_000_000})
    assert list(errors) == ["kwargs"]
    assert "at most 256 KB" in errors["kwargs"][0]


def test_size_limit_counts_args_and_kwargs_together(tenant):
    half = "x" * 140_000
    errors = errors_of(tenant, args=[half], kwargs={"b": half}, task="demo.echo")
    assert "256 KB" in " ".join(sum(errors.values(), []))


def test_json_prescan_refuses_before_parsing():
    with pytest.raises(limits.LimitError, match="nested more than 38 levels deep"):
        limits.loads_json(nested_text(100_000))
    # Brackets inside strings do not count.
    assert limits.loads_json('{"a": "' + "[" * 1000 + '"}') == {"a": "[" * 1000}


def test_yaml_loader_refuses_aliases_and_deep_nesting():
    import yaml

    with pytest.raises(yaml.YAMLError, match="aliases"):
        limits.load_yaml("a: &x [1, 2]\nb: *x\n")
    with pytest.raises(yaml.YAMLError, match="levels deep"):
        limits.load_yaml("[" * 5000 + "]" * 5000)
    assert limits.load_yaml("a: [1, {b: 2}]") == {"a": [1, {"b": 2}]}


# -- #3 NUL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"name": "bad\x00name"}, "name"),
        ({"description": "a\x00b"}, "description"),
        ({"kwargs": {"k": "v\x00"}}, "kwargs"),
        ({"kwargs": {"k\x00": "v"}}, "kwargs"),
        ({"args": ["\x00"]}, "args"),
        ({"routing": "tags", "routing_tags": ["a\x00"]}, "routing_tags"),
        ({"trigger": {"type": "cron", "expression": "0 0 * * *", "timezone": "UTC\x00"}}, "trigger"),
    ],
)
def test_nul_refused_with_field_error(tenant, fields, field):
    errors = errors_of(tenant, **fields)
    assert field in errors
    assert "NUL" in " ".join(errors[field])


# -- #4 time ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger,key",
    [
        ({"type": "interval", "seconds": 10**20}, "trigger.seconds"),
        ({"type": "interval", "seconds": 0}, "trigger.seconds"),
        ({"type": "interval", "seconds": 100 * 366 * 86400 + 1}, "trigger.seconds"),
        ({"type": "interval", "seconds": 60, "jitter": 60}, "trigger.jitter"),
        ({"type": "interval", "seconds": 60, "start": "9999-01-01T00:00:00+00:00"}, "trigger.start"),
        ({"type": "date", "run_at": "9999-12-31T23:59:59-12:00"}, "trigger.run_at"),
        ({"type": "date", "run_at": "0001-01-01T00:00:00+14:00"}, "trigger.run_at"),
        ({"type": "date", "run_at": "1969-12-31T23:59:59+00:00"}, "trigger.run_at"),
        ({"type": "date", "run_at": "9000-01-01T00:00:01+00:00"}, "trigger.run_at"),
    ],
)
def test_out_of_range_times_refused(tenant, trigger, key):
    errors = errors_of(tenant, trigger=trigger)
    assert errors["trigger"][0].startswith(key + ":"), errors


def test_range_bounds_accepted(tenant, make_job):
    make_job("a", trigger={"type": "date", "run_at": "1970-01-01T00:00:00+00:00"})
    make_job("b", trigger={"type": "date", "run_at": "9000-01-01T00:00:00+00:00"})
    make_job("c", trigger={"type": "interval", "seconds": 100 * 366 * 86400, "jitter": 59})
    make_job("d", trigger={"type": "interval", "seconds": 1})


# -- #5 combinations ---------------------------------------------------------------------


def cron(minute=0):
    return {"type": "cron", "expression": f"{minute} * * * *"}


def test_combination_children_capped(tenant, make_job):
    make_job("twenty", trigger={"type": "any", "triggers": [cron(i) for i in range(20)]})
    errors = errors_of(tenant, trigger={"type": "any", "triggers": [cron(i % 60) for i in range(5000)]})
    assert errors["trigger"][0].startswith("trigger.triggers: a combination may have at most 20")
    with override_settings(SCHEDULER_APP={"TRIGGER_MAX_CHILDREN": 2}):
        assert "trigger" in errors_of(
            tenant, trigger={"type": "any", "triggers": [cron(1), cron(2), cron(3)]}
        )


def test_combination_depth_capped(tenant, make_job):
    def combo(levels):
        spec = cron()
        for _ in range(levels):
            spec = {"type": "any", "triggers": [spec, cron(5)]}
        return spec

    make_job("three", trigger=combo(3))
    errors = errors_of(tenant, trigger=combo(4))
    assert "combinations may nest at most 3 deep" in errors["trigger"][0]


# -- settings checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value,check_id",
    [
        ("MAX_JSON_DEPTH", 0, "scheduler_app.E020"),
        ("MAX_ARGS_BYTES", "big", "scheduler_app.E020"),
        ("TRIGGER_MAX_CHILDREN", True, "scheduler_app.E020"),
        ("TRIGGER_MAX_DEPTH", 1.5, "scheduler_app.E020"),
        ("MAX_JOBS_FILE_BYTES", -1, "scheduler_app.E020"),
        ("MAX_JOBS_FILE_BYTES", "16 MB", "scheduler_app.E020"),
        ("MAX_BACKUP_BYTES", 0, "scheduler_app.E020"),
        ("MAX_BACKUP_BYTES", "1 GB", "scheduler_app.E020"),
        ("MAX_JSON_DEPTH", 5000, "scheduler_app.E021"),
    ],
)
def test_bad_limit_settings_are_system_check_errors(settings, key, value, check_id):
    from scheduler_app.checks import check_settings

    with override_settings(SCHEDULER_APP={**settings.SCHEDULER_APP, key: value}):
        ids = [e.id for e in check_settings()]
    assert ids == [check_id], ids


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "[1, 2]",
        '{"type": "cron", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"}',
        '"[[[[{{{{ brackets inside a string"',
        "[" + ", ".join(f'{{"n": {i}}}' for i in range(100)) + "]",  # many brackets, shallow
        "[" * 39 + "]" * 39,  # just over MAX_JSON_DEPTH + DOCUMENT_SLACK (38): flat decoder
        "[" * 200_000 + "]" * 200_000,  # deeper than the stack allows
    ],
    ids=["empty", "list", "trigger", "brackets-in-string", "shallow-many", "just-too-deep", "very-deep"],
)
def test_stored_json_decodes_the_same_whether_or_not_it_is_scanned(text):
    """A stored value with no more brackets than the depth limit skips the depth scan;
    every value decodes to what the JSON says, however deep."""
    got = limits.loads_stored_json(text)
    if text.count("[") < 1000:
        assert got == json.loads(text) == limits.loads_json_flat(text)
        return
    depth = 0  # compared without recursion: == on 200,000 nested lists overflows the stack
    while got:
        (got,) = got
        depth += 1
    assert depth == text.count("[") - 1
