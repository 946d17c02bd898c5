"""Issue 8 point 3: every time a person reads carries seconds and an unambiguous UTC
offset (plus the IANA zone name where it is not UTC), never Django's
``Dec. 3, 2026, 11:10 p.m.`` nor an abbreviation such as "CST" (China or US Central?).

Rendered with the admin's zone set to Asia/Shanghai: every admin page of the scheduler
(lists, forms, run page, versions, audit, dashboard), the commands' output, the run
scheduler's log lines and the API representation."""

import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import available_timezones

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import ApiKey, Job, JobRun
from tests.integration.test_admin import scenario  # noqa: F401  (fixture)
from tests.integration.test_i18n_admin import admin_pages, edited_scenario, texts_of  # noqa: F401

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = "Asia/Shanghai"
# A date with a time of day, and what must follow it: seconds, then an offset (display's
# " +08:00 (Asia/Shanghai)" or ISO 8601's "+08:00"/"Z").
MOMENT = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?P<rest>[^\s<\"]*(?: [^\s<\"]+)?)")
GOOD_REST = re.compile(r"^:\d\d(\.\d+)?( ?[+-]\d\d:\d\d|Z)")
# Django's own date-time formats (DATETIME_FORMAT in English and Chinese) and bare zone
# abbreviations.
DJANGO_FORMAT = re.compile(
    r"\b(Jan|Feb|March|April|May|June|July|Aug|Sept|Oct|Nov|Dec)\w*\.? \d{1,2}, \d{4}, \d|"
    r"\d{4}年\d{1,2}月\d{1,2}日 ?\d|\b\d{1,2}(:\d\d)? [ap]\.m\."
)
ABBREVIATION = re.compile(r"\b(CST|CDT|EST|EDT|PST|PDT|CET|CEST|UTC[+-]\d{4})\b")
# Examples of what to type (input formats), not times shown.
EXAMPLES = ("2026-12-01T09:00:00 (in the time zone)",)


ZONE_NAMES = available_timezones()  # "CET", "EST" are IANA names too (the zone select lists them)


def bad_times(text: str) -> list[str]:
    if any(example in text for example in EXAMPLES) or text.strip() in ZONE_NAMES:
        return []
    bad = [m.group(0) for m in MOMENT.finditer(text) if not GOOD_REST.match(m.group("rest"))]
    bad += [m.group(0) for m in DJANGO_FORMAT.finditer(text)]
    bad += [m.group(0) for m in ABBREVIATION.finditer(text)]
    return bad


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("2026-12-02 09:00:00 +08:00 (Asia/Shanghai)", False),
        ("2026-12-02T09:00:00+08:00", False),
        ("2026-12-02T01:00:00.123456+00:00", False),
        ("2026-12-02 09:00", True),
        ("2026-12-02 09:00:00", True),
        ("acme/x @ 2026-12-02 09:00:00 #1 (failed)", True),
        ("Dec. 3, 2026, 11:10 p.m.", True),
        ("2026年12月3日 23:10", True),
        ("09:00 CST", True),
        ("2026-12-03 15:10:48 UTC+0000", True),
    ],
)
def test_the_check_itself(text, bad):
    assert bool(bad_times(text)) is bad


@pytest.fixture
def shanghai(settings):
    settings.TIME_ZONE = SHANGHAI
    with timezone.override(SHANGHAI):
        yield


@pytest.fixture
def full_scenario(edited_scenario):  # noqa: F811
    """The scenario with times everywhere: a key used, a run with a job in Shanghai."""
    from scheduler_app.models import AlertChannel, AlertOutbox

    ApiKey.objects.update(last_used_at=timezone.now(), expires_at=timezone.now() + timedelta(days=30))
    job = services.save_job(
        Job(
            tenant=edited_scenario["tenant"],
            name="shanghai",
            task="demo.noop",
            trigger={"type": "cron", "expression": "0 9 * * *", "timezone": SHANGHAI},
        )
    )
    JobRun.objects.create(
        job=job,
        scheduled_for=datetime(2026, 12, 2, 1, 0, tzinfo=UTC),
        state="succeeded",
        started_at=datetime(2026, 12, 2, 1, 0, 1, tzinfo=UTC),
        finished_at=datetime(2026, 12, 2, 1, 0, 2, tzinfo=UTC),
        duration=1.0,
    )
    now = timezone.now()  # a run in the dashboard's window: its chart shows times too
    JobRun.objects.create(
        job=job, scheduled_for=now, state="succeeded", started_at=now, finished_at=now, duration=0.5
    )
    if not AlertOutbox.objects.exists():
        channel = AlertChannel.objects.create(
            tenant=edited_scenario["tenant"], name="hook", type="webhook", target="http://127.0.0.1:9/"
        )
        AlertOutbox.objects.create(
            tenant=edited_scenario["tenant"], channel=channel, event="failed", job=job, payload={}
        )
    edited_scenario["shanghai"] = job
    return edited_scenario


