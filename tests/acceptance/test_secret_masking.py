"""Secrets never show in clear: a real runscheduler runs careless tasks (they print, log,
return and raise their secret kwargs) on every executor; then no column of the runs'
rows, no line of the scheduler's output, no run page, no export and no backup holds a
secret in any encoding (raw, JSON-escaped either way, repr/ascii, logfmt, HTML)."""

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from scheduler_app import services
from scheduler_app.engine.results import MASK
from scheduler_app.models import Job, JobRun, JobRunLog, Tenant
from tests.acceptance.conftest import wait_until
from tests.secret_forms import find_leaks, text_forms

pytestmark = pytest.mark.slow

SECRETS = {
    "s1": "Pässwörd-Echo-Ω-3456",
    "s2": 'a"b\\c',
    "s3": "line1\nline2",
    "s4": 9876543210,
    "s5": {"api": ["list-α-secret", "x'y\"z"], "pin": 4815162342},
}
EXECUTORS = {
    "thread": "tests.leak_secrets",
    "asyncio": "tests.leak_secrets_async",
    "process": "tests.leak_secrets",
}


def raw_rows() -> dict[str, str]:
    """Every column of every run and of its captured log, as the database returns its text."""
    found = {}
    for model in (JobRun, JobRunLog):
        table = model._meta.db_table
        with connection.cursor() as cursor:
            columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
            select = ", ".join(f"CAST({connection.ops.quote_name(c)} AS TEXT)" for c in columns)
            cursor.execute(f"SELECT {select} FROM {connection.ops.quote_name(table)}")
            rows = cursor.fetchall()
        found.update(
            {
                f"{table} row {i} {col}": value or ""
                for i, row in enumerate(rows)
                for col, value in zip(columns, row, strict=True)
            }
        )
    return found


@pytest.fixture
def careless_jobs(transactional_db):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    jobs = {}
    for executor, leaky in EXECUTORS.items():
        for kind, task in (
            ("leak", leaky),
            ("raise", "tests.raise_secrets"),
            ("big", "tests.big_secret_result"),
        ):
            jobs[executor, kind] = services.save_job(
                Job(
                    tenant=acme,
                    name=f"{kind}-{executor}",
                    task=task,
                    executor=executor,
                    trigger={"type": "manual"},
                    secret_kwargs=SECRETS,
                )
            )
    return jobs


def test_secrets_are_masked_everywhere_on_every_executor(careless_jobs, scheduler, client, tmp_path):
    proc = scheduler(PROCESS_POOL_SIZE=2)
    services.run_jobs_now(list(careless_jobs.values()))
    wait_until(
        lambda: JobRun.objects.filter(finished_at__isnull=False).count() == len(careless_jobs),
        90,
        message="the careless runs did not all finish",
    )
    assert proc.stop() == 0

    runs = {key: JobRun.objects.get(job=job) for key, job in careless_jobs.items()}
    for executor in EXECUTORS:
        leak, failed, big = runs[executor, "leak"], runs[executor, "raise"], runs[executor, "big"]
        # The runs did what they do; only the secrets are gone.
        assert leak.state == "succeeded", (executor, leak.error, leak.traceback)
        assert leak.result["plain"] == {"s1": MASK, "s2": MASK, "s3": MASK, "s4": MASK, "s5": MASK}
        assert leak.result["embedded"][0] == f"before {MASK} after {MASK} end"
        assert set(leak.result["keys"]) <= {MASK} | {f"{MASK} ({n})" for n in range(2, 6)}
        assert len(leak.result["keys"]) == 5  # masked keys do not overwrite each other
        assert failed.state == "failed" and failed.error_type == "RuntimeError"
        assert failed.error.count(MASK) >= 2 * len(SECRETS), failed.error
        assert "login failed with {'s1': " + repr(MASK) in failed.error
        assert MASK in failed.traceback
        assert big.state == "succeeded" and big.result["truncated"] is True
        # The preview ends inside the masked secret: no recognisable piece of it is left.
        preview = big.result["preview"]
        for form in ("json", "json-unicode", "raw"):
            encoded = text_forms(SECRETS["s1"])[form]
            pieces = {encoded[i : i + 5] for i in range(len(encoded) - 4)}
            assert not [p for p in pieces if p in preview], (executor, form, preview[-80:])

    # What the tasks printed and logged reached the output, masked.
    output = proc.output
    for line in ("print s1=" + MASK, "log s2=" + MASK, "fd {'s1': " + repr(MASK), "stderr {'s1': "):
        assert output.count(line) >= len(EXECUTORS), (line, output[-3000:])
    assert "caught inside the task" in output and "ValueError: inner {'s1': " in output
    # ... and the runs' captured logs, masked.
    for executor in EXECUTORS:
        log = JobRunLog.objects.get(run=runs[executor, "leak"]).text
        assert "log s2=" + MASK in log and "ValueError: inner {'s1': " + repr(MASK) in log, (executor, log)
    assert "STDOUT stdout: print s1=" + MASK in JobRunLog.objects.get(run=runs["process", "leak"]).text

    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    pages = {}
    for key, run in runs.items():
        response = client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk]))
        assert response.status_code == 200
        pages[f"run page {key}"] = response.content.decode()
    for job in careless_jobs.values():
        response = client.get(reverse("admin:scheduler_app_job_change", args=[job.pk]))
        pages[f"job page {job.name}"] = response.content.decode()
    response = client.get(reverse("admin:scheduler_app_jobrun_changelist"))
    pages["run list"] = response.content.decode()
    assert MASK in pages[f"run page {('thread', 'raise')}"]

    exports = {}
    for args in ([], ["--include-secrets"], ["--format", "yaml"]):
        out = io.StringIO()
        call_command("exportjobs", *args, stdout=out)
        exports[f"exportjobs {' '.join(args)}"] = out.getvalue()
    backup_file = tmp_path / "backup.json"
    call_command("backup", "-o", str(backup_file), "--with-runs", stdout=io.StringIO(), stderr=io.StringIO())
    backup_text = Path(backup_file).read_text()
    assert len(json.loads(backup_text)) and "truncated" in backup_text

    leaks = find_leaks(
        {**raw_rows(), "scheduler output": output, **pages, **exports, "backup --with-runs": backup_text},
        list(SECRETS.values()),
    )
    assert leaks == [], "\n".join(leaks)
