#!/usr/bin/env python
"""Benchmark of the operations API, /metrics and the health endpoints on PostgreSQL,
with the Django admin's changelists of the same data as the peer, in the same run.

    .venv/bin/python bench/api_bench.py [--jobs 10000] [--runs 1000000] [--quick]

1. Creates its own PostgreSQL database ``bench_api_<pid>`` (dropped at the end), migrates
   it and seeds it: tenants, groups, ``--jobs`` jobs (one version each), ``--runs`` runs
   spread over 30 days (INSERT ... SELECT generate_series, in batches), the metrics'
   counters, three nodes with a live heartbeat and the leader lease (kept fresh by a
   thread while the benchmark runs).
2. Starts the demo project under gunicorn (the documented production setup: ``-w 2
   --threads 8``, psycopg 3's pool with ``DJANGO_DB_POOL=1``, DEBUG off).
3. Measures with concurrent HTTP clients (keep-alive connections, one per client):
   p50/p95 of API lists (first page, filtered by tenant, job, state, time range), the same
   lists in the admin (logged-in superuser, same data), a /metrics scrape (with and
   without the metrics cache) and the health checks; then a sustained mix of reads and
   ``run`` actions at a target rate (200 requests/s), with the achieved rate and errors.

The issue's targets are printed as PASS/FAIL. It is a benchmark, not a test: it exits
non-zero only if something could not be measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_PG_DB", f"bench_api_{os.getpid()}")
DB_URL = urlparse(PG_ADMIN_URL)._replace(path=f"/{PG_DB}").geturl()

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


@dataclass
class Config:
    jobs: int = 10_000
    runs: int = 1_000_000
    tenants: int = 10
    groups_per_tenant: int = 5
    samples: int = 200  # requests per latency figure
    clients: int = 4  # concurrent clients for the latency figures
    rate: float = 200.0  # target of the sustained phase, requests/s
    rate_seconds: float = 60.0
    rate_clients: int = 32
    workers: int = 2
    threads: int = 8
    server: str = "gunicorn"  # or "runserver": what ./dev demo serves with


# -- database ---------------------------------------------------------------------------------


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def drop_database() -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')


def teardown(heartbeats: Heartbeats, server: Server | None, *, drop: bool) -> None:
    """After a bench (also one that failed): stop the heartbeats and the server, close
    this process's connections, drop the bench database unless asked to keep it. Shared
    with ops_bench.py."""
    heartbeats.stop.set()
    if server is not None:
        server.stop()
    try:
        from django.db import connections

        connections.close_all()
    except Exception:
        pass
    if drop:
        drop_database()
        log(f"dropped {PG_DB}")


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DB_URL,
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        DJANGO_DB_POOL="1",
        PYTHONUNBUFFERED="1",
        SCHEDULER_JOB_STORE="memory",
    )
    env.update(extra or {})
    return env


def setup_django() -> None:
    os.environ.update(DATABASE_URL=DB_URL, DJANGO_SETTINGS_MODULE="project.settings", DJANGO_DEBUG="0")
    os.environ.pop("DJANGO_DB_POOL", None)  # the seeding side uses plain connections
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


@dataclass
class Seeded:
    admin_session: str = ""
    keys: list[str] = field(default_factory=list)  # superuser's keys (one per client)
    tenant_key: str = ""  # an editor of one tenant, key restricted to it
    tenant_slug: str = ""
    other_tenant_id: int = 0
    job_ids: list[int] = field(default_factory=list)
    busy_job: int = 0  # a job with failed runs
    window: tuple[str, str] = ("", "")  # a one-hour scheduled_for window a week ago
    seconds: dict[str, float] = field(default_factory=dict)


COUNTED_RUNS = 100_000
RUN_COLUMNS = (
    "job_id, tenant_id, scheduled_for, attempt, state, reason, priority, not_before, kwargs_override,"
    " node, target_node, claim_token, executor, queued_at, started_at, finished_at, heartbeat_at,"
    " duration, cpu_seconds, peak_memory_mb, result, error_type, error, traceback, stop_requested, is_final,"
    " wait_reason, upstream_runs"
)
# Run g (0 ≤ g < N) belongs to job min_id + g % jobs and was due at now − (N − g) × step: 30
# days of history, newest last. States by a hash of g: 86% succeeded, 8% failed, 1% timed
# out, 2% skipped, 1% cancelled, 1% lost, 1% interrupted; the newest 200 are queued or running.
RUN_SELECT = """
SELECT j.id, j.tenant_id, t.due, CASE WHEN s.state = 'failed' AND g %% 3 = 0 THEN 2 ELSE 1 END,
       s.state, 'schedule', 0, t.due, '{}'::jsonb,
       CASE WHEN s.state = 'queued' THEN '' ELSE 'node-' || (g %% 3) END, '', '',
       CASE WHEN s.state = 'queued' THEN '' ELSE 'thread' END, t.due,
       CASE WHEN s.state IN ('queued', 'skipped') THEN NULL ELSE t.due + t.late END,
       CASE WHEN s.state IN ('queued', 'running') THEN NULL ELSE t.due + t.late + t.dur END,
       CASE WHEN s.state = 'running' THEN now() ELSE NULL END,
       CASE WHEN s.state IN ('queued', 'running', 'skipped') THEN NULL ELSE extract(epoch FROM t.dur) END,
       CASE WHEN s.state IN ('queued', 'running', 'skipped') THEN NULL ELSE extract(epoch FROM t.dur) / 2 END,
       CASE WHEN s.state IN ('queued', 'running', 'skipped') THEN NULL ELSE 40 + g %% 50 END,
       CASE WHEN s.state = 'succeeded' THEN jsonb_build_object('rows', g %% 1000) ELSE NULL END,
       CASE WHEN s.state = 'failed' THEN 'RuntimeError' ELSE '' END,
       CASE WHEN s.state = 'failed' THEN 'export failed: connection reset by peer' ELSE '' END,
       CASE WHEN s.state = 'failed' THEN repeat('Traceback (most recent call last): line 42 in run', 8)
            ELSE '' END,
       false, s.state NOT IN ('queued', 'running'), '', '[]'::jsonb
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
CROSS JOIN LATERAL (SELECT hashint8(g) & 2147483647 AS h) AS s0
JOIN scheduler_app_job j ON j.id = %(min_id)s + g %% %(jobs)s
CROSS JOIN LATERAL (SELECT
    now() - (%(n)s - g) * %(step)s * interval '1 second' AS due,
    (s0.h %% 500) * interval '1 millisecond' AS late,
    ((s0.h / 7) %% 30000) * interval '1 millisecond' AS dur) AS t
