"""Hand-checked DST behaviour.

2026 transitions: America/New_York springs forward on Mar 8 (02:00 EST -> 03:00 EDT) and
falls back on Nov 1 (02:00 EDT -> 01:00 EST); Europe/Berlin on Mar 29 (02:00 CET -> 03:00
CEST) and Oct 25 (03:00 CEST -> 02:00 CET); Australia/Lord_Howe shifts by 30 minutes:
back on Apr 5 (02:00 +11:00 -> 01:30 +10:30) and forward on Oct 4 (02:00 +10:30 -> 02:30
+11:00).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from scheduler_app.engine.cron import CronExpression

NY, BERLIN, LHI = "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"

CASES = [
    # --- spring-forward gaps: fire once at the first instant after the gap ---------------
    (
        "ny-daily-0230-runs-every-day",
        "30 2 * * *",
        NY,
        "2026-03-07T00:00:00-05:00",
        ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "ny-several-times-in-gap-coalesce",
        "0,15,30,45 2 * * *",
        NY,
        "2026-03-08T00:00:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"],
    ),
    (
        "ny-hourly-across-gap",
        "0 * * * *",
        NY,
        "2026-03-08T00:30:00-05:00",
        ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"],
    ),
    (
        "ny-every-second-across-gap",
        "* * * * * *",
        NY,
        "2026-03-08T01:59:58-05:00",
        ["2026-03-08T01:59:59-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:00:01-04:00"],
    ),
    (
        "berlin-daily-0230",
        "30 2 * * *",
        BERLIN,
        "2026-03-28T00:00:00+01:00",
        ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    (
        "berlin-last-day-of-month",
        "0 2 L * *",
        BERLIN,
        "2026-02-28T12:00:00+01:00",
        ["2026-03-31T02:00:00+02:00", "2026-04-30T02:00:00+02:00"],
    ),
    (
        "lord-howe-half-hour-gap",
        "15 2 * * *",
        LHI,
        "2026-10-03T00:00:00+10:30",
        ["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
    ),
    (
        "lord-howe-gap-coalesces-with-step",
        "*/20 * * * *",
        LHI,
        "2026-10-04T01:50:00+10:30",
        ["2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00"],
    ),
    # --- fall-back folds: first occurrence only, unless the hour is a wildcard -----------
    (
        "ny-daily-0130-once",
        "30 1 * * *",
        NY,
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    (
        "ny-hourly-fires-in-both-passes",
        "0 * * * *",
        NY,
        "2026-11-01T00:30:00-04:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"],
    ),
    (
        "ny-every-30-minutes-both-passes",
        "*/30 * * * *",
        NY,
        "2026-11-01T00:45:00-04:00",
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    ),
    (
        "ny-hour-step-is-a-wildcard",
        "0 */1 * * *",
        NY,
        "2026-11-01T00:30:00-04:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00"],
    ),
    (
        "ny-hour-list-first-occurrence-only",
        "0 1-3 * * *",
        NY,
        "2026-11-01T00:00:00-04:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"],
    ),
    (
        "ny-after-first-occurrence-non-wildcard",
        "15 1 * * *",
        NY,
        "2026-11-01T01:20:00-04:00",
        ["2026-11-02T01:15:00-05:00"],
    ),
    (
        "ny-after-inside-first-pass-wildcard",
        "*/30 * * * *",
        NY,
        "2026-11-01T01:40:00-04:00",
        ["2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"],
    ),
    (
        "ny-after-inside-second-pass-wildcard",
        "*/30 * * * *",
        NY,
        "2026-11-01T01:10:00-05:00",
        ["2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"],
    ),
    (
        "ny-after-inside-second-pass-non-wildcard",
        "45 1 * * *",
        NY,
        "2026-11-01T01:10:00-05:00",
        ["2026-11-02T01:45:00-05:00"],
    ),
    (
        "berlin-daily-0230-once",
        "30 2 * * *",
        BERLIN,
        "2026-10-24T12:00:00+02:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    (
        "berlin-hourly-both-passes",
        "0 * * * *",
        BERLIN,
        "2026-10-25T01:30:00+02:00",
        ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"],
    ),
    (
        "lord-howe-daily-0145-once",
        "45 1 * * *",
        LHI,
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    ),
    (
        "lord-howe-quarter-hours-both-passes",
        "*/15 * * * *",
        LHI,
        "2026-04-05T01:20:00+11:00",
        [
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ],
    ),
    (
        "quartz-dialect-same-rules",
        "0 30 2 * * ?",
        NY,
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
]


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [pytest.param(e, z, a, x, id=i) for i, e, z, a, x in CASES],
)
def test_dst(expression: str, zone: str, after: str, expected: list[str]) -> None:
    dialect = "quartz" if "?" in expression else "crontab"
    expr = CronExpression.parse(expression, dialect=dialect, timezone=zone)
    got = [t.isoformat() for t in expr.fire_times(datetime.fromisoformat(after), len(expected))]
    assert got == expected


def test_daily_gap_job_runs_every_day_for_years() -> None:
    expr = CronExpression.parse("30 2 * * *", timezone=NY)
    times = list(expr.fire_times(datetime.fromisoformat("2026-01-01T00:00:00-05:00"), 365 * 3))
    days = [t.date() for t in times]
    assert len(set(days)) == len(days) == 365 * 3
    assert all((b - a).days == 1 for a, b in zip(days, days[1:], strict=False))


def test_imaginary_input_time_is_normalised() -> None:
    # 02:30 on 2026-03-08 does not exist in New York; as input it means 03:30 EDT.
    from zoneinfo import ZoneInfo

    expr = CronExpression.parse("0 * * * *", timezone=NY)
    after = datetime(2026, 3, 8, 2, 30, tzinfo=ZoneInfo(NY))
    result = expr.next_fire_time(after)
    assert result is not None and result.isoformat() == "2026-03-08T04:00:00-04:00"
