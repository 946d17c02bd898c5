"""Benchmark: chained next-fire-time computations per second.

Compares scheduler_app's CronExpression with APScheduler 3's CronTrigger
(``get_next_fire_time(None, now)`` chained) and croniter, side by side, in UTC and
America/New_York.  Run from the repository root:

    .venv/bin/python bench/cron_bench.py [--seconds 0.5] [--repeat 3]

Each cell is the best of ``--repeat`` runs of about ``--seconds`` each.  Pure measurement:
nothing is asserted (see docs/cron.md for a recorded table).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apscheduler.triggers.cron import CronTrigger  # noqa: E402
from croniter import croniter  # noqa: E402

from scheduler_app.engine.cron import CronExpression  # noqa: E402

# (label, our crontab expression, APScheduler CronTrigger kwargs, croniter expression)
CASES: list[tuple[str, str, dict[str, str], str]] = [
    ("*/5 * * * *", "*/5 * * * *", {"minute": "*/5"}, "*/5 * * * *"),
    (
        "0 9 * * 1-5",
        "0 9 * * 1-5",
        {"minute": "0", "hour": "9", "day_of_week": "mon-fri"},
        "0 9 * * 1-5",
    ),
    ("30 2 1 * *", "30 2 1 * *", {"minute": "30", "hour": "2", "day": "1"}, "30 2 1 * *"),
    (
        "0 0 29 2 *",
        "0 0 29 2 *",
        {"minute": "0", "hour": "0", "day": "29", "month": "2"},
        "0 0 29 2 *",
    ),
    ("0 0 L * *", "0 0 L * *", {"minute": "0", "hour": "0", "day": "last"}, "0 0 L * *"),
    (
        "0 0 * * 5#3",
        "0 0 * * 5#3",
        {"minute": "0", "hour": "0", "day": "3rd fri"},
        "0 0 * * 5#3",
    ),
]
ZONES = ["UTC", "America/New_York"]
START = datetime(2026, 1, 1, 0, 0, 0)
CHAIN = 500  # restart each chain from START after this many fire times (realistic dates)
Step = Callable[[], object]


def ours(expression: str, zone: str) -> Step:
    expr = CronExpression.parse(expression, timezone=zone)
    state = {"t": START.replace(tzinfo=ZoneInfo(zone))}

    def step() -> object:
        nxt = expr.next_fire_time(state["t"])
        state["t"] = nxt if nxt is not None else START.replace(tzinfo=ZoneInfo(zone))
        return nxt

    return step


def aps(kwargs: dict[str, str], zone: str) -> Step:
    trigger = CronTrigger(timezone=zone, **kwargs)
    tiny = timedelta(microseconds=1)
    state = {"t": START.replace(tzinfo=ZoneInfo(zone))}

    def step() -> object:
        nxt = trigger.get_next_fire_time(None, state["t"])
        state["t"] = nxt + tiny if nxt is not None else START.replace(tzinfo=ZoneInfo(zone))
        return nxt

    return step


def cron_iter(expression: str, zone: str) -> Step:
    it = croniter(expression, START.replace(tzinfo=ZoneInfo(zone)))

    def step() -> object:
        return it.get_next(datetime)

    return step


def rate(make: Callable[[], Step], seconds: float, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        step = make()  # fresh chain from START each run
        n = 0
        batch = CHAIN
        began = time.perf_counter()
        deadline = began + seconds
        while True:
            for i in range(batch):
                if i % CHAIN == 0:
                    step = make()
                step()
            n += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - began))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, "
        f"APScheduler {importlib.metadata.version('APScheduler')}, "
        f"croniter {importlib.metadata.version('croniter')}; next-fire computations/s, "
        f"chains of {CHAIN} from {START:%Y-%m-%d} (best of {args.repeat} x {args.seconds:g} s)\n"
    )
    header = f"| {'expression':<13} | {'time zone':<16} | {'this engine':>11} | "
    header += f"{'APScheduler':>11} | {'croniter':>9} | {'vs APScheduler':>14} |"
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    worst = float("inf")
    for label, expression, kwargs, cron_text in CASES:
        for zone in ZONES:
            r_ours = rate(lambda e=expression, z=zone: ours(e, z), args.seconds, args.repeat)
            r_aps = rate(lambda k=kwargs, z=zone: aps(k, z), args.seconds, args.repeat)
            r_cron = rate(lambda c=cron_text, z=zone: cron_iter(c, z), args.seconds, args.repeat)
            ratio = r_ours / r_aps
            worst = min(worst, ratio)
            print(
                f"| {label:<13} | {zone:<16} | {r_ours:>11,.0f} | {r_aps:>11,.0f} | "
                f"{r_cron:>9,.0f} | {ratio:>13.1f}x |"
            )
    print(f"\nslowest row vs APScheduler: {worst:.1f}x (target: at least 2x)")


if __name__ == "__main__":
    main()
