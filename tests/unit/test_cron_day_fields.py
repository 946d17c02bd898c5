"""How the crontab dialect combines day of month and day of week: cronie's rule.

cronie (and Vixie cron before it) sets a "star" flag for a day field when the field's text
*starts with* ``*``: ``src/entry.c`` tests ``if (ch == '*') e->flags |= DOM_STAR;`` on the
field's first character, before the field is parsed.  ``src/cron.c`` (``find_jobs``) then
matches a day with

    ((e->flags & DOM_STAR) || (e->flags & DOW_STAR))
        ? (bit_test(e->dow, dow) && bit_test(e->dom, dom))
        : (bit_test(e->dow, dow) || bit_test(e->dom, dom))

so the two fields are OR-ed only when *neither* starts with ``*``; ``*/3``, ``*/2,15`` and
``*,15`` count as unrestricted (AND), while ``1-31/3`` and ``15,*`` count as restricted
(OR), even where they name the same days.

Three checks: a hand-derived table (fire dates worked out from the rule and a 2026
calendar), a Hypothesis differential test against a small cronie-faithful matcher written
here (it shares no code with the engine), and croniter's ``implement_cron_bug=True`` mode as
a second opinion, with the cases where croniter differs from cronie listed.

Calendar facts used (2026): Jan 1 is a Thursday; Feb 1, Mar 1 and Nov 1 are Sundays;
Apr 1 and Jul 1 are Wednesdays; May 1 is a Friday; Jun 1 is a Monday; Sep 1 is a Tuesday.
2027: Jan 1 is a Friday; Oct 1 is a Friday.
"""

from __future__ import annotations

import inspect
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler_app.engine.cron import CronExpression, CronSyntaxError

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


def fire_dates(expression: str, count: int = 3, after: datetime = JAN1, **kw: str) -> list[str]:
    expr = CronExpression.parse(expression, **kw)
    return [t.date().isoformat() for t in expr.fire_times(after, count)]


def days(*stamps: str) -> list[str]:
    """'01-19' -> '2026-01-19'; a full ISO date is kept."""
    return [s if len(s) == 10 else f"2026-{s}" for s in stamps]


# (id, expression, expected first three fire dates after 2026-01-01T00:00Z; all at 00:00)
# "star" = the field's text starts with '*' (or is '?', an extension cron does not have).
STAR_TABLE = [
    # -- one field star, the other restricted: AND ------------------------------------------
    ("dom-star/dow-name", "0 0 * * MON", days("01-05", "01-12", "01-19")),
    # The example: Mondays that fall on day 1, 4, 7, ... 31.
    ("dom-step/dow-name", "0 0 */3 * mon", days("01-19", "02-16", "03-16")),
    # */10,15 = days 1, 11, 15, 21, 31; the first Friday among them is May 1.
    ("dom-step-list/dow-name", "0 0 */10,15 * fri", days("05-01", "05-15", "07-31")),
    # '*,15' starts with '*': the star flag is set, and every day of the month is allowed.
    ("dom-star-list/dow-number", "0 0 *,15 * 1", days("01-05", "01-12", "01-19")),
    # */5 in the day of week = 0, 5 (Sunday, Friday): the 13th when it is a Friday or Sunday.
    ("dow-step/dom-number", "0 0 13 * */5", days("02-13", "03-13", "09-13")),
    # */1 is every weekday, and it is star: the day of month alone decides.
    ("dow-step-1/dom-number", "0 0 15 * */1", days("01-15", "02-15", "03-15")),
    # */7,3 = 0, 7, 3 (Sunday and Wednesday): the 1st when it is a Sunday or a Wednesday.
    ("dow-step-list/dom-number", "0 0 1 * */7,3", days("02-01", "03-01", "04-01")),
    # -- both fields star: AND ----------------------------------------------------------------
    # Odd days that are a Sunday, Wednesday or Saturday (*/3 = 0, 3, 6).
    ("both-step", "0 0 */2 * */3", days("01-03", "01-07", "01-11")),
    ("both-step-1", "0 0 */1 * */1", days("01-02", "01-03", "01-04")),
    ("dom-step/dow-star", "0 0 */3 * *", days("01-04", "01-07", "01-10")),
    # -- both restricted: OR (unchanged) --------------------------------------------------------
    # Same days as */3, but it does not start with '*': day 1, 4, 7, ... or any Monday.
    ("both-restricted/range-step", "0 0 1-31/3 * mon", days("01-04", "01-05", "01-07")),
    ("both-restricted/crontab-5-example", "0 0 1,15 * 1", days("01-05", "01-12", "01-15")),
    # '15,*' does not start with '*': restricted, and it allows every day, so OR = every day.
    ("both-restricted/list-ending-in-star", "0 0 15,* * mon", days("01-02", "01-03", "01-04")),
    # 0/5 is not valid in cronie (a step needs '*' or a range); the engine reads it as 0, 5
    # and, as it does not start with '*', as restricted: the 13th, or a Sunday or a Friday.
    ("both-restricted/start-step", "0 0 13 * 0/5", days("01-02", "01-04", "01-09")),
    # THU/3 (cron rejects it) reads as Thursday through Saturday by 3 = Thursday; restricted.
    ("both-restricted/name-step", "0 0 2 * THU/3", days("01-02", "01-08", "01-15")),
    # -- '?' (an extension: the same as '*') ----------------------------------------------------
    ("dom-question/dow-name", "0 0 ? * MON", days("01-05", "01-12", "01-19")),
    ("dom-question/dow-step", "0 0 ? * */2", days("01-03", "01-04", "01-06")),
    ("dom-step/dow-question", "0 0 */3 * ?", days("01-04", "01-07", "01-10")),
    # -- seconds and year fields do not move the day fields' positions ---------------------------
    ("six-fields/dom-step", "0 0 0 */3 * MON", days("01-19", "02-16", "03-16")),
    ("seven-fields/dom-step", "0 0 0 */3 * MON 2027", ["2027-01-04", "2027-01-25", "2027-02-01"]),
    # -- macros, expanded as cronie does (@weekly sets the star flag, @monthly too) ---------------
    ("macro-weekly", "@weekly", days("01-04", "01-11", "01-18")),
    ("macro-monthly", "@monthly", days("02-01", "03-01", "04-01")),
    # -- extensions cron lacks follow the same first-character rule ------------------------------
    # Third Fridays on an odd day: Jan 16, Feb 20 and Mar 20 are even.
    ("dom-step/dow-nth", "0 0 */2 * 5#3", days("04-17", "05-15", "06-19")),
    # Last Fridays on day 1, 8, 15, 22 or 29.
    ("dom-step/dow-last", "0 0 */7 * 5L", ["2026-05-29", "2027-01-29", "2027-10-29"]),
    # Last day of the month on a Sunday, Tuesday, Thursday or Saturday.
    ("dom-last/dow-step", "0 0 L * */2", days("01-31", "02-28", "03-31")),
    ("dom-last/dow-name", "0 0 L * MON", days("01-05", "01-12", "01-19")),  # both restricted: OR
]


