"""Input limits in jobs files, backups and exports (hardening #2, #3, #8): a deep, huge,
aliased or NUL-holding file is refused with one line naming the entry and the field,
before full parsing where the parser allows, and nothing is changed; one bad stored job
never fails ``exportjobs`` for its tenant."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from scheduler_app.models import Job, Tenant

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def deep_text(depth):
    return '{"a":' * depth + "1" + "}" * depth


def jobs_file(tmp_path, jobs, name="jobs.json", text=None):
    path = tmp_path / name
    doc = {"version": 1, "tenants": [{"slug": "acme", "name": "Acme"}], "jobs": jobs}
    if text is None:
        text = yaml.safe_dump(doc) if name.endswith(".yaml") else json.dumps(doc)
    path.write_text(text, encoding="utf-8")
    return path


def job(**fields):
    return {"tenant": "acme", "name": "j", "task": "demo.echo", "trigger": {"type": "manual"}, **fields}


def import_refused(path):
    with pytest.raises(CommandError) as info:
        call_command("importjobs", str(path), stdout=io.StringIO())
    assert not Job.objects.exists() and not Tenant.objects.filter(slug="acme").exists()
    message = str(info.value)
    assert "\n" not in message and message.endswith("nothing was changed")
    return message


def run_command(*args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )


def test_json_file_nested_100000_deep_refused_before_parsing(tmp_path):
    text = '{"version": 1, "jobs": [{"tenant": "acme", "name": "j", "kwargs": ' + deep_text(100_000) + "}]}"
    path = jobs_file(tmp_path, [], text=text)
    assert "nested more than 38 levels deep (line 1)" in import_refused(path)


def test_entry_field_too_deep_names_entry_and_field(tmp_path):
    value = json.loads(deep_text(33))
    message = import_refused(jobs_file(tmp_path, [job(kwargs=value)]))
    assert "jobs[0]: kwargs: nested more than 32 levels deep" in message


def test_yaml_alias_and_deep_yaml_refused(tmp_path):
    alias = tmp_path / "alias.yaml"
    alias.write_text(
        "version: 1\nx: &a [1]\njobs:\n- {tenant: acme, name: j, task: demo.echo, kwargs: {k: *a}}\n"
    )
    assert "aliases (*name) are not allowed" in import_refused(alias)
    deep = tmp_path / "deep.yaml"
    deep.write_text("version: 1\njobs:\n- {tenant: acme, name: j, kwargs: " + "[" * 5000 + "]" * 5000 + "}\n")
    assert "levels deep" in import_refused(deep)


def test_huge_entry_and_huge_kwargs_refused(tmp_path):
    message = import_refused(jobs_file(tmp_path, [job(description="d" * 1_100_000)]))
    assert "jobs[0]: the entry is" in message and "at most 1 MB" in message
    message = import_refused(jobs_file(tmp_path, [job(kwargs={"blob": "x" * 300_000})]))
    assert "kwargs: args and kwargs are" in message and "256 KB" in message


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"name": "a\x00b"}, "name"),
        ({"kwargs": {"k": "\x00"}}, "kwargs"),
        ({"description": "\x00"}, "description"),
    ],
)
def test_nul_in_a_jobs_file_refused(tmp_path, fields, field):
    assert f"jobs[0]: {field}: must not contain NUL" in import_refused(jobs_file(tmp_path, [job(**fields)]))


def test_nul_in_tenant_refused(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"version": 1, "tenants": [{"slug": "a\x00", "name": "A"}]}))
    assert "tenants[0]: slug: must not contain NUL" in import_refused(path)


@pytest.mark.parametrize(
    "trigger,key",
    [
        ({"type": "interval", "seconds": 10**20}, "trigger.seconds"),
        ({"type": "date", "run_at": "9999-12-31T23:59:59-12:00"}, "trigger.run_at"),
        (
            {"type": "any", "triggers": [{"type": "cron", "expression": "* * * * *"}] * 5000},
            "trigger.triggers",
        ),
    ],
)
def test_bad_trigger_in_a_jobs_file_refused(tmp_path, trigger, key):
    assert f"jobs[0] (acme/j): {key}:" in import_refused(jobs_file(tmp_path, [job(trigger=trigger)]))


def test_commands_print_one_line_and_no_traceback(tmp_path):
    text = '{"version": 1, "jobs": [{"tenant": "acme", "name": "j", "kwargs": ' + deep_text(100_000) + "}]}"
    path = jobs_file(tmp_path, [], text=text)
    done = run_command("importjobs", str(path))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "nested more than" in done.stderr
    alias = tmp_path / "alias.yaml"
    alias.write_text("version: 1\nx: &a [1]\njobs: *a\n")
    done = run_command("importjobs", str(alias))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "aliases" in done.stderr
    done = run_command("restore", str(path))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "nested more than" in done.stderr


def test_restore_refuses_deep_and_nul_entries(tmp_path):
    def backup(jobs):
        path = tmp_path / "b.json"
        doc = {
            "format": "scheduler_app-backup",
            "version": 1,
            "tenants": [{"slug": "acme", "name": "A"}],
            "jobs": jobs,
        }
        path.write_text(json.dumps(doc))
        return path

    for jobs, expected in [
        ([job(kwargs=json.loads(deep_text(40)))], "jobs[0]: kwargs: nested more than 32"),
        ([job(name="x\x00")], "jobs[0]: name: must not contain NUL"),
        ([job(trigger={"type": "interval", "seconds": 10**20})], "trigger.seconds"),
    ]:
        with pytest.raises(CommandError) as info:
            call_command("restore", str(backup(jobs)), stdout=io.StringIO(), stderr=io.StringIO())
        assert expected in str(info.value)
        assert not Job.objects.exists()


def test_export_leaves_out_one_bad_stored_job_and_warns(tenant, make_job, tmp_path):
    make_job("good", task="demo.echo", kwargs={"a": 1})
    bad = make_job("deep", task="demo.echo")
    Job.objects.filter(pk=bad.pk).update(kwargs=json.loads(deep_text(900)))  # old data
    for fmt in ("json", "yaml"):
        out, err = io.StringIO(), io.StringIO()
        call_command("exportjobs", "--tenant", "acme", "--format", fmt, stdout=out, stderr=err)
        doc = yaml.safe_load(out.getvalue())
        assert [j["name"] for j in doc["jobs"]] == ["good"]
        assert "job acme/deep: kwargs: nested more than 32 levels deep; left out" in err.getvalue()
