"""Property tests: results match, nothing is skipped (brute force), chains increase."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduler_app.engine.cron import CronExpression, CronSyntaxError

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
# DST transitions (UTC) to start near, so gaps and folds are exercised often.
TRANSITIONS = [
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # New York spring
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # New York fall
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Berlin spring
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # Berlin fall
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # Lord Howe fall (02:00 +11 -> 01:30)
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),  # Lord Howe spring (02:00 -> 02:30 +11)
]
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
WINDOW_MINUTES = 3 * 24 * 60


def _num(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(str)


def _generic(lo: int, hi: int) -> st.SearchStrategy[str]:
    n = st.integers(lo, hi)
    step = st.integers(1, max(1, (hi - lo) // 2))
    return st.one_of(
        st.just("*"),
        step.map(lambda s: f"*/{s}"),
        _num(lo, hi),
        st.tuples(n, n).map(lambda ab: f"{ab[0]}-{ab[1]}"),  # may wrap
        st.tuples(n, n, step).map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"),
        st.tuples(n, step).map(lambda t: f"{t[0]}/{t[1]}"),
        st.lists(n, min_size=2, max_size=4, unique=True).map(lambda v: ",".join(map(str, v))),
    )


_dom = st.one_of(
    _generic(1, 31),
    st.sampled_from(["L", "LW", "L-1", "L-3W", "1W", "15W", "31W", "L,15"]),
    st.integers(1, 28).map(lambda d: f"{d}W"),
)
_dow = st.one_of(
    _generic(0, 7),
    st.sampled_from(["FRI-MON", "MON-FRI", "5L", "1#1", "5#3", "0#5", "SUN#2", "MON#1,FRI#3"]),
)
_month = st.one_of(st.just("*"), st.just("*"), _generic(1, 12))


@st.composite
def minute_expressions(draw: st.DrawFn) -> str:
    minute = draw(_generic(0, 59))
    hour = draw(st.one_of(st.just("*"), st.just("*/2"), _generic(0, 23)))
    dom = draw(st.one_of(st.just("*"), _dom))
    dow = draw(st.one_of(st.just("*"), st.just("*"), _dow))
    return f"{minute} {hour} {dom} {draw(_month)} {dow}"


@st.composite
def afters(draw: st.DrawFn) -> datetime:
    if draw(st.booleans()):
        base = draw(st.sampled_from(TRANSITIONS))
        offset = draw(st.integers(-2 * 24 * 3600, 12 * 3600))
        micro = draw(st.sampled_from([0, 0, 1, 500_000]))
        return base + timedelta(seconds=offset, microseconds=micro)
    return draw(
        st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2031, 1, 1), timezones=st.just(UTC))
    )


def _parse(text: str, zone: str) -> CronExpression:
    try:
        return CronExpression.parse(text, timezone=zone)
    except CronSyntaxError:
        assume(False)
        raise


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, fold=0)


def reference_next(expr: CronExpression, after: datetime, step: timedelta, limit: int):  # type: ignore[no-untyped-def]
    """Brute force over UTC instants, applying the documented DST rules literally."""
    c, zone = expr._c, expr.zone
    t = after.astimezone(UTC).replace(microsecond=0)
    if step == MINUTE:
        t = t.replace(second=0)
    t += step
    previous = (t - step).astimezone(zone)
    for _ in range(limit):
        local = t.astimezone(zone)
        jump = local.utcoffset() - previous.utcoffset()  # type: ignore[operator]
        if jump > timedelta(0):  # a gap ended at t: the skipped walls fire at t
            wall = _naive(local) - jump
            while wall < _naive(local):
                if c.matches_wall(wall):
                    return t
                wall += step
        if c.matches_wall(_naive(local)):
            second_pass = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
            if not second_pass or c.hour_wildcard:
                return t
        previous = local
        t += step
    return None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=minute_expressions(), zone=st.sampled_from(ZONES), after=afters())
def test_nothing_skipped_minute_resolution(text: str, zone: str, after: datetime) -> None:
    expr = _parse(text, zone)
    got = expr.next_fire_time(after)
    want = reference_next(expr, after, MINUTE, WINDOW_MINUTES)
    # Compare instants: PEP 495 makes inter-zone == False for second-pass (fold=1) times.
    if want is not None:
        assert got is not None and got.timestamp() == want.timestamp(), (got, want)
        assert got.utcoffset() == want.astimezone(expr.zone).utcoffset()
    else:
        assert got is None or got > after + WINDOW_MINUTES * MINUTE


@settings(max_examples=80, deadline=None)
@given(
    sec=_generic(0, 59),
    minute=st.one_of(st.just("*"), _generic(0, 59)),
    zone=st.sampled_from(ZONES),
    after=afters(),
)
def test_nothing_skipped_second_resolution(sec: str, minute: str, zone: str, after: datetime) -> None:
    expr = _parse(f"{sec} {minute} * * * *", zone)
    got = expr.next_fire_time(after)
    want = reference_next(expr, after, SECOND, 2 * 3600)
    if want is not None:
        assert got is not None and got.timestamp() == want.timestamp(), (got, want)
    else:
        assert got is None or got > after + 2 * 3600 * SECOND


@settings(max_examples=150, deadline=None)
@given(text=minute_expressions(), zone=st.sampled_from(ZONES), after=afters())
def test_results_match_and_strictly_increase(text: str, zone: str, after: datetime) -> None:
    expr = _parse(text, zone)
    times = list(expr.fire_times(after, 12))
    previous = after
    for moment in times:
        # timestamps: same-zone comparison of datetimes ignores fold (PEP 495)
        assert moment.timestamp() > previous.timestamp()
        assert moment.tzinfo is expr.zone
        assert moment.second == 0 and moment.microsecond == 0
        local = moment.astimezone(expr.zone)
        if expr.matches(moment):
            if local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset():
                assert expr._c.hour_wildcard  # a second-pass fire needs a wildcard hour
        else:
            # Only a coalesced spring-forward gap may fire on a non-matching wall time.
            before = (moment - SECOND).astimezone(expr.zone)
            assert before.utcoffset() < local.utcoffset()  # type: ignore[operator]
        previous = moment


@settings(max_examples=60, deadline=None)
@given(
    text=st.sampled_from(["0 0 * * *", "30 2 * * *", "0 * * * *", "*/7 * * * *", "0 1 * * 0", "0 0 L * *"]),
    zone=st.sampled_from(ZONES),
    after=afters(),
)
def test_chained_from_results_equals_fire_times(text: str, zone: str, after: datetime) -> None:
    expr = CronExpression.parse(text, timezone=zone)
    chained = []
    current = after
    for _ in range(8):
        nxt = expr.next_fire_time(current)
        assert nxt is not None
        chained.append(nxt)
        # Restart from an equal instant expressed in another zone: same answer.
        current = nxt.astimezone(UTC)
    expected = list(expr.fire_times(after, 8))
    assert [(t.isoformat(), t.fold) for t in chained] == [(t.isoformat(), t.fold) for t in expected]
