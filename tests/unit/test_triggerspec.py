"""Trigger documents: parse, canonical form, build, combinations (no Django)."""

import pickle
from datetime import UTC, date, datetime, timedelta

import pytest

from scheduler_app.engine import triggerspec as ts


def times(doc, after, count, **kw):
    trigger = ts.build_trigger(ts.parse_trigger(doc), **kw)
    return ts.fire_times(trigger, after, count)


AFTER = datetime(2026, 3, 1, tzinfo=UTC)  # a Sunday


def test_canonical_round_trip():
    doc = {
        "type": "any",
        "triggers": [
            {"type": "cron", "expression": "0  9 * * MON", "timezone": "Europe/Berlin"},
            {"type": "interval", "seconds": 3600.0, "start": "2026-01-01T00:00:00+00:00"},
        ],
    }
    canonical = ts.parse_trigger(doc).to_dict()
    assert canonical["triggers"][0] == {
        "type": "cron",
        "expression": "0 9 * * MON",
        "dialect": "crontab",
        "timezone": "Europe/Berlin",
    }
    assert ts.parse_trigger(canonical).to_dict() == canonical


def test_all_of_fires_only_when_every_child_does_and_keeps_going():
    # 09:00 every day AND Mondays (as an interval-free pair of crons)
    doc = {
        "type": "all",
        "triggers": [
            {"type": "cron", "expression": "0 9 * * *"},
            {"type": "cron", "expression": "0 * * * MON"},
        ],
    }
    got = times(doc, AFTER, 3)
    assert got == [datetime(2026, 3, d, 9, tzinfo=UTC) for d in (2, 9, 16)]


def test_all_of_with_interval_and_cron():
    doc = {
        "type": "all",
        "triggers": [
            {"type": "interval", "seconds": 7200, "start": "2026-03-01T00:00:00+00:00"},
            {"type": "cron", "expression": "0 6-10 * * *"},
        ],
    }
    got = times(doc, AFTER, 4)
    assert [t.hour for t in got] == [6, 8, 10, 6]


def test_all_of_that_can_never_fire_returns_none():
    doc = {
        "type": "all",
        "triggers": [
            {"type": "date", "run_at": "2026-01-01T00:00:00+00:00"},
            {"type": "cron", "expression": "0 9 * * *"},
        ],
    }
    assert times(doc, AFTER, 3) == []


def test_any_of_merges():
    doc = {
        "type": "any",
        "triggers": [
            {"type": "cron", "expression": "0 9 * * *"},
            {"type": "cron", "expression": "30 9 * * *"},
        ],
    }
    assert [t.strftime("%d %H:%M") for t in times(doc, AFTER, 3)] == ["01 09:00", "01 09:30", "02 09:00"]


def test_exclusion_dates_are_skipped_in_the_trigger_zone():
    doc = {"type": "cron", "expression": "0 0 * * *", "timezone": "Europe/Berlin"}
    got = times(doc, AFTER, 2, excluded_dates=[date(2026, 3, 2)])
    # midnight Berlin on 3 March (the 2nd is a holiday) is 23:00 UTC on the 2nd
    assert got[0] == datetime(2026, 3, 2, 23, tzinfo=UTC)


def test_interval_anchor_fixes_the_phase():
    anchor = datetime(2026, 2, 28, 23, 59, 50, tzinfo=UTC)
    got = times({"type": "interval", "seconds": 60}, AFTER, 2, anchor=anchor)
    assert got == [datetime(2026, 3, 1, 0, 0, 50, tzinfo=UTC), datetime(2026, 3, 1, 0, 1, 50, tzinfo=UTC)]


def test_built_triggers_pickle():
    doc = {
        "type": "all",
        "triggers": [
            {"type": "cron", "expression": "H 9 * * *"},
            {"type": "interval", "seconds": 60},
        ],
    }
    trigger = ts.build_trigger(
        ts.parse_trigger(doc), hash_key="acme/x", excluded_dates=[date(2026, 3, 3)], anchor=AFTER
    )
    clone = pickle.loads(pickle.dumps(trigger))
    assert ts.fire_times(clone, AFTER, 3) == ts.fire_times(trigger, AFTER, 3)


def test_manual_builds_nothing():
    assert ts.build_trigger(ts.parse_trigger({"type": "manual"})) is None
    assert ts.describe(ts.parse_trigger({"type": "manual"})).startswith("Manual")


def test_describe():
    spec = ts.parse_trigger({"type": "cron", "expression": "0 2 L * *", "timezone": "Europe/Berlin"})
    assert ts.describe(spec) == "At 02:00 on the last day of the month (Europe/Berlin)"
    assert ts.describe(ts.parse_trigger({"type": "interval", "seconds": 7200})) == "Every 2 hours"


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (
            {"type": "cron", "expression": "0 0 32 * *"},
            "trigger.expression",
            "field 3 (day of month): '32' is outside 1-31",
        ),
        ({"type": "cron", "expression": "0 0 30 2 *"}, "trigger.expression", "never fires"),
        ({"type": "cron", "expression": "0 0 * * *", "dialect": "unix"}, "trigger.dialect", "not a dialect"),
        (
            {"type": "cron", "expression": "0 0 * * *", "timezone": "Europe/Nowhere"},
            "trigger.timezone",
            "unknown time zone",
        ),
        (
            {
                "type": "interval",
                "seconds": 5,
                "start": "2026-01-02T00:00:00+00:00",
                "end": "2026-01-01T00:00:00+00:00",
            },
            "trigger.end",
            "must be after start",
        ),
        ({"type": "interval", "seconds": True}, "trigger.seconds", "whole number"),
        (
            {"type": "any", "triggers": [{"type": "cron", "expression": "x"}, {"type": "manual"}]},
            "trigger.triggers[0].expression",
            "field",
        ),
        ("cron", "trigger", "must be an object"),
    ],
)
def test_errors_name_the_key(doc, path, message):
    with pytest.raises(ts.TriggerSpecError) as info:
        ts.parse_trigger(doc)
    assert info.value.path == path
    assert message in str(info.value)


def test_deep_nesting_is_refused():
    doc = {"type": "cron", "expression": "0 0 * * *"}
    for _ in range(6):
        doc = {"type": "any", "triggers": [doc, {"type": "interval", "seconds": 1}]}
    with pytest.raises(ts.TriggerSpecError, match="nest at most"):
        ts.parse_trigger(doc)


def test_fire_times_are_strictly_after():
    got = times({"type": "cron", "expression": "0 * * * *"}, AFTER, 2)
    assert got[0] == AFTER + timedelta(hours=1)
