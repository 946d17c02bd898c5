"""Django-side steps of the cluster benchmark, run as subprocesses of cluster_bench.py
with ``DATABASE_URL`` pointing at its database.

    cluster_django.py backlog  --count N --task NAME [--kwargs JSON] [--line-prefix P]
                               [--retries K --backoff S] [--jobs-only | --runs-only]
    cluster_django.py interval --count N --interval S --base EPOCH [--misfire run_all]
    cluster_django.py dump     --out FILE

``backlog`` makes N manual-trigger jobs of a registered task and (unless --jobs-only)
one queued run each, bulk-created with exactly the fields ``enqueue_run`` sets;
--runs-only queues the runs of jobs made earlier (so the nodes can be started between
the two steps). With --line-prefix, job i gets ``kwargs["line"] = f"{prefix}{i:05d}"``
(for demo.append_line). Prints one JSON object on stdout (the last line).
Not a product module: it only writes rows into a throw-away benchmark database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.cluster_settings")

import django  # noqa: E402

django.setup()

from django.utils import timezone  # noqa: E402

from bench.rows import bench_tenant as _tenant  # noqa: E402
from bench.rows import queue_runs  # noqa: E402
from bench.rows import timestamp as _ts  # noqa: E402
from scheduler_app.models import Job, JobRun  # noqa: E402


def cmd_backlog(args: argparse.Namespace) -> dict:
    tenant = _tenant()
    kwargs = json.loads(args.kwargs)
    t0 = time.perf_counter()
    if not args.runs_only:
        jobs = []
        for i in range(args.count):
            kw = dict(kwargs)
            if args.line_prefix:
                kw["line"] = f"{args.line_prefix}{i:05d}"
            jobs.append(
                Job(
                    tenant=tenant,
                    name=f"backlog-{i:06d}",
                    task=args.task,
                    kwargs=kw,
                    trigger={"type": "manual"},
                    retry_max_attempts=args.retries,
                    retry_backoff_seconds=args.backoff,
                )
            )
        Job.objects.bulk_create(jobs, batch_size=5000)
    t1 = time.perf_counter()
    queued = 0
    if not args.jobs_only:
        jobs = list(Job.objects.filter(tenant=tenant, name__startswith="backlog-").order_by("pk"))
        queued = queue_runs(jobs, timezone.now())
    return {
        "jobs_seconds": round(t1 - t0, 3),
        "queue_seconds": round(time.perf_counter() - t1, 3),
        "queued": queued,
        "committed_at": time.time(),
    }


def cmd_interval(args: argparse.Namespace) -> dict:
    """Job i: every S seconds from base + i * S / N (fires spread evenly over each
    interval), demo.noop on the thread executor, the given misfire policy."""
    tenant = _tenant()
    t0 = time.perf_counter()
    jobs = []
    for i in range(args.count):
        start = args.base + i * args.interval / args.count
        trigger = {
            "type": "interval",
            "seconds": args.interval,
            "start": datetime.fromtimestamp(start, UTC).isoformat(),
        }
        jobs.append(
            Job(
                tenant=tenant,
                name=f"tick-{i:06d}",
                task="demo.noop",
                trigger=trigger,
                misfire_policy=args.misfire,
            )
        )
    Job.objects.bulk_create(jobs, batch_size=5000)
    return {"created": len(jobs), "seconds": round(time.perf_counter() - t0, 3)}


def cmd_dump(args: argparse.Namespace) -> dict:
    """Every run: [job name, scheduled_for, queued_at, started_at, finished_at, state,
    reason, attempt, node, target_node, error (first 100 characters), claimed_at]."""
    rows = []
    for values in (
        JobRun.objects.order_by()
        .values_list(
            "job__name",
            "scheduled_for",
            "queued_at",
            "started_at",
            "finished_at",
            "state",
            "reason",
            "attempt",
            "node",
            "target_node",
            "error",
            "claimed_at",
        )
        .iterator(chunk_size=5000)
    ):
        name, sched, queued, started, finished, state, reason, attempt, node, target, error, claimed = values
        rows.append(
            [
                name,
                _ts(sched),
                _ts(queued),
                _ts(started),
                _ts(finished),
                state,
                reason,
                attempt,
                node,
                target,
                (error or "")[:100],
                _ts(claimed),
            ]
        )
    Path(args.out).write_text(json.dumps(rows))
    return {"runs": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("backlog")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--task", default="demo.noop")
    p.add_argument("--kwargs", default="{}")
    p.add_argument("--line-prefix", default="")
    p.add_argument("--retries", type=int, default=1, help="retry_max_attempts of the jobs")
    p.add_argument("--backoff", type=float, default=10.0, help="retry_backoff_seconds of the jobs")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--jobs-only", action="store_true")
    only.add_argument("--runs-only", action="store_true")
    p = sub.add_parser("interval")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--interval", type=int, default=1)
    p.add_argument("--base", type=float, required=True)
    p.add_argument("--misfire", default="run_all")
    p = sub.add_parser("dump")
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    result = {"backlog": cmd_backlog, "interval": cmd_interval, "dump": cmd_dump}[args.cmd](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
