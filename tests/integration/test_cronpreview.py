"""The cronpreview command and the admin's live preview endpoint."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

# The SQLite pass leaves this module out: the cron engine and its preview have no database-specific
# behaviour.
DB_INDEPENDENT = True

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run(
        [sys.executable, "manage.py", "cronpreview", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )


def test_prints_description_then_iso_times(capsys):
    call_command(
        "cronpreview",
        "0 2 L * *",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-01-15T00:00:00+00:00",
        "--count",
        "3",
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "At 02:00 on the last day of the month",
        "2026-01-31T02:00:00+01:00",
        "2026-02-28T02:00:00+01:00",
        "2026-03-31T02:00:00+02:00",
    ]


def test_quartz_dialect_and_naive_after_in_the_zone(capsys):
    call_command(
        "cronpreview",
        "0 0 12 ? * FRI#3",
        "--dialect",
        "quartz",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-03-01T00:00:00",
        "--count",
        "2",
    )
    assert capsys.readouterr().out.splitlines()[1:] == [
        "2026-03-20T12:00:00-04:00",
        "2026-04-17T12:00:00-04:00",
    ]


def test_hash_key_makes_h_stable(capsys):
    call_command(
        "cronpreview",
        "H H * * *",
        "--hash-key",
        "acme/a",
        "--after",
        "2026-01-01T00:00:00+00:00",
        "--count",
        "1",
    )
    first = capsys.readouterr().out
    call_command(
        "cronpreview",
        "H H * * *",
        "--hash-key",
        "acme/a",
        "--after",
        "2026-01-01T00:00:00+00:00",
        "--count",
        "1",
    )
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0 0 32 * *"], "error: field 3 (day of month): '32' is outside 1-31"),
        (["0 0 30 2 *"], "never fires"),
        (["0 0 * * *", "--timezone", "Mars/Base"], "Mars/Base"),
        (["0 0 * * *", "--after", "yesterday"], "error: --after: 'yesterday' is not an ISO 8601 date-time"),
    ],
)
def test_bad_input_exits_2_with_the_error(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.django_db
def test_admin_live_preview(admin_client):
    url = reverse("admin:scheduler_app_cron_preview")
    ok = admin_client.get(url, {"expression": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}).json()
    assert ok["ok"] and ok["description"] and len(ok["times"]) == 5
    assert (
        ok["times"][0].endswith((" +01:00 (Europe/Berlin)", " +02:00 (Europe/Berlin)"))
        and " 09:00:00 " in ok["times"][0]
    )
    bad = admin_client.get(url, {"expression": "0 9 * * MON-XYZ"}).json()
    assert bad == {"ok": False, "error": bad["error"]} and "field 5" in bad["error"]


@pytest.mark.django_db
def test_live_preview_needs_staff(client):
    response = client.get(reverse("admin:scheduler_app_cron_preview"), {"expression": "* * * * *"})
    assert response.status_code == 302  # to the login page


def test_dialect_has_help(capsys):
    with pytest.raises(SystemExit):
        call_command("cronpreview", "--help")
    out = " ".join(capsys.readouterr().out.split())
    assert "crontab (default): 5 fields" in out
    assert "quartz: 6 or 7 fields" in out and "must be '?'" in out
