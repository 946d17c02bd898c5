"""A bounded date drill-down for change lists over very large tables (the run list).

Django's ``date_hierarchy`` lists the years, months or days that have rows with
``queryset.datetimes(field, kind)``: a ``SELECT DISTINCT date_trunc(...)`` that reads
every row of the level shown (all of a month's runs to list its days: 0.5-0.9 s at a
million runs). :func:`bounded` gives the change list's queryset a ``datetimes`` that
answers the same list from index probes instead: the first and last value (one query,
two index lookups), then, for each candidate period between them (at most
:data:`MAX_PERIODS`), whether a row lies in it, all in one query of ``LIMIT 1`` probes
(on databases that allow limits inside a UNION: PostgreSQL). The periods are the current
time zone's, as Django's (``date_trunc ... AT TIME ZONE``). Elsewhere, or for more
periods, Django's query is used unchanged."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import IntegerField, Max, Min, QuerySet, Value
from django.utils import timezone

#: Candidate periods probed at most (a month's days, a year's months, 40 years).
MAX_PERIODS = 40

_classes: dict[type, type] = {}


def _start(moment: datetime, kind: str, tz: tzinfo) -> datetime:
    local = moment.astimezone(tz)
    if kind == "year":
        return datetime(local.year, 1, 1, tzinfo=tz)
    if kind == "month":
        return datetime(local.year, local.month, 1, tzinfo=tz)
    return datetime(local.year, local.month, local.day, tzinfo=tz)


def _following(start: datetime, kind: str, tz: tzinfo) -> datetime:
    if kind == "year":
        return datetime(start.year + 1, 1, 1, tzinfo=tz)
    if kind == "month":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return datetime(year, month, 1, tzinfo=tz)
    from datetime import date, timedelta

    day = date(start.year, start.month, start.day) + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def periods(first: datetime, last: datetime, kind: str, tz: tzinfo) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` of each period of ``kind`` from the one holding ``first`` to the
    one holding ``last``, in ``tz`` (empty when there are more than MAX_PERIODS)."""
    out: list[tuple[datetime, datetime]] = []
    start = _start(first, kind, tz)
    while start <= last:
        end = _following(start, kind, tz)
        out.append((start, end))
        if len(out) > MAX_PERIODS:
            return []
        start = end
    return out


class BoundedDatesMixin:
    def datetimes(
        self, field_name: str, kind: str, order: str = "ASC", tzinfo: tzinfo | None = None, **kwargs: Any
    ) -> Any:
        base = super().datetimes  # type: ignore[misc]
        features = connections[self.db].features  # type: ignore[attr-defined]
        if (
            kind not in ("year", "month", "day")
            or order not in ("ASC", "DESC")
            or kwargs
            or not settings.USE_TZ
            or not features.supports_slicing_ordering_in_compound
        ):
            return base(field_name, kind, order, tzinfo, **kwargs)
        tz = tzinfo or timezone.get_current_timezone()
        plain = self.order_by()  # type: ignore[attr-defined]
        bounds = plain.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        candidates = periods(bounds["first"], bounds["last"], kind, tz)
        if not candidates:
            return base(field_name, kind, order, tzinfo, **kwargs)
        probes = [
            plain.filter(**{f"{field_name}__gte": start, f"{field_name}__lt": end})
            .annotate(_period=Value(i, output_field=IntegerField()))
            .values_list("_period", flat=True)[:1]
            for i, (start, end) in enumerate(candidates)
        ]
        found = set(probes[0].union(*probes[1:], all=True)) if len(probes) > 1 else set(probes[0])
        starts = [start for i, (start, _end) in enumerate(candidates) if i in found]
        return starts if order == "ASC" else starts[::-1]


def bounded(queryset: QuerySet) -> QuerySet:
    """``queryset`` (and every queryset made from it) with the bounded ``datetimes``."""
    cls = type(queryset)
    if issubclass(cls, BoundedDatesMixin):
        return queryset
    made = _classes.get(cls)
    if made is None:
        made = _classes[cls] = type(f"BoundedDates{cls.__name__}", (BoundedDatesMixin, cls), {})
    clone = queryset.all()
    clone.__class__ = made
    return clone
