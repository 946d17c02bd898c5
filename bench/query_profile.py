"""Counts the SQL the engine issues per run: starts the same SchedulerService that
``runscheduler`` starts, in this process, with a Django execute wrapper on every
connection, and reports queries and database time per thread and per statement shape.

    DATABASE_URL=... bench/query_profile.py burst --runs 3000
    DATABASE_URL=... bench/query_profile.py interval --jobs 1000 --interval 1 --seconds 20

The database must be migrated and empty (engine_bench.py's fresh database, or
``manage.py migrate`` on a new one). Diagnostic only: the wrapper adds a little
overhead per query, so rates here are a bit lower than in engine_bench.py.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

STATS: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
TIMELINE: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])
LOCK = threading.Lock()
T0 = time.monotonic()


def shape(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql).strip()
    words = sql.split(" ")
    verb = words[0].upper()
    table = ""
    for key in (" FROM ", " INTO ", "UPDATE "):
        m = re.search(key + r'"?([a-z_]+)"?', sql)
        if m:
            table = m.group(1).replace("scheduler_app_", "")
            break
    extra = ""
    if "FOR UPDATE" in sql:
        extra = " FOR UPDATE" + (" SKIP LOCKED" if "SKIP LOCKED" in sql else "")
    if "COUNT(" in sql.upper():
        extra += " COUNT"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return verb
    return f"{verb} {table}{extra}"


def wrapper(execute, sql, params, many, context):
    start = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed = time.perf_counter() - start
        name = threading.current_thread().name.rstrip("0123456789_")
        key = (name, shape(sql))
        with LOCK:
            STATS[key][0] += 1
            STATS[key][1] += elapsed
            if key[1].startswith("SELECT jobrun FOR UPDATE"):
                bucket = int((time.monotonic() - T0) // 5)
                TIMELINE[(key[1], bucket)][0] += 1
                TIMELINE[(key[1], bucket)][1] += elapsed


def on_connect(sender, connection, **kwargs):  # noqa: ARG001
    if wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(wrapper)


def count_done() -> int:
    from scheduler_app.models import JobRun

    return JobRun.objects.filter(finished_at__isnull=False).count()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["burst", "interval"])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--log", default=os.devnull, help="where the engine's INFO log goes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a SCHEDULER_APP setting (number), e.g. THREAD_POOL_SIZE=50",
    )
    args = parser.parse_args()
    if args.set:
        from django.conf import settings

        from scheduler_app.conf import app_settings

        for item in args.set:
            key, _, value = item.partition("=")
            settings.SCHEDULER_APP[key] = float(value) if "." in value else int(value)
        app_settings.reload()
        print("settings overridden:", ", ".join(args.set))

    from datetime import UTC, datetime

    from django.utils import timezone

    from scheduler_app import logutils
    from scheduler_app.backends.service import SchedulerService
    from scheduler_app.models import Job, JobRun, RunReason, RunState, Tenant

    tenant, _ = Tenant.objects.get_or_create(slug="qp", defaults={"name": "qp"})
    if args.mode == "burst":
        Job.objects.bulk_create(
            [
                Job(tenant=tenant, name=f"qp-{i}", task="demo.noop", trigger={"type": "manual"})
                for i in range(args.runs)
            ]
        )
        now = timezone.now()
        JobRun.objects.bulk_create(
            [
                JobRun(
                    job_id=j.pk,
                    tenant_id=tenant.pk,
                    scheduled_for=now,
                    not_before=now,
                    reason=RunReason.MANUAL,
                    state=RunState.QUEUED,
                    executor="thread",
                )
                for j in Job.objects.filter(tenant=tenant)
            ],
            batch_size=2000,
        )
        expected = args.runs
    else:
        base = time.time() - 100
        Job.objects.bulk_create(
            [
                Job(
                    tenant=tenant,
                    name=f"qp-{i}",
                    task="demo.noop",
                    trigger={
                        "type": "interval",
                        "seconds": args.interval,
                        "start": datetime.fromtimestamp(
                            base + i * args.interval / args.jobs, UTC
                        ).isoformat(),
                    },
                )
                for i in range(args.jobs)
            ]
        )
        expected = None
    connection.close()
    connection_created.connect(on_connect)

    log_stream = open(args.log, "w")  # noqa: SIM115
    sys.stdout = log_stream  # logutils logs to sys.stdout
    logutils.configure("INFO")
    sys.stdout = sys.__stdout__
    service = SchedulerService(f"qp:{os.getpid()}")
    t_start = time.monotonic()
    service.start()
    deadline = t_start + (args.seconds if expected is None else 300)
    while time.monotonic() < deadline:
        if expected is not None and count_done() >= expected:
            break
        time.sleep(0.25 if expected is not None else 1)
    elapsed = time.monotonic() - t_start
    service.shutdown(5.0)
    stats = service.node.stats if service.node else {}
    done = stats.get("recorded", 0)
    print(
        f"\n{args.mode}: {done} runs recorded in {elapsed:.1f} s "
        f"({done / elapsed:.0f}/s incl. start-up); node stats {stats}"
    )
    rows = sorted(STATS.items(), key=lambda kv: -kv[1][1])
    per_thread: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for (thread, _), (n, t) in rows:
        per_thread[thread][0] += n
        per_thread[thread][1] += t
    print(f"\n{'thread':<18} {'queries':>8} {'per run':>8} {'DB s':>7} {'ms/run':>7}")
    for thread, (n, t) in sorted(per_thread.items(), key=lambda kv: -kv[1][1]):
        print(f"{thread:<18} {n:>8} {n / max(done, 1):>8.2f} {t:>7.2f} {t * 1000 / max(done, 1):>7.2f}")
    print(f"\n{'thread':<18} {'statement':<42} {'count':>7} {'per run':>8} {'avg ms':>7} {'total s':>8}")
    for (thread, stmt), (n, t) in rows[:25]:
        print(f"{thread:<18} {stmt[:42]:<42} {n:>7} {n / max(done, 1):>8.2f} {t * 1000 / n:>7.2f} {t:>8.2f}")
    if TIMELINE:
        print("\nclaim query (SELECT jobrun FOR UPDATE SKIP LOCKED) over time:")
        for (_stmt, bucket), (n, t) in sorted(TIMELINE.items(), key=lambda kv: kv[0][1]):
            print(f"  {bucket * 5:>4}-{bucket * 5 + 5:<4}s  {n:>6} claims  avg {t * 1000 / n:6.2f} ms")
    log_stream.close()
    os._exit(0)


if __name__ == "__main__":
    main()
