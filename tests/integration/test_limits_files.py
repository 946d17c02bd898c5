"""Input limits in jobs files, backups and exports (hardening #2, #3, #8): a deep, huge,
aliased or NUL-holding file is refused with one line naming the entry and the field,
before full parsing where the parser allows, and nothing is changed; one bad stored job
never fails ``exportjobs`` for its tenant."""

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

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


def database_url():
    """The test database, for a command run in a process of its own (so that a command
    that wrongly goes ahead writes where the test looks, not into DATABASE_URL's database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{s.get('USER') or 'postgres'}@{host}:{port}/{s['NAME']}"


def run_command(*args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()},
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


def sized_jobs_file(tmp_path, size, name="jobs.json"):
    """A valid jobs file of exactly ``size`` bytes (padded with trailing whitespace)."""
    text = json.dumps({"version": 1, "tenants": [{"slug": "acme", "name": "Acme"}], "jobs": [job()]})
    assert len(text) < size
    path = tmp_path / name
    path.write_text(text + " " * (size - len(text) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == size
    return path


@pytest.mark.parametrize("name", ["jobs.json", "jobs.yaml"])
def test_jobs_file_over_the_size_limit_refused_before_reading(tmp_path, name):
    with override_settings(SCHEDULER_APP={"MAX_JOBS_FILE_BYTES": 2048}):
        path = sized_jobs_file(tmp_path, 2049, name)
        message = import_refused(path)
        assert message == (
            f"{path}: {path} is 2,049 bytes; a jobs file may be at most 2 KB (MAX_JOBS_FILE_BYTES); "
            "nothing was changed"
        )
        # Refused on its size alone: the content does not matter, not even whether it parses.
        path.write_bytes(b"\xff" * 2049)
        assert "is 2,049 bytes" in import_refused(path)


@pytest.mark.parametrize("size", [2047, 2048])
def test_jobs_file_at_or_under_the_size_limit_imported(tmp_path, size):
    with override_settings(SCHEDULER_APP={"MAX_JOBS_FILE_BYTES": 2048}):
        call_command("importjobs", str(sized_jobs_file(tmp_path, size)), stdout=io.StringIO())
    assert list(Job.objects.values_list("tenant__slug", "name")) == [("acme", "j")]


def feed_fifo(tmp_path, data):
    """A named pipe (no size to stat) that a thread writes ``data`` into."""
    path = tmp_path / "jobs.fifo"
    os.mkfifo(path)

    def write():
        try:
            with open(path, "wb") as fh:
                fh.write(data)
        except BrokenPipeError:  # the reader stopped at the limit
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return path, writer


@pytest.mark.parametrize("extra", [1, 100_000])
def test_streamed_jobs_file_over_the_size_limit_refused(tmp_path, extra):
    data = sized_jobs_file(tmp_path, 2048).read_bytes() + b" " * extra
    path, writer = feed_fifo(tmp_path, data)
    with override_settings(SCHEDULER_APP={"MAX_JOBS_FILE_BYTES": 2048}):
        message = import_refused(path)
    writer.join(10)
    assert message == (
        f"{path}: {path} holds more than 2 KB; a jobs file may be at most 2 KB (MAX_JOBS_FILE_BYTES); "
        "nothing was changed"
    )


def test_streamed_jobs_file_at_the_size_limit_imported(tmp_path):
    path, writer = feed_fifo(tmp_path, sized_jobs_file(tmp_path, 2048).read_bytes())
    with override_settings(SCHEDULER_APP={"MAX_JOBS_FILE_BYTES": 2048}):
        call_command("importjobs", str(path), stdout=io.StringIO())
    writer.join(10)
    assert Job.objects.filter(tenant__slug="acme", name="j").exists()


def test_importjobs_refuses_a_file_over_the_default_size_limit_in_one_line(tmp_path):
    path = sized_jobs_file(tmp_path, 16 * 1024 * 1024 + 1)
    done = run_command("importjobs", str(path))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"CommandError: {path}: {path} is 16,777,217 bytes; a jobs file may be at most 16 MB "
        "(MAX_JOBS_FILE_BYTES); nothing was changed"
    )
    assert not Job.objects.exists()


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


# -- the size of a backup (restore) --------------------------------------------------------


def sized_backup(tmp_path, size, name="backup.json"):
    """A valid backup of one tenant and one job, exactly ``size`` bytes (padded with
    trailing whitespace)."""
    doc = {"format": "scheduler_app-backup", "version": 1, "tenants": [{"slug": "acme", "name": "Acme"}]}
    text = json.dumps({**doc, "jobs": [job()]})
    assert len(text) < size
    path = tmp_path / name
    path.write_text(text + " " * (size - len(text) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == size
    return path


def restore_refused(path, *options):
    """restore refuses ``path`` in one line; the configuration before it is untouched."""
    before = sorted(Job.objects.values_list("tenant__slug", "name"))
    with pytest.raises(CommandError) as info:
        call_command("restore", str(path), *options, stdout=io.StringIO(), stderr=io.StringIO())
    assert sorted(Job.objects.values_list("tenant__slug", "name")) == before
    message = str(info.value)
    assert "\n" not in message and message.endswith("nothing was changed")
    return message


def test_backup_over_the_size_limit_refused_before_reading(tmp_path):
    with override_settings(SCHEDULER_APP={"MAX_BACKUP_BYTES": 2048}):
        path = sized_backup(tmp_path, 2049)
        assert restore_refused(path) == (
            f"{path}: the file is 2,049 bytes; a backup may be at most 2 KB (MAX_BACKUP_BYTES); "
            "nothing was changed"
        )
        assert not Tenant.objects.exists()
        # Refused on its size alone, before reading: not even whether it is UTF-8 matters.
        path.write_bytes(b"\xff" * 2049)
        assert "the file is 2,049 bytes" in restore_refused(path)


def test_backup_over_the_size_limit_leaves_the_configuration_under_replace(tmp_path, make_job):
    make_job("kept")
    with override_settings(SCHEDULER_APP={"MAX_BACKUP_BYTES": 2048}):
        message = restore_refused(sized_backup(tmp_path, 4096), "--replace")
    assert "the file is 4,096 bytes" in message
    assert list(Job.objects.values_list("tenant__slug", "name")) == [("acme", "kept")]


@pytest.mark.parametrize("size", [2047, 2048])
def test_backup_at_or_under_the_size_limit_restored(tmp_path, size):
    with override_settings(SCHEDULER_APP={"MAX_BACKUP_BYTES": 2048}):
        call_command("restore", str(sized_backup(tmp_path, size)), stdout=io.StringIO(), stderr=io.StringIO())
    assert list(Job.objects.values_list("tenant__slug", "name")) == [("acme", "j")]


def test_backup_limit_is_its_own_setting(tmp_path):
    """A backup (with runs) may be far larger than a jobs file: the jobs-file cap does
    not apply to restore, nor the backup cap to importjobs."""
    with override_settings(SCHEDULER_APP={"MAX_JOBS_FILE_BYTES": 1024, "MAX_BACKUP_BYTES": 4096}):
        call_command("restore", str(sized_backup(tmp_path, 4096)), stdout=io.StringIO(), stderr=io.StringIO())
    assert Job.objects.filter(tenant__slug="acme", name="j").exists()


@pytest.mark.parametrize("extra", [1, 100_000])
def test_streamed_backup_over_the_size_limit_refused(tmp_path, extra):
    data = sized_backup(tmp_path, 2048).read_bytes() + b" " * extra
    path, writer = feed_fifo(tmp_path, data)
    with override_settings(SCHEDULER_APP={"MAX_BACKUP_BYTES": 2048}):
        message = restore_refused(path)
    writer.join(10)
    assert not writer.is_alive()
    assert message == (
        f"{path}: the file holds more than 2 KB; a backup may be at most 2 KB (MAX_BACKUP_BYTES); "
        "nothing was changed"
    )
    assert not Tenant.objects.exists()


def test_streamed_backup_at_the_size_limit_restored(tmp_path):
    path, writer = feed_fifo(tmp_path, sized_backup(tmp_path, 2048).read_bytes())
    with override_settings(SCHEDULER_APP={"MAX_BACKUP_BYTES": 2048}):
        call_command("restore", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    writer.join(10)
    assert Job.objects.filter(tenant__slug="acme", name="j").exists()


def test_restore_refuses_a_file_over_the_default_size_limit_in_one_line(tmp_path):
    path = tmp_path / "huge.json"
    with path.open("wb") as fh:  # sparse: 1 GB + 1 byte on paper, nothing on disk
        fh.truncate(1024 * 1024 * 1024 + 1)
    done = run_command("restore", str(path))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"CommandError: {path}: the file is 1,073,741,825 bytes; a backup may be at most 1 GB "
        "(MAX_BACKUP_BYTES); nothing was changed"
    )
    assert not Job.objects.exists() and not Tenant.objects.exists()