@pytest.mark.parametrize(("expression", "expected"), [pytest.param(e, x, id=i) for i, e, x in STAR_TABLE])
def test_day_fields_follow_cronie(expression: str, expected: list[str]) -> None:
    assert fire_dates(expression) == expected


def test_quartz_dialect_keeps_its_own_rule() -> None:
    """Quartz: one field is '?', the other applies alone; a '*/3' there is just every 3rd day."""
    assert fire_dates("0 0 0 */3 * ?", dialect="quartz") == days("01-04", "01-07", "01-10")
    # Quartz counts SUN=1: */3 = 1, 4, 7 = Sunday, Wednesday, Saturday.
    assert fire_dates("0 0 0 ? * */3", dialect="quartz") == days("01-03", "01-04", "01-07")
    assert fire_dates("0 0 0 ? * MON", dialect="quartz") == days("01-05", "01-12", "01-19")


def test_hashed_day_is_restricted() -> None:
    """H names one day: it does not start with '*', so with a restricted weekday it is OR."""
    key = "acme/report"
    (first,) = CronExpression.parse("0 0 H * *", hash_key=key).fire_times(JAN1, 1)
    h = first.day
    assert 1 <= h <= 28
    hashed = CronExpression.parse("0 0 H * MON", hash_key=key)
    plain = CronExpression.parse(f"0 0 {h} * MON")
    assert list(hashed.fire_times(JAN1, 12)) == list(plain.fire_times(JAN1, 12))
    # ... and an H weekday with a star day of month is AND, like any restricted weekday.
    (hashed_day,) = CronExpression.parse("0 0 * * H", hash_key=key).fire_times(JAN1, 1)
    weekday = hashed_day.isoweekday() % 7
    both = CronExpression.parse("0 0 */2 * H", hash_key=key)
    same = CronExpression.parse(f"0 0 */2 * {weekday}")
    assert list(both.fire_times(JAN1, 12)) == list(same.fire_times(JAN1, 12))


