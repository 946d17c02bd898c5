"""Plain APScheduler 3 (no scheduler_app engine) for comparison, run as a subprocess of
engine_bench.py. A BackgroundScheduler with APScheduler's defaults (ThreadPoolExecutor
with 10 workers; job defaults coalesce=True, misfire_grace_time=1 s, max_instances=1)
and one job store:

    memory       MemoryJobStore
    django       django-apscheduler's DjangoJobStore (with the execution-logging event
                 listeners it registers itself), on DATABASE_URL via project.settings
    sqlalchemy   SQLAlchemyJobStore on --sqlalchemy-url
    redis        RedisJobStore on --redis-url (its database is flushed first)

Modes:

    interval  --jobs N --interval S --base EPOCH --seconds D
              N IntervalTrigger jobs, job i starting at base + i*S/N (spread evenly),
              run for D seconds after the scheduler resumes, then dump
              (job, scheduled_run_time, function start) pairs and missed fire times.
    burst     --jobs N --timeout T
              N one-off DateTrigger jobs due now (misfire_grace_time=None so none is
              dropped for lateness), added while paused; resume and wait until all ran
              or T seconds passed; dump (start, end) of every run.

Writes JSON to --out and exits with os._exit (a backlogged scheduler thread may hold
the job-store lock for a long time; its figures are already taken).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

import aps_jobs  # noqa: E402


def make_store(args: argparse.Namespace):
    if args.store == "memory":
        from apscheduler.jobstores.memory import MemoryJobStore

        return MemoryJobStore()
    if args.store == "django":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        import django

        django.setup()
        from django_apscheduler.jobstores import DjangoJobStore
        from django_apscheduler.models import DjangoJob

        DjangoJob.objects.all().delete()
        return DjangoJobStore()
    if args.store == "sqlalchemy":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        store = SQLAlchemyJobStore(url=args.sqlalchemy_url, tablename="bench_apscheduler_jobs")
        return store
    if args.store == "redis":
        import redis
        from apscheduler.jobstores.redis import RedisJobStore

        url = urlparse(args.redis_url)
        db = int((url.path or "/0").lstrip("/") or 0)
        redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379, db=db).flushdb()
        return RedisJobStore(
            db=db,
            host=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            jobs_key="bench.jobs",
            run_times_key="bench.run_times",
        )
    raise SystemExit(f"unknown store {args.store}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, choices=["memory", "django", "sqlalchemy", "redis"])
    parser.add_argument("--mode", required=True, choices=["interval", "burst"])
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--base", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=35.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--sqlalchemy-url")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
    )
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    store = make_store(args)
    scheduler = BackgroundScheduler(timezone=UTC, jobstores={"default": store})
    executed: dict[int, list[float]] = defaultdict(list)
    missed: list[tuple[int, float]] = []
    counters = {"max_instances": 0, "errors": 0}
    first_error: list[str] = []

    def listener(event) -> None:
        index = int(event.job_id[1:])
        if event.code == EVENT_JOB_EXECUTED:
            executed[index].append(event.scheduled_run_time.timestamp())
        elif event.code == EVENT_JOB_MISSED:
            missed.append((index, event.scheduled_run_time.timestamp()))
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            counters["max_instances"] += 1
        elif event.code == EVENT_JOB_ERROR:
            counters["errors"] += 1
            if not first_error:
                first_error.append(str(event.traceback))

    scheduler.add_listener(
        listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
    )
    scheduler.start(paused=True)
    t_add = time.time()
    if args.mode == "interval":
        base = datetime.fromtimestamp(args.base, UTC)
        for i in range(args.jobs):
            scheduler.add_job(
                "aps_jobs:record",
                trigger=IntervalTrigger(
                    seconds=args.interval,
                    start_date=base + timedelta(seconds=i * args.interval / args.jobs),
                    timezone=UTC,
                ),
                args=[i],
                id=f"j{i}",
                replace_existing=True,
            )
    else:
        now = datetime.now(UTC)
        for i in range(args.jobs):
            scheduler.add_job(
                "aps_jobs:burst",
                trigger=DateTrigger(run_date=now, timezone=UTC),
                args=[i],
                id=f"j{i}",
                misfire_grace_time=None,
            )
    add_seconds = time.time() - t_add
    print(json.dumps({"event": "jobs added", "seconds": round(add_seconds, 2)}), flush=True)

    t_resume = time.time()
    scheduler.resume()
    print(json.dumps({"event": "resumed", "at": t_resume}), flush=True)
    result: dict = {
        "store": args.store,
        "mode": args.mode,
        "jobs": args.jobs,
        "add_seconds": add_seconds,
        "t_started": t_resume,
    }
    if args.mode == "interval":
        time.sleep(args.seconds)
        t_stop = time.time()
        # Snapshot under no lock: lists only grow; pair each job's k-th start with its
        # k-th executed event.
        pairs = []
        unpaired = 0
        for index in list(executed):
            sched = list(executed[index])
            starts = list(aps_jobs.STARTS.get(index, ()))
            n = min(len(sched), len(starts))
            unpaired += abs(len(sched) - len(starts))
            pairs.extend([index, s, st] for s, st in zip(sched[:n], starts[:n], strict=True))
        result.update(t_stop=t_stop, pairs=pairs, missed=list(missed), unpaired=unpaired)
    else:
        deadline = t_resume + args.timeout
        while len(aps_jobs.SPANS) < args.jobs and time.time() < deadline:
            time.sleep(0.05)
        result.update(
            t_stop=time.time(),
            spans=list(aps_jobs.SPANS),
            missed=len(missed),
            timed_out=len(aps_jobs.SPANS) < args.jobs,
        )
    result.update(counters)
    result["first_error"] = first_error[0] if first_error else ""
    result["threads"] = threading.active_count()
    Path(args.out).write_text(json.dumps(result))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
