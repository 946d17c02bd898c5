"""The one display module: times with seconds and an unambiguous offset/zone, rounded
durations, memory in MB."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler_app import display

MOMENT = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "tz", "expected"),
    [
        (MOMENT, "Asia/Shanghai", "2026-12-02 09:00:00 +08:00 (Asia/Shanghai)"),
        (MOMENT, "America/Chicago", "2026-12-01 19:00:00 -06:00 (America/Chicago)"),
        (MOMENT, "Asia/Kolkata", "2026-12-02 06:30:00 +05:30 (Asia/Kolkata)"),
        (MOMENT, "UTC", "2026-12-02 01:00:00 +00:00"),
        (MOMENT, None, "2026-12-02 01:00:00 +00:00"),
        (
            MOMENT.replace(tzinfo=None),
            ZoneInfo("Europe/Berlin"),
            "2026-12-02 02:00:00 +01:00 (Europe/Berlin)",
        ),
        (
            datetime(2026, 7, 1, 12, 0, 5, tzinfo=ZoneInfo("Europe/Berlin")),
            None,
            "2026-07-01 12:00:05 +02:00 (Europe/Berlin)",
        ),
        (None, "UTC", "—"),
    ],
    ids=["shanghai", "chicago", "half-hour", "utc", "own-zone-utc", "naive-is-utc", "own-zone", "none"],
)
def test_when(moment, tz, expected):
    text = display.when(moment, tz)
    assert text == expected
    assert "CST" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.6044e-05, "0.000 s"),
        (0.0163, "0.016 s"),
        (1.2345, "1.23 s"),
        (61.55, "61.55 s"),
        (1234.56, "1234.6 s"),
        (None, "—"),
    ],
)
def test_seconds(value, expected):
    assert display.seconds(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(12.345, "12.3 MB"), (0.04, "0.0 MB"), (512, "512.0 MB"), (None, "—")]
)
def test_megabytes(value, expected):
    assert display.megabytes(value) == expected


def test_cron_preview_endpoint_shows_offset_and_zone(admin_client):
    from django.urls import reverse

    url = reverse("admin:scheduler_app_cron_preview")
    data = admin_client.get(url, {"expression": "0 9 * * *", "timezone": "Asia/Shanghai"}).json()
    assert data["ok"], data
    assert all(t.endswith(" 09:00:00 +08:00 (Asia/Shanghai)") for t in data["times"]), data["times"]
