# ruff: noqa: E501  (exact error messages are kept on one line each)
"""Every malformed expression gets a CronSyntaxError naming the field and the reason."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from scheduler_app.engine.cron import CronExpression, CronSyntaxError

ERRORS = [
    # (id, expression, dialect, field, message)
    (
        "dom-out-of-range",
        "0 0 32 * *",
        "crontab",
        3,
        "field 3 (day of month): '32' is outside 1-31",
    ),
    ("dom-zero", "0 0 0 * *", "crontab", 3, "field 3 (day of month): '0' is outside 1-31"),
    ("minute-out-of-range", "60 * * * *", "crontab", 1, "field 1 (minute): '60' is outside 0-59"),
    (
        "second-out-of-range-6",
        "60 0 * * * *",
        "crontab",
        1,
        "field 1 (second): '60' is outside 0-59",
    ),
    ("hour-out-of-range", "0 24 * * *", "crontab", 2, "field 2 (hour): '24' is outside 0-23"),
    ("month-out-of-range", "0 0 1 13 *", "crontab", 4, "field 4 (month): '13' is outside 1-12"),
    ("dow-out-of-range", "0 0 * * 8", "crontab", 5, "field 5 (day of week): '8' is outside 0-7"),
    ("quartz-dow-zero", "0 0 0 ? * 0", "quartz", 6, "field 6 (day of week): '0' is outside 1-7"),
    (
        "range-end-out-of-range",
        "0 0 1-32 * *",
        "crontab",
        3,
        "field 3 (day of month): '32' is outside 1-31",
    ),
    (
        "year-out-of-range",
        "0 0 0 1 1 * 1969",
        "crontab",
        7,
        "field 7 (year): '1969' is outside 1970-2999",
    ),
    (
        "W-on-range",
        "0 0 1-5W * *",
        "crontab",
        3,
        "field 3 (day of month): '1-5W' applies W to a range; W needs a single day of the month",
    ),
    (
        "hash-k-too-big",
        "0 0 * * 5#6",
        "crontab",
        5,
        "field 5 (day of week): '5#6' has #6; the occurrence after # must be 1-5",
    ),
    (
        "hash-k-zero",
        "0 0 0 ? * FRI#0",
        "quartz",
        6,
        "field 6 (day of week): 'FRI#0' has #0; the occurrence after # must be 1-5",
    ),
    (
        "quartz-both-days",
        "0 0 0 1 * MON",
        "quartz",
        6,
        "field 6 (day of week): 'MON' conflicts with day of month '1': the quartz dialect needs '?' in exactly one of the two day fields",
    ),
    (
        "quartz-both-stars",
        "0 0 0 * * *",
        "quartz",
        6,
        "field 6 (day of week): '*' conflicts with day of month '*': the quartz dialect needs '?' in exactly one of the two day fields",
    ),
    (
        "quartz-both-question",
        "0 0 0 ? * ?",
        "quartz",
        6,
        "field 6 (day of week): '?' cannot be used in both day fields; put '?' in exactly one",
    ),
    (
        "question-in-minute",
        "0 ? 0 1 * ?",
        "quartz",
        2,
        "field 2 (minute): '?' is only allowed in the day-of-month and day-of-week fields",
    ),
    (
        "question-in-hour-crontab",
        "0 ? * * *",
        "crontab",
        2,
        "field 2 (hour): '?' is only allowed in the day-of-month and day-of-week fields",
    ),
    (
        "empty-list-item",
        "0 0 1,,2 * *",
        "crontab",
        3,
        "field 3 (day of month): '1,,2' has an empty list item",
    ),
    (
        "trailing-comma",
        "0,  * * * *",
        "crontab",
        1,
        "field 1 (minute): '0,' has an empty list item",
    ),
    (
        "missing-range-end",
        "0 0 1- * *",
        "crontab",
        3,
        "field 3 (day of month): '1-' is missing a value",
    ),
    (
        "too-few-fields",
        "* * * *",
        "crontab",
        None,
        "'* * * *' has 4 fields; the crontab dialect expects 5, 6 or 7",
    ),
    (
        "too-many-fields",
        "0 0 0 * * * 2026 1",
        "crontab",
        None,
        "'0 0 0 * * * 2026 1' has 8 fields; the crontab dialect expects 5, 6 or 7",
    ),
    (
        "quartz-five-fields",
        "0 0 * * ?",
        "quartz",
        None,
        "'0 0 * * ?' has 5 fields; the quartz dialect expects 6 or 7",
    ),
    ("empty-expression", "   ", "crontab", None, "the expression is empty"),
    (
        "unknown-month",
        "0 0 1 FOO *",
        "crontab",
        4,
        "field 4 (month): 'FOO' is not a month number or name (JAN-DEC)",
    ),
    (
        "unknown-day",
        "0 0 * * Funday",
        "crontab",
        5,
        "field 5 (day of week): 'Funday' is not a day-of-week number or name (SUN-SAT)",
    ),
    (
        "day-name-in-month",
        "0 0 1 MON *",
        "crontab",
        4,
        "field 4 (month): 'MON' is not a month number or name (JAN-DEC)",
    ),
    (
        "letters-in-minute",
        "x * * * *",
        "crontab",
        1,
        "field 1 (minute): 'x' is not a number in 0-59",
    ),
    (
        "zero-step",
        "*/0 * * * *",
        "crontab",
        1,
        "field 1 (minute): '*/0' has a step of 0; steps must be between 1 and 59",
    ),
    (
        "negative-step",
        "0 */-2 * * *",
        "crontab",
        2,
        "field 2 (hour): '*/-2' has a step that is not a positive whole number",
    ),
    (
        "step-too-big",
        "0 0 0 ? */13 *",
        "quartz",
        5,
        "field 5 (month): '*/13' has a step of 13; steps must be between 1 and 12",
    ),
    (
        "empty-step",
        "0 0 */ * *",
        "crontab",
        3,
        "field 3 (day of month): '*/' has a step that is not a positive whole number",
    ),
    (
        "L-in-hour",
        "0 L * * *",
        "crontab",
        2,
        "field 2 (hour): 'L' uses L or W, which are only allowed in the day fields",
    ),
    (
        "W-in-dow",
        "0 0 * * 5W",
        "crontab",
        5,
        "field 5 (day of week): '5W' uses W, which is only allowed in the day-of-month field",
    ),
    (
        "nL-in-dom",
        "0 0 5L * *",
        "crontab",
        3,
        "field 3 (day of month): '5L' uses nL, which is only allowed in the day-of-week field",
    ),
    (
        "hash-in-dom",
        "0 0 5#2 * *",
        "crontab",
        3,
        "field 3 (day of month): '5#2' uses #, which is only allowed in the day-of-week field",
    ),
    (
        "L-offset-too-big",
        "0 0 L-31 * *",
        "crontab",
        3,
        "field 3 (day of month): 'L-31' has an offset from the last day above 30",
    ),
    (
        "L-alone-in-crontab-dow",
        "0 0 * * L",
        "crontab",
        5,
        "field 5 (day of week): 'L' is only allowed in the quartz dialect (where it means Saturday); use e.g. 5L for the last Friday",
    ),
    (
        "quartz-L-with-list",
        "0 0 0 L,15 * ?",
        "quartz",
        4,
        "field 4 (day of month): 'L,15' combines L with other days, which Quartz does not support",
    ),
    (
        "quartz-nL-with-list",
        "0 0 0 ? * 2L,3",
        "quartz",
        6,
        "field 6 (day of week): '2L,3' combines L with other days, which Quartz does not support",
    ),
    (
        "quartz-two-nth",
        "0 0 0 ? * 2#1,3#2",
        "quartz",
        6,
        "field 6 (day of week): '2#1,3#2' has more than one #, which Quartz does not support",
    ),
    (
        "quartz-mixed-range",
        "0 0 0 ? * MON-5",
        "quartz",
        6,
        "field 6 (day of week): 'MON-5' mixes a name and a number in one range",
    ),
    (
        "question-in-list",
        "0 0 ?,1 * *",
        "crontab",
        3,
        "field 3 (day of month): '?' cannot be combined with other values",
    ),
    (
        "year-range-backwards",
        "0 0 0 1 1 * 2030-2026",
        "crontab",
        7,
        "field 7 (year): '2030-2026' is a range whose start is after its end",
    ),
    (
        "bad-hash-form",
        "H(0-5 * * * *",
        "crontab",
        1,
        "field 1 (minute): 'H(0-5' is not a valid H (hash) form: use H, H(a-b), H/n or H(a-b)/n",
    ),
    (
        "hash-in-year",
        "0 0 0 1 1 * H",
        "crontab",
        7,
        "field 7 (year): 'H' uses H, which is not allowed in the year field",
    ),
    (
        "never-fires-feb-30",
        "0 0 30 2 *",
        "crontab",
        None,
        "'0 0 30 2 *' never fires: no allowed month (and year) has a matching day",
    ),
    (
        "never-fires-apr-31",
        "0 0 31 4 *",
        "crontab",
        None,
        "'0 0 31 4 *' never fires: no allowed month (and year) has a matching day",
    ),
    (
        "never-fires-quartz",
        "0 0 0 31 2,4,6 ?",
        "quartz",
        None,
        "'0 0 0 31 2,4,6 ?' never fires: no allowed month (and year) has a matching day",
    ),
    (
        "never-fires-year",
        "0 0 0 29 2 * 2027",
        "crontab",
        None,
        "'0 0 0 29 2 * 2027' never fires: no allowed month (and year) has a matching day",
    ),
    (
        "unknown-macro",
        "@fortnightly",
        "crontab",
        None,
        "'@fortnightly' is not a known macro (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
    ),
    (
        "reboot-macro",
        "@reboot",
        "crontab",
        None,
        "'@reboot' is not a known macro (use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
    ),
]


@pytest.mark.parametrize(
    ("expression", "dialect", "field", "message"),
    [pytest.param(e, d, f, m, id=i) for i, e, d, f, m in ERRORS],
)
def test_error_message(expression: str, dialect: str, field: int | None, message: str) -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpression.parse(expression, dialect=dialect)
    assert str(info.value) == message
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_error_attributes() -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpression.parse("0 2 32 * *")
    err = info.value
    assert (err.field, err.text, err.reason) == (3, "32", "is outside 1-31")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.field == 3


@pytest.mark.parametrize("zone", ["Mars/Base", "", "utc ", "../../etc/passwd", "Europe/Berlinn"])
def test_unknown_time_zone_is_an_error(zone: str) -> None:
    with pytest.raises(CronSyntaxError) as info:
        CronExpression.parse("* * * * *", timezone=zone)
    assert f"'{zone}'" in str(info.value)
    assert "time zone" in str(info.value)
    assert info.value.field is None


def test_unknown_dialect() -> None:
    with pytest.raises(CronSyntaxError, match="'spring' is not a dialect"):
        CronExpression.parse("* * * * *", dialect="spring")


def test_year_in_the_past_is_not_an_error() -> None:
    expr = CronExpression.parse("0 0 0 1 1 * 2001-2010")
    assert expr.next_fire_time(datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CronExpression.parse("* * * * *").next_fire_time(datetime(2026, 1, 1))
