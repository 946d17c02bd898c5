"""Django-side steps of the engine benchmark, run as a subprocess of engine_bench.py with
``DATABASE_URL`` pointing at the benchmark database (so one orchestrator can drive both
SQLite and PostgreSQL without reconfiguring Django in-process).

    bench_django.py jobs     --count N --interval S [--spread] [--base EPOCH]
    bench_django.py burst    --count N --mode bulk|runnow
    bench_django.py runs     --out FILE          # dump JobRun timings as JSON

Prints one JSON object on stdout (the last line) describing what it did.
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
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.utils import timezone  # noqa: E402

from bench.rows import bench_tenant as _tenant  # noqa: E402
from bench.rows import queue_runs  # noqa: E402
from bench.rows import timestamp as _ts  # noqa: E402
from scheduler_app.models import Job, JobRun, RunState  # noqa: E402


def cmd_jobs(args: argparse.Namespace) -> dict:
    """Interval jobs of --task (demo.noop) with --kwargs, no retries, on the thread executor. With --spread, job i gets
    start = base + i * interval / count, so fires are spread evenly over each interval
    (≈ count/interval runs per second); without it the trigger is exactly
    {"type": "interval", "seconds": S} (phase = the job's created_at)."""
    tenant = _tenant()
    t0 = time.perf_counter()
    batch: list[Job] = []
    created = 0
    for i in range(args.count):
        trigger: dict = {"type": "interval", "seconds": args.interval}
        if args.spread:
            start = args.base + i * args.interval / args.count
            trigger["start"] = datetime.fromtimestamp(start, UTC).isoformat()
        if args.end:
            trigger["end"] = datetime.fromtimestamp(args.end, UTC).isoformat()
        batch.append(
            Job(
                tenant=tenant,
                name=f"{args.prefix}-{i:06d}",
                task=args.task,
                kwargs=json.loads(args.kwargs),
                retry_max_attempts=1,
                trigger=trigger,
                **({"misfire_policy": args.misfire} if args.misfire else {}),
                **({"misfire_grace_seconds": args.grace} if args.grace is not None else {}),
            )
        )
        if len(batch) >= 5000:
            Job.objects.bulk_create(batch, batch_size=5000)
            created += len(batch)
            batch = []
    if batch:
        Job.objects.bulk_create(batch, batch_size=5000)
        created += len(batch)
    return {"created": created, "seconds": round(time.perf_counter() - t0, 3)}


def cmd_burst(args: argparse.Namespace) -> dict:
    """N manual-trigger jobs of demo.noop, then one queued run each: either through
    the product's run-now path (services.run_jobs_now) or bulk-created JobRun rows
    with exactly the fields enqueue_run() sets."""
    tenant = _tenant()
    t0 = time.perf_counter()
    Job.objects.bulk_create(
        [
            Job(tenant=tenant, name=f"burst-{i:06d}", task="demo.noop", trigger={"type": "manual"})
            for i in range(args.count)
        ],
        batch_size=5000,
    )
    jobs = list(Job.objects.filter(tenant=tenant, name__startswith="burst-").order_by("pk"))
    t1 = time.perf_counter()
    if args.mode == "runnow":
        from scheduler_app.services import run_jobs_now

        result = run_jobs_now(jobs)
        queued, refused = len(result.done), len(result.refused)
        if refused:
            print("refused:", result.refused[:3], file=sys.stderr)
    else:
        queued, refused = queue_runs(jobs, timezone.now()), 0
    t2 = time.perf_counter()
    return {
        "jobs_seconds": round(t1 - t0, 3),
        "queue_seconds": round(t2 - t1, 3),
        "queued": queued,
        "refused": refused,
        "mode": args.mode,
    }


def cmd_alert_rule(args: argparse.Namespace) -> dict:
    """A webhook channel to --url and a tenant-wide rule on failed runs (through the
    services, as an operator would make them)."""
    from scheduler_app import services
    from scheduler_app.models import AlertChannel, AlertRule

    tenant = _tenant()
    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="bench-hook", type="webhook", config={"url": args.url}),
        secret="bench-secret",
    )
    services.save_rule(
        AlertRule(tenant=tenant, name="bench failures", events=["failed"], throttle_seconds=3600),
        channels=[channel],
    )
    return {"channel": channel.pk}


def cmd_alerts(args: argparse.Namespace) -> dict:
    from django.db.models import Count

    from scheduler_app.models import AlertIncident, AlertOutbox

    return {
        "outbox": dict(AlertOutbox.objects.values_list("state").annotate(n=Count("pk")).order_by()),
        "alert_ids": list(map(str, AlertOutbox.objects.values_list("alert_id", flat=True))),
        "incidents": AlertIncident.objects.count(),
        "jobs_alerted": AlertOutbox.objects.values("job_id").distinct().count(),
    }


def cmd_runs(args: argparse.Namespace) -> dict:
    rows = []
    for job_id, sched, started, finished, state, reason, error in (
        JobRun.objects.order_by()
        .values_list("job_id", "scheduled_for", "started_at", "finished_at", "state", "reason", "error")
        .iterator(chunk_size=5000)
    ):
        rows.append(
            [
                job_id,
                _ts(sched),
                _ts(started),
                _ts(finished),
                state,
                reason,
                error[:120] if state == RunState.SKIPPED else "",
            ]
        )
    Path(args.out).write_text(json.dumps(rows))
    return {"runs": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("jobs")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--spread", action="store_true")
    p.add_argument("--base", type=float, default=0.0)
    p.add_argument("--task", default="demo.noop")
    p.add_argument("--kwargs", default="{}", help="the jobs' kwargs, JSON")
    p.add_argument("--end", type=float, default=0.0, help="the triggers' end (epoch seconds)")
    p.add_argument("--misfire", default="", help="the jobs' misfire policy")
    p.add_argument("--grace", type=int, default=None, help="the jobs' misfire grace (s)")
    p.add_argument("--prefix", default="bench", help="the jobs' names start with it")
    p = sub.add_parser("alert-rule")
    p.add_argument("--url", required=True)
    sub.add_parser("alerts")
    p = sub.add_parser("burst")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--mode", choices=["bulk", "runnow"], default="bulk")
    p = sub.add_parser("runs")
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    commands = {
        "jobs": cmd_jobs,
        "burst": cmd_burst,
        "runs": cmd_runs,
        "alert-rule": cmd_alert_rule,
        "alerts": cmd_alerts,
    }
    result = commands[args.cmd](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
