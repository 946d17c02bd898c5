"""How values are shown to people: one place for times, durations and sizes, used by
the admin, the management commands and the API wherever they print text.

Times always carry seconds and a UTC offset, plus the IANA zone name when the zone is
not UTC: ``2026-12-02 09:00:00 +08:00 (Asia/Shanghai)``. Abbreviations such as "CST"
are never shown (China Standard Time or US Central?)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

EMPTY = "—"


def zone(name: str | tzinfo | None) -> tzinfo:
    """A time zone from an IANA name (UTC when empty or unknown)."""
    if isinstance(name, tzinfo):
        return name
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_name(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    if key:
        return str(key)
    return "UTC" if tz is UTC else ""


def offset(moment: datetime) -> str:
    """``+08:00``, ``-05:30``, ``+00:00``."""
    delta = moment.utcoffset()
    total = int(delta.total_seconds()) if delta is not None else 0
    sign = "-" if total < 0 else "+"
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def when(moment: datetime | None, tz: str | tzinfo | None = None) -> str:
    """A point in time for people: ``2026-12-02 09:00:00 +08:00 (Asia/Shanghai)``.

    ``tz`` is where to show it (an IANA name or tzinfo); without one, the moment's own
    zone (UTC for naive values, which Django stores as UTC)."""
    if moment is None:
        return EMPTY
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    target = zone(tz) if tz is not None else moment.tzinfo
    assert target is not None
    local = moment.astimezone(target)
    text = f"{local:%Y-%m-%d %H:%M:%S} {offset(local)}"
    name = zone_name(target)
    if name and name not in ("UTC", "Etc/UTC"):
        text += f" ({name})"
    return text


def seconds(value: float | None) -> str:
    """A duration or CPU time: ``0.000 s``, ``0.016 s``, ``1.23 s``, ``61.5 s``; never
    scientific notation."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    value = max(float(value), 0.0)
    if value < 1:
        return _("%(n)s s") % {"n": f"{value:.3f}"}
    if value < 100:
        return _("%(n)s s") % {"n": f"{value:.2f}"}
    return _("%(n)s s") % {"n": f"{value:.1f}"}


def megabytes(value: float | None) -> str:
    """Memory in MB with one decimal: ``12.3 MB``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    return _("%(n)s MB") % {"n": f"{float(value):.1f}"}


def run_log_text(text: str, lines_dropped: int) -> str:
    """A captured run log for people: its marker line (stored in English, like every
    engine message) in the reader's language."""
    if not lines_dropped or not text:
        return text
    _marker, newline, rest = text.partition("\n")
    marker = ngettext(
        "… %(count)d earlier line dropped …", "… %(count)d earlier lines dropped …", lines_dropped
    ) % {"count": lines_dropped}
    return marker + newline + rest
