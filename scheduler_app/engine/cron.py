"""Cron expression engine: parsing, validation, next-fire-time search and descriptions.

Pure Python (standard library only). Two dialects are supported:

* ``crontab`` (default): 5 fields ``minute hour day-of-month month day-of-week``; 6 fields
  put seconds first; 7 fields add a year last.  Day of week 0-7 (0 and 7 are Sunday).
  The day fields combine as in cronie/Vixie cron: a day field whose text starts with ``*``
  (``*``, ``*/3``, ``*,15``; or is ``?``) is "star", and if either field is star a day must
  match both fields; only when neither is star does a day match if either field matches.
* ``quartz``: the Quartz ``CronExpression`` syntax (6 or 7 fields, seconds first, day of
  week 1-7 with SUN=1, exactly one of the day fields must be ``?``).

Fire times are computed in local wall time of the expression's IANA time zone and then
converted to instants once, with explicit rules for DST gaps and folds (see docs/cron.md):

* a wall time inside a spring-forward gap fires once, at the first instant after the gap
  (several wall times inside one gap coalesce into that single fire);
* a wall time occurring twice in a fall-back fold fires once, at its first occurrence,
  unless the hour field is a wildcard (``*`` or ``*/n``), in which case it fires in both
  passes (the expression follows real elapsed time).

The search never runs without end: it gives up :data:`HORIZON_YEARS` years after the
starting point and returns ``None``.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "HORIZON_YEARS",
    "MAX_YEAR",
    "MIN_YEAR",
    "CronExpression",
    "CronSyntaxError",
]

#: next_fire_time() gives up this many years after its ``after`` argument.
HORIZON_YEARS: Final = 100
#: Smallest and largest year accepted in the year field.
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 2999

Dialect = Literal["crontab", "quartz"]  # the accepted values of `dialect`

_UTC = UTC
# Searches stop here: a year later, local times can overflow datetime when made UTC.
_LAST_YEAR: Final = 9998

# Canonical field indexes.
SEC, MIN, HOUR, DOM, MON, DOW, YEAR = range(7)
_FIELD_NAMES: Final = (
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
    "year",
)

_MONTH_NAMES: Final = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
# Sunday-based index 0..6 (crontab numbering).
_DAY_NAMES: Final = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_DAY_WORDS: Final = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_WORDS: Final = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_ORDINALS: Final = ("", "first", "second", "third", "fourth", "fifth")

_MACROS: Final = {
    "@YEARLY": ("0 0 1 1 *", "0 0 0 1 1 ?"),
    "@ANNUALLY": ("0 0 1 1 *", "0 0 0 1 1 ?"),
    "@MONTHLY": ("0 0 1 * *", "0 0 0 1 * ?"),
    "@WEEKLY": ("0 0 * * 0", "0 0 0 ? * 1"),
    "@DAILY": ("0 0 * * *", "0 0 0 * * ?"),
    "@MIDNIGHT": ("0 0 * * *", "0 0 0 * * ?"),
    "@HOURLY": ("0 * * * *", "0 0 * * * ?"),
}


class CronSyntaxError(ValueError):
    """A malformed (or never-firing) cron expression, or an unknown time zone.

    ``field`` is the 1-based position of the offending field in the expression as written
    (or ``None`` when the problem is not tied to one field), ``text`` the offending text and
    ``reason`` the explanation.  ``str()`` reads e.g.
    ``field 3 (day of month): '32' is outside 1-31``.
    """

    def __init__(
        self,
        reason: str,
        *,
        field: int | None = None,
        text: str | None = None,
        field_name: str | None = None,
    ) -> None:
        self.field = field
        self.text = text
        self.reason = reason
        self.field_name = field_name
        super().__init__(self._message())

    def _message(self) -> str:
        subject = f"'{self.text}' {self.reason}" if self.text is not None else self.reason
        if self.field is None:
            return subject
        return f"field {self.field} ({self.field_name}): {subject}"

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_error,
            (self.reason, self.field, self.text, self.field_name),
        )


def _rebuild_error(
    reason: str, field: int | None, text: str | None, field_name: str | None
) -> CronSyntaxError:
    return CronSyntaxError(reason, field=field, text=text, field_name=field_name)


class _FieldError(Exception):
    """Internal: raised by field parsers, turned into CronSyntaxError with the position."""

    def __init__(self, reason: str, text: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.text = text


# --------------------------------------------------------------------------------------
# Parsing of single fields
# --------------------------------------------------------------------------------------

_INT_RE: Final = re.compile(r"\d+")


class _FieldSpec:
    """Parsed field: plain values plus the day specials."""

    __slots__ = ("last_days", "last_weekdays", "nth_weekdays", "values", "weekdays_w")

    def __init__(self) -> None:
        self.values: set[int] = set()
        # day of month specials
        self.last_days: set[tuple[int, bool]] = set()  # (offset from last day, nearest weekday)
        self.weekdays_w: set[int] = set()  # nW: nearest weekday to day n
        # day of week specials (weekday numbers are 0=Sunday..6=Saturday)
        self.last_weekdays: set[int] = set()  # nL
        self.nth_weekdays: set[tuple[int, int]] = set()  # n#k


def _bounds(kind: int, dialect: str) -> tuple[int, int]:
    if kind in (SEC, MIN):
        return 0, 59
    if kind == HOUR:
        return 0, 23
    if kind == DOM:
        return 1, 31
    if kind == MON:
        return 1, 12
    if kind == DOW:
        return (1, 7) if dialect == "quartz" else (0, 7)
    return MIN_YEAR, MAX_YEAR


def _max_step(kind: int) -> int:
    return {SEC: 59, MIN: 59, HOUR: 23, DOM: 31, MON: 12, DOW: 7}.get(kind, MAX_YEAR - MIN_YEAR)


def _hash_value(hash_key: str, kind: int, modulus: int) -> int:
    digest = hashlib.sha256(f"{hash_key}\x00{_FIELD_NAMES[kind]}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % modulus


class _FieldParser:
    """Parses one field of one expression."""

    def __init__(self, kind: int, dialect: str, hash_key: str) -> None:
        self.kind = kind
        self.dialect = dialect
        self.hash_key = hash_key
        self.lo, self.hi = _bounds(kind, dialect)
        # range used by '*' and open steps ('a/n'); crontab day-of-week uses 0-6
        self.star_hi = 6 if (kind == DOW and dialect == "crontab") else self.hi

    # -- values -------------------------------------------------------------------------
    def value(self, token: str) -> tuple[int, bool]:
        """Return (raw value, was_a_name) for a number or a name."""
        if _INT_RE.fullmatch(token):
            v = int(token)
            if not self.lo <= v <= self.hi:
                raise _FieldError(f"is outside {self.lo}-{self.hi}", token)
            return v, False
        if self.kind == MON and token in _MONTH_NAMES:
            return _MONTH_NAMES[token], True
        if self.kind == DOW and token in _DAY_NAMES:
            v = _DAY_NAMES[token]
            return (v + 1 if self.dialect == "quartz" else v), True
        if token == "":
            raise _FieldError("is missing a value")
        if self.kind == MON:
            raise _FieldError("is not a month number or name (JAN-DEC)", token)
        if self.kind == DOW:
            raise _FieldError("is not a day-of-week number or name (SUN-SAT)", token)
        raise _FieldError(f"is not a number in {self.lo}-{self.hi}", token)

    def normalize(self, v: int) -> int:
        """Raw dialect value -> canonical value (day of week 0=Sunday..6=Saturday)."""
        if self.kind == DOW:
            return (v - 1) if self.dialect == "quartz" else v % 7
        return v

    def step(self, token: str, item: str) -> int:
        if not _INT_RE.fullmatch(token):
            raise _FieldError("has a step that is not a positive whole number", item)
        s = int(token)
        limit = _max_step(self.kind)
        if not 1 <= s <= limit:
            raise _FieldError(f"has a step of {s}; steps must be between 1 and {limit}", item)
        return s

    def expand(self, start: int, stop: int, step: int, item: str) -> list[int]:
        """Raw range start-stop (inclusive, wrapping when start > stop) by step."""
        if start <= stop:
            return list(range(start, stop + 1, step))
        if self.kind == YEAR:
            raise _FieldError("is a range whose start is after its end", item)
        # wrap around: period is the number of distinct values of the field
        if self.kind == DOW:
            period, top = 7, (7 if self.dialect == "quartz" else 6)
            if self.dialect == "crontab" and start == 7:
                start = 0
                if start <= stop:
                    return list(range(start, stop + 1, step))
        else:
            period, top = self.hi - self.lo + 1, self.hi
        out = []
        for i in range(start, stop + period + 1, step):
            out.append(i - period if i > top else i)
        return out

    # -- items --------------------------------------------------------------------------
    def parse(self, text: str) -> _FieldSpec:
        spec = _FieldSpec()
        items = text.split(",")
        for item in items:
            if item == "":
                raise _FieldError("has an empty list item", text)
            self.parse_item(item, spec, len(items) > 1)
        return spec

    def parse_item(self, item: str, spec: _FieldSpec, in_list: bool) -> None:
        kind = self.kind
        if item == "?":
            if kind not in (DOM, DOW):
                raise _FieldError("is only allowed in the day-of-month and day-of-week fields", item)
            if in_list:
                raise _FieldError("cannot be combined with other values", item)
            spec.values.update(range(self.lo, self.star_hi + 1))
            return
        if kind == DOM:
            if self.parse_dom_special(item, spec):
                return
        elif kind == DOW:
            if self.parse_dow_special(item, spec):
                return
        elif re.fullmatch(r"L(-\d+)?W?|\d+[LW]", item):
            raise _FieldError("uses L or W, which are only allowed in the day fields", item)
        if kind != DOM and re.fullmatch(r"(\d+|L(-\d+)?)W", item):
            raise _FieldError("uses W, which is only allowed in the day-of-month field", item)
        if "#" in item and kind != DOW:
            raise _FieldError("uses #, which is only allowed in the day-of-week field", item)

        base, slash, step_text = item.partition("/")
        step = self.step(step_text, item) if slash else 0
        if base.startswith("H"):
            self.parse_hash(base, step, item, spec)
            return
        if base == "*":
            start, stop = self.lo, self.star_hi
        elif "-" in base:
            a_text, _, b_text = base.partition("-")
            a, a_name = self.value(a_text)
            b, b_name = self.value(b_text)
            if self.dialect == "quartz" and a_name != b_name:
                raise _FieldError("mixes a name and a number in one range", item)
            start, stop = a, b
        else:
            v, _ = self.value(base)
            if not slash:
                spec.values.add(self.normalize(v))
                return
            start, stop = v, self.star_hi if v <= self.star_hi else self.hi
        values = self.expand(start, stop, step or 1, item)
        spec.values.update(self.normalize(v) for v in values)

    def parse_hash(self, base: str, step: int, item: str, spec: _FieldSpec) -> None:
        kind = self.kind
        if kind == YEAR:
            raise _FieldError("uses H, which is not allowed in the year field", item)
        m = re.fullmatch(r"H(?:\((\w+)-(\w+)\))?", base)
        if not m:
            raise _FieldError("is not a valid H (hash) form: use H, H(a-b), H/n or H(a-b)/n", item)
        if m.group(1) is not None:
            lo, _ = self.value(m.group(1))
            hi, _ = self.value(m.group(2))
            if lo > hi:
                raise _FieldError("is an H range whose start is after its end", item)
        else:
            lo = self.lo
            # Like Jenkins: H in the day of month stays within 1-28 so it fires every month.
            hi = 28 if kind == DOM else self.star_hi
        if step:
            offset = _hash_value(self.hash_key, kind, min(step, hi - lo + 1))
            values = range(lo + offset, hi + 1, step)
        else:
            values = range(lo + _hash_value(self.hash_key, kind, hi - lo + 1), hi + 1)[:1]
        spec.values.update(self.normalize(v) for v in values)

    def parse_dom_special(self, item: str, spec: _FieldSpec) -> bool:
        if not ("L" in item or item.endswith("W")):
            return False
        m = re.fullmatch(r"L(?:-(\d+))?(W?)", item)
        if m:
            offset = int(m.group(1)) if m.group(1) is not None else 0
            if offset > 30:
                raise _FieldError("has an offset from the last day above 30", item)
            spec.last_days.add((offset, bool(m.group(2))))
            return True
        m = re.fullmatch(r"(\d+)W", item)
        if m:
            v, _ = self.value(m.group(1))
            spec.weekdays_w.add(v)
            return True
        if item.endswith("W") and ("-" in item or "/" in item or "," in item or "*" in item):
            raise _FieldError("applies W to a range; W needs a single day of the month", item)
        if re.fullmatch(r"\d+L", item):
            raise _FieldError("uses nL, which is only allowed in the day-of-week field", item)
        raise _FieldError("is not a valid day-of-month value", item)

    def parse_dow_special(self, item: str, spec: _FieldSpec) -> bool:
        if item == "L":
            if self.dialect != "quartz":
                raise _FieldError(
                    "is only allowed in the quartz dialect (where it means Saturday); "
                    "use e.g. 5L for the last Friday",
                    item,
                )
            spec.values.add(6)
            return True
        m = re.fullmatch(r"(\w+?)L", item)
        if m and "#" not in item:
            v, _ = self.value(m.group(1))
            spec.last_weekdays.add(self.normalize(v))
            return True
        if "#" in item:
            m = re.fullmatch(r"(\w+)#(\w*)", item)
            if not m:
                raise _FieldError("is not a valid n#k value (e.g. 5#3 or FRI#3)", item)
            v, _ = self.value(m.group(1))
            k_text = m.group(2)
            if not (_INT_RE.fullmatch(k_text) and 1 <= int(k_text) <= 5):
                raise _FieldError(f"has #{k_text}; the occurrence after # must be 1-5", item)
            spec.nth_weekdays.add((self.normalize(v), int(k_text)))
            return True
        if item.endswith("W"):
            raise _FieldError("uses W, which is only allowed in the day-of-month field", item)
        return False


# --------------------------------------------------------------------------------------
# Compiled expression
# --------------------------------------------------------------------------------------


def _next_table(allowed: set[int], size: int) -> tuple[int, ...]:
    """table[i] = smallest allowed value >= i, or -1; for i in 0..size-1."""
    out = [-1] * size
    nxt = -1
    for i in range(size - 1, -1, -1):
        if i in allowed:
            nxt = i
        out[i] = nxt
    return tuple(out)


_DayTable = tuple[int, ...]


class _DayRule:
    """Computes the matching days of a month from (days in month, weekday of the 1st)."""

    __slots__ = ("dom", "dow", "mode")

    def __init__(self, dom: _FieldSpec, dow: _FieldSpec, mode: str) -> None:
        self.dom = dom
        self.dow = dow
        self.mode = mode  # "all", "dom", "dow", "both" (AND) or "either" (OR)

    @staticmethod
    def _w(day: int, ndays: int, wd1: int) -> int:
        """Nearest weekday to ``day`` (never leaving the month)."""
        wd = (wd1 + day - 1) % 7
        if wd == 6:  # Saturday
            return day + 2 if day == 1 else day - 1
        if wd == 0:  # Sunday
            return day - 2 if day == ndays else day + 1
        return day

    def dom_days(self, ndays: int, wd1: int) -> set[int]:
        spec = self.dom
        days = {d for d in spec.values if d <= ndays}
        for n in spec.weekdays_w:
            if n <= ndays:
                days.add(self._w(n, ndays, wd1))
        for offset, nearest in spec.last_days:
            d = ndays - offset
            if d >= 1:
                days.add(self._w(d, ndays, wd1) if nearest else d)
        return days

    def dow_days(self, ndays: int, wd1: int) -> set[int]:
        spec = self.dow
        days: set[int] = set()
        for w in spec.values:
            days.update(range(1 + (w - wd1) % 7, ndays + 1, 7))
        wl = (wd1 + ndays - 1) % 7
        for w in spec.last_weekdays:
            days.add(ndays - (wl - w) % 7)
        for w, k in spec.nth_weekdays:
            d = 1 + (w - wd1) % 7 + 7 * (k - 1)
            if d <= ndays:
                days.add(d)
        return days

    def days(self, ndays: int, wd1: int) -> set[int]:
        mode = self.mode
        if mode == "all":
            return set(range(1, ndays + 1))
        if mode == "dom":
            return self.dom_days(ndays, wd1)
        if mode == "dow":
            return self.dow_days(ndays, wd1)
        if mode == "both":
            return self.dom_days(ndays, wd1) & self.dow_days(ndays, wd1)
        return self.dom_days(ndays, wd1) | self.dow_days(ndays, wd1)


class _Compiled:
    """The parsed, precomputed form of an expression (shared through the parse cache)."""

    def __init__(
        self,
        specs: list[_FieldSpec],
        day_rule: _DayRule,
        zone: ZoneInfo,
        hour_wildcard: bool,
        year_wildcard: bool,
        texts: list[str],
    ) -> None:
        self.specs = specs
        self.day_rule = day_rule
        self.zone = zone
        self.fixed_offset = _is_fixed_offset(zone)
        self.hour_wildcard = hour_wildcard
        self.texts = texts  # canonical field texts sec..year ('*' when absent)
        self.next_sec = _next_table(specs[SEC].values, 61)
        self.next_min = _next_table(specs[MIN].values, 61)
        self.next_hour = _next_table(specs[HOUR].values, 25)
        self.next_mon = _next_table(specs[MON].values, 14)
        self.years: tuple[int, ...] | None = None if year_wildcard else tuple(sorted(specs[YEAR].values))
        self._year_set = frozenset(self.years) if self.years is not None else frozenset()
        self._day_tables: dict[int, _DayTable] = {}
        self._shape_tables: dict[int, _DayTable] = {}

    # -- calendar search ----------------------------------------------------------------
    def day_table(self, year: int, month: int) -> _DayTable:
        key = year * 16 + month
        table = self._day_tables.get(key)
        if table is None:
            wd1, ndays = calendar.monthrange(year, month)
            wd1 = (wd1 + 1) % 7  # Sunday = 0
            shape = ndays * 8 + wd1
            table = self._shape_tables.get(shape)
            if table is None:
                table = _next_table(self.day_rule.days(ndays, wd1), 34)
                self._shape_tables[shape] = table
            if len(self._day_tables) > 4096:
                self._day_tables.clear()
            self._day_tables[key] = table
        return table

    def next_year(self, y: int) -> int:
        """Smallest allowed year >= y, or -1."""
        years = self.years
        if years is None:
            return y
        if y in self._year_set:
            return y
        for candidate in years:
            if candidate >= y:
                return candidate
        return -1

    def next_wall(
        self, y: int, mo: int, d: int, h: int, mi: int, s: int, ylimit: int
    ) -> tuple[int, int, int, int, int, int] | None:
        """Smallest matching wall time >= the given components (which may overflow by one).

        Components may be one past their maximum (e.g. s == 60); the search carries over.
        Returns None past year ``ylimit``.
        """
        next_sec, next_min, next_hour, next_mon = (
            self.next_sec,
            self.next_min,
            self.next_hour,
            self.next_mon,
        )
        years = self.years
        while True:
            if y > ylimit:
                return None
            if years is not None:
                y2 = self.next_year(y)
                if y2 < 0 or y2 > ylimit:
                    return None
                if y2 != y:
                    y, mo, d, h, mi, s = y2, 1, 1, 0, 0, 0
            m2 = next_mon[mo]
            if m2 < 0:
                y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                continue
            if m2 != mo:
                mo, d, h, mi, s = m2, 1, 0, 0, 0
            d2 = self.day_table(y, mo)[d]
            if d2 < 0:
                mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
                continue
            if d2 != d:
                d, h, mi, s = d2, 0, 0, 0
            h2 = next_hour[h]
            if h2 < 0:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if h2 != h:
                h, mi, s = h2, 0, 0
            m2 = next_min[mi]
            if m2 < 0:
                h, mi, s = h + 1, 0, 0
                continue
            if m2 != mi:
                mi, s = m2, 0
            s2 = next_sec[s]
            if s2 < 0:
                mi, s = mi + 1, 0
                continue
            return y, mo, d, h, mi, s2

    def matches_wall(self, w: datetime) -> bool:
        """Whether a naive wall time matches the calendar fields."""
        return (
            w.second in self.specs[SEC].values
            and w.minute in self.specs[MIN].values
            and w.hour in self.specs[HOUR].values
            and w.month in self.specs[MON].values
            and (self.years is None or w.year in self._year_set)
            and self.day_table(w.year, w.month)[w.day] == w.day
        )

    def can_ever_fire(self) -> bool:
        """Whether some (allowed year, allowed month) has a matching day."""
        rule = self.day_rule
        months = sorted(self.specs[MON].values)
        if self.years is None:
            # Every (month, length, weekday of the 1st) combination occurs in the
            # 400-year Gregorian cycle, February with 29 days included.
            for mo in months:
                lengths = (28, 29) if mo == 2 else (calendar.monthrange(2001, mo)[1],)
                for ndays in lengths:
                    for wd1 in range(7):
                        if rule.days(ndays, wd1):
                            return True
            return False
        seen: set[tuple[int, int]] = set()
        for y in self.years:
            for mo in months:
                wd1, ndays = calendar.monthrange(y, mo)
                shape = (ndays, (wd1 + 1) % 7)
                if shape in seen:
                    continue
                seen.add(shape)
                if rule.days(*shape):
                    return True
        return False


# --------------------------------------------------------------------------------------
# Time zone helpers
# --------------------------------------------------------------------------------------


def _transition(zone: tzinfo, lo: int, hi: int) -> int:
    """First POSIX second in (lo, hi] whose UTC offset equals the offset at ``hi``."""
    target = datetime.fromtimestamp(hi, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi


_FIXED_ZONES: Final = frozenset(
    {"UTC", "UCT", "GMT", "Zulu", "Universal", "Greenwich", "GMT0", "GMT+0", "GMT-0"}
)


def _is_fixed_offset(zone: ZoneInfo) -> bool:
    """Zones known to have one UTC offset forever (UTC and the Etc/ zones)."""
    key = zone.key
    return key in _FIXED_ZONES or key.startswith("Etc/")


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or name != name.strip():
        raise CronSyntaxError("is not a known IANA time zone", text=str(name))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronSyntaxError("is not a known IANA time zone", text=name) from exc


# --------------------------------------------------------------------------------------
# Expression parsing
# --------------------------------------------------------------------------------------

_CRONTAB_LAYOUTS: Final = {
    5: (MIN, HOUR, DOM, MON, DOW),
    6: (SEC, MIN, HOUR, DOM, MON, DOW),
    7: (SEC, MIN, HOUR, DOM, MON, DOW, YEAR),
}
_QUARTZ_LAYOUTS: Final = {
    6: (SEC, MIN, HOUR, DOM, MON, DOW),
    7: (SEC, MIN, HOUR, DOM, MON, DOW, YEAR),
}


@functools.lru_cache(maxsize=4096)
def _compile(expression: str, dialect: str, timezone_name: str, hash_key: str) -> _Compiled:
    if dialect not in ("crontab", "quartz"):
        raise CronSyntaxError("is not a dialect (use 'crontab' or 'quartz')", text=str(dialect))
    if not isinstance(expression, str):
        raise CronSyntaxError("the expression must be a string")
    zone = _zone(timezone_name)
    source = expression.strip().upper()
    if source.startswith("@"):
        macro = _MACROS.get(source)
        if macro is None:
            raise CronSyntaxError(
                "is not a known macro (use @yearly, @annually, @monthly, @weekly, @daily, "
                "@midnight or @hourly)",
                text=expression.strip(),
            )
        source = macro[0] if dialect == "crontab" else macro[1]
    parts = source.split()
    if not parts:
        raise CronSyntaxError("the expression is empty")
    layouts = _CRONTAB_LAYOUTS if dialect == "crontab" else _QUARTZ_LAYOUTS
    layout = layouts.get(len(parts))
    if layout is None:
        counts = "5, 6 or 7" if dialect == "crontab" else "6 or 7"
        raise CronSyntaxError(
            f"has {len(parts)} field{'s' if len(parts) != 1 else ''}; the {dialect} dialect expects {counts}",
            text=expression.strip(),
        )
    texts = ["0", "*", "*", "*", "*", "*", "*"]
    position = {}
    for pos, (kind, text) in enumerate(zip(layout, parts, strict=True), start=1):
        texts[kind] = text
        position[kind] = pos

    original = expression.split() if len(expression.split()) == len(parts) else parts

    def error(kind: int, reason: str, text: str) -> CronSyntaxError:
        pos = position.get(kind)
        if pos is not None:  # show the text as the user wrote it (parsing is uppercase)
            written = original[pos - 1]
            at = written.upper().find(text)
            if text and at >= 0:
                text = written[at : at + len(text)]
        return CronSyntaxError(reason, field=pos, text=text, field_name=_FIELD_NAMES[kind])

    if dialect == "quartz":
        _quartz_checks(texts, error)
    specs: list[_FieldSpec] = []
    for kind in range(7):
        text = texts[kind]
        try:
            specs.append(_FieldParser(kind, dialect, hash_key).parse(text))
        except _FieldError as exc:
            raise error(kind, exc.reason, exc.text if exc.text is not None else text) from None

    dom, dow = specs[DOM], specs[DOW]
    if dialect == "quartz":
        if texts[DOM] == "?":
            mode = "all" if texts[DOW] == "*" else "dow"
        else:
            mode = "all" if texts[DOM] == "*" else "dom"
    else:
        mode = _crontab_day_mode(texts[DOM], texts[DOW], dom, dow)
    hour_text = texts[HOUR]
    hour_wildcard = hour_text == "*" or re.fullmatch(r"\*/\d+", hour_text) is not None
    compiled = _Compiled(
        specs,
        _DayRule(dom, dow, mode),
        zone,
        hour_wildcard,
        texts[YEAR] == "*",
        texts,
    )
    if not compiled.can_ever_fire():
        raise CronSyntaxError(
            "never fires: no allowed month (and year) has a matching day",
            text=expression.strip(),
        )
    return compiled


def _crontab_day_mode(dom_text: str, dow_text: str, dom: _FieldSpec, dow: _FieldSpec) -> str:
    """How the crontab dialect combines the day fields: cronie's rule, character for character.

    cronie's entry.c sets DOM_STAR/DOW_STAR when the field's *first character* is '*', before
    parsing it, and cron.c matches ``(DOM_STAR || DOW_STAR) ? dom && dow : dom || dow``.  So
    '*/3' or '*,15' is star (AND) while '1-31/3' or '15,*' is restricted (OR), although each
    pair names the same days.  '?' (which cronie rejects) is read as '*'.  Crontab lines
    pasted from Linux must keep their meaning, so we follow the text, not the value sets.
    """
    dom_star = dom_text.startswith("*") or dom_text == "?"
    dow_star = dow_text.startswith("*") or dow_text == "?"
    dom_all = dom.values.issuperset(range(1, 32))
    dow_all = dow.values.issuperset(range(7))
    if not (dom_star or dow_star):
        # OR: a field that allows every day ('1-31', '15,*') makes every day match.
        return "all" if dom_all or dow_all else "either"
    # AND: a field that allows every day adds nothing, so leave it out.
    if dom_all:
        return "all" if dow_all else "dow"
    return "dom" if dow_all else "both"


def _quartz_checks(texts: list[str], error: Callable[[int, str, str], CronSyntaxError]) -> None:
    """Rules of Quartz's parser that the shared grammar does not already enforce."""
    dom, dow = texts[DOM], texts[DOW]
    for kind in (SEC, MIN, HOUR, MON, YEAR):
        if "?" in texts[kind]:
            raise error(kind, "is only allowed in the day-of-month and day-of-week fields", texts[kind])
    if dom == "?" and dow == "?":
        raise error(DOW, "cannot be used in both day fields; put '?' in exactly one", dow)
    if dom != "?" and dow != "?":
        raise error(
            DOW,
            f"conflicts with day of month '{dom}': the quartz dialect needs '?' in exactly "
            "one of the two day fields",
            dow,
        )
    if "L" in dom and "," in dom:
        raise error(DOM, "combines L with other days, which Quartz does not support", dom)
    if "L" in dow and "," in dow:
        raise error(DOW, "combines L with other days, which Quartz does not support", dow)
    if dow.count("#") > 1:
        raise error(DOW, "has more than one #, which Quartz does not support", dow)