def test_every_admin_page_shows_times_with_seconds_and_offset(admin_client, shanghai, full_scenario):
    pages = admin_pages(full_scenario)
    job = full_scenario["shanghai"]
    run = job.runs.order_by("scheduled_for").first()
    pages += [
        ("dashboard", reverse("admin:scheduler_app_dashboard")),
        ("shanghai job", reverse("admin:scheduler_app_job_change", args=[job.pk])),
        ("shanghai run", reverse("admin:scheduler_app_jobrun_change", args=[run.pk])),
        ("shanghai versions", reverse("admin:scheduler_app_job_history", args=[job.pk])),
        ("shanghai audit", reverse("admin:scheduler_app_job_audit", args=[job.pk])),
    ]
    problems, times_seen = {}, 0
    for name, address in pages:
        response = admin_client.get(address)
        if response.status_code == 403 and name.endswith((" add", " delete")):
            continue
        if response.status_code == 302 and name == "node delete":
            response = admin_client.get(response.url)  # a live node: back to its page, with why
        assert response.status_code == 200, (name, address)
        for text in texts_of(response.content.decode()):
            times_seen += len(MOMENT.findall(text))
            bad = bad_times(text)
            if bad:
                problems.setdefault(f"{name} ({address})", []).extend(bad)
    assert not problems, "\n".join(f"{page}: {bad}" for page, bad in problems.items())
    assert times_seen > 50  # the pages do show times: the check is not vacuous
    # the Shanghai job's run is shown in Shanghai on its page, with the zone's name
    page = admin_client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk])).content.decode()
    assert "2026-12-02 09:00:00 +08:00 (Asia/Shanghai)" in page


def test_admin_lists_of_keys_nodes_tenants_and_outbox(admin_client, shanghai, full_scenario):
    """The lists that showed Django's "Dec. 3, 2026, 11:10 p.m." (or "UTC+0000")."""
    for model in ("apikey", "node", "tenant", "alertoutbox"):
        html = admin_client.get(reverse(f"admin:scheduler_app_{model}_changelist")).content.decode()
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 \(Asia/Shanghai\)", html), model
    key = ApiKey.objects.first()
    html = admin_client.get(reverse("admin:scheduler_app_apikey_change", args=[key.pk])).content.decode()
    assert re.search(r"field-last_used_at.*?\+08:00 \(Asia/Shanghai\)", html, re.S)


def test_run_str_has_an_offset(full_scenario):
    run = full_scenario["shanghai"].runs.order_by("scheduled_for").first()
    assert str(run) == "shanghai @ 2026-12-02 01:00:00 +00:00 #1 (succeeded)"


def _out(*args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue() + err.getvalue()


def test_jobctl_list_and_status(shanghai, full_scenario):
    listing = _out("jobctl", "list", "--tenant", "acme")
    line = next(li for li in listing.splitlines() if li.startswith("acme/shanghai"))
    assert re.search(
        r"\d\d:\d\d:\d\d \+08:00 \(Asia/Shanghai\)\s+succeeded \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 \(Asia/Shanghai\)",
        line,
    )
    status = _out("jobctl", "status", "acme/shanghai")
    assert "2026-12-02 09:00:00 +08:00 (Asia/Shanghai)  succeeded  1.00 s" in status
    for text in (listing, status):
        assert not bad_times(text), bad_times(text)


def test_apikey_list(shanghai, full_scenario):
    text = _out("apikey", "list")
    assert re.search(r"last used \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 \(Asia/Shanghai\)", text), text
    assert not bad_times(text)


def test_cronpreview_times_carry_the_offset():
    text = _out("cronpreview", "0 9 * * *", "--timezone", SHANGHAI, "--count", "2")
    times = text.splitlines()[1:]
    assert len(times) == 2 and all(t.endswith("T09:00:00+08:00") for t in times), times
    assert not bad_times(text)


def test_backfill_dry_run(shanghai, full_scenario):
    text = _out(
        "jobctl",
        "backfill",
        "acme/shanghai",
        "--from",
        "2026-11-01T00:00:00+08:00",
        "--to",
        "2026-11-03T00:00:00+08:00",
        "--dry-run",
    )
    assert "2026-11-01T09:00:00+08:00" in text
    assert not bad_times(text)


def test_importjobs_and_backup_output(tmp_path, full_scenario):
    path = tmp_path / "backup.json"
    text = _out("backup", "-o", str(path))
    assert not bad_times(text)
    doc = json.loads(path.read_text())
    assert doc  # written; its own times are ISO 8601 with offsets
    assert not bad_times(path.read_text()[:20000])


@pytest.mark.parametrize("zone", [SHANGHAI, "America/Chicago"])
def test_runscheduler_log_lines_carry_the_offset(zone):
    """The scheduler's log format (logutils, used by runscheduler) and the demo's LOGGING,
    in a real process whose local zone is ``zone``."""
    code = (
        "import logging, os, time, django; django.setup();"
        # Django sets the process's zone to TIME_ZONE (UTC here); the node's own zone:
        f"os.environ['TZ'] = {zone!r}; time.tzset();"
        "from scheduler_app import logutils;"
        "logging.getLogger('scheduler_app.demo').warning('demo line');"
        "logutils.configure();"
        "logging.getLogger('scheduler_app.x').info('scheduler line')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    offset = "+08:00" if zone == SHANGHAI else "-06:00"
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} " + re.escape(offset)
    assert re.search(stamp + r" INFO scheduler_app\.x scheduler line", output), output
    assert re.search(stamp + r" WARNING scheduler_app\.demo demo line", output), output  # the demo's LOGGING
    assert not bad_times(output), output


def test_api_representation(client, full_scenario):
    from scheduler_app.models import Membership
    from scheduler_app.services import keys

    run = full_scenario["shanghai"].runs.order_by("scheduled_for").first()
    token = keys.create_key(Membership.objects.first().user, name="times").token
    answer = client.get(f"/api/runs/{run.pk}/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["scheduled_for"] == "2026-12-02T01:00:00+00:00"
    assert not bad_times(json.dumps(data))
