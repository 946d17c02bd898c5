"""Public API of CronExpression: immutability, equality, caching, pickling, describe()."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from scheduler_app.engine import cron
from scheduler_app.engine.cron import CronExpression

AFTER = datetime(2026, 1, 1, tzinfo=UTC)


def test_attributes() -> None:
    expr = CronExpression.parse(
        "0 2 L * *", dialect="crontab", timezone="Europe/Berlin", hash_key="acme/invoices"
    )
    assert expr.expression == "0 2 L * *"
    assert expr.dialect == "crontab"
    assert expr.timezone == "Europe/Berlin"
    assert expr.hash_key == "acme/invoices"
    assert expr.zone.key == "Europe/Berlin"


def test_defaults() -> None:
    expr = CronExpression.parse("* * * * *")
    assert (expr.dialect, expr.timezone, expr.hash_key) == ("crontab", "UTC", None)


def test_immutable() -> None:
    expr = CronExpression.parse("* * * * *")
    with pytest.raises(AttributeError):
        expr.expression = "0 0 * * *"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del expr.timezone  # type: ignore[misc]
    with pytest.raises(AttributeError):
        expr.extra = 1  # type: ignore[attr-defined]


def test_equality_and_hash() -> None:
    a = CronExpression("0 9 * * 1-5", timezone="Europe/Berlin")
    b = CronExpression.parse("0 9 * * 1-5", timezone="Europe/Berlin")
    c = CronExpression.parse("0 9 * * 1-5", timezone="Europe/Paris")
    d = CronExpression.parse("0 9 * * 1-5", timezone="Europe/Berlin", hash_key="k")
    assert a == b and hash(a) == hash(b)
    assert a != c and a != d
    assert len({a, b, c, d}) == 3
    assert a != "0 9 * * 1-5"


def test_parse_is_cached() -> None:
    cron._compile.cache_clear()
    first = CronExpression.parse("7 7 * * *", timezone="Asia/Tokyo")
    second = CronExpression.parse("7 7 * * *", timezone="Asia/Tokyo")
    assert first is second
    info = cron._compile.cache_info()
    assert info.misses == 1
    # Direct construction reuses the compiled form too.
    third = CronExpression("7 7 * * *", timezone="Asia/Tokyo")
    assert third._c is first._c
    assert cron._compile.cache_info().misses == 1


def test_pickle_round_trip() -> None:
    expr = CronExpression.parse("H 2 * * *", timezone="Europe/Berlin", hash_key="acme/x")
    again = pickle.loads(pickle.dumps(expr))
    assert again == expr
    assert again.next_fire_time(AFTER) == expr.next_fire_time(AFTER)


def test_repr_and_str() -> None:
    expr = CronExpression.parse("0 0 * * *", timezone="UTC")
    assert str(expr) == "0 0 * * *"
    assert repr(expr) == "CronExpression('0 0 * * *', dialect='crontab', timezone='UTC')"


def test_fire_times_is_a_generator_of_count() -> None:
    expr = CronExpression.parse("0 0 * * *")
    times = list(expr.fire_times(AFTER, 3))
    assert [t.day for t in times] == [2, 3, 4]
    assert list(CronExpression.parse("0 0 0 1 1 * 2026").fire_times(AFTER, 5)) == []


def test_matches() -> None:
    expr = CronExpression.parse("30 9 * * 1-5", timezone="America/New_York")
    assert expr.matches(datetime(2026, 1, 5, 14, 30, tzinfo=UTC))  # Mon 09:30 EST
    assert not expr.matches(datetime(2026, 1, 4, 14, 30, tzinfo=UTC))  # Sunday


DESCRIPTIONS = [
    ("0 2 L * *", "crontab", "At 02:00 on the last day of the month"),
    ("0 9 * * 1-5", "crontab", "At 09:00 on Monday through Friday"),
    ("*/5 * * * *", "crontab", "Every 5 minutes"),
    ("* * * * *", "crontab", "Every minute"),
    ("0 * * * *", "crontab", "At minute 0 past every hour"),
    ("0 0 * * 5#3", "crontab", "At 00:00 on the third Friday of the month"),
    ("0 0 * * 5L", "crontab", "At 00:00 on the last Friday of the month"),
    ("0 0 29 2 *", "crontab", "At 00:00 on day 29 of the month in February"),
    ("0 0 15W * *", "crontab", "At 00:00 on the weekday nearest day 15 of the month"),
    ("0 0 LW * *", "crontab", "At 00:00 on the last weekday of the month"),
    ("30 8,17 1,15 * *", "crontab", "At 08:30 and 17:30 on days 1 and 15 of the month"),
    ("0 0 1 * 1", "crontab", "At 00:00 on day 1 of the month or on Monday"),
    ("15 10 * * * * 2027", "crontab", "At second 15, at minute 10 past every hour in 2027"),
    ("*/10 * * * * ?", "quartz", "Every 10 seconds"),
    ("0 15 10 ? * 6L", "quartz", "At 10:15 on the last Friday of the month"),
    ("0 0 12 ? JAN,JUL MON", "quartz", "At 12:00 on Monday in January and July"),
    ("0 */15 9-17 * * ?", "quartz", "Every 15 minutes, past hours 9 through 17"),
]


@pytest.mark.parametrize(("expression", "dialect", "text"), [pytest.param(*d, id=d[0]) for d in DESCRIPTIONS])
def test_describe(expression: str, dialect: str, text: str) -> None:
    assert CronExpression.parse(expression, dialect=dialect).describe() == text
