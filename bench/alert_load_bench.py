#!/usr/bin/env python
"""Engine throughput with failing jobs and an alert rule, against succeeding jobs in the
same run.

    nice -n 10 .venv/bin/python bench/alert_load_bench.py [--jobs 1000] [--seconds 60] [--rounds 1]
        [--split] [--only ok,failing,norule] [--code CHECKOUT] [--profile]

Each round runs two phases on PostgreSQL, each on a fresh database with one real
``manage.py runscheduler`` (demo settings, memory job store), reusing
``bench/engine_bench.py``'s parts (imported, not copied):

* **ok**: ``--jobs`` interval jobs every second running ``demo.noop``, no alert rule;
* **failing**: the same jobs running ``demo.fail`` (no retries), with a tenant-wide
  rule on ``failed`` to a webhook channel pointing at a local HTTP receiver, so every
  failure is evaluated and its alert (one per job and incident, reminders per
  ``throttle_seconds``) is written to the outbox in the outcome's transaction and
  delivered by the scheduler's delivery thread.

Figures: executed runs per second in the steady-state window (started in it), due fires
in it, the machine's busy share; for the failing phase the outbox rows by state and
what the receiver got (every job alerted, no alert id twice). The ratio failing / ok is
the figure to read on a shared machine; ``--rounds 2`` alternates the phases again. Each
phase also reports the scheduler process's CPU per executed run (``cpu_ms_per_run``: its
user + system time in the window over the runs started in it), the figure least moved by
other work on a shared machine.

``--code CHECKOUT`` runs another checkout's product code (e.g. a ``git worktree`` of main)
with this checkout's bench helpers, to compare before/after in one session; ``--profile``
records the scheduler with py-spy (raw collapsed stacks in the log directory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("BENCH_PG_DB", f"bench_alert_load_{os.getpid()}")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine_bench as eb  # noqa: E402

from tests.alert_receivers import WebhookReceiver  # noqa: E402


def phase(
    name: str,
    failing: bool,
    jobs: int,
    seconds: float,
    logdir: Path,
    receiver: WebhookReceiver,
    rule: bool = True,
    profile: bool = False,
) -> dict:
    db = eb.Database("postgresql")
    cfg = eb.Config(run_seconds=seconds + 10.0, skip_seconds=10.0)
    eb.log(
        f"{name}: fresh database, {jobs:,} jobs every second ({'demo.fail + alert rule' if failing else 'demo.noop'})"
    )
    db.fresh()
    base = math.floor(time.time()) - 10
    task = ["--task", "demo.fail", "--kwargs", json.dumps({"message": "partner API answered 503"})]
    eb.django_step(
        db,
        "jobs",
        "--count",
        str(jobs),
        "--interval",
        "1",
        "--spread",
        "--base",
        repr(base),
        *(task if failing else []),
    )
    rule = failing and rule
    if rule:
        eb.django_step(db, "alert-rule", "--url", receiver.url)
    received_before = len(receiver.accepted())
    sched = eb.Scheduler(db, logdir, name, profile)
    loads = []
    try:
        sched.start(timeout=180)
        time.sleep(cfg.skip_seconds)
        m0 = eb.machine_ticks()
        ticks0 = sched.status().get("ticks", 0)
        sched.start_profile(seconds - 1)
        end = time.time() + seconds
        while time.time() < end:
            loads.append(os.getloadavg()[0])
            time.sleep(min(5.0, max(end - time.time(), 0)))
        busy = eb.machine_busy(m0)
        ticks = sched.status().get("ticks", 0) - ticks0
        t_stop = time.time()
        if rule:  # let the delivery thread catch up before stopping
            deadline = time.time() + 60
            while time.time() < deadline and len(receiver.accepted()) - received_before < jobs:
                time.sleep(0.5)
        sched.stop()
    finally:
        sched.stop()
    dump = logdir / f"{name}.runs.json"
    eb.django_step(db, "runs", "--out", str(dump))
    runs = json.loads(dump.read_text())
    a, b = eb.window(sched.t_ready, t_stop, cfg, base, 1 / jobs)
    started = sum(1 for r in runs if r[2] is not None and a <= r[2] < b)
    states = Counter(r[4] for r in runs if r[5] == "schedule" and a <= r[1] < b)
    figures = {
        "window_s": round(b - a, 1),
        "due": eb.due_count(jobs, 1, base, a, b),
        "executed_per_s": started / (b - a),
        # the scheduler's CPU over the measuring window per run started in the window
        "cpu_ms_per_run": round(1000 * ticks / os.sysconf("SC_CLK_TCK") / started, 2) if started else None,
        "states": dict(states),
        "machine_busy_pct": round(busy),
        "load": [round(min(loads), 1), round(max(loads), 1)] if loads else [],
    }
    if rule:
        alerts = eb.django_step(db, "alerts")
        got = receiver.accepted()[received_before:]
        ids = [r["json"]["alert_id"] for r in got]
        figures.update(
            outbox=alerts["outbox"],
            jobs_alerted=alerts["jobs_alerted"],
            received=len(got),
            received_twice=len(ids) - len(set(ids)),
            # still pending in the outbox when the scheduler stopped (sent by its next start)
            not_received=len(set(alerts["alert_ids"]) - set(ids)),
        )
    db.drop()
    eb.log(f"  {name}: {json.dumps(figures)}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--split",
        action="store_true",
        help="also a phase of failing jobs without a rule (failure vs alert cost)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated phases to run: ok, failing, norule (default: ok and failing, norule with --split)",
    )
    parser.add_argument("--code", default="", help="checkout whose product code runs (default: this one)")
    parser.add_argument("--profile", action="store_true", help="py-spy on the scheduler (needs py-spy)")
    args = parser.parse_args()
    if args.code:
        eb.SRC = Path(args.code).resolve()
    only = {p.strip() for p in args.only.split(",") if p.strip()} or (
        {"ok", "failing", "norule"} if args.split else {"ok", "failing"}
    )
    if only - {"ok", "failing", "norule"}:
        parser.error(f"unknown phase(s): {', '.join(sorted(only - {'ok', 'failing', 'norule'}))}")
    eb.log(f"product code from {eb.SRC}")
    logdir = Path(tempfile.mkdtemp(prefix="alert_load-"))
    receiver = WebhookReceiver()
    results = []
    try:
        for i in range(args.rounds):
            order = [("ok", False), ("failing", True)] if i % 2 == 0 else [("failing", True), ("ok", False)]
            pair = {
                n: phase(f"{n}-{i}", f, args.jobs, args.seconds, logdir, receiver, profile=args.profile)
                for n, f in order
                if n in only
            }
            if "norule" in only:
                pair["failing, no rule"] = phase(
                    f"norule-{i}", True, args.jobs, args.seconds, logdir, receiver, False, args.profile
                )
            results.append(pair)
    finally:
        receiver.close()
        eb.cleanup([eb.Database("postgresql")])
    print()
    print(
        f"## {args.jobs:,} jobs every second, {args.seconds:g} s per phase, PostgreSQL, one runscheduler (logs {logdir})"
    )
    print(
        "| round | phase | executed/s (due/s) | CPU ms/run | / ok (runs/s; CPU per run) | alerts: outbox, received, twice, pending at stop | machine busy, load |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, pair in enumerate(results):
        ok = pair.get("ok")
        for name, f in pair.items():
            ratio = ""
            if ok and name != "ok" and ok["executed_per_s"] and ok["cpu_ms_per_run"] and f["cpu_ms_per_run"]:
                ratio = f"{f['executed_per_s'] / ok['executed_per_s']:.2f}; {f['cpu_ms_per_run'] / ok['cpu_ms_per_run']:.2f}"
            alerts = (
                f"{f['outbox']}, {f['received']}, {f['received_twice']}, {f['not_received']}"
                if "outbox" in f
                else "—"
            )
            print(
                f"| {i + 1} | {name} | {f['executed_per_s']:.0f} ({f['due'] / f['window_s']:.0f}) | {f['cpu_ms_per_run']} "
                f"| {ratio} | {alerts} | {f['machine_busy_pct']}%, {f['load']} |"
            )
        bad = pair.get("failing")
        if ok and bad:
            ratio = bad["executed_per_s"] / ok["executed_per_s"] if ok["executed_per_s"] else math.nan
            print(
                f"{'PASS' if ratio >= 0.9 else 'FAIL'}  round {i + 1}: throughput with failures and alerts ≥ 90 % of succeeding jobs'"
            )
        if bad:
            print(
                f"{'PASS' if bad['not_received'] == 0 else 'FAIL'}  round {i + 1}: every outbox alert received before the stop"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
