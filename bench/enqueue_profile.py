#!/usr/bin/env python
"""In-process cost of writing fires: ``DjangoRunStore.enqueue`` with the real lease fire
guard, on a fresh PostgreSQL database, for batches of a few sizes.

    .venv/bin/python bench/enqueue_profile.py [--jobs 1000] [--fires 20000] [--batches 10,100,500]

Prints, per batch size, the fires written per second and the CPU (ms) per fire of this
process and of its PostgreSQL backend (same machine: /proc). Not a product module.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_PG_DB", "bench_enqueue") + "_enq"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--fires", type=int, default=20_000)
    parser.add_argument("--batches", default="10,100,500")
    args = parser.parse_args()
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DB}"')
    os.environ["DATABASE_URL"] = urlparse(PG_ADMIN_URL)._replace(path=f"/{PG_DB}").geturl()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bench.rows import bench_tenant
    from scheduler_app.backends import cluster as cluster_backend
    from scheduler_app.backends.runstore import DjangoRunStore
    from scheduler_app.engine.interfaces import Fire
    from scheduler_app.models import Job, JobRun, Lease

    tenant = bench_tenant()
    Job.objects.bulk_create(
        [
            Job(
                tenant=tenant,
                name=f"enq-{i:06d}",
                task="demo.noop",
                retry_max_attempts=1,
                trigger={"type": "interval", "seconds": 1},
            )
            for i in range(args.jobs)
        ]
    )
    pks = list(Job.objects.values_list("pk", flat=True))
    far = datetime.now(UTC) + timedelta(days=1)
    Lease.objects.create(name="triggers/0", holder="bench", incarnation="inc", expires_at=far, term=1)
    store = DjangoRunStore()
    store.fire_guard = lambda: cluster_backend.holds_lease("triggers/0", "inc", lock=True)
    base = datetime.now(UTC).replace(microsecond=0)
    step = 0
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = Path(f"/proc/{cursor.fetchone()[0]}/stat")
    tick = os.sysconf("SC_CLK_TCK")

    def server_cpu() -> float:
        fields = backend.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        for size in [int(b) for b in args.batches.split(",")]:
            fires = []
            for n in range(args.fires):
                step += 1
                fires.append(
                    Fire(
                        job_id=pks[n % len(pks)], run_times=(base + timedelta(seconds=step),), noticed_at=base
                    )
                )
            t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu()
            written = 0
            for i in range(0, len(fires), size):
                written += store.enqueue(fires[i : i + size])
            wall, cpu, server = time.perf_counter() - t0, time.process_time() - c0, server_cpu() - s0
            print(
                f"batch {size:>4}: {written:,} of {len(fires):,} written, {written / wall:,.0f} fires/s, "
                f"CPU per fire: {cpu * 1000 / len(fires):.3f} ms this process, "
                f"{server * 1000 / len(fires):.3f} ms its PostgreSQL backend; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        print(f"rows: {JobRun.objects.count():,}")
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