DESCRIPTIONS = [
    ("0 0 */3 * MON", "At 00:00 on every 3rd day of the month if that day is a Monday"),
    ("0 0 1-31/3 * MON", "At 00:00 on every 3rd day of the month or on Monday"),
    ("0 0 */3 * *", "At 00:00 on every 3rd day of the month"),
    ("0 0 13 * */5", "At 00:00 on day 13 of the month if that day is a Sunday or Friday"),
    (
        "0 0 */2 * */3",
        "At 00:00 on every 2nd day of the month if that day is a Sunday, Wednesday or Saturday",
    ),
    ("0 0 */2 * 5#3", "At 00:00 on every 2nd day of the month if that day is the third Friday of the month"),
    (
        "0 0 */10,15 * 1-5",
        "At 00:00 on days 1, 11, 15, 21 and 31 of the month if that day is a Monday through Friday",
    ),
    ("0 0 *,15 * MON", "At 00:00 on Monday"),
    ("0 0 15 * */1", "At 00:00 on day 15 of the month"),
    ("0 0 1,15 * 1", "At 00:00 on days 1 and 15 of the month or on Monday"),
    ("0 0 15,* * MON", "At 00:00"),  # OR with a field that allows every day: every day
]


@pytest.mark.parametrize(("expression", "text"), [pytest.param(e, t, id=e) for e, t in DESCRIPTIONS])
def test_describe_says_and_or_or(expression: str, text: str) -> None:
    assert CronExpression.parse(expression).describe() == text


# --------------------------------------------------------------------------------------
# A cronie-faithful reference, written from cronie's entry.c and cron.c (not the engine)
# --------------------------------------------------------------------------------------

_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def _cronie_number(text: str, low: int, names: list[str] | None) -> int:
    if text.isdigit():
        return int(text)
    assert names is not None and text.lower() in names, text
    return names.index(text.lower()) + low


def _cronie_list(text: str, low: int, high: int, names: list[str] | None = None) -> set[int]:
    """get_list/get_range: '*' ['/' step] | n | n '-' m ['/' step], comma-separated."""
    bits: set[int] = set()
    for part in text.split(","):
        rng, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        assert step > 0
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            a_text, b_text = rng.split("-")
            a, b = _cronie_number(a_text, low, names), _cronie_number(b_text, low, names)
            if a > b and b == 0:  # cronie: 'x-0' ends at 7 (Sunday written as 7)
                b = 7
        else:
            assert not slash, "cronie rejects a step after a single number"
            a = b = _cronie_number(rng, low, names)
        assert low <= a <= b <= high, part
        bits.update(range(a, b + 1, step))
    return bits


class CronieEntry:
    """One parsed 5-field line: bit sets plus the DOM_STAR / DOW_STAR flags."""

    def __init__(self, line: str) -> None:
        minute, hour, dom, month, dow = line.split()
        self.minutes = sorted(_cronie_list(minute, 0, 59))
        self.hours = sorted(_cronie_list(hour, 0, 23))
        self.dom_star = dom[0] == "*"  # entry.c: if (ch == '*') e->flags |= DOM_STAR;
        self.dom = _cronie_list(dom, 1, 31)
        self.months = _cronie_list(month, 1, 12, _MONTH_NAMES)
        self.dow_star = dow[0] == "*"
        self.dow = _cronie_list(dow, 0, 7, _DOW_NAMES)
        if 0 in self.dow or 7 in self.dow:  # "make sundays equivalent"
            self.dow |= {0, 7}

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        in_dom, in_dow = d.day in self.dom, d.isoweekday() % 7 in self.dow
        if self.dom_star or self.dow_star:  # cron.c find_jobs()
            return in_dom and in_dow
        return in_dom or in_dow

    def next_after(self, after: datetime, horizon_days: int) -> datetime | None:
        """First whole minute strictly after ``after`` (UTC) that matches."""
        day = after.date()
        for _ in range(horizon_days):
            if self.day_matches(day):
                for h in self.hours:
                    for m in self.minutes:
                        moment = datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)
                        if moment > after:
                            return moment
            day += timedelta(days=1)
        return None


HORIZON_DAYS = 8 * 366


# Rows that use what cronie does not have ('?', L, #, macros, seconds, years, 'a/n').
EXTENSION_ROWS = {
    "both-restricted/start-step",
    "both-restricted/name-step",
    "dom-question/dow-name",
    "dom-question/dow-step",
    "dom-step/dow-question",
    "six-fields/dom-step",
    "seven-fields/dom-step",
    "macro-weekly",
    "macro-monthly",
    "dom-step/dow-nth",
    "dom-step/dow-last",
    "dom-last/dow-step",
    "dom-last/dow-name",
}


def _cronie_rows() -> list[tuple[str, str, list[str]]]:
    return [row for row in STAR_TABLE if row[0] not in EXTENSION_ROWS]


