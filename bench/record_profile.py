#!/usr/bin/env python
"""In-process cost of recording outcomes with and without alerting: what a failed run
under a matching rule costs beyond a succeeded one, and what delivering its alert costs.

    nice -n 10 .venv/bin/python bench/record_profile.py [--jobs 1000] [--batch 200] [--rounds 5]
        [--code CHECKOUT]

On a fresh PostgreSQL database (``BENCH_PG_DB`` + ``_rec``), ``--jobs`` jobs; each round
records one batch of running runs per mode through ``DjangoRunStore.record`` (the run
engine's path: outcome rows, metrics, alert evaluation and outbox rows in one
transaction), the modes alternating so that a shared machine's load hits them alike:

* ``succeeded``: ``demo.noop``-like outcomes, no rule;
* ``failed``: failures with a traceback, jobs of a tenant without a rule;
* ``failed+rule``: the same under a tenant-wide ``failed`` rule to a webhook channel
  (first round: every job's first failure, incidents opened and alerts written; later
  rounds: suppressed under the open incident).

Then ``delivery``: the outbox rows the first round wrote (one per job) sent to a local
HTTP receiver by ``alerts.delivery.deliver`` batches. Figures: CPU (ms) per run (per alert
for delivery) of this process and of its PostgreSQL backend (same machine, /proc), summed
over all rounds (the process's median per batch beside it). ``--code`` imports another checkout's product code (before/after in one
session); the bench itself and the receiver come from this checkout. Not a product module.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_PG_DB", "bench_record") + "_rec"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/scheduler_app/engine/executors.py", line 252, in _execute\n'
    "    value = func(*run.args, **run.kwargs)\n"
    "            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/srv/app/project/scheduler_tasks.py", line 59, in fail\n'
    "    raise RuntimeError(message)\n"
    "RuntimeError: partner API answered 503\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--code", default="", help="checkout whose product code is imported")
    args = parser.parse_args()
    code = Path(args.code).resolve() if args.code else ROOT
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(code))  # product code first
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DB}"')
    os.environ["DATABASE_URL"] = urlparse(PG_ADMIN_URL)._replace(path=f"/{PG_DB}").geturl()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    import scheduler_app

    print(f"product code: {Path(scheduler_app.__file__).parent}", flush=True)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from scheduler_app import services
    from scheduler_app.alerts import delivery
    from scheduler_app.backends.runstore import DjangoRunStore
    from scheduler_app.engine.interfaces import Outcome
    from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule, Job, JobRun, RunState, Tenant
    from tests.alert_receivers import WebhookReceiver

    receiver = WebhookReceiver()
    quiet, alerted = (
        Tenant.objects.create(slug="quiet", name="quiet"),
        Tenant.objects.create(slug="alerted", name="alerted"),
    )
    channel = services.save_channel(
        AlertChannel(tenant=alerted, name="hook", type="webhook", config={"url": receiver.url}),
        secret="s3cret",
    )
    services.save_rule(
        AlertRule(tenant=alerted, name="failures", events=["failed"], throttle_seconds=3600),
        channels=[channel],
    )

    def jobs_of(tenant: Tenant, prefix: str) -> list[Job]:
        Job.objects.bulk_create(
            [
                Job(
                    tenant=tenant,
                    name=f"{prefix}-{i:05d}",
                    task="demo.fail",
                    retry_max_attempts=1,
                    trigger={"type": "interval", "seconds": 1},
                )
                for i in range(args.jobs)
            ]
        )
        return list(Job.objects.filter(tenant=tenant, name__startswith=prefix).order_by("pk"))

    modes = {
        "succeeded": (jobs_of(quiet, "ok"), "succeeded"),
        "failed": (jobs_of(quiet, "bad"), "failed"),
        "failed+rule": (jobs_of(alerted, "alerted"), "failed"),
    }
    store = DjangoRunStore()
    backend_pid = connection.cursor().connection.info.backend_pid
    ticks = os.sysconf("SC_CLK_TCK")

    def backend_cpu() -> float:
        fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    base = datetime(2026, 1, 1, tzinfo=UTC)
    figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in modes}
    first: dict[str, tuple[float, float]] = {}
    for rnd in range(args.rounds):
        for name, (jobs, state) in modes.items():
            when = base + timedelta(seconds=rnd)
            chosen = jobs if rnd == 0 and name == "failed+rule" else jobs[: args.batch]
            runs = JobRun.objects.bulk_create(
                [
                    JobRun(
                        job=job,
                        tenant_id=job.tenant_id,
                        scheduled_for=when,
                        not_before=when,
                        state=RunState.RUNNING,
                        node="bench",
                        started_at=when,
                    )
                    for job in chosen
                ]
            )
            outcomes = [
                Outcome(
                    run_id=run.pk,
                    state=state,
                    started_at=when,
                    finished_at=when + timedelta(milliseconds=3),
                    cpu_seconds=0.001,
                    error_type="RuntimeError" if state == "failed" else "",
                    error="partner API answered 503" if state == "failed" else "",
                    traceback=TRACEBACK if state == "failed" else "",
                )
                for run in runs
            ]
            for start in range(0, len(outcomes), args.batch):
                chunk = outcomes[start : start + args.batch]
                c0, b0 = time.process_time(), backend_cpu()
                store.record(chunk)
                cost = (
                    (time.process_time() - c0) * 1000 / len(chunk),
                    (backend_cpu() - b0) * 1000 / len(chunk),
                )
                if rnd == 0 and name == "failed+rule":
                    first.setdefault("sum", (0.0, 0.0))
                    first["sum"] = (
                        first["sum"][0] + cost[0] * len(chunk),
                        first["sum"][1] + cost[1] * len(chunk),
                    )
                else:
                    figures[name].append((cost[0] * len(chunk), cost[1] * len(chunk), len(chunk)))
    pending = AlertOutbox.objects.filter(state="pending").count()
    c0, b0, t0 = time.process_time(), backend_cpu(), time.monotonic()
    sent = 0
    while n := delivery.deliver("bench"):
        sent += n
    wall = time.monotonic() - t0
    deliver_cpu = (
        (time.process_time() - c0) * 1000 / max(sent, 1),
        (backend_cpu() - b0) * 1000 / max(sent, 1),
    )
    received = len(receiver.accepted())
    receiver.close()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.jobs} jobs per mode, batches of {args.batch}")
    print("| mode | runs | CPU ms/run: process | database backend | total |")
    print("|---|---|---|---|---|")

    for name, values in figures.items():
        n = sum(v[2] for v in values)
        p, b = sum(v[0] for v in values) / n, sum(v[1] for v in values) / n
        spread = [v[0] / v[2] for v in values]
        label = name + (" (suppressed)" if name == "failed+rule" else "")
        print(
            f"| {label} | {n} ({len(values)} batches; process median {statistics.median(spread):.3f}) "
            f"| {p:.3f} | {b:.3f} | {p + b:.3f} |"
        )
    if "sum" in first:
        p, b = (v / args.jobs for v in first["sum"])
        print(
            f"| failed+rule, first failures (incident + alert each) | {args.jobs} | {p:.3f} | {b:.3f} | {p + b:.3f} |"
        )
    p, b = deliver_cpu
    print(
        f"| delivery (per alert; {sent} of {pending} pending, {received} received, {wall:.1f} s, "
        f"{sent / wall:.0f}/s) | {sent} | {p:.3f} | {b:.3f} | {p + b:.3f} |"
    )
    connection.close()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
