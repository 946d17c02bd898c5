"""Server-rendered SVG charts for the dashboard and the job page: no script, no CDN,
no network. Axes and labels use ``currentColor`` (the admin theme's text colour), so
the charts follow the light and dark themes; bars use the run-state colours, which
read on either background. Every chart has a ``<title>`` and a text table fallback
nearby for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from scheduler_app import display

STATE_ORDER = ["succeeded", "failed", "timed_out", "lost", "interrupted", "cancelled", "skipped"]
COLOURS = {
    "queued": "#6b7280",
    "running": "#2563eb",
    "succeeded": "#16a34a",
    "failed": "#dc2626",
    "timed_out": "#ea580c",
    "cancelled": "#6b7280",
    "skipped": "#a3a3a3",
    "lost": "#9333ea",
    "interrupted": "#ca8a04",
    "p50": "#0ea5e9",
    "p95": "#f59e0b",
}


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step:
            return float(step)
    magnitude = 10 ** (len(str(int(value))) - 1)
    return float((int(value / magnitude) + 1) * magnitude)


def _frame(width: int, height: int, title: str, body: str, css_class: str) -> SafeString:
    return mark_safe(
        f'<svg class="sa-chart {css_class}" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def stacked_bars(
    buckets: Sequence[datetime],
    counts: dict[str, Sequence[int]],
    tz: tzinfo,
    title: str,
    label_format: str = "%H:%M",
) -> SafeString:
    """Runs per time bucket, stacked by state."""
    width, height, left, bottom, top = 720, 220, 40, 28, 10
    n = max(len(buckets), 1)
    totals = [sum(counts.get(s, [0] * n)[i] for s in counts) for i in range(n)]
    top_value = _nice_max(max(totals, default=0))
    plot_w, plot_h = width - left - 8, height - bottom - top
    slot = plot_w / n
    parts = [_axes(left, top, plot_w, plot_h, top_value)]
    states = [s for s in STATE_ORDER if s in counts] + [s for s in counts if s not in STATE_ORDER]
    for i in range(n):
        y = top + plot_h
        for state in states:
            value = counts[state][i]
            if not value:
                continue
            h = plot_h * value / top_value
            y -= h
            when = display.when(buckets[i], tz)  # the bucket's start, with seconds and offset
            parts.append(
                f'<rect class="sa-bar" data-state="{escape(state)}" x="{left + i * slot + 0.5:.1f}" '
                f'y="{y:.1f}" width="{max(slot - 1, 0.5):.1f}" height="{h:.1f}" '
                f'fill="{COLOURS.get(state, "#6b7280")}"><title>{escape(when)} {escape(state)}: {value}'
                f"</title></rect>"
            )
    step = max(n // 6, 1)
    for i in range(0, n, step):
        x = left + i * slot
        label = buckets[i].astimezone(tz).strftime(label_format)
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" font-size="11" fill="currentColor">{escape(label)}</text>'
        )
    return _frame(width, height, title, "".join(parts), "sa-chart-runs")


def _axes(left: int, top: int, plot_w: float, plot_h: float, top_value: float, unit: str = "") -> str:
    lines = []
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        lines.append(
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="currentColor" stroke-opacity="0.25"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="currentColor">{_fmt(top_value * fraction)}{unit}</text>'
        )
    return "".join(lines)


def _unbroken(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The runs of consecutive present values, as (bucket index, value): a chart's line
    breaks where a bucket has no value."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        runs.append(current)
    return runs


def line(values: Sequence[float | None], title: str, unit: str = "%", scale: float = 100.0) -> SafeString:
    """A line over buckets (gaps where a value is missing), e.g. the failure rate."""
    width, height, left, top, bottom = 720, 120, 40, 10, 16
    plot_w, plot_h = width - left - 8, height - top - bottom
    n = max(len(values), 1)
    top_value = 100.0 if scale == 100.0 else _nice_max(max((v or 0) for v in values) * scale if values else 0)
    parts = [_axes(left, top, plot_w, plot_h, top_value, unit)]
    for run in _unbroken(values):
        points = [
            f"{left + plot_w * (i + 0.5) / n:.1f},{top + plot_h * (1 - value * scale / top_value):.1f}"
            for i, value in run
        ]
        if len(points) == 1:
            x, y = points[0].split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{COLOURS["failed"]}"/>')
        else:
            parts.append(
                f'<polyline fill="none" stroke="{COLOURS["failed"]}" stroke-width="2" '
                f'points="{" ".join(points)}"/>'
            )
    return _frame(width, height, title, "".join(parts), "sa-chart-line")


def percentile_lines(
    buckets: Sequence[datetime],
    p50: Sequence[float | None],
    p95: Sequence[float | None],
    tz: tzinfo,
    title: str,
    label_format: str = "%H:%M",
) -> SafeString:
    """p50 and p95 (seconds) over time buckets, two lines with gaps where a bucket has
    no value, a point per bucket (with its figures as tooltip) and a legend."""
    width, height, left, top, bottom = 720, 160, 40, 10, 40
    plot_w, plot_h = width - left - 8, height - top - bottom
    n = max(len(buckets), 1)
    top_value = _nice_max(max((v for v in (*p50, *p95) if v is not None), default=0))
    parts = [_axes(left, top, plot_w, plot_h, top_value, " s")]
    for name, values in (("p95", p95), ("p50", p50)):
        colour = COLOURS[name]
        segments: list[list[str]] = []
        for run in _unbroken(values):
            segment: list[str] = []
            for i, value in run:
                x = left + plot_w * (i + 0.5) / n
                y = top + plot_h * (1 - value / top_value)
                segment.append(f"{x:.1f},{y:.1f}")
                parts.append(
                    f'<circle class="sa-point" data-series="{name}" cx="{x:.1f}" cy="{y:.1f}" r="2" '
                    f'fill="{colour}"><title>{escape(display.when(buckets[i], tz))} {name}: '
                    f"{escape(display.seconds(value))}</title></circle>"
                )
            segments.append(segment)
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline class="sa-series" data-series="{name}" fill="none" stroke="{colour}" '
                    f'stroke-width="2" points="{" ".join(points)}"/>'
                )
    step = max(n // 6, 1)
    for i in range(0, len(buckets), step):
        label = buckets[i].astimezone(tz).strftime(label_format)
        parts.append(
            f'<text x="{left + plot_w * i / n:.1f}" y="{top + plot_h + 14}" font-size="11" '
            f'fill="currentColor">{escape(label)}</text>'
        )
    legend_y = height - 6
    parts.append(
        f'<rect x="{left}" y="{legend_y - 9}" width="10" height="10" fill="{COLOURS["p50"]}"/>'
        f'<text x="{left + 14}" y="{legend_y}" font-size="11" fill="currentColor">p50</text>'
        f'<rect x="{left + 50}" y="{legend_y - 9}" width="10" height="10" fill="{COLOURS["p95"]}"/>'
        f'<text x="{left + 64}" y="{legend_y}" font-size="11" fill="currentColor">p95</text>'
    )
    return _frame(width, height, title, "".join(parts), "sa-chart-lateness")


def percentile_bars(rows: Sequence[tuple[str, float | None, float | None]], title: str) -> SafeString:
    """Horizontal p50 / p95 bars per label (seconds)."""
    row_h, left, width = 22, 180, 720
    height = max(len(rows), 1) * row_h + 24
    top_value = _nice_max(max((p95 or 0 for _l, _p50, p95 in rows), default=0))
    plot_w = width - left - 60
    parts = []
    for i, (label, p50, p95) in enumerate(rows):
        y = 4 + i * row_h
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" font-size="12" text-anchor="end" '
            f'fill="currentColor">{escape(label[:28])}</text>'
        )
        for value, colour, offset in ((p95, COLOURS["p95"], 0), (p50, COLOURS["p50"], 5)):
            if value is None:
                continue
            w = plot_w * value / top_value
            parts.append(
                f'<rect x="{left}" y="{y + offset}" width="{max(w, 1):.1f}" height="{18 - 2 * offset}" '
                f'fill="{colour}"><title>{escape(label)}: {_fmt(value)} s</title></rect>'
            )
        if p95 is not None:
            parts.append(
                f'<text x="{left + plot_w * p95 / top_value + 4:.1f}" y="{y + 14}" font-size="11" '
                f'fill="currentColor">{_fmt(p95)} s</text>'
            )
    legend_y = height - 6
    parts.append(
        f'<rect x="{left}" y="{legend_y - 9}" width="10" height="10" fill="{COLOURS["p50"]}"/>'
        f'<text x="{left + 14}" y="{legend_y}" font-size="11" fill="currentColor">p50</text>'
        f'<rect x="{left + 50}" y="{legend_y - 9}" width="10" height="10" fill="{COLOURS["p95"]}"/>'
        f'<text x="{left + 64}" y="{legend_y}" font-size="11" fill="currentColor">p95</text>'
    )
    return _frame(width, height, title, "".join(parts), "sa-chart-percentiles")


def run_history(rows: Sequence[tuple[str, float | None, str]], title: str) -> SafeString:
    """One bar per run, oldest left: height is the duration, colour the outcome.
    ``rows`` are ``(state, duration, tooltip)``."""
    width, height, left, top, bottom = 720, 160, 40, 10, 10
    plot_w, plot_h = width - left - 8, height - top - bottom
    n = max(len(rows), 1)
    top_value = _nice_max(max((d or 0 for _s, d, _t in rows), default=0))
    slot = plot_w / n
    parts = [_axes(left, top, plot_w, plot_h, top_value, " s")]
    for i, (state, duration, tip) in enumerate(rows):
        h = max(plot_h * (duration or 0) / top_value, 2)
        parts.append(
            f'<rect class="sa-bar" data-state="{escape(state)}" x="{left + i * slot + 1:.1f}" '
            f'y="{top + plot_h - h:.1f}" width="{max(slot - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="{COLOURS.get(state, "#6b7280")}"><title>{escape(tip)}</title></rect>'
        )
    return _frame(width, height, title, "".join(parts), "sa-chart-history")


def legend(states: Sequence[str], labels: dict[str, str]) -> SafeString:
    items = "".join(
        f'<span class="sa-legend-item"><span class="sa-swatch" style="background:{COLOURS.get(s, "#6b7280")}">'
        f"</span>{escape(labels.get(s, s))}</span>"
        for s in states
    )
    return mark_safe(f'<div class="sa-legend">{items}</div>')
