"""Hand-checked fire times for every syntax element, in both dialects (UTC).

Calendar facts used (2026): Jan 1 is a Thursday; Feb 1, Mar 1 and Nov 1 are Sundays;
Aug 1 is a Saturday; Jan 31 and Feb 28 are Saturdays; May 31 is a Sunday.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from scheduler_app.engine.cron import CronExpression

JAN1 = "2026-01-01T00:00:00+00:00"


def fires(expression: str, after: str, n: int, dialect: str = "crontab", **kw: str) -> list[str]:
    expr = CronExpression.parse(expression, dialect=dialect, **kw)
    return [t.isoformat() for t in expr.fire_times(datetime.fromisoformat(after), n)]


def utc(*stamps: str) -> list[str]:
    """'2026-01-05 09:00' -> '2026-01-05T09:00:00+00:00' (seconds optional)."""
    out = []
    for s in stamps:
        day, _, time = s.partition(" ")
        time = time or "00:00"
        if time.count(":") == 1:
            time += ":00"
        out.append(f"{day}T{time}+00:00")
    return out


CRONTAB_CASES = [
    # (id, expression, after, expected)
    ("every-minute", "* * * * *", JAN1, utc("2026-01-01 00:01", "2026-01-01 00:02")),
    ("step", "*/15 * * * *", JAN1, utc("2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 00:45")),
    ("list", "5,10 * * * *", JAN1, utc("2026-01-01 00:05", "2026-01-01 00:10", "2026-01-01 01:05")),
    (
        "range",
        "10-12 * * * *",
        JAN1,
        utc("2026-01-01 00:10", "2026-01-01 00:11", "2026-01-01 00:12", "2026-01-01 01:10"),
    ),
    (
        "range-step",
        "10-30/10 * * * *",
        JAN1,
        utc("2026-01-01 00:10", "2026-01-01 00:20", "2026-01-01 00:30", "2026-01-01 01:10"),
    ),
    (
        "start-step",
        "50/5 * * * *",
        JAN1,
        utc("2026-01-01 00:50", "2026-01-01 00:55", "2026-01-01 01:50"),
    ),
    (
        "wrapping-minutes",
        "58-1 * * * *",
        JAN1,
        utc("2026-01-01 00:01", "2026-01-01 00:58", "2026-01-01 00:59", "2026-01-01 01:00"),
    ),
    (
        "wrapping-hours",
        "0 22-2 * * *",
        JAN1,
        utc(
            "2026-01-01 01:00",
            "2026-01-01 02:00",
            "2026-01-01 22:00",
            "2026-01-01 23:00",
            "2026-01-02 00:00",
        ),
    ),
    (
        "weekdays",
        "0 9 * * 1-5",
        JAN1,
        utc("2026-01-01 09:00", "2026-01-02 09:00", "2026-01-05 09:00"),
    ),
    (
        "wrapping-day-names",
        "0 0 * * FRI-MON",
        JAN1,
        utc("2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-01-09"),
    ),
    ("sunday-0", "0 0 * * 0", JAN1, utc("2026-01-04", "2026-01-11")),
    ("sunday-7", "0 0 * * 7", JAN1, utc("2026-01-04", "2026-01-11")),
    (
        "dow-range-to-7",
        "0 0 * * 5-7",
        JAN1,
        utc("2026-01-02", "2026-01-03", "2026-01-04", "2026-01-09"),
    ),
    ("dow-step", "0 0 * * */2", JAN1, utc("2026-01-03", "2026-01-04", "2026-01-06")),
    ("dow-start-step", "0 0 * * 1/2", JAN1, utc("2026-01-02", "2026-01-05", "2026-01-07")),
    ("month-names-any-case", "0 0 1 jan,Jul *", JAN1, utc("2026-07-01", "2027-01-01")),
    ("month-step", "0 0 1 */3 *", JAN1, utc("2026-04-01", "2026-07-01", "2026-10-01")),
    ("wrapping-months", "0 0 1 NOV-FEB *", JAN1, utc("2026-02-01", "2026-11-01", "2026-12-01")),
    ("vixie-or", "0 0 1,15 * 1", JAN1, utc("2026-01-05", "2026-01-12", "2026-01-15", "2026-01-19")),
    ("vixie-or-range", "0 0 1-7 * 1", JAN1, utc("2026-01-02", "2026-01-03", "2026-01-04")),
    ("question-mark-is-star", "0 0 ? * 1", JAN1, utc("2026-01-05", "2026-01-12")),
    ("last-day", "0 0 L * *", JAN1, utc("2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30")),
    ("last-day-leap", "0 0 L 2 *", "2027-06-01T00:00:00+00:00", utc("2028-02-29", "2029-02-28")),
    ("last-day-offset", "0 0 L-2 * *", JAN1, utc("2026-01-29", "2026-02-26", "2026-03-29")),
    ("L-n-skips-short-months", "0 0 L-30 * *", JAN1, utc("2026-03-01", "2026-05-01", "2026-07-01")),
    ("last-day-in-list", "0 0 L,15 * *", JAN1, utc("2026-01-15", "2026-01-31", "2026-02-15")),
    ("W-mid-month", "0 0 15W * *", JAN1, utc("2026-01-15", "2026-02-16", "2026-03-16")),
    ("W-saturday-15th", "0 0 15W 8 *", JAN1, utc("2026-08-14")),
    # 1W never crosses into the previous month: Saturday the 1st -> Monday the 3rd.
    (
        "1W-saturday",
        "0 0 1W * *",
        "2026-07-15T00:00:00+00:00",
        utc("2026-08-03", "2026-09-01", "2026-10-01"),
    ),
    ("1W-sunday", "0 0 1W * *", JAN1, utc("2026-02-02", "2026-03-02", "2026-04-01")),
    # 31W never crosses into the next month: Sunday the 31st -> Friday the 29th;
    # months without a 31st have no fire.
    (
        "31W-sunday",
        "0 0 31W * *",
        "2026-04-01T00:00:00+00:00",
        utc("2026-05-29", "2026-07-31", "2026-08-31"),
    ),
    ("31W-saturday", "0 0 31W * *", JAN1, utc("2026-01-30", "2026-03-31")),
    ("W-list", "0 0 1W,15W * *", JAN1, utc("2026-01-15", "2026-02-02", "2026-02-16")),
    (
        "LW",
        "0 0 LW * *",
        JAN1,
        utc("2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30", "2026-05-29"),
    ),
    ("L-nW", "0 0 L-1W * *", JAN1, utc("2026-01-30", "2026-02-27", "2026-03-30")),
    ("last-friday", "0 0 * * 5L", JAN1, utc("2026-01-30", "2026-02-27", "2026-03-27")),
    ("last-friday-name", "0 0 * * FRIL", JAN1, utc("2026-01-30", "2026-02-27", "2026-03-27")),
    ("last-sunday-7L", "0 0 * * 7L", JAN1, utc("2026-01-25", "2026-02-22")),
    ("third-friday", "0 0 * * 5#3", JAN1, utc("2026-01-16", "2026-02-20", "2026-03-20")),
    (
        "fifth-monday-skips-months",
        "0 0 * * MON#5",
        JAN1,
        utc("2026-03-30", "2026-06-29", "2026-08-31"),
    ),
    ("fifth-monday-of-february", "0 0 * 2 1#5", JAN1, utc("2044-02-29")),
    ("nth-list", "0 0 * * MON#1,FRI#3", JAN1, utc("2026-01-05", "2026-01-16", "2026-02-02")),
    ("feb-29", "0 0 29 2 *", JAN1, utc("2028-02-29", "2032-02-29", "2036-02-29")),
    ("feb-29-skips-2100", "0 12 29 2 *", "2096-03-01T00:00:00+00:00", utc("2104-02-29 12:00")),
    (
        "seconds-6-fields",
        "*/20 * * * * *",
        JAN1,
        utc("2026-01-01 00:00:20", "2026-01-01 00:00:40", "2026-01-01 00:01:00"),
    ),
    ("year-7-fields", "0 0 0 1 1 * 2030", JAN1, utc("2030-01-01")),
    ("year-step", "0 0 0 1 1 * 2027/2", JAN1, utc("2027-01-01", "2029-01-01", "2031-01-01")),
    ("year-past", "0 0 0 1 1 * 2020", JAN1, []),
    ("year-range-past", "0 0 0 1 1 * 2001-2010", JAN1, []),
    ("year-list", "0 0 12 1 6 * 2026,2028", JAN1, utc("2026-06-01 12:00", "2028-06-01 12:00")),
    ("yearly", "@yearly", JAN1, utc("2027-01-01", "2028-01-01")),
    ("annually", "@annually", JAN1, utc("2027-01-01")),
    ("monthly", "@monthly", JAN1, utc("2026-02-01", "2026-03-01")),
    ("weekly", "@weekly", JAN1, utc("2026-01-04", "2026-01-11")),
    ("daily", "@daily", JAN1, utc("2026-01-02", "2026-01-03")),
    ("midnight", "@midnight", JAN1, utc("2026-01-02")),
    ("hourly", "@HOURLY", JAN1, utc("2026-01-01 01:00", "2026-01-01 02:00")),
    ("strictly-after", "0 0 * * *", "2026-01-01T00:00:00.000001+00:00", utc("2026-01-02")),
    ("microseconds", "* * * * * *", "2026-01-01T00:00:00.5+00:00", utc("2026-01-01 00:00:01")),
    ("other-offset-input", "0 12 * * *", "2026-01-01T13:00:00+02:00", utc("2026-01-01 12:00")),
]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [pytest.param(e, a, x, id=i) for i, e, a, x in CRONTAB_CASES],
)
def test_crontab(expression: str, after: str, expected: list[str]) -> None:
    assert fires(expression, after, max(len(expected), 1) + (0 if expected else 0)) == expected


QUARTZ_CASES = [
    ("weekday-name", "0 0 12 ? * WED", JAN1, utc("2026-01-07 12:00", "2026-01-14 12:00")),
    (
        "monday-to-friday",
        "0 15 10 ? * MON-FRI",
        JAN1,
        utc("2026-01-01 10:15", "2026-01-02 10:15", "2026-01-05 10:15"),
    ),
    ("sunday-is-1", "0 0 0 ? * 1", JAN1, utc("2026-01-04", "2026-01-11")),
    ("saturday-is-7", "0 0 0 ? * 7", JAN1, utc("2026-01-03", "2026-01-10")),
    ("L-alone-is-saturday", "0 0 0 ? * L", JAN1, utc("2026-01-03", "2026-01-10")),
    ("numeric-range", "0 0 0 ? * 2-6", JAN1, utc("2026-01-02", "2026-01-05")),
    (
        "wrapping-range",
        "0 0 0 ? * 7-2",
        JAN1,
        utc("2026-01-03", "2026-01-04", "2026-01-05", "2026-01-10"),
    ),
    ("dow-start-step", "0 0 0 ? * 2/2", JAN1, utc("2026-01-02", "2026-01-05", "2026-01-07")),
    ("dow-star-step", "0 0 0 ? * */2", JAN1, utc("2026-01-03", "2026-01-04", "2026-01-06")),
    ("last-friday-6L", "0 15 10 ? * 6L", JAN1, utc("2026-01-30 10:15", "2026-02-27 10:15")),
    ("third-friday-6#3", "0 15 10 ? * 6#3", JAN1, utc("2026-01-16 10:15", "2026-02-20 10:15")),
    ("name-nth", "0 0 0 ? * FRI#3", JAN1, utc("2026-01-16", "2026-02-20")),
    ("last-day", "0 0 0 L * ?", JAN1, utc("2026-01-31", "2026-02-28")),
    ("L-n", "0 15 10 L-2 * ?", JAN1, utc("2026-01-29 10:15", "2026-02-26 10:15")),
    ("LW", "0 0 0 LW * ?", JAN1, utc("2026-01-30", "2026-02-27", "2026-03-31")),
    ("nW", "0 0 0 15W * ?", JAN1, utc("2026-01-15", "2026-02-16")),
    ("every-five-from", "0 0 12 1/5 * ?", JAN1, utc("2026-01-01 12:00", "2026-01-06 12:00")),
    (
        "minute-list-month-name",
        "0 10,44 14 ? 3 WED",
        JAN1,
        utc("2026-03-04 14:10", "2026-03-04 14:44", "2026-03-11 14:10"),
    ),
    ("seconds", "*/7 * * * * ?", JAN1, utc("2026-01-01 00:00:07", "2026-01-01 00:00:14")),
    ("year", "0 0 0 1 1 ? 2027/2", JAN1, utc("2027-01-01", "2029-01-01")),
    ("macro", "@daily", JAN1, utc("2026-01-02")),
    # Deliberate deviations from Quartz bugs (docs/cron.md): both days; the step is kept.
    ("W-list-both-days", "0 0 0 1W,15W * ?", JAN1, utc("2026-01-15", "2026-02-02", "2026-02-16")),
    (
        "step-after-day-names",
        "0 0 0 ? * MON-FRI/2",
        JAN1,
        utc("2026-01-02", "2026-01-05", "2026-01-07"),
    ),
    (
        "step-after-month-name",
        "0 0 0 1 JAN/3 ?",
        JAN1,
        utc("2026-04-01", "2026-07-01", "2026-10-01"),
    ),
    (
        "31W-short-months",
        "0 0 0 31W * ?",
        "2026-04-01T00:00:00+00:00",
        utc("2026-05-29", "2026-07-31"),
    ),
    ("hash-extension", "0 H(0-0) 0 ? * 1", JAN1, utc("2026-01-04")),
]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [pytest.param(e, a, x, id=i) for i, e, a, x in QUARTZ_CASES],
)
def test_quartz(expression: str, after: str, expected: list[str]) -> None:
    assert fires(expression, after, len(expected), dialect="quartz") == expected


def test_result_is_in_the_expression_time_zone() -> None:
    expr = CronExpression.parse("0 2 L * *", timezone="Europe/Berlin", hash_key="acme/invoices")
    result = expr.next_fire_time(datetime.fromisoformat(JAN1))
    assert result is not None
    assert result.isoformat() == "2026-01-31T02:00:00+01:00"
    assert getattr(result.tzinfo, "key", None) == "Europe/Berlin"


def test_none_past_horizon() -> None:
    # Feb 29 in a year that is a multiple of 400 away and far beyond the horizon.
    expr = CronExpression.parse("0 0 0 29 2 * 2096")
    assert expr.next_fire_time(datetime.fromisoformat(JAN1)) is not None
    assert expr.next_fire_time(datetime.fromisoformat("2096-03-01T00:00:00+00:00")) is None
    far = CronExpression.parse("0 0 0 1 1 * 2200")
    assert far.next_fire_time(datetime.fromisoformat(JAN1)) is None  # beyond 100 years
    assert far.next_fire_time(datetime.fromisoformat("2150-01-01T00:00:00+00:00")) is not None


# --- H (hashed) values -----------------------------------------------------------------


def _values(expression: str, key: str, field: int) -> set[int]:
    expr = CronExpression.parse(expression, hash_key=key)
    return set(expr._c.specs[field].values)


@pytest.mark.parametrize(
    ("field_text", "field", "allowed", "count"),
    [
        pytest.param("H * * * *", 1, range(60), 1, id="H-minute"),
        pytest.param("0 H * * *", 2, range(24), 1, id="H-hour"),
        pytest.param("0 0 H * *", 3, range(1, 29), 1, id="H-day-of-month-1-28"),
        pytest.param("0 0 1 H *", 4, range(1, 13), 1, id="H-month"),
        pytest.param("0 0 * * H", 5, range(7), 1, id="H-day-of-week"),
        pytest.param("H(0-29) * * * *", 1, range(30), 1, id="H-range"),
        pytest.param("H/15 * * * *", 1, range(60), 4, id="H-step"),
        pytest.param("H(10-40)/10 * * * *", 1, range(10, 41), 3, id="H-range-step"),
    ],
)
def test_hash_values(field_text: str, field: int, allowed: range, count: int) -> None:
    seen = set()
    for i in range(800):
        values = _values(field_text, f"tenant/job-{i}", field)
        assert count <= len(values) <= count + (1 if "/" in field_text else 0)
        assert values <= set(allowed)
        seen |= values
    assert seen == set(allowed)  # spread over the whole range across keys


def test_hash_is_stable_and_key_dependent() -> None:
    a = _values("H H * * *", "acme/invoices", 1)
    assert a == _values("H H * * *", "acme/invoices", 1)
    keys = {frozenset(_values("H * * * *", f"job{i}", 1)) for i in range(50)}
    assert len(keys) > 20


def test_hash_spread_is_even() -> None:
    counts = [0] * 4
    for i in range(4000):
        (minute,) = _values("H(0-3) * * * *", f"job-{i}", 1)
        counts[minute] += 1
    assert all(850 < c < 1150 for c in counts), counts


def test_hash_step_fires_every_15_minutes() -> None:
    expr = CronExpression.parse("H/15 * * * *", hash_key="acme/invoices")
    times = list(expr.fire_times(datetime.fromisoformat(JAN1), 5))
    gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {900.0}
