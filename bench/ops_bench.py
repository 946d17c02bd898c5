#!/usr/bin/env python
"""Benchmark of the operator's admin pages at scale: the job list, the dashboard (page
and JSON for each window) and the run list, with 10,000 jobs and 1,000,000 runs.

    nice -n 10 .venv/bin/python bench/ops_bench.py [--jobs 10000] [--runs 1000000] [--samples 40]

Reuses ``bench/api_bench.py``'s setup (imported, not copied): its own PostgreSQL database
``bench_ops_<pid>`` (dropped at the end), migrated, seeded with INSERT ... SELECT
generate_series, served by gunicorn (``-w 2 --threads 8``, DEBUG off, psycopg's pool), a
logged-in superuser. Measures p50/p95 over keep-alive connections (after warm-up), and
for each page once in process: the number of queries and the time spent in SQL, so a
figure can be split into database and Python, and the query count shown not to grow.

As a peer measured in the same run (the machine may be shared, so compare ratios): the
admin's plain list of the 50 groups (``/admin/scheduler_app/jobgroup/``), a page with
no run statistics. The issue's target (job list < 500 ms) is printed as PASS/FAIL.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BENCH_PG_DB", f"bench_ops_{os.getpid()}")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_bench  # noqa: E402  (reads BENCH_PG_DB at import)
from api_bench import Config, Figure, Heartbeats, Server, log, measure  # noqa: E402

PAGES = [
    # (label, path, is the job-list target)
    ("job list, first page (100 of 10,000)", "/admin/scheduler_app/job/", True),
    ("job list, by failures in 24 h", "/admin/scheduler_app/job/?o=-14", True),
    ("job list, by last run", "/admin/scheduler_app/job/?o=-13", True),
    ("job list, by p95 duration (slowest first)", "/admin/scheduler_app/job/?o=15", True),
    ("job list, one tenant", "/admin/scheduler_app/job/?tenant__id__exact={tenant}", True),
    ("dashboard page (last hour)", "/admin/scheduler_app/dashboard/", False),
    ("dashboard JSON + panels, 1 h", "/admin/scheduler_app/dashboard/data/?window=1h&html=1", False),
    ("dashboard JSON + panels, 24 h", "/admin/scheduler_app/dashboard/data/?window=24h&html=1", False),
    ("dashboard JSON + panels, 7 d", "/admin/scheduler_app/dashboard/data/?window=7d&html=1", False),
    ("run list, first page", "/admin/scheduler_app/jobrun/", False),
    ("peer: group list (no run figures)", "/admin/scheduler_app/jobgroup/", False),
]


def in_process(paths: list[str]) -> dict[str, tuple[int, float, float]]:
    """(queries, SQL ms, total ms) of each page, second request (caches warm)."""
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    out = {}
    for path in paths:
        client.get(path)
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        total = (time.perf_counter() - start) * 1000
        assert response.status_code == 200, (path, response.status_code)
        sql = sum(float(q["time"]) for q in captured.captured_queries) * 1000
        out[path] = (len(captured), sql, total)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=40, help="requests per figure")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    cfg = Config(jobs=args.jobs, runs=args.runs, rate_clients=1)
    logdir = Path(tempfile.mkdtemp(prefix="ops_bench-"))
    log(f"database {api_bench.PG_DB}; load average {os.getloadavg()[0]:.2f}")
    api_bench.drop_database()
    api_bench.pg_admin(f'CREATE DATABASE "{api_bench.PG_DB}"')
    heartbeats = Heartbeats()
    server = None
    try:
        import subprocess

        done = subprocess.run(
            [api_bench.PY, "manage.py", "migrate", "-v0"],
            cwd=api_bench.ROOT,
            env=api_bench.server_env({"DJANGO_DB_POOL": "0"}),
        )
        if done.returncode:
            raise RuntimeError("migrate failed")
        os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
        api_bench.setup_django()
        t = time.perf_counter()
        seeded = api_bench.seed(cfg)
        log(f"seeded {cfg.jobs:,} jobs, {cfg.runs:,} runs in {time.perf_counter() - t:.1f} s")
        heartbeats.start()
        paths = [(label, path.format(tenant=seeded.other_tenant_id), target) for label, path, target in PAGES]
        inproc = in_process([p for _, p, _ in paths])
        from django.db import connections

        connections.close_all()
        server = Server(cfg, logdir)
        admin = {"Cookie": f"sessionid={seeded.admin_session}"}
        rows: list[tuple[str, str, bool, Figure]] = []
        loads = [os.getloadavg()[0]]
        for label, path, target in paths:
            log(f"measuring {label}")
            rows.append(
                (
                    label,
                    path,
                    target,
                    measure(server.port, "admin", [path], admin, args.samples, args.clients),
                )
            )
            loads.append(os.getloadavg()[0])
    finally:
        api_bench.teardown(heartbeats, server, drop=not args.keep_db)

    peer = rows[-1][3]
    print()
    print(
        f"## Operator pages: {cfg.jobs:,} jobs, {cfg.runs:,} runs, PostgreSQL, gunicorn -w {cfg.workers} "
        f"--threads {cfg.threads}, {args.clients} clients, {args.samples} requests per figure; "
        f"load average {min(loads):.1f}–{max(loads):.1f} (nproc {os.cpu_count()})"
    )
    print()
    print("| page | p50 / p95 ms | p95 / peer p95 | queries | in process: SQL / total ms | errors |")
    print("|---|---|---|---|---|---|")
    for label, path, _target, figure in rows:
        queries, sql, total = inproc[path]
        print(
            f"| {label} | {figure.ms(50):.0f} / {figure.ms(95):.0f} | {figure.ms(95) / peer.ms(95):.1f} "
            f"| {queries} | {sql:.0f} / {total:.0f} | {figure.errors} |"
        )
    print()
    for label, _path, target, figure in rows:
        if target:
            print(f"{'PASS' if figure.ms(95) < 500 else 'FAIL'}  {label}: p95 < 500 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