CROSS JOIN LATERAL (SELECT CASE
    WHEN g >= %(n)s - 200 THEN CASE WHEN g %% 10 = 0 THEN 'running' ELSE 'queued' END
    WHEN s0.h %% 100 < 86 THEN 'succeeded'
    WHEN s0.h %% 100 < 94 THEN 'failed'
    WHEN s0.h %% 100 < 95 THEN 'timed_out'
    WHEN s0.h %% 100 < 97 THEN 'skipped'
    WHEN s0.h %% 100 < 98 THEN 'cancelled'
    WHEN s0.h %% 100 < 99 THEN 'lost'
    ELSE 'interrupted' END AS state) AS s
"""


def seed(cfg: Config) -> Seeded:
    """Everything the benchmark reads, written as fast as the database takes it."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection, transaction
    from django.utils import timezone

    from scheduler_app.models import Job, JobGroup, JobRun, Membership, Node, Tenant
    from scheduler_app.monitoring import counters
    from scheduler_app.services import keys

    out = Seeded()
    t = time.perf_counter()
    tenants = Tenant.objects.bulk_create(
        [Tenant(slug=f"tenant-{i:02d}", name=f"Tenant {i}") for i in range(cfg.tenants)]
    )
    groups = JobGroup.objects.bulk_create(
        [JobGroup(tenant=tn, name=f"group-{g}") for tn in tenants for g in range(cfg.groups_per_tenant)]
    )
    triggers = [
        {"type": "cron", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"},
        {"type": "cron", "expression": "0 2 * * 1-5", "timezone": "UTC"},
        {"type": "interval", "seconds": 3600},
        {"type": "manual"},
    ]
    tasks = ["demo.noop", "demo.echo", "demo.sleep"]
    batch: list[Job] = []
    for i in range(cfg.jobs):
        tenant_index = i % cfg.tenants
        batch.append(
            Job(
                tenant=tenants[tenant_index],
                group=groups[
                    tenant_index * cfg.groups_per_tenant + (i // cfg.tenants) % cfg.groups_per_tenant
                ],
                name=f"job-{i:06d}",
                task=tasks[i % len(tasks)],
                kwargs=[{}, {"n": i}, {"seconds": 0.01}][i % len(tasks)],
                trigger=triggers[i % len(triggers)],
            )
        )
        if len(batch) == 5000:
            Job.objects.bulk_create(batch)
            batch = []
    if batch:
        Job.objects.bulk_create(batch)
    min_id, max_id = (
        Job.objects.order_by("pk").values_list("pk", flat=True).first(),
        Job.objects.order_by("-pk").values_list("pk", flat=True).first(),
    )
    assert max_id - min_id + 1 == cfg.jobs, "job ids are not contiguous"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO scheduler_app_jobversion (job_id, tenant_id, number, created_at, summary, snapshot)"
            " SELECT id, tenant_id, 1, created_at, 'created', jsonb_build_object('name', name, 'task', task)"
            " FROM scheduler_app_job"
        )
    out.seconds["jobs"] = time.perf_counter() - t
    log(f"  {cfg.jobs:,} jobs (and a version each) in {out.seconds['jobs']:.1f} s")

    t = time.perf_counter()
    step = 30 * 86400 / cfg.runs
    chunk = 100_000
    for lo in range(0, cfg.runs, chunk):
        hi = min(lo + chunk, cfg.runs) - 1
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO scheduler_app_jobrun ({RUN_COLUMNS}) {RUN_SELECT}",
                {"lo": lo, "hi": hi, "min_id": min_id, "jobs": cfg.jobs, "n": cfg.runs, "step": step},
            )
        done = hi + 1
        rate = done / (time.perf_counter() - t)
        log(f"  runs {done:>9,} / {cfg.runs:,} ({rate:,.0f} rows/s)")
    with connection.cursor() as cursor:
        # VACUUM too: what autovacuum does to a table this size soon after such a load
        # (sets the visibility map, so index-only scans read no table pages, as they
        # would on an installation that has been running).
        cursor.execute("VACUUM ANALYZE")
    out.seconds["runs"] = time.perf_counter() - t
    log(f"  {cfg.runs:,} runs in {out.seconds['runs']:.1f} s")

    # The metrics' counters, as the recorders keep them, from the newest 100,000 finished
    # runs: that covers every job (run g belongs to job g mod jobs), so every label set a
    # scrape renders is there; only the totals are smaller than the runs table's.
    t = time.perf_counter()
    fields = ("job_id", "state", "attempt", "duration", "started_at", "scheduled_for", "not_before")
    last = max(JobRun.objects.order_by("-pk").values_list("pk", flat=True).first() - COUNTED_RUNS, 0)
    while True:
        with transaction.atomic():
            page = list(
                JobRun.objects.filter(pk__gt=last, is_final=True).order_by("pk").only(*fields)[:50_000]
            )
            if not page:
                break
            counters.count_finished(page)
        last = page[-1].pk
    out.seconds["counters"] = time.perf_counter() - t
    log(f"  metrics counters from the newest {COUNTED_RUNS:,} runs in {out.seconds['counters']:.1f} s")

    User = get_user_model()
    admin = User.objects.create_superuser("bench-admin", "bench@example.com", "unused-password-1")
    session = SessionStore()
    session[SESSION_KEY] = str(admin.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = admin.get_session_auth_hash()
    session.create()
    out.admin_session = session.session_key
    # One key per client: the API throttles per key (API_THROTTLE_RATE, default 6000/minute).
    out.keys = [keys.create_key(admin, name=f"bench-{i}").token for i in range(cfg.rate_clients)]
    editor = User.objects.create_user("bench-editor", "editor@example.com", "unused-password-2")
    Membership.objects.create(user=editor, tenant=tenants[0], role="editor")
    out.tenant_key = keys.create_key(editor, name="bench-tenant", tenant=tenants[0], role="editor").token
    out.tenant_slug = tenants[0].slug
    out.other_tenant_id = tenants[3].pk

    now = timezone.now()
    for i in range(3):
        Node.objects.create(
            name=f"node-{i}",
            host="bench",
            incarnation=f"bench-{i}",
            capacity={"thread": 10},
            used={"thread": 2},
            state="active",
            started_at=now,
            heartbeat_at=now,
            load=0.5,
        )
    out.job_ids = list(range(min_id, max_id + 1))
    out.busy_job = (
        JobRun.objects.filter(state="failed", tenant=tenants[0])
        .order_by("-pk")
        .values_list("job_id", flat=True)
        .first()
    )
    week_ago = now - timezone.timedelta(days=7)
    out.window = (week_ago.isoformat(), (week_ago + timezone.timedelta(hours=1)).isoformat())
    connection.close()
    return out


class Heartbeats(threading.Thread):
    """Keeps the seeded nodes alive and node-0 holding the leader lease, as running
    schedulers would, so /api/health/scheduler measures the healthy path."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(DB_URL, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute("UPDATE scheduler_app_node SET heartbeat_at = now()")
                conn.execute(
                    "INSERT INTO scheduler_app_lease (name, holder, incarnation, acquired_at, expires_at, term)"
                    " VALUES ('triggers/0', 'node-0', 'bench-0', now(), now() + interval '30 seconds', 1)"
                    " ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at"
                )
                self.stop.wait(3)


# -- the server -------------------------------------------------------------------------------


class Server:
    """The web server under test: gunicorn as README documents it (``-w 2 --threads 8``),
    or with ``server="runserver"`` what ``./dev demo`` starts (``manage.py runserver
    --noreload``: one process, a thread per connection)."""

    def __init__(self, cfg: Config, logdir: Path) -> None:
        self.port = free_port()
        self.label = server_label(cfg)
        self.log_path = logdir / f"{cfg.server}.log"
        if cfg.server == "runserver":
            command = [PY, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload", "--skip-checks"]
        else:
            command = [
                PY,
                "-m",
                "gunicorn",
                "project.wsgi",
                "-w",
                str(cfg.workers),
                "--threads",
                str(cfg.threads),
                "-b",
                f"127.0.0.1:{self.port}",
                "--keep-alive",
                "30",
                "--access-logfile",
                "-",
                "--access-logformat",
                '%(s)s %(m)s "%(U)s?%(q)s" %(M)sms',
            ]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(),
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                status, _, _ = Client(self.port).get("/api/health/live")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} did not answer within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes (gunicorn's
        master and workers: its process group), from /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the command: state ppid pgrp ... utime (11) stime (12), 0-based
            if int(fields[2]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def errors_logged(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        # gunicorn's access log lines start with the status; runserver's have '" 5xx '
        return [
            line
            for line in text.splitlines()
            if "Traceback" in line or line.startswith("5") or re.search(r'" 5\d\d ', line)
        ]


def server_label(cfg: Config) -> str:
    if cfg.server == "runserver":
        return "manage.py runserver --noreload (./dev demo's server)"
    return f"gunicorn -w {cfg.workers} --threads {cfg.threads}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = {"Host": "127.0.0.1", **(headers or {})}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, float, bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            start = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue  # the server closed an idle keep-alive connection: reconnect once
            elapsed = time.perf_counter() - start
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return response.status, elapsed, data
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, float, bytes]:
        return self.request("GET", path)


# -- measuring --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class Figure:
    name: str
    path: str
    times: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    size: int = 0

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 400)

    def ms(self, p: float) -> float:
        return percentile(self.times, p) * 1000


def measure(
    port: int, name: str, paths: list[str], headers: dict[str, str], samples: int, clients: int
) -> Figure:
    """``samples`` GETs spread over ``clients`` concurrent connections (after 3 warm-up
    requests each); ``paths`` are cycled (e.g. different jobs)."""
    figure = Figure(name, paths[0])
    lock = threading.Lock()
    counter = iter(range(samples))

    def work() -> None:
        client = Client(port, headers)
        for i in range(3):
            client.get(paths[i % len(paths)])
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            status, elapsed, body = client.get(paths[i % len(paths)])
            with lock:
                figure.times.append(elapsed)
                figure.statuses[status] = figure.statuses.get(status, 0) + 1
                figure.size = max(figure.size, len(body))

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return figure


@dataclass
class RateResult:
    target: float
    seconds: float
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    behind: int = 0  # requests sent more than 100 ms after their slot (the clients fell behind)
    unsent: int = 0  # requests still not sent when the phase's time was up (+10 s grace)
    wall: float = 0.0
    server_cpu_ms: float = 0.0  # the server's CPU time per request sent (figure that travels)
    client_cpu_ms: float = 0.0  # this process's (the clients') CPU time per request sent


def sustained(port: int, seeded: Seeded, cfg: Config) -> RateResult:
    """Open loop: request k is due at start + k / rate whatever the answers before it, so a
    slow server shows as lateness and a lower achieved rate, not as a politely lower load.
    Mix: 30% job pages, 30% run pages by job and state, 15% runs by state, 10% job detail,
    10% ``run`` actions (POST /api/jobs/{id}/run/), 5% /api/health/ready."""
    rng = random.Random(7)
    jobs = seeded.job_ids
    mix = (
        [("jobs", "GET", lambda: "/api/jobs/?page_size=100")] * 6
        + [("runs by job+state", "GET", lambda: f"/api/runs/?job={rng.choice(jobs)}&state=failed")] * 6
        + [("runs by state", "GET", lambda: "/api/runs/?state=failed")] * 3
        + [("job detail", "GET", lambda: f"/api/jobs/{rng.choice(jobs)}/")] * 2
        + [("run action", "POST", lambda: f"/api/jobs/{rng.choice(jobs)}/run/")] * 2
        + [("ready", "GET", lambda: "/api/health/ready")]
    )
    total = int(cfg.rate * cfg.rate_seconds)
    plan = [rng.choice(mix) for _ in range(total)]
    plan = [(kind, method, make()) for kind, method, make in plan]
    result = RateResult(cfg.rate, cfg.rate_seconds)
    lock = threading.Lock()
    counter = iter(range(total))
    start = time.perf_counter() + 0.5
    stop_at = start + cfg.rate_seconds + 10.0

    def work(key: str) -> None:
        client = Client(port, {"Authorization": f"Bearer {key}"})
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            due = start + k / cfg.rate
            if time.perf_counter() > stop_at:  # a server that cannot keep up: stop, count the rest
                with lock:
                    result.unsent += 1
                continue
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            kind, method, path = plan[k]
            late = time.perf_counter() - due > 0.1
            try:
                status, elapsed, _ = client.request(method, path, b"{}" if method == "POST" else None)
            except OSError as exc:
                status, elapsed = type(exc).__name__, 0.0
            with lock:
                result.sent += 1
                result.behind += late
                if isinstance(status, int) and status < 400:
                    result.ok += 1
                    result.times.setdefault(kind, []).append(elapsed)
                else:
                    label = f"{kind}: {status}"
                    result.errors[label] = result.errors.get(label, 0) + 1

    threads = [threading.Thread(target=work, args=(seeded.keys[i],)) for i in range(cfg.rate_clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    result.wall = time.perf_counter() - start
    return result


def cpu_busy() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# -- main -------------------------------------------------------------------------------------


def run(cfg: Config, args: argparse.Namespace) -> int:
    logdir = Path(tempfile.mkdtemp(prefix="api_bench-"))
    log(f"database {PG_DB}; logs in {logdir}; load average {os.getloadavg()[0]:.2f}")
    drop_database()
    pg_admin(f'CREATE DATABASE "{PG_DB}"')
    heartbeats = Heartbeats()
    server = None
    try:
        t = time.perf_counter()
        done = subprocess.run(
            [PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=server_env({"DJANGO_DB_POOL": "0"}), text=True
        )
        if done.returncode:
            raise RuntimeError("migrate failed")
        log(f"migrated in {time.perf_counter() - t:.1f} s; seeding {cfg.jobs:,} jobs, {cfg.runs:,} runs")
        setup_django()
        t = time.perf_counter()
        seeded = seed(cfg)
        seed_seconds = time.perf_counter() - t
        log(f"seeded in {seed_seconds:.1f} s")
        if args.seed_only:
            print(
                json.dumps({"database": DB_URL, "api_key": seeded.keys[0], "session": seeded.admin_session})
            )
            return 0
        heartbeats.start()
        server = Server(cfg, logdir)
        log(f"{server.label} on port {server.port} (DJANGO_DB_POOL=1)")

        api = {"Authorization": f"Bearer {seeded.keys[0]}"}
        tenant_api = {"Authorization": f"Bearer {seeded.tenant_key}"}
        admin = {"Cookie": f"sessionid={seeded.admin_session}"}
        rng = random.Random(1)
        some_jobs = [rng.choice(seeded.job_ids) for _ in range(50)]
        after, before = seeded.window
        window = urlencode({"scheduled_after": after, "scheduled_before": before})
        admin_window = urlencode({"scheduled_for__gte": after, "scheduled_for__lt": before})
        n, c = cfg.samples, cfg.clients
        # (row label, API paths, admin paths or None)
        cases = [
            ("jobs, first page of 100", ["/api/jobs/?page_size=100"], ["/admin/scheduler_app/job/"]),
            (
                "jobs of one tenant",
                ["/api/jobs/?page_size=100&tenant=tenant-03"],
                [f"/admin/scheduler_app/job/?tenant__id__exact={seeded.other_tenant_id}"],
            ),
            ("runs, first page of 100", ["/api/runs/?page_size=100"], ["/admin/scheduler_app/jobrun/"]),
            (
                "runs of one job",
                [f"/api/runs/?page_size=100&job={j}" for j in some_jobs],
                [f"/admin/scheduler_app/jobrun/?job__id__exact={j}" for j in some_jobs],
            ),
            (
                "runs, state=failed",
                ["/api/runs/?page_size=100&state=failed"],
                ["/admin/scheduler_app/jobrun/?state__exact=failed"],
            ),
            (
                "runs, state=failed & job",
                [f"/api/runs/?page_size=100&state=failed&job={j}" for j in some_jobs],
                [f"/admin/scheduler_app/jobrun/?state__exact=failed&job__id__exact={j}" for j in some_jobs],
            ),
            (
                "runs, one hour a week ago",
                [f"/api/runs/?page_size=100&{window}"],
                [f"/admin/scheduler_app/jobrun/?{admin_window}"],
            ),
            (
                "runs, one hour, by scheduled time",
                [f"/api/runs/?page_size=100&ordering=-scheduled_for&{window}"],
                None,
            ),
        ]
        rows: list[tuple[str, Figure, Figure | None]] = []
        for label, api_paths, admin_paths in cases:
            log(f"measuring {label}")
            figure = measure(server.port, "API", api_paths, api, n, c)
            peer = (
                measure(server.port, "admin", admin_paths, admin, max(n // 4, 20), c) if admin_paths else None
            )
            rows.append((label, figure, peer))
        log("measuring the tenant-restricted key")
        scoped = [
            (
                "jobs, first page (key of one tenant)",
                measure(server.port, "API", ["/api/jobs/?page_size=100"], tenant_api, n, c),
            ),
            (
                "runs, state=failed & job (key of one tenant)",
                measure(
                    server.port,
                    "API",
                    [f"/api/runs/?page_size=100&state=failed&job={seeded.busy_job}"],
                    tenant_api,
                    n,
                    c,
                ),
            ),
        ]
        log("measuring /metrics and health")
        others = [
            (
                "/metrics (cached 5 s; what most scrapes cost)",
                measure(server.port, "", ["/metrics"], {}, n, c),
            ),
            ("/api/health/live", measure(server.port, "", ["/api/health/live"], {}, n, c)),
            ("/api/health/ready", measure(server.port, "", ["/api/health/ready"], {}, n, c)),
            ("/api/health/scheduler", measure(server.port, "", ["/api/health/scheduler"], {}, n, c)),
        ]
        # An uncached scrape: every scrape after the cache expired reads the database.
        cold = Figure("cold", "/metrics")
        client = Client(server.port)
        samples = 10 if args.quick else 20
        for _ in range(samples):
            time.sleep(5.2)
            status, elapsed, body = client.get("/metrics")
            cold.times.append(elapsed)
            cold.statuses[status] = cold.statuses.get(status, 0) + 1
            cold.size = len(body)
        others.insert(0, ("/metrics (uncached: database read)", cold))

        log(
            f"sustained mix at {cfg.rate:.0f} requests/s for {cfg.rate_seconds:.0f} s ({cfg.rate_clients} clients)"
        )
        busy0, server0, client0 = cpu_busy(), server.cpu_seconds(), time.process_time()
        rate = sustained(server.port, seeded, cfg)
        busy1 = cpu_busy()
        answered = max(rate.sent, 1)
        rate.server_cpu_ms = 1000 * (server.cpu_seconds() - server0) / answered
        rate.client_cpu_ms = 1000 * (time.process_time() - client0) / answered
        machine = 100 * (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
        server_errors = server.errors_logged()
    finally:
        teardown(heartbeats, server, drop=not (args.keep_db or args.seed_only))

    report(cfg, seed_seconds, seeded, rows, scoped, others, rate, machine, server_errors)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "config": cfg.__dict__,
                    "seed_seconds": seed_seconds,
                    "api": {
                        label: [f.ms(50), f.ms(95), p.ms(50) if p else None, p.ms(95) if p else None]
                        for label, f, p in rows
                    },
                    "scoped": {label: [f.ms(50), f.ms(95)] for label, f in scoped},
                    "others": {label: [f.ms(50), f.ms(95)] for label, f in others},
                    "rate": {
                        "achieved": rate.ok / rate.wall,
                        "sent": rate.sent,
                        "server_cpu_ms": rate.server_cpu_ms,
                        "client_cpu_ms": rate.client_cpu_ms,
                        "errors": rate.errors,
                        "behind": rate.behind,
                    },
                },
                indent=2,
            )
        )
    return 0


def report(cfg, seed_seconds, seeded, rows, scoped, others, rate, machine, server_errors) -> None:  # noqa: ANN001
    print()
    print(
        f"## API benchmark: {cfg.jobs:,} jobs, {cfg.runs:,} runs, PostgreSQL, {server_label(cfg)}, "
        f"{cfg.clients} concurrent clients, {cfg.samples} requests per API figure"
    )
    print(f"seeding: {seed_seconds:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in seeded.seconds.items())})")
    print()
    print("| request | API p50 / p95 ms | admin p50 / p95 ms | API / admin (p95) | errors |")
    print("|---|---|---|---|---|")
    for label, figure, peer in rows:
        admin_cell = f"{peer.ms(50):.1f} / {peer.ms(95):.1f}" if peer else "—"
        ratio = f"{figure.ms(95) / peer.ms(95):.2f}" if peer else "—"
        errors = figure.errors + (peer.errors if peer else 0)
        print(f"| {label} | {figure.ms(50):.1f} / {figure.ms(95):.1f} | {admin_cell} | {ratio} | {errors} |")
    for label, figure in scoped:
        print(f"| {label} | {figure.ms(50):.1f} / {figure.ms(95):.1f} | — | — | {figure.errors} |")
    print()
    print("| endpoint | p50 / p95 ms | body bytes | errors |")
    print("|---|---|---|---|")
    for label, figure in others:
        print(f"| {label} | {figure.ms(50):.1f} / {figure.ms(95):.1f} | {figure.size:,} | {figure.errors} |")
    print()
    achieved = rate.ok / rate.wall if rate.wall else 0.0
    errors = sum(rate.errors.values())
    print(
        f"sustained mix: target {rate.target:.0f} req/s for {rate.seconds:.0f} s → {rate.sent:,} sent, "
        f"{rate.ok:,} answered 2xx in {rate.wall:.1f} s = {achieved:.1f} req/s; errors {errors} "
        f"{dict(sorted(rate.errors.items())) if rate.errors else ''}; sent > 100 ms behind schedule: "
        f"{rate.behind:,}; not sent when the time was up: {rate.unsent:,}; machine {machine:.0f}% busy"
    )
    # One Python process runs on one core at a time (the GIL): runserver uses one core,
    # gunicorn at most one per worker.
    cores = min(os.cpu_count() or 1, 1 if cfg.server == "runserver" else cfg.workers)
    print(
        f"CPU per request sent: server ({cfg.server}) {rate.server_cpu_ms:.1f} ms, clients (this process) "
        f"{rate.client_cpu_ms:.1f} ms; at the server's figure alone its {cores} core(s) give at most "
        f"{1000 * cores / max(rate.server_cpu_ms, 0.001):.0f} req/s (PostgreSQL's CPU not counted)"
    )
    print("| in the mix | n | p50 / p95 ms |")
    print("|---|---|---|")
    for kind, times in sorted(rate.times.items()):
        print(
            f"| {kind} | {len(times):,} | {percentile(times, 50) * 1000:.1f} / {percentile(times, 95) * 1000:.1f} |"
        )
    print(f"server log: {len(server_errors)} 5xx/traceback lines")
    print()
    by_label = {label: f for label, f, _ in rows}
    metrics_cold = others[0][1]
    targets = [
        ("GET /api/jobs/?page_size=100 p95 < 50 ms", by_label["jobs, first page of 100"].ms(95) < 50),
        ("GET /api/runs/?state=failed&job=… p95 < 50 ms", by_label["runs, state=failed & job"].ms(95) < 50),
        ("/metrics scrape (uncached) < 200 ms (p95)", metrics_cold.ms(95) < 200),
        (f"{rate.target:.0f} req/s sustained with no error", achieved >= 0.98 * rate.target and errors == 0),
    ]
    for name, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs, 50,000 runs, shorter phases")
    parser.add_argument("--rate", type=float, help="target of the sustained phase (default 200 requests/s)")
    parser.add_argument("--rate-seconds", type=float)
    parser.add_argument("--samples", type=int, help="requests per latency figure")
    parser.add_argument(
        "--server",
        choices=["gunicorn", "runserver"],
        help="gunicorn -w 2 --threads 8 (default, as README documents) or runserver (what ./dev demo starts)",
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look with psql")
    parser.add_argument(
        "--seed-only", action="store_true", help="seed, print the database URL and a key, keep it"
    )
    args = parser.parse_args()
    cfg = Config()
    if args.quick:
        cfg = Config(jobs=1000, runs=50_000, samples=60, rate_seconds=15.0)
    for name in ("jobs", "runs", "rate", "rate_seconds", "samples", "server"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    try:
        return run(cfg, args)
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
