"""Rates and concurrency keys as pure values (no Django)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler_app.engine import throttle
from scheduler_app.engine.throttle import Rate, RateError, next_start, parse_rate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds):
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "rate", "seconds"),
    [
        pytest.param("10/m", Rate(10, "m"), 60, id="per-minute"),
        pytest.param("1000/h", Rate(1000, "h"), 3600, id="per-hour"),
        pytest.param("1/s", Rate(1, "s"), 1, id="per-second"),
        pytest.param("5/d", Rate(5, "d"), 86400, id="per-day"),
        pytest.param(" 3 / h ", Rate(3, "h"), 3600, id="spaces"),
    ],
)
def test_parse(text, rate, seconds):
    assert parse_rate(text) == rate
    assert rate.period == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "10/fortnight", "'10/fortnight': unknown unit 'fortnight' (use one of s, m, h, d)", id="unit"
        ),
        pytest.param("10/x", "'10/x': unknown unit 'x'", id="unit-x"),
        pytest.param("10/M", "unknown unit 'M'", id="unit-case"),
        pytest.param("0/m", "'0/m': the count 0 is outside 1-1000000", id="zero"),
        pytest.param("-1/m", "the count '-1' is not a whole number", id="negative"),
        pytest.param("1.5/m", "the count '1.5' is not a whole number", id="fraction"),
        pytest.param("ten/m", "the count 'ten' is not a whole number", id="word"),
        pytest.param("10", "'10': write N/unit, e.g. 10/m", id="no-slash"),
        pytest.param("/m", "write N/unit", id="no-count"),
        pytest.param("10/", "write N/unit", id="no-unit"),
        pytest.param("", "write N/unit", id="empty"),
        pytest.param("2000000/s", "the count 2000000 is outside 1-1000000", id="huge"),
        pytest.param("١٠/m", "is not a whole number", id="non-ascii-digits"),
    ],
)
def test_bad_rates_say_what_is_wrong(text, message):
    with pytest.raises(RateError) as info:
        parse_rate(text)
    assert message in str(info.value)


def test_not_text_is_refused():
    with pytest.raises(RateError, match="must be text like '10/m', not int"):
        parse_rate(10)


def test_rate_values_are_checked_when_built():
    with pytest.raises(RateError, match="unknown unit 'w'"):
        Rate(1, "w")
    with pytest.raises(RateError, match="outside"):
        Rate(0, "m")
    with pytest.raises(RateError, match="whole number"):
        Rate(True, "m")


@given(st.integers(1, throttle.MAX_COUNT), st.sampled_from(sorted(throttle.UNITS)))
def test_round_trip(count, unit):
    rate = Rate(count, unit)
    assert parse_rate(str(rate)) == rate
    assert str(parse_rate(f" {count} /{unit}")) == f"{count}/{unit}"
    assert throttle.normalise_rate(f"{count} / {unit}") == str(rate)


class TestNextStart:
    def test_room_in_the_window(self):
        assert next_start([ago(10), ago(20)], Rate(3, "m"), NOW) is None

    def test_full_window_waits_for_the_oldest_start_to_leave(self):
        starts = [ago(10), ago(50), ago(30)]
        assert next_start(starts, Rate(3, "m"), NOW) == ago(50) + timedelta(minutes=1)

    def test_starts_outside_the_window_do_not_count(self):
        assert next_start([ago(60), ago(61), ago(5)], Rate(2, "m"), NOW) is None

    def test_over_full_window_waits_for_enough_to_leave(self):
        # 4 starts against 2/m: the window has room again when only one is left in it
        starts = [ago(40), ago(30), ago(20), ago(10)]
        assert next_start(starts, Rate(2, "m"), NOW) == ago(20) + timedelta(minutes=1)

    @given(
        st.lists(st.integers(0, 3599), max_size=40),
        st.integers(1, 10),
        st.sampled_from(["m", "h"]),
    )
    def test_the_slot_is_the_first_moment_with_room(self, offsets, count, unit):
        rate = Rate(count, unit)
        starts = [ago(s) for s in offsets]
        slot = next_start(starts, rate, NOW)
        if slot is None:
            assert sum(1 for t in starts if t > NOW - rate.period) < count
            return
        assert slot > NOW
        assert next_start(starts, rate, slot) is None
        assert next_start(starts, rate, slot - timedelta(microseconds=1)) is not None


@given(
    st.lists(st.integers(0, 119), max_size=30),
    st.integers(1, 12),
    st.integers(0, 15),
    st.integers(0, 15),
)
def test_a_rate_window_answers_as_next_start_over_every_start(offsets, count, batch, starting):
    """What a claim sees through RateWindow (a count and a few ranked starts) gives the
    same slots as next_start over the full list, for every start it adds."""
    rate = Rate(count, "m")
    stored = sorted((ago(s) for s in offsets), reverse=True)
    in_window = [t for t in stored if t > NOW - rate.period]
    ranks = throttle.RateWindow.ranks_needed(rate, len(in_window), batch)
    window = throttle.RateWindow(rate, len(in_window), {r: in_window[r - 1] for r in ranks}, [])
    every = list(stored)
    for _ in range(min(starting, batch)):
        assert window.next_start(NOW) == next_start(every, rate, NOW)
        window.add(NOW)
        every.append(NOW)
    if starting <= batch:
        assert window.next_start(NOW) == next_start(every, rate, NOW)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("beta/erp", "keys are per tenant and cannot name another tenant", id="other-tenant"),
        pytest.param("erp db", "use letters, digits and . _ : -", id="space"),
        pytest.param("-erp", "starting with a letter or digit", id="leading-dash"),
        pytest.param("x" * 101, "at most 100 characters", id="too-long"),
    ],
)
def test_bad_keys(key, message):
    with pytest.raises(throttle.ThrottleError, match=re.escape(message)):
        throttle.check_key(key)


def test_good_keys():
    assert throttle.check_key(" erp ") == "erp"
    assert throttle.check_key("erp.eu:write-1") == "erp.eu:write-1"
    assert throttle.check_key("") == ""
