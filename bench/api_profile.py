#!/usr/bin/env python
"""One API request, in-process, on a database seeded by ``api_bench.py --seed-only`` (or
kept with ``--keep-db``): its CPU time and wall time, its queries, and a cProfile.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_api_1234 \\
        .venv/bin/python bench/api_profile.py "/api/jobs/?page_size=100" [--samples 20] [--sql] [--profile]

The request goes through Django's test client with a new API key of the database's first
superuser (the benchmark's), after one warm-up request. CPU time (``time.process_time``)
is the figure to compare on a busy machine: wall time there mostly measures the wait for
a core. ``--admin`` requests an admin page as the superuser logged in (e.g.
``/admin/scheduler_app/job/``). ``--dump`` writes the last answer's body to stdout (to compare two versions byte
for byte); ``--code DIR`` imports ``scheduler_app`` from another checkout (e.g. the
commit before a change) to compare with it on the same data.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--sql", action="store_true", help="print each query with its time")
    parser.add_argument("--profile", action="store_true", help="cProfile of 5 more requests")
    parser.add_argument("--dump", action="store_true", help="write the body to stdout")
    parser.add_argument("--code", help="checkout to import scheduler_app and the demo project from")
    parser.add_argument(
        "--admin",
        action="store_true",
        help="an admin page: the superuser logged in (session), not an API key",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.code).resolve() if args.code else ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from scheduler_app.services import keys

    settings.ALLOWED_HOSTS = ["*"]
    admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
    if admin is None:
        print("no superuser in this database: seed it with bench/api_bench.py --seed-only", file=sys.stderr)
        return 1
    if args.admin:
        client = Client()
        client.force_login(admin)
    else:
        client = Client(
            HTTP_AUTHORIZATION=f"Bearer {keys.create_key(admin, name=f'profile-{os.getpid()}').token}"
        )
    response = client.get(args.path)
    if response.status_code != 200:
        print(f"{response.status_code}: {response.content[:500]!r}", file=sys.stderr)
        return 1
    wall, cpu = [], []
    for _ in range(args.samples):
        t, c = time.perf_counter(), time.process_time()
        response = client.get(args.path)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    with CaptureQueriesContext(connection) as queries:
        client.get(args.path)
    cpu.sort()
    wall.sort()
    sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
    out = sys.stderr if args.dump else sys.stdout
    print(
        f"{args.path}: CPU median {cpu[len(cpu) // 2] * 1000:.1f} ms (min {cpu[0] * 1000:.1f}); "
        f"wall median {wall[len(wall) // 2] * 1000:.1f} ms (min {wall[0] * 1000:.1f}); "
        f"{len(queries)} queries, {sql_ms:.1f} ms SQL; {len(response.content):,} bytes; "
        f"load average {os.getloadavg()[0]:.1f}",
        file=out,
    )
    if args.sql:
        for query in queries.captured_queries:
            print(f"{float(query['time']) * 1000:7.1f} ms  {query['sql'][:200]}", file=out)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(5):
            client.get(args.path)
        profile.disable()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
    if args.dump:
        sys.stdout.buffer.write(response.content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
