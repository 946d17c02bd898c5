"""Procrastinate's side of the cluster benchmark's burst: run with the Python of a
separate virtual environment holding Procrastinate 3 (never the product's), e.g.

    python3 -m venv var/bench-procrastinate-venv
    var/bench-procrastinate-venv/bin/pip install "procrastinate==3.*" "psycopg[binary]"
    var/bench-procrastinate-venv/bin/python bench/procrastinate_bench.py \
        --dsn postgresql://postgres@127.0.0.1:5432/bench_procrastinate --count 10000

Into an empty database: applies Procrastinate's schema, defers COUNT jobs of a no-op
task with ``batch_defer`` (not timed), then runs one worker (``concurrency`` jobs at a
time) until the queue is empty. Prints one JSON object (the last line): the version,
the setup time, and the jobs' started/finished times from ``procrastinate_events``.
Not a product module.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import procrastinate

parser = argparse.ArgumentParser()
parser.add_argument("--dsn", required=True)
parser.add_argument("--count", type=int, default=10_000)
parser.add_argument("--concurrency", type=int, default=10)
parser.add_argument("--kind", choices=["sync", "async"], default="sync")
args = parser.parse_args()

logging.basicConfig(level=logging.ERROR)  # not the "App in the main module" note
app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=args.dsn))


@app.task(name="noop_sync")
def noop_sync() -> None:
    """Does nothing, like demo.noop (a plain function, run in Procrastinate's threads)."""


@app.task(name="noop_async")
async def noop_async() -> None:
    """Does nothing, as a coroutine (Procrastinate's native kind of task)."""


def main() -> None:
    task = noop_sync if args.kind == "sync" else noop_async
    with app.open():
        t0 = time.time()
        app.schema_manager.apply_schema()
        t1 = time.time()
        left = args.count
        while left:
            n = min(left, 1000)
            task.batch_defer(*([{}] * n))
            left -= n
        t2 = time.time()
    # The worker needs the asynchronous connector.
    worker_app = app.with_connector(procrastinate.PsycopgConnector(conninfo=args.dsn))
    t3 = time.time()
    worker_app.run_worker(concurrency=args.concurrency, wait=False, install_signal_handlers=False)
    t4 = time.time()
    import psycopg

    with psycopg.connect(args.dsn) as conn:
        row = conn.execute(
            "SELECT min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type = 'succeeded'),"
            " count(*) FILTER (WHERE type = 'succeeded'), count(*) FILTER (WHERE type = 'failed')"
            " FROM procrastinate_events"
        ).fetchone()
        states = dict(conn.execute("SELECT status, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall())
    first, last, succeeded, failed = row
    print(
        json.dumps(
            {
                "version": procrastinate.__version__,
                "kind": args.kind,
                "concurrency": args.concurrency,
                "schema_s": round(t1 - t0, 3),
                "defer_s": round(t2 - t1, 3),
                "worker_wall_s": round(t4 - t3, 3),
                "first_started": first.timestamp() if first else None,
                "last_succeeded": last.timestamp() if last else None,
                "succeeded": succeeded,
                "failed": failed,
                "states": {str(k): v for k, v in states.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