# --------------------------------------------------------------------------------------
# Public class
# --------------------------------------------------------------------------------------


class CronExpression:
    """An immutable, hashable cron expression bound to a dialect, time zone and hash key.

    Build one with :meth:`parse` (cached) or the constructor (same arguments).
    """

    __slots__ = ("_c", "dialect", "expression", "hash_key", "timezone")

    expression: str
    dialect: str
    timezone: str
    hash_key: str | None
    _c: _Compiled

    def __init__(
        self,
        expression: str,
        dialect: str = "crontab",
        timezone: str = "UTC",
        hash_key: str | None = None,
    ) -> None:
        if isinstance(timezone, ZoneInfo):
            timezone = timezone.key
        compiled = _compile(expression, dialect, timezone, hash_key or "")
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "dialect", dialect)
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "hash_key", hash_key)
        object.__setattr__(self, "_c", compiled)

    @classmethod
    def parse(
        cls,
        expression: str,
        dialect: str = "crontab",
        timezone: str = "UTC",
        hash_key: str | None = None,
    ) -> CronExpression:
        """Parse (cached) an expression; raises :class:`CronSyntaxError` if malformed."""
        if cls is not CronExpression:
            return cls(expression, dialect, timezone, hash_key)
        return _parse_cached(expression, dialect, timezone, hash_key)

    # -- immutability, equality, pickling ------------------------------------------------
    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _key(self) -> tuple[str, str, str, str | None]:
        return (self.expression, self.dialect, self.timezone, self.hash_key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpression):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[object, tuple[str, str, str, str | None]]:
        return (_restore, self._key())

    def __repr__(self) -> str:
        extra = f", hash_key={self.hash_key!r}" if self.hash_key is not None else ""
        return (
            f"CronExpression({self.expression!r}, dialect={self.dialect!r}, "
            f"timezone={self.timezone!r}{extra})"
        )

    def __str__(self) -> str:
        return self.expression

    @property
    def zone(self) -> ZoneInfo:
        """The time zone as a :class:`zoneinfo.ZoneInfo`."""
        return self._c.zone

    # -- matching -----------------------------------------------------------------------
    def matches(self, moment: datetime) -> bool:
        """Whether the local wall time of ``moment`` (to the second) matches the fields.

        This ignores the DST rules (a coalesced gap fire does not "match").
        """
        if moment.tzinfo is None:
            raise ValueError("moment must be a timezone-aware datetime")
        local = moment.astimezone(self._c.zone)
        return self._c.matches_wall(local.replace(tzinfo=None, microsecond=0))

    # -- search -------------------------------------------------------------------------
    def next_fire_time(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (aware), or None.

        The result is an aware datetime in the expression's time zone.  Returns None when
        there is no fire time within :data:`HORIZON_YEARS` years after ``after``.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("after must be a timezone-aware datetime")
        c = self._c
        zone = c.zone
        if c.fixed_offset:  # no DST: no gaps or folds to handle
            local = after.astimezone(zone)
            found = c.next_wall(
                local.year,
                local.month,
                local.day,
                local.hour,
                local.minute,
                local.second + 1,
                min(local.year + HORIZON_YEARS, _LAST_YEAR),
            )
            return None if found is None else datetime(*found, tzinfo=zone)
        local = after.astimezone(_UTC).astimezone(zone)
        offset = local.utcoffset()
        other = local.replace(fold=1 - local.fold)
        y = local.year
        ylimit = min(y + HORIZON_YEARS, _LAST_YEAR)
        if other.utcoffset() != offset:
            return self._next_in_fold(local, other, ylimit)
        found = c.next_wall(y, local.month, local.day, local.hour, local.minute, local.second + 1, ylimit)
        if found is None:
            return None
        return self._materialize(found, ylimit)

    def _materialize(self, found: tuple[int, int, int, int, int, int], ylimit: int) -> datetime | None:
        """Turn a wall time that lies after ``after`` (not in its fold) into an instant."""
        zone = self._c.zone
        dt = datetime(*found, tzinfo=zone)
        off0 = dt.utcoffset()
        dt1 = dt.replace(fold=1)
        off1 = dt1.utcoffset()
        if off0 == off1:
            return dt
        assert off0 is not None and off1 is not None
        if off0 > off1:
            # Ambiguous (fall-back fold): the first occurrence comes first.
            return dt
        # Nonexistent (spring-forward gap): fire at the first instant after the gap.
        u = _transition(zone, _epoch(dt1), _epoch(dt))
        return datetime.fromtimestamp(u, zone)

    def _next_in_fold(self, local: datetime, other: datetime, ylimit: int) -> datetime | None:
        """next_fire_time() when ``after`` falls inside a fall-back fold."""
        c = self._c
        zone = c.zone
        first, second = (local, other) if local.fold == 0 else (other, local)
        off0, off1 = first.utcoffset(), second.utcoffset()
        assert off0 is not None and off1 is not None
        u = _transition(zone, _epoch(first), _epoch(second))
        fold_end = datetime.fromtimestamp(u, _UTC).replace(tzinfo=None) + off0  # T
        fold_start = fold_end - (off0 - off1)
        wall = local.replace(tzinfo=None, microsecond=0)

        def search(w: datetime, strict: bool) -> tuple[int, int, int, int, int, int] | None:
            return c.next_wall(
                w.year, w.month, w.day, w.hour, w.minute, w.second + (1 if strict else 0), ylimit
            )

        def as_wall(t: tuple[int, int, int, int, int, int]) -> datetime:
            return datetime(*t)

        found = search(wall, True)
        if local.fold == 0:
            if found is not None and as_wall(found) < fold_end:
                return datetime(*found, tzinfo=zone)
            if c.hour_wildcard:
                again = search(fold_start, False)
                if again is not None and as_wall(again) < fold_end:
                    return datetime(*again, tzinfo=zone, fold=1)
        else:
            if found is not None and as_wall(found) < fold_end:
                if c.hour_wildcard:
                    return datetime(*found, tzinfo=zone, fold=1)
                found = search(fold_end, False)
        if found is None:
            return None
        return self._materialize(found, ylimit)

    def fire_times(self, after: datetime, count: int) -> Iterator[datetime]:
        """Yield up to ``count`` consecutive fire times strictly after ``after``."""
        current: datetime | None = after
        for _ in range(count):
            assert current is not None
            current = self.next_fire_time(current)
            if current is None:
                return
            yield current

    # -- description --------------------------------------------------------------------
    def describe(self, language: str = "en") -> str:
        """A plain-words description, e.g. ``At 02:00 on the last day of the month``;
        ``language`` "zh-hans" (any "zh...") gives Chinese: ``每月最后一天 02:00``."""
        from scheduler_app.engine import cron_zh

        if cron_zh.is_chinese(language):
            return cron_zh.describe(self._c)
        return _describe(self._c, self.dialect)


@functools.lru_cache(maxsize=4096)
def _parse_cached(expression: str, dialect: str, timezone: str, hash_key: str | None) -> CronExpression:
    return CronExpression(expression, dialect, timezone, hash_key)


def _restore(expression: str, dialect: str, timezone: str, hash_key: str | None) -> CronExpression:
    return CronExpression.parse(expression, dialect, timezone, hash_key)


# --------------------------------------------------------------------------------------
# describe()
# --------------------------------------------------------------------------------------


def _join(words: list[str], conj: str = "and") -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {conj} " + words[-1]


def _runs(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _list_words(values: set[int], word: Callable[[int], str], conj: str = "and") -> str:
    parts = []
    for a, b in _runs(sorted(values)):
        if a == b:
            parts.append(word(a))
        elif b == a + 1:
            parts.extend((word(a), word(b)))
        else:
            parts.append(f"{word(a)} through {word(b)}")
    return _join(parts, conj)


def _nth(n: int) -> str:
    """2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _step_of(values: set[int], lo: int, hi: int) -> int | None:
    """If values are lo, lo+n, lo+2n... up to hi (n > 1), return n."""
    vs = sorted(values)
    if len(vs) < 2 or vs[0] != lo:
        return None
    n = vs[1] - vs[0]
    if n < 2 or vs != list(range(lo, hi + 1, n)):
        return None
    return n


def _unit_phrase(values: set[int], lo: int, hi: int, unit: str) -> str | None:
    """Describe a second/minute field on its own ('every minute', 'every 5 minutes', ...)."""
    if len(values) == hi - lo + 1:
        return f"every {unit}"
    step = _step_of(values, lo, hi)
    if step is not None:
        return f"every {step} {unit}s"
    return None


def _describe_time(c: _Compiled) -> str:
    secs, mins, hours = c.specs[SEC].values, c.specs[MIN].values, c.specs[HOUR].values
    all_hours = len(hours) == 24
    if len(secs) == 1 and len(mins) == 1 and len(hours) <= 6 and not all_hours:
        (s,) = secs
        (m,) = mins
        fmt = "{:02d}:{:02d}:{:02d}" if s else "{:02d}:{:02d}"
        times = [fmt.format(h, m, s) if s else fmt.format(h, m) for h in sorted(hours)]
        return "At " + _join(times)
    parts = []
    sec_phrase = _unit_phrase(secs, 0, 59, "second")
    if secs != {0}:
        if sec_phrase is not None:
            parts.append(sec_phrase.capitalize())
        else:
            parts.append(f"At second {_list_words(secs, str)}")
    min_phrase = _unit_phrase(mins, 0, 59, "minute")
    if parts and min_phrase == "every minute":
        pass  # "every 10 seconds" already implies every minute
    elif min_phrase is not None:
        parts.append(min_phrase if parts else min_phrase.capitalize())
    else:
        text = f"at minute {_list_words(mins, str)}" + (" past every hour" if all_hours else "")
        parts.append(text if parts else text.capitalize())
    if not all_hours:
        step = _step_of(hours, 0, 23)
        if step is not None:
            parts.append(f"every {step} hours")
        else:
            plural = "s" if len(hours) > 1 else ""
            parts.append(f"past hour{plural} {_list_words(hours, str)}")
    return ", ".join(parts)


def _dom_phrases(spec: _FieldSpec) -> list[str]:
    words: list[str] = []
    if spec.values:
        step = _step_of(spec.values, 1, 31)
        if step is not None:
            words.append(f"on every {_nth(step)} day of the month")
        else:
            words.append(
                ("on day " if len(spec.values) == 1 else "on days ")
                + _list_words(spec.values, str)
                + " of the month"
            )
    for offset, nearest in sorted(spec.last_days):
        if offset == 0:
            day = "the last day"
        else:
            day = f"{offset} day{'s' if offset != 1 else ''} before the last day"
        if nearest:
            words.append(
                "on the last weekday of the month"
                if offset == 0
                else f"on the weekday nearest {day} of the month"
            )
        else:
            words.append(f"on {day} of the month")
    for n in sorted(spec.weekdays_w):
        words.append(f"on the weekday nearest day {n} of the month")
    return words


def _dow_nouns(spec: _FieldSpec, article: str, conj: str) -> list[str]:
    """'Monday through Friday', 'the last Friday of the month', ... (without 'on')."""
    words: list[str] = []
    if spec.values:
        words.append(article + _list_words(spec.values, lambda w: _DAY_WORDS[w], conj))
    for w in sorted(spec.last_weekdays):
        words.append(f"the last {_DAY_WORDS[w]} of the month")
    for w, k in sorted(spec.nth_weekdays):
        words.append(f"the {_ORDINALS[k]} {_DAY_WORDS[w]} of the month")
    return words


def _describe_days(c: _Compiled, dialect: str) -> str:
    rule = c.day_rule
    if rule.mode == "all":
        return ""
    if rule.mode == "both":  # crontab, a star day field: the day must match both fields
        dow = _join(_dow_nouns(rule.dow, "a ", "or"), "or")
        return " " + _join(_dom_phrases(rule.dom), "or") + " if that day is " + dow
    dom_words = _dom_phrases(rule.dom) if rule.mode in ("dom", "either") else []
    dow_words = []
    if rule.mode in ("dow", "either"):
        dow_words = ["on " + noun for noun in _dow_nouns(rule.dow, "", "and")]
    return " " + _join(dom_words + dow_words, "or")


def _describe(c: _Compiled, dialect: str) -> str:
    text = _describe_time(c) + _describe_days(c, dialect)
    months = c.specs[MON].values
    if len(months) != 12:
        text += " in " + _list_words(months, lambda m: _MONTH_WORDS[m])
    if c.years is not None:
        years = set(c.years)
        text += " in " + _list_words(years, str)
    return text