@pytest.mark.parametrize(("expression", "expected"), [pytest.param(e, x, id=i) for i, e, x in _cronie_rows()])
def test_table_agrees_with_the_reference(expression: str, expected: list[str]) -> None:
    """The hand-derived table and the reference matcher check each other."""
    entry = CronieEntry(expression)
    got, t = [], JAN1
    for _ in range(len(expected)):
        nxt = entry.next_after(t, HORIZON_DAYS)
        assert nxt is not None
        got.append(nxt.date().isoformat())
        t = nxt
    assert got == expected


# Steps up to the engine's limits (cronie also takes larger ones, with a warning).
_MAX_STEP = {31: 31, 7: 7, 12: 12}


def _restricted(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    """cronie-valid items that do not start with '*' (names for some single values)."""
    n = st.integers(lo, hi)
    step = st.integers(1, _MAX_STEP[hi])
    named = names or []
    single = n.map(lambda v: named[v - lo] if v - lo < len(named) and v % 2 else str(v))
    rng = st.tuples(n, n).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    rng_step = st.tuples(n, n, step).map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}")
    item = st.one_of(single, rng, rng_step)
    return st.lists(item, min_size=1, max_size=3).map(",".join)


def _starry(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    """cronie-valid fields that start with '*': '*', '*/n', '*/n,...', '*,...'."""
    star = st.one_of(st.just("*"), st.integers(1, _MAX_STEP[hi]).map(lambda s: f"*/{s}"))
    tail = st.one_of(st.just(""), _restricted(lo, hi, names).map(lambda r: "," + r))
    return st.tuples(star, tail).map("".join)


def _day_field(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    return st.one_of(_starry(lo, hi, names), _restricted(lo, hi, names))


@st.composite
def cronie_lines(draw: st.DrawFn) -> str:
    minute = draw(st.sampled_from(["0", "30", "*/20", "5,35", "59"]))
    hour = draw(st.sampled_from(["0", "12", "*/8", "9-17/4", "23"]))
    dom = draw(_day_field(1, 31))
    month = draw(st.one_of(st.just("*"), st.just("*"), _restricted(1, 12, [m.upper() for m in _MONTH_NAMES])))
    dow = draw(_day_field(0, 7, _DOW_NAMES))
    return f"{minute} {hour} {dom} {month} {dow}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=cronie_lines(),
    after=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2031, 1, 1), timezones=st.just(UTC)
    ),
)
def test_crontab_dialect_matches_cronie(line: str, after: datetime) -> None:
    """Every line cronie accepts is accepted, and fires when cronie would (UTC, no DST)."""
    entry = CronieEntry(line)
    try:
        expr = CronExpression.parse(line)
    except CronSyntaxError as exc:
        # The engine refuses only lines that can never fire; cronie keeps them, silently idle.
        assert "never fires" in str(exc)
        assert entry.next_after(after, HORIZON_DAYS) is None
        return
    t = after
    for _ in range(4):
        want = entry.next_after(t, HORIZON_DAYS)
        got = expr.next_fire_time(t)
        if want is None:
            assert got is None or got > t + timedelta(days=HORIZON_DAYS - 1), (line, t, got)
            return
        assert got == want, (line, t, got, want)
        t = want


# --------------------------------------------------------------------------------------
# croniter as a second opinion
# --------------------------------------------------------------------------------------

try:  # in the dev extra; without it only this second opinion is skipped, not the module
    from croniter import croniter
except ImportError:  # pragma: no cover
    croniter = None
_HAS_CRON_BUG = croniter is not None and "implement_cron_bug" in inspect.signature(croniter).parameters

# Where croniter's implement_cron_bug mode still differs from cronie (croniter 7.0): it
# folds a field that lists every value into '*' before applying the rule, so '15,*' (restricted
# in cronie, hence OR = every day) becomes AND there and fires on Mondays only.
CRONITER_DIFFERS = {"both-restricted/list-ending-in-star": days("01-05", "01-12", "01-19")}


@pytest.mark.skipif(not _HAS_CRON_BUG, reason="no croniter with an implement_cron_bug option")
@pytest.mark.parametrize(
    ("case_id", "expression", "expected"), [pytest.param(i, e, x, id=i) for i, e, x in _cronie_rows()]
)
def test_croniter_cron_bug_mode_agrees(case_id: str, expression: str, expected: list[str]) -> None:
    assert croniter is not None
    it = croniter(expression, JAN1, implement_cron_bug=True)
    got = [it.get_next(datetime).date().isoformat() for _ in range(len(expected))]
    assert got == CRONITER_DIFFERS.get(case_id, expected)
