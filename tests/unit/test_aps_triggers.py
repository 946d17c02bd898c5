"""APScheduler 3 triggers: CronExpressionTrigger, ExcludedDatesTrigger, And/Or combinations."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scheduler_app.engine.aps_triggers import CronExpressionTrigger, ExcludedDatesTrigger
from scheduler_app.engine.cron import CronExpression, CronSyntaxError

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)  # a Thursday


def chain(trigger, now: datetime, n: int) -> list[datetime]:  # type: ignore[no-untyped-def]
    """Fire times as the scheduler computes them: first from now, then from the previous."""
    out: list[datetime] = []
    previous = None
    for _ in range(n):
        nxt = trigger.get_next_fire_time(previous, now if previous is None else previous)
        if nxt is None:
            break
        out.append(nxt)
        previous = nxt
    return out


def chain_fresh(trigger, now: datetime, n: int) -> list[datetime]:  # type: ignore[no-untyped-def]
    """Fire times computed afresh each time (previous_fire_time=None, now just after)."""
    out: list[datetime] = []
    for _ in range(n):
        nxt = trigger.get_next_fire_time(None, now)
        if nxt is None:
            break
        out.append(nxt)
        now = nxt + timedelta(microseconds=1)
    return out


def ts(times: list[datetime]) -> list[float]:
    return [t.timestamp() for t in times]


# --- CronExpressionTrigger ------------------------------------------------------------


@pytest.mark.parametrize(
    "crontab",
    # (day-of-week numbers differ: APScheduler 3 counts 0 as Monday, so names here)
    ["*/5 * * * *", "0 9 * * mon-fri", "30 2 1 * *", "0 0 29 2 *", "15 10 * * sun", "0 */3 * * *"],
)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize(
    ("previous", "now"),
    [
        (None, NOW),
        (None, NOW + timedelta(microseconds=1)),
        (None, datetime(2026, 1, 1, 9, 0, tzinfo=UTC)),  # exactly a fire time
        (datetime(2026, 1, 1, 9, 0, tzinfo=UTC), datetime(2026, 1, 1, 9, 0, tzinfo=UTC)),
        # previous far before now: the next after previous (catch-up of missed runs)
        (datetime(2025, 12, 1, 9, 0, tzinfo=UTC), NOW),
        # now before previous: search starts at now
        (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), NOW),
    ],
    ids=["none", "none-micro", "none-exact", "prev-equals-now", "prev-before", "now-before"],
)
def test_same_fire_times_as_apscheduler_cron_trigger(
    crontab: str, zone: str, previous: datetime | None, now: datetime
) -> None:
    ours = CronExpressionTrigger(crontab, timezone=zone)
    theirs = CronTrigger.from_crontab(crontab, timezone=zone)
    got = ours.get_next_fire_time(previous, now)
    want = theirs.get_next_fire_time(previous, now)
    assert got is not None and want is not None
    assert got.timestamp() == want.timestamp()


def test_returns_utc_instants() -> None:
    trigger = CronExpressionTrigger("0 * * * *", timezone="America/New_York")
    fold = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT
    times = chain(trigger, fold, 3)
    assert [t.isoformat() for t in times] == [
        "2026-11-01T05:00:00+00:00",  # 01:00 EDT
        "2026-11-01T06:00:00+00:00",  # 01:00 EST
        "2026-11-01T07:00:00+00:00",  # 02:00 EST
    ]
    assert all(t.tzinfo is UTC for t in times)


def test_quartz_dialect_and_hash_key() -> None:
    trigger = CronExpressionTrigger("0 H 9 ? * MON-FRI", dialect="quartz", hash_key="acme/a")
    first = trigger.get_next_fire_time(None, NOW)
    assert first is not None and first.hour == 9 and first.weekday() < 5
    same = CronExpressionTrigger(CronExpression.parse("0 H 9 ? * MON-FRI", "quartz", "UTC", "acme/a"))
    assert same.get_next_fire_time(None, NOW) == first
    assert same == trigger


def test_start_and_end_date() -> None:
    trigger = CronExpressionTrigger(
        "0 12 * * *",
        timezone="Europe/Berlin",
        start_date=datetime(2026, 2, 1),  # naive: taken in Europe/Berlin
        end_date=datetime(2026, 2, 3, 12, 0, tzinfo=BERLIN),
    )
    times = chain(trigger, NOW, 10)
    assert [t.astimezone(BERLIN).isoformat() for t in times] == [
        "2026-02-01T12:00:00+01:00",
        "2026-02-02T12:00:00+01:00",
        "2026-02-03T12:00:00+01:00",
    ]


def test_jitter() -> None:
    trigger = CronExpressionTrigger("0 12 * * *", jitter=30)
    for _ in range(20):
        t = trigger.get_next_fire_time(None, NOW)
        assert t is not None
        assert datetime(2026, 1, 1, 12, tzinfo=UTC) <= t <= datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)


def test_none_when_expression_is_exhausted() -> None:
    trigger = CronExpressionTrigger("0 0 0 1 1 * 2020")
    assert trigger.get_next_fire_time(None, NOW) is None


def test_cron_trigger_pickles_with_versioned_state() -> None:
    trigger = CronExpressionTrigger(
        "0 2 L * *",
        timezone="Europe/Berlin",
        hash_key="acme/invoices",
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        jitter=5,
    )
    state = trigger.__getstate__()
    assert state["version"] == 1
    assert (state["expression"], state["dialect"], state["timezone"], state["hash_key"]) == (
        "0 2 L * *",
        "crontab",
        "Europe/Berlin",
        "acme/invoices",
    )
    again = pickle.loads(pickle.dumps(trigger))
    assert again == trigger
    assert again.get_next_fire_time(None, NOW) is not None


def test_cron_trigger_refuses_newer_state() -> None:
    trigger = CronExpressionTrigger.__new__(CronExpressionTrigger)
    state = CronExpressionTrigger("* * * * *").__getstate__()
    state["version"] = 2
    with pytest.raises(ValueError, match="version 2 of CronExpressionTrigger"):
        trigger.__setstate__(state)


def test_cron_trigger_bad_expression() -> None:
    with pytest.raises(CronSyntaxError):
        CronExpressionTrigger("0 0 30 2 *")


def test_cron_trigger_str_and_repr() -> None:
    trigger = CronExpressionTrigger("0 2 L * *", timezone="Europe/Berlin", hash_key="k")
    assert str(trigger) == "cron['0 2 L * *', crontab, Europe/Berlin]"
    assert repr(trigger) == (
        "<CronExpressionTrigger ('0 2 L * *', dialect='crontab', hash_key='k', timezone='Europe/Berlin')>"
    )


# --- ExcludedDatesTrigger -------------------------------------------------------------

HOLIDAYS = frozenset({date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 6)})


def test_excluded_dates_skip_local_dates() -> None:
    daily = CronExpressionTrigger("0 9 * * *", timezone="Europe/Berlin")
    trigger = ExcludedDatesTrigger(daily, HOLIDAYS, "Europe/Berlin")
    times = chain(trigger, datetime(2025, 12, 31, 12, tzinfo=UTC), 4)
    assert [t.astimezone(BERLIN).date().isoformat() for t in times] == [
        "2026-01-03",
        "2026-01-04",
        "2026-01-05",
        "2026-01-07",
    ]


def test_excluded_dates_use_the_given_time_zone() -> None:
    # 23:30 UTC is already the next day in Berlin.
    nightly = CronExpressionTrigger("30 23 * * *", timezone="UTC")
    trigger = ExcludedDatesTrigger(nightly, {date(2026, 1, 2)}, "Europe/Berlin")
    times = chain(trigger, NOW, 2)
    assert [t.isoformat() for t in times] == [
        "2026-01-02T23:30:00+00:00",  # Jan 3 in Berlin
        "2026-01-03T23:30:00+00:00",
    ]


def test_excluded_dates_with_interval_trigger() -> None:
    every_6h = IntervalTrigger(hours=6, start_date=datetime(2026, 1, 1, tzinfo=UTC), timezone=UTC)
    trigger = ExcludedDatesTrigger(every_6h, {date(2026, 1, 2)}, "UTC")
    times = chain(trigger, datetime(2026, 1, 1, 13, tzinfo=UTC), 4)
    assert [t.isoformat() for t in times] == [
        "2026-01-01T18:00:00+00:00",
        "2026-01-03T00:00:00+00:00",
        "2026-01-03T06:00:00+00:00",
        "2026-01-03T12:00:00+00:00",
    ]


def test_excluded_dates_with_date_trigger() -> None:
    once = DateTrigger(datetime(2026, 1, 6, 9, tzinfo=UTC))
    assert ExcludedDatesTrigger(once, HOLIDAYS, "UTC").get_next_fire_time(None, NOW) is None
    kept = ExcludedDatesTrigger(once, {date(2026, 1, 7)}, "UTC")
    assert chain(kept, NOW, 3) == [datetime(2026, 1, 6, 9, tzinfo=UTC)]


def test_every_date_excluded_is_bounded() -> None:
    every_second = CronExpressionTrigger("* * * * * *")
    all_days = {date(2026, 1, 1) + timedelta(days=i) for i in range(40_000)}  # ~110 years
    trigger = ExcludedDatesTrigger(every_second, all_days, "UTC")
    found = trigger.get_next_fire_time(None, NOW)
    assert found is not None and found.date() == date(2026, 1, 1) + timedelta(days=40_000)

    yearly = CronExpressionTrigger("0 0 1 1 *")
    new_years = {date(y, 1, 1) for y in range(2026, 2300)}
    assert ExcludedDatesTrigger(yearly, new_years, "UTC").get_next_fire_time(None, NOW) is None


def test_max_skips_bound() -> None:
    class Stubborn(DateTrigger):  # type: ignore[misc]
        """Returns a new excluded time on every call, never finishing on its own."""

        def get_next_fire_time(self, previous, now):  # type: ignore[no-untyped-def]
            return datetime(2026, 1, 6, tzinfo=UTC) + timedelta(seconds=(now or NOW).second + 1)

    trigger = ExcludedDatesTrigger(Stubborn(NOW), HOLIDAYS, "UTC")
    assert trigger.get_next_fire_time(None, NOW) is None


def test_excluded_dates_pickle_and_version() -> None:
    trigger = ExcludedDatesTrigger(CronExpressionTrigger("0 9 * * *"), HOLIDAYS, "Europe/Berlin")
    state = trigger.__getstate__()
    assert state["version"] == 1 and state["timezone"] == "Europe/Berlin"
    again = pickle.loads(pickle.dumps(trigger))
    assert again.dates == HOLIDAYS and again.timezone == "Europe/Berlin"
    assert again.get_next_fire_time(None, NOW) == trigger.get_next_fire_time(None, NOW)
    state["version"] = 99
    with pytest.raises(ValueError, match="version 99 of ExcludedDatesTrigger"):
        ExcludedDatesTrigger.__new__(ExcludedDatesTrigger).__setstate__(state)


def test_excluded_dates_validation() -> None:
    with pytest.raises(CronSyntaxError, match="'Nowhere/City'"):
        ExcludedDatesTrigger(CronExpressionTrigger("* * * * *"), set(), "Nowhere/City")
    with pytest.raises(TypeError):
        ExcludedDatesTrigger(CronExpressionTrigger("* * * * *"), {datetime(2026, 1, 1)}, "UTC")
    with pytest.raises(TypeError):
        ExcludedDatesTrigger("* * * * *", set(), "UTC")  # type: ignore[arg-type]
    text = repr(ExcludedDatesTrigger(CronExpressionTrigger("* * * * *"), HOLIDAYS, "UTC"))
    assert "2026-01-01, 2026-01-02, 2026-01-06" in text


# --- combinations with APScheduler's own And/Or triggers --------------------------------


def test_or_trigger_merges() -> None:
    morning = CronExpressionTrigger("0 9 * * 1-5", timezone="Europe/Berlin")
    evening = ExcludedDatesTrigger(
        CronExpressionTrigger("0 18 * * *", timezone="Europe/Berlin"), HOLIDAYS, "Europe/Berlin"
    )
    trigger = OrTrigger([morning, evening])
    times = chain(trigger, datetime(2026, 1, 1, 0, tzinfo=UTC), 5)
    assert [t.astimezone(BERLIN).strftime("%m-%d %H:%M") for t in times] == [
        "01-01 09:00",
        "01-02 09:00",
        "01-03 18:00",
        "01-04 18:00",
        "01-05 09:00",
    ]


def test_and_trigger_finds_agreement() -> None:
    # 09:00 on weekdays that are not holidays: agreement of a daily and a weekday trigger.
    daily = ExcludedDatesTrigger(CronExpressionTrigger("0 9 * * *"), HOLIDAYS, "UTC")
    weekdays = CronExpressionTrigger("0 * * * 1-5")
    trigger = AndTrigger([daily, weekdays])
    times = chain_fresh(trigger, datetime(2026, 1, 1, 0, tzinfo=UTC), 4)
    assert [t.strftime("%a %m-%d %H:%M") for t in times] == [
        "Mon 01-05 09:00",
        "Wed 01-07 09:00",
        "Thu 01-08 09:00",
        "Fri 01-09 09:00",
    ]


def test_and_trigger_with_previous_when_children_agree() -> None:
    trigger = AndTrigger([CronExpressionTrigger("0 9 * * *"), CronExpressionTrigger("0 9 * * *")])
    assert len(chain(trigger, NOW, 3)) == 3


@pytest.mark.parametrize(
    "trigger",
    [
        CronExpressionTrigger("0 9 * * 1-5", timezone="Europe/Berlin", hash_key="k"),
        ExcludedDatesTrigger(CronExpressionTrigger("0 9 * * *"), HOLIDAYS, "Europe/Berlin"),
        ExcludedDatesTrigger(DateTrigger(datetime(2026, 2, 1, tzinfo=UTC)), HOLIDAYS, "UTC"),
        ExcludedDatesTrigger(
            IntervalTrigger(minutes=90, start_date=datetime(2026, 1, 1, tzinfo=UTC)),
            HOLIDAYS,
            "UTC",
        ),
        OrTrigger(
            [
                CronExpressionTrigger("0 9 * * *"),
                ExcludedDatesTrigger(CronExpressionTrigger("0 18 * * *"), HOLIDAYS, "UTC"),
                DateTrigger(datetime(2026, 1, 3, 7, tzinfo=UTC)),
            ]
        ),
        AndTrigger(
            [
                ExcludedDatesTrigger(CronExpressionTrigger("0 9 * * *"), HOLIDAYS, "UTC"),
                CronExpressionTrigger("0 * * * 1-5", dialect="crontab"),
                IntervalTrigger(hours=1, start_date=datetime(2026, 1, 1, tzinfo=UTC)),
            ]
        ),
    ],
    ids=["cron", "excluded-cron", "excluded-date", "excluded-interval", "or", "and"],
)
def test_everything_pickles_round_trip(trigger) -> None:  # type: ignore[no-untyped-def]
    again = pickle.loads(pickle.dumps(trigger))
    assert type(again) is type(trigger)
    assert ts(chain_fresh(again, NOW, 5)) == ts(chain_fresh(trigger, NOW, 5))
