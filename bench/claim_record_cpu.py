"""CPU of the run store's claim and record per run, in this process: claims of
``--jobs`` runs of distinct ``demo.noop`` jobs and the recording of their outcomes,
``time.thread_time`` around each (the CPU of this thread only: Python and the driver,
not PostgreSQL's). What a node spends per run of a burst, without its threads.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        nice python bench/claim_record_cpu.py --db bench_claim_cpu --rounds 60

The database ``--db`` is created (dropped first), migrated on the server of
``DATABASE_URL`` and dropped at the end. ``--log-level`` sets the ``scheduler_app`` logger (``runscheduler``'s
default is INFO; here formatted as it formats them, into memory: the formatting is
counted, not a terminal's write). Reports the median and the quartiles over the rounds after
``--warmup`` rounds.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="bench_claim_cpu")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--profile", choices=["claim", "record"], help="print cProfile's top functions of that part (slower)"
    )
    args = parser.parse_args()

    base = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    import psycopg

    with psycopg.connect(urlunsplit(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}"')
        conn.execute(f'CREATE DATABASE "{args.db}"')
    os.environ["DATABASE_URL"] = urlunsplit(base._replace(path="/" + args.db))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)

    from scheduler_app import services
    from scheduler_app.backends.runstore import DjangoRunStore
    from scheduler_app.engine.interfaces import Capacity, Fire, Outcome
    from scheduler_app.models import Job, JobRun, Tenant

    handler = logging.StreamHandler(io.StringIO())
    sched_logger = logging.getLogger("scheduler_app")
    sched_logger.handlers = [handler]
    from scheduler_app.logutils import KeyValueFormatter

    # As runscheduler formats every record (logutils.configure: key=value, masked).
    handler.setFormatter(KeyValueFormatter())
    sched_logger.setLevel(args.log_level.upper())

    tenant = Tenant.objects.create(slug="bench", name="Bench")
    jobs = [
        services.save_job(
            Job(
                name=f"noop-{n}",
                tenant=tenant,
                task="demo.noop",
                trigger={"type": "interval", "seconds": 3600},
            )
        )
        for n in range(args.jobs)
    ]
    from scheduler_app.alerts import evaluate
    from scheduler_app.models import ConfigVersion

    store = DjangoRunStore()
    store.incarnation = lambda: "bench1"
    # As on a node: the configuration version its definition sync read (every 0.25 s).
    version = ConfigVersion.current()
    store.config_version = evaluate.config_version = lambda: version
    room = Capacity(per_executor={"thread": args.jobs}, total=args.jobs)
    import cProfile
    import pstats

    prof = cProfile.Profile(time.thread_time)  # CPU, not waits
    claim_ms: list[float] = []
    record_ms: list[float] = []
    for n in range(args.warmup + args.rounds):
        now = timezone.now()
        store.enqueue([Fire(job.pk, (now,), now) for job in jobs])
        handler.stream = io.StringIO()
        t0 = time.thread_time()
        if args.profile == "claim":
            prof.enable()
        result = store.claim("bench-node", room, timezone.now())
        prof.disable()
        t1 = time.thread_time()
        if len(result.runs) != args.jobs:
            raise SystemExit(f"round {n}: claimed {len(result.runs)} of {args.jobs}")
        done = timezone.now()
        outcomes = [
            Outcome(
                run_id=r.run_id,
                state="succeeded",
                started_at=now,
                finished_at=done,
                cpu_seconds=0.0001,
                claim_token=r.claim_token,
            )
            for r in result.runs
        ]
        t2 = time.thread_time()
        if args.profile == "record":
            prof.enable()
        store.record(outcomes)
        prof.disable()
        t3 = time.thread_time()
        if n >= args.warmup:
            claim_ms.append((t1 - t0) * 1000 / args.jobs)
            record_ms.append((t3 - t2) * 1000 / args.jobs)
    left = JobRun.objects.exclude(state="succeeded").count()
    if left:
        raise SystemExit(f"{left} runs did not succeed")

    def q(values: list[float]) -> str:
        qs = statistics.quantiles(values, n=4)
        return f"{statistics.median(values):.3f} ms (quartiles {qs[0]:.3f}–{qs[2]:.3f})"

    load = os.getloadavg()
    print(
        f"load {load[0]:.2f} / {load[1]:.2f}; {args.rounds} rounds of {args.jobs} runs; log level {args.log_level}"
    )
    print(f"claim  per run: {q(claim_ms)}")
    print(f"record per run: {q(record_ms)}")
    total = [c + r for c, r in zip(claim_ms, record_ms, strict=True)]
    print(f"claim + record per run: {q(total)}")
    if args.profile:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    from django.db import connection

    connection.close()
    with psycopg.connect(urlunsplit(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
