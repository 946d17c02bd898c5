#!/usr/bin/env python
"""Benchmark of the scheduler_app engine against plain APScheduler 3 job stores.

    .venv/bin/python bench/engine_bench.py [--quick] [--only lateness,rate1000,overload,burst,startup]

Figures (see bench/README.md for what each one means):

1. lateness  — 1,000 interval jobs every 10 s (≈100 runs/s), SQLite and PostgreSQL:
               run start − scheduled time, p50/p99/max, in the steady-state window.
2. rate1000  — 1,000 interval jobs every 1 s on PostgreSQL: how many due runs ran, and
               their lateness; CPU ms per executed run (engine, its PostgreSQL sessions).
2b. overload — jobs of demo.sleep(0.1) on the 10-thread pool (100 runs/s): 2x that for
               30 s, then 0.5x (a trigger end) for 30 s, misfire skip, grace 2 s: runs/s,
               skipped, lateness per phase, seconds until every fire runs on time again.
3. burst     — 10,000 queued run-now runs: completed runs per second.
4. startup   — runscheduler with 10,000 and 100,000 jobs: time to "scheduler started",
               peak RSS.

The engine is always a real ``manage.py runscheduler`` process with the demo project's
settings (defaults: memory job store, THREAD_POOL_SIZE 10, MAX_CONCURRENT_RUNS 50,
POLL_INTERVAL 1 s). Plain APScheduler runs in bench/bench_aps.py. Each scenario gets a
fresh, freshly migrated database: PostgreSQL ``bench_scheduler`` (dropped at the end)
and SQLite ``var/bench_scheduler.sqlite3`` (deleted at the end); Redis db 14 is flushed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Where manage.py, the product code and the helpers run from: ROOT, or (default) a copy
# of it taken at start, because other engineers edit this checkout while we measure.
SRC = ROOT
PY = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_PG_DB", "bench_scheduler")
SQLITE_PATH = ROOT / "var" / "bench_scheduler.sqlite3"
_redis = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
REDIS_URL = f"redis://{_redis.hostname or '127.0.0.1'}:{_redis.port or 6379}/14"
PHASES = ("lateness", "rate1000", "overload", "burst", "startup")

T0 = time.monotonic()
CHILDREN: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


# -- configuration ------------------------------------------------------------------------


@dataclass
class Config:
    lateness_jobs: int = 1000
    lateness_interval: int = 10
    rate_jobs: int = 1000
    rate_interval: int = 1
    run_seconds: float = 35.0  # how long each timed scenario runs after start-up
    skip_seconds: float = 10.0  # warm-up excluded from the window
    tail_seconds: float = 3.0  # fires this close to the stop are excluded
    burst_runs: int = 10_000
    burst_timeout: float = 150.0
    aps_burst_timeout: float = 120.0
    startup_jobs: tuple[int, ...] = (10_000, 100_000)
    startup_settle: float = 10.0  # seconds after start-up over which CPU is measured
    startup_timeout: float = 300.0
    # overload: jobs of demo.sleep(overload_task_s) on the thread pool (THREAD_POOL_SIZE
    # 10: capacity 10 / overload_task_s runs/s), first 2x that rate, then 0.5x.
    overload_task_s: float = 0.1
    overload_capacity: int = 100  # runs/s the pool can execute: 10 threads / 0.1 s
    overload_seconds: float = 30.0  # at 2x capacity
    overload_after_seconds: float = 30.0  # then at 0.5x
    overload_grace: int = 2  # the jobs' misfire grace (policy skip)
    # --overload-cpu N: demo.noop jobs instead, N fires/s then N/4, so the limit is the
    # node's CPU (and the database's), not the pool; N ≈ 2x what rate1000 executes.
    overload_cpu_rate: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            lateness_jobs=100,
            rate_jobs=100,
            run_seconds=14.0,
            skip_seconds=3.0,
            tail_seconds=2.0,
            burst_runs=1000,
            burst_timeout=60.0,
            aps_burst_timeout=60.0,
            startup_jobs=(1000, 5000),
            startup_settle=3.0,
            overload_seconds=12.0,
            overload_after_seconds=12.0,
        )


# -- databases ------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str  # "sqlite" | "postgresql"

    @property
    def url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{SQLITE_PATH}"
        u = urlparse(PG_ADMIN_URL)
        return u._replace(path=f"/{PG_DB}").geturl()

    @property
    def sqlalchemy_url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{SQLITE_PATH}"
        u = urlparse(self.url)
        return u._replace(scheme="postgresql+psycopg").geturl()

    @property
    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"

    def drop(self) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
            return
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')

    def fresh(self) -> None:
        """Drop, create and migrate the benchmark database (retried: other sessions on
        the same server can make CREATE DATABASE or migrate fail transiently)."""
        for attempt in range(3):
            try:
                return self._fresh()
            except Exception as exc:
                if attempt == 2:
                    raise
                log(f"  fresh {self.label} database failed ({str(exc).strip()[-300:]}); retrying")
                time.sleep(2)

    def _fresh(self) -> None:
        self.drop()
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{PG_DB}"')
        done = subprocess.run(
            [PY, "manage.py", "migrate", "-v0"],
            cwd=SRC,
            env=self.env(),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"migrate on {self.label} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.url,
            PYTHONUNBUFFERED="1",
            SCHEDULER_JOB_STORE="memory",
            REDIS_URL=REDIS_URL,
        )
        return env

    def scalar(self, sql: str) -> Any:
        if self.kind == "sqlite":
            conn = sqlite3.connect(f"file:{SQLITE_PATH}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute(sql).fetchone()[0]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchone()[0]


def django_step(db: Database, *args: str) -> dict:
    out = subprocess.run(
        [PY, str(SRC / "bench" / "bench_django.py"), *args],
        cwd=SRC,
        env=db.env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- processes --------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS in kB, and CPU ticks (utime + stime) of a live process."""
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found["ticks"] = int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        pass
    return found


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def machine_busy(start: tuple[int, int]) -> float:
    """Share of all cores busy since ``start`` (everything: engine, database, others)."""
    busy, total = machine_ticks()
    return (busy - start[0]) / max(total - start[1], 1) * 100


class Scheduler:
    """A ``manage.py runscheduler`` subprocess with its output in a log file."""

    def __init__(self, db: Database, logdir: Path, name: str, profile: bool = False) -> None:
        self.db = db
        self.log_path = logdir / f"{name}.log"
        self.name = name
        self.profile = profile
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None
        self.t_spawn = 0.0
        self.t_ready = 0.0
        self.ready_line = ""
        self._offset = 0
        self.spy: subprocess.Popen | None = None

    def start(self, timeout: float) -> float:
        """Spawn and wait for 'scheduler started'; returns seconds from spawn."""
        fh = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child
        self.t_spawn = time.time()
        self.proc = subprocess.Popen(
            [PY, "manage.py", "runscheduler"],
            cwd=SRC,
            env=self.db.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        CHILDREN.append(self.proc)
        fh.close()
        deadline = self.t_spawn + timeout
        buffer = b""
        with open(self.log_path, "rb") as reader:
            while time.time() < deadline:
                chunk = reader.read()
                if chunk:
                    buffer += chunk
                    for line in buffer.split(b"\n"):
                        if b" scheduler started" in line:
                            self.t_ready = time.time()
                            self.ready_line = line.decode(errors="replace")
                            return self.t_ready - self.t_spawn
                    buffer = buffer[buffer.rfind(b"\n") + 1 :]
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"runscheduler exited with {self.proc.returncode} before "
                        f"starting; log tail:\n{self.tail()}"
                    )
                time.sleep(0.02)
        raise RuntimeError(f"runscheduler did not start within {timeout:g} s; log tail:\n{self.tail()}")

    def start_profile(self, seconds: float) -> None:
        spy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
        if not (self.profile and spy and self.proc):
            return
        out = self.logdir / f"{self.name}.pyspy.txt"
        self.spy = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(self.proc.pid),
                "-d",
                str(max(int(seconds), 1)),
                "-r",
                "100",
                "--threads",
                "--format",
                "raw",
                "-o",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        CHILDREN.append(self.spy)

    def status(self) -> dict[str, int]:
        return proc_status(self.proc.pid) if self.proc else {}

    def stop(self, timeout: float = 90.0) -> int | None:
        if self.spy is not None:
            try:
                self.spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.spy.kill()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"  runscheduler did not exit {timeout:g} s after SIGTERM; killing it")
            self.proc.kill()
            self.proc.wait()
            return None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self) -> list[str]:
        """Error-level log lines and tracebacks (first few)."""
        found = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                found.append("\n".join(lines[i : i + 25]) if line.startswith("Traceback") else line)
        return found


def db_backend_ticks(db: Database) -> int:
    """CPU ticks of the PostgreSQL backends serving the benchmark database (the engine's
    own sessions; they live as long as the engine), 0 elsewhere."""
    if db.kind != "postgresql":
        return 0
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [PG_DB]
            )
        ]
    return sum(proc_status(pid).get("ticks", 0) for pid in pids)


class CpuMeter:
    """CPU seconds of the engine process and of its database sessions since start."""

    def __init__(self, sched: Scheduler, db: Database) -> None:
        self.sched, self.db = sched, db
        self.engine0 = sched.status().get("ticks", 0)
        self.db0 = db_backend_ticks(db)

    def seconds(self) -> tuple[float, float]:
        engine = (self.sched.status().get("ticks", 0) - self.engine0) / CLK_TCK
        return engine, max(db_backend_ticks(self.db) - self.db0, 0) / CLK_TCK


# -- statistics ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


def window(ready: float, stop: float, cfg: Config, base: float, step: float) -> tuple[float, float]:
    """[a, b) from ready+skip to stop-tail, both moved onto midpoints of the fire grid
    (fires happen at base + k*step), so no fire sits on a boundary."""
    a0, b0 = ready + cfg.skip_seconds, stop - cfg.tail_seconds
    a = base + (math.floor((a0 - base) / step) + 0.5) * step
    b = base + (math.floor((b0 - base) / step) + 0.5) * step
    return a, b


def due_count(jobs: int, interval: float, base: float, a: float, b: float) -> int:
    """Fire times of jobs i=0..jobs-1 (base + i*interval/jobs + k*interval) in [a, b)."""
    total = 0
    for i in range(jobs):
        start = base + i * interval / jobs
        first = max(0, math.ceil((a - start) / interval))
        last = math.ceil((b - start) / interval)  # exclusive
        total += max(0, last - first)
    return total


@dataclass
class Row:
    phase: str
    system: str
    db: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


RESULTS: list[Row] = []


def lateness_figures(lat_s: list[float], due: int, extra: dict[str, Any]) -> dict[str, Any]:
    ms = [x * 1000 for x in lat_s]
    return {
        "due": due,
        "ran": len(ms),
        "missing": max(due - len(ms), 0),
        "p50_ms": pct(ms, 0.50),
        "p99_ms": pct(ms, 0.99),
        "max_ms": max(ms) if ms else math.nan,
        **extra,
    }


# -- scenarios: scheduler_app engine ---------------------------------------------------------


@dataclass
class Measured:
    """One runscheduler run measured from ``t_from`` to ``t_stop`` (then SIGTERM)."""

    startup: float
    t_from: float
    t_stop: float
    engine_cpu: float
    db_cpu: float
    busy: float
    exit: int | None
    status: dict[str, Any]
    runs: list[Any]


def run_measured(
    sched: Scheduler,
    db: Database,
    dump: Path,
    *,
    measure_from: Callable[[float], float],
    profile_until: Callable[[float], float],
    stop_at: Callable[[float], float],
) -> Measured:
    """Start ``sched``; from ``measure_from(startup seconds)`` (a time) meter its CPU (and
    its PostgreSQL sessions' and the machine's) and profile it up to
    ``profile_until(t_from)``; at ``stop_at(t_from)`` stop it cleanly; its runs, dumped to
    ``dump``. The scheduler is stopped whatever happens."""
    try:
        startup = sched.start(timeout=120)
        t_from = measure_from(startup)
        time.sleep(max(t_from - time.time(), 0))
        meter, t_from, m0 = CpuMeter(sched, db), time.time(), machine_ticks()
        sched.start_profile(profile_until(t_from) - t_from)
        time.sleep(max(stop_at(t_from) - time.time(), 0))
        status = sched.status()
        engine_cpu, db_cpu = meter.seconds()
        busy = machine_busy(m0)
        t_stop = time.time()
        log("  SIGTERM; waiting for a clean shutdown")
        code = sched.stop()
    finally:
        sched.stop()
    django_step(db, "runs", "--out", str(dump))
    runs = json.loads(dump.read_text())
    return Measured(startup, t_from, t_stop, engine_cpu, db_cpu, busy, code, status, runs)


def engine_interval(
    phase: str, db: Database, jobs: int, interval: int, cfg: Config, logdir: Path, profile: bool
) -> Row:
    name = f"{phase}-engine-{db.kind}"
    log(
        f"{phase}: scheduler_app on {db.label}: fresh database, {jobs:,} interval jobs every "
        f"{interval} s (demo.noop, thread executor, phases spread evenly)"
    )
    db.fresh()
    base = math.floor(time.time()) - 10 * interval
    made = django_step(
        db,
        "jobs",
        "--count",
        str(jobs),
        "--interval",
        str(interval),
        "--spread",
        "--base",
        repr(base),
    )
    log(f"  {made['created']:,} jobs created in {made['seconds']:.1f} s; starting runscheduler")
    sched = Scheduler(db, logdir, name, profile)
    row = Row(phase, "scheduler_app runscheduler", db.label)

    def measure_from(startup: float) -> float:
        log(
            f"  started in {startup:.1f} s; running {cfg.run_seconds:g} s "
            f"(window skips the first {cfg.skip_seconds:g} s)"
        )
        return time.time() + cfg.skip_seconds

    m = run_measured(
        sched,
        db,
        logdir / f"{name}.runs.json",
        measure_from=measure_from,
        profile_until=lambda w0: w0 + cfg.run_seconds - cfg.skip_seconds - 1,
        stop_at=lambda w0: w0 + max(cfg.run_seconds - cfg.skip_seconds, 0),
    )
    runs, w0, t_stop, engine_cpu, db_cpu, st = m.runs, m.t_from, m.t_stop, m.engine_cpu, m.db_cpu, m.status
    cpu, busy, code = engine_cpu / (t_stop - w0) * 100, m.busy, m.exit
    a, b = window(sched.t_ready, t_stop, cfg, base, interval / jobs)
    in_window = [r for r in runs if r[5] == "schedule" and a <= r[1] < b]
    lat = [r[2] - r[1] for r in in_window if r[2] is not None]
    states = Counter(r[4] for r in in_window)
    started_in_window = sum(1 for r in runs if r[2] is not None and a <= r[2] < b)
    executed = sum(1 for r in runs if r[2] is not None and w0 <= r[2] < t_stop)  # CPU measured then
    row.figures = lateness_figures(
        lat,
        due_count(jobs, interval, base, a, b),
        {
            "exec_rate": started_in_window / (b - a),
            "window_s": round(b - a, 1),
            "cpu_pct": round(cpu, 0),
            "rss_mb": st.get("VmHWM", 0) / 1024,
            "exit": code,
            "states": dict(states),
            "machine_busy_pct": round(busy, 0),
            "engine_cpu_ms_per_run": engine_cpu * 1000 / max(executed, 1),
            "db_cpu_ms_per_run": db_cpu * 1000 / max(executed, 1),
        },
    )
    skipped_reasons = Counter(
        r[6].split(" (")[0][:70] for r in runs if r[5] == "schedule" and r[4] == "skipped"
    )
    if skipped_reasons:
        row.notes.append(
            "skipped over the whole run: " + "; ".join(f"{n}× {k}" for k, n in skipped_reasons.most_common(3))
        )
    after_stop = sum(1 for r in runs if r[5] == "schedule" and r[4] == "queued")
    if after_stop:
        row.notes.append(f"{after_stop} scheduled runs still queued at shutdown")
    _note_problems(row, sched)
    RESULTS.append(row)
    _print_row(row)
    return row


def engine_overload(db: Database, cfg: Config, logdir: Path, profile: bool) -> Row:
    """2x a node's capacity, then 0.5x: jobs of demo.sleep(overload_task_s) on the thread
    pool, misfire policy skip with grace overload_grace. One group of jobs fires at 0.5x
    all along; a second group (1.5x) has a trigger end, so the load drops by itself."""
    name = f"overload-engine-{db.kind}"
    cpu_bound = cfg.overload_cpu_rate > 0
    cap = 0 if cpu_bound else cfg.overload_capacity
    low, high = (cfg.overload_cpu_rate // 4, cfg.overload_cpu_rate) if cpu_bound else (cap // 2, 2 * cap)
    what = "demo.noop: the node's CPU is the limit" if cpu_bound else f"2x the pool's {cap} runs/s"
    log(
        f"overload: scheduler_app on {db.label}: {high} fires/s ({what}) for {cfg.overload_seconds:g} s, "
        f"then {low} fires/s for {cfg.overload_after_seconds:g} s; misfire skip, grace {cfg.overload_grace} s"
    )
    db.fresh()
    base = math.floor(time.time()) - 10
    warm = 5.0
    t_end = math.floor(time.time()) + 8 + warm + cfg.overload_seconds  # start-up ~3 s + margin
    common = ["--interval", "1", "--spread", "--base", repr(base)]
    if not cpu_bound:
        common += ["--task", "demo.sleep", "--kwargs", json.dumps({"seconds": cfg.overload_task_s})]
    common += ["--misfire", "skip", "--grace", str(cfg.overload_grace)]
    django_step(db, "jobs", "--count", str(low), "--prefix", "steady", *common)
    django_step(db, "jobs", "--count", str(high - low), "--prefix", "extra", "--end", repr(t_end), *common)
    sched = Scheduler(db, logdir, name, profile)
    row = Row("overload", "scheduler_app runscheduler", db.label)

    def measure_from(_startup: float) -> float:
        t_start = sched.t_ready + warm
        if t_start >= t_end - 5:
            raise RuntimeError("runscheduler started too late for the overload window")
        return t_start

    m = run_measured(
        sched,
        db,
        logdir / f"{name}.runs.json",
        measure_from=measure_from,
        profile_until=lambda _t: t_end - 1,  # the 2x phase
        stop_at=lambda _t: t_end + cfg.overload_after_seconds,
    )
    t_start, t_stop, engine_cpu, db_cpu, busy, code = (
        m.t_from,
        m.t_stop,
        m.engine_cpu,
        m.db_cpu,
        m.busy,
        m.exit,
    )
    runs = [r for r in m.runs if r[5] == "schedule"]
    stop_at = t_stop - cfg.tail_seconds
    phases = {"2x": (t_start, t_end), "0.5x": (t_end, stop_at)}
    figures: dict[str, Any] = {"exit": code, "machine_busy_pct": round(busy, 0), "capacity": cap}
    for label, (a, b) in phases.items():
        scheduled = [r for r in runs if a <= r[1] < b]
        lat = [(r[2] - r[1]) * 1000 for r in scheduled if r[2] is not None]
        started = sum(1 for r in runs if r[2] is not None and a <= r[2] < b)
        # throughput in the first and the second half of the phase: falling under load?
        mid = (a + b) / 2
        halves = [
            sum(1 for r in runs if r[2] is not None and x <= r[2] < y) / (y - x)
            for x, y in ((a, mid), (mid, b))
        ]
        figures[label] = {
            "seconds": round(b - a, 1),
            "fires_s": len(scheduled) / (b - a),
            "exec_s": started / (b - a),
            "exec_halves": [round(h) for h in halves],
            "skipped": sum(1 for r in scheduled if r[4] == "skipped"),
            "queued_left": sum(1 for r in scheduled if r[4] == "queued"),
            "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat) if lat else math.nan,
        }
    # Recovered: from the first second after the load dropped from which every later
    # second's fires all ran (none skipped or left queued) with p99 lateness < 250 ms.
    seconds = range(int(t_end), int(stop_at))
    good = []
    for sec in seconds:
        bucket = [r for r in runs if sec <= r[1] < sec + 1]
        lat = [(r[2] - r[1]) * 1000 for r in bucket if r[2] is not None]
        good.append(bool(bucket) and len(lat) == len(bucket) and pct(lat, 0.99) < 250)
    recover = None
    for i in range(len(good)):
        if all(good[i:]):
            recover = seconds[i] - t_end
            break
    executed = sum(1 for r in runs if r[2] is not None and t_start <= r[2] < t_stop)
    figures.update(
        recover_s=recover,
        executed=executed,
        engine_cpu_ms_per_run=engine_cpu * 1000 / max(executed, 1),
        db_cpu_ms_per_run=db_cpu * 1000 / max(executed, 1),
        cpu_pct=round(engine_cpu / max(t_stop - t_start, 1e-9) * 100, 0),
    )
    row.figures = figures
    _note_problems(row, sched)
    RESULTS.append(row)
    _print_row(row)
    return row


def engine_burst(db: Database, cfg: Config, logdir: Path, profile: bool, mode: str) -> Row:
    name = f"burst-engine-{db.kind}"
    n = cfg.burst_runs
    log(
        f"burst: scheduler_app on {db.label}: fresh database, {n:,} manual jobs with one queued "
        f"run each ({'services.run_jobs_now' if mode == 'runnow' else 'bulk-created JobRun rows'})"
    )
    db.fresh()
    made = django_step(db, "burst", "--count", str(n), "--mode", mode)
    log(
        f"  jobs in {made['jobs_seconds']:.1f} s, {made['queued']:,} runs queued in "
        f"{made['queue_seconds']:.1f} s "
        f"({made['queued'] / max(made['queue_seconds'], 1e-9):,.0f}/s)"
    )
    sched = Scheduler(db, logdir, name, profile)
    row = Row("burst", "scheduler_app runscheduler", db.label)
    timed_out = False
    try:
        startup = sched.start(timeout=120)
        log(f"  started in {startup:.1f} s; waiting for all runs to finish (timeout {cfg.burst_timeout:g} s)")
        sched.start_profile(min(20, cfg.burst_timeout))
        cpu0, w0, m0 = sched.status().get("ticks", 0), time.time(), machine_ticks()
        deadline = time.time() + cfg.burst_timeout
        done = 0
        t_recorded = math.nan
        last_print = time.time()
        while time.time() < deadline:
            done = db.scalar("SELECT count(*) FROM scheduler_app_jobrun WHERE finished_at IS NOT NULL")
            if done >= made["queued"]:
                t_recorded = time.time()
                break
            if time.time() - last_print >= 10:
                log(f"  … {done:,}/{made['queued']:,} finished")
                last_print = time.time()
            time.sleep(0.25)
        else:
            timed_out = True
        st = sched.status()
        cpu = (st.get("ticks", 0) - cpu0) / CLK_TCK / max(time.time() - w0, 1e-9) * 100
        busy = machine_busy(m0)
        code = sched.stop()
    finally:
        sched.stop()
    dump = logdir / f"{name}.runs.json"
    django_step(db, "runs", "--out", str(dump))
    runs = json.loads(dump.read_text())
    finished = [r for r in runs if r[3] is not None and r[2] is not None]
    states = Counter(r[4] for r in runs)
    if finished:
        first, last = min(r[2] for r in finished), max(r[3] for r in finished)
        span = max(last - first, 1e-9)
        rate = len(finished) / span
    else:
        span, rate = math.nan, 0.0
    recorded_rate = (
        len(finished) / (t_recorded - first) if finished and not math.isnan(t_recorded) else math.nan
    )
    row.figures = {
        "runs": made["queued"],
        "done": len(finished),
        "span_s": span,
        "rate": rate,
        "recorded_rate": recorded_rate,
        "cpu_pct": round(cpu, 0),
        "machine_busy_pct": round(busy, 0),
        "exit": code,
        "states": dict(states),
        "queue_s": made["queue_seconds"],
    }
    if timed_out:
        row.notes.append(f"timed out after {cfg.burst_timeout:g} s")
    _note_problems(row, sched)
    RESULTS.append(row)
    _print_row(row)
    return row


def engine_startup(db: Database, jobs: int, cfg: Config, logdir: Path, profile: bool) -> Row:
    name = f"startup-engine-{db.kind}-{jobs}"
    log(
        f"startup: scheduler_app on {db.label}: fresh database, {jobs:,} interval jobs "
        "(every 60 s, memory job store)"
    )
    db.fresh()
    made = django_step(db, "jobs", "--count", str(jobs), "--interval", "60")
    log(f"  {made['created']:,} jobs bulk-created in {made['seconds']:.1f} s; starting runscheduler")
    sched = Scheduler(db, logdir, name, profile)
    row = Row("startup", "scheduler_app runscheduler", db.label)
    try:
        startup = sched.start(timeout=cfg.startup_timeout)
        at_ready = sched.status()
        log(
            f"  'scheduler started' after {startup:.1f} s "
            f"(RSS {at_ready.get('VmRSS', 0) / 1024:.0f} MB); "
            f"measuring {cfg.startup_settle:g} s of steady state"
        )
        cpu0, w0 = at_ready.get("ticks", 0), time.time()
        sched.start_profile(cfg.startup_settle)
        time.sleep(cfg.startup_settle)
        st = sched.status()
        cpu = (st.get("ticks", 0) - cpu0) / CLK_TCK / max(time.time() - w0, 1e-9) * 100
        code = sched.stop()
    finally:
        sched.stop()
    jobs_logged = _kv(sched.ready_line, "jobs")
    row.figures = {
        "jobs": jobs,
        "startup_s": startup,
        "peak_mb": st.get("VmHWM", 0) / 1024,
        "rss_ready_mb": at_ready.get("VmRSS", 0) / 1024,
        "idle_cpu_pct": round(cpu, 0),
        "exit": code,
        "jobs_synced": jobs_logged,
    }
    _note_problems(row, sched)
    RESULTS.append(row)
    _print_row(row)
    return row


def _kv(line: str, key: str) -> str:
    for part in line.split():
        if part.startswith(key + "="):
            return part.split("=", 1)[1]
    return ""


def _note_problems(row: Row, sched: Scheduler) -> None:
    problems = sched.problems()
    if problems:
        row.notes.append(
            f"{len(problems)} ERROR/CRITICAL log lines or tracebacks, first: "
            + problems[0].splitlines()[0][:300]
        )
        row.figures["problems"] = problems[:5]


# -- scenarios: plain APScheduler ----------------------------------------------------------------


def aps_interval(
    phase: str, store: str, db: Database | None, jobs: int, interval: int, cfg: Config, logdir: Path
) -> Row:
    label = db.label if db else "—"
    log(
        f"{phase}: plain APScheduler + {STORE_NAMES[store]} on {label}: "
        f"{jobs:,} interval jobs every "
        f"{interval} s, {cfg.run_seconds:g} s"
    )
    env = dict(os.environ)
    if db is not None:
        db.fresh()
        env = db.env()
    if store == "redis":
        env["REDIS_URL"] = REDIS_URL
    base = math.floor(time.time()) - 10 * interval
    out = logdir / f"{phase}-aps-{store}-{db.kind if db else 'none'}.json"
    args = [
        "--store",
        store,
        "--mode",
        "interval",
        "--jobs",
        str(jobs),
        "--interval",
        str(interval),
        "--base",
        repr(base),
        "--seconds",
        str(cfg.run_seconds),
        "--out",
        str(out),
    ]
    if db is not None:
        args += ["--sqlalchemy-url", db.sqlalchemy_url]
    result = _run_aps(args, env, logdir / out.with_suffix(".log").name, cfg.run_seconds + 180)
    row = Row(phase, f"APScheduler + {STORE_NAMES[store]}", label)
    a, b = window(result["t_started"], result["t_stop"], cfg, base, interval / jobs)
    pairs = [p for p in result["pairs"] if a <= p[1] < b]
    lat = [st - s for _, s, st in pairs]
    missed = sum(1 for _, s in result["missed"] if a <= s < b)
    started_in_window = sum(1 for p in result["pairs"] if a <= p[2] < b)
    row.figures = lateness_figures(
        lat,
        due_count(jobs, interval, base, a, b),
        {
            "exec_rate": started_in_window / (b - a),
            "window_s": round(b - a, 1),
            "add_s": result["add_seconds"],
            "aps_missed": missed,
            "machine_busy_pct": result["machine_busy_pct"],
            "max_instances": result["max_instances"],
        },
    )
    if missed:
        row.notes.append(f"{missed} fires reported missed (EVENT_JOB_MISSED, >1 s late)")
    if result["max_instances"]:
        row.notes.append(f"{result['max_instances']} max-instances skips")
    if result["unpaired"]:
        row.notes.append(f"{result['unpaired']} starts/events unpaired")
    if result.get("errors"):
        row.notes.append(f"{result['errors']} job errors: {result['first_error'][:200]}")
    RESULTS.append(row)
    _print_row(row)
    return row


def aps_burst(store: str, db: Database | None, cfg: Config, logdir: Path) -> Row:
    label = db.label if db else ("Redis" if store == "redis" else "—")
    n = cfg.burst_runs
    log(f"burst: plain APScheduler + {STORE_NAMES[store]} on {label}: {n:,} one-off DateTrigger jobs due now")
    env = dict(os.environ)
    if db is not None:
        db.fresh()
        env = db.env()
    out = logdir / f"burst-aps-{store}.json"
    args = [
        "--store",
        store,
        "--mode",
        "burst",
        "--jobs",
        str(n),
        "--timeout",
        str(cfg.aps_burst_timeout),
        "--out",
        str(out),
        "--redis-url",
        REDIS_URL,
    ]
    if db is not None:
        args += ["--sqlalchemy-url", db.sqlalchemy_url]
    result = _run_aps(args, env, logdir / out.with_suffix(".log").name, cfg.aps_burst_timeout + 300)
    spans = result["spans"]
    row = Row("burst", f"APScheduler + {STORE_NAMES[store]}", label)
    if spans:
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        span = max(last - first, 1e-9)
        rate = len(spans) / span
    else:
        span, rate = math.nan, 0.0
    row.figures = {
        "runs": n,
        "done": len(spans),
        "span_s": span,
        "rate": rate,
        "add_s": result["add_seconds"],
        "machine_busy_pct": result["machine_busy_pct"],
    }
    if result["timed_out"]:
        row.notes.append(f"stopped after {cfg.aps_burst_timeout:g} s; rate over the runs that finished")
    if result.get("missed"):
        row.notes.append(f"{result['missed']} missed")
    RESULTS.append(row)
    _print_row(row)
    return row


STORE_NAMES = {
    "memory": "MemoryJobStore",
    "django": "DjangoJobStore",
    "sqlalchemy": "SQLAlchemyJobStore",
    "redis": "RedisJobStore",
}


def _run_aps(args: list[str], env: dict[str, str], log_path: Path, timeout: float) -> dict:
    env = dict(env, PYTHONUNBUFFERED="1")
    m0 = machine_ticks()
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(
            [PY, str(SRC / "bench" / "bench_aps.py"), *args],
            cwd=SRC,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        CHILDREN.append(proc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"bench_aps.py did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"bench_aps.py failed ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
    out = Path(args[args.index("--out") + 1])
    result = json.loads(out.read_text())
    result["machine_busy_pct"] = round(machine_busy(m0), 0)
    return result


# -- output ---------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if isinstance(value, float | int):
        return format(value, spec)
    return str(value)


def _print_row(row: Row) -> None:
    f = row.figures
    if row.phase in ("lateness", "rate1000"):
        text = (
            f"  → {row.system} / {row.db}: ran {f['ran']:,} of {f['due']:,} due "
            f"in {f['window_s']} s window; lateness p50 {_fmt(f['p50_ms'], '.1f')} ms, "
            f"p99 {_fmt(f['p99_ms'], '.1f')} ms, max {_fmt(f['max_ms'], '.1f')} ms; "
            f"{f['exec_rate']:,.0f} runs/s started in the window"
        )
        if "states" in f:
            text += f"; states {f['states']}; CPU {f['cpu_pct']:.0f}%"
        if "engine_cpu_ms_per_run" in f and row.db == "PostgreSQL":
            text += (
                f"; CPU per executed run: engine {f['engine_cpu_ms_per_run']:.2f} ms, "
                f"its PostgreSQL sessions {f['db_cpu_ms_per_run']:.2f} ms"
            )
    elif row.phase == "overload":
        parts = []
        for label in ("2x", "0.5x"):
            p = f[label]
            parts.append(
                f"{label}: {p['fires_s']:,.0f} fires/s, {p['exec_s']:,.0f} runs/s executed "
                f"(halves {p['exec_halves']}), {p['skipped']:,} skipped, {p['queued_left']:,} left queued, "
                f"lateness p99 {_fmt(p['p99_ms'], '.0f')} ms max {_fmt(p['max_ms'], '.0f')} ms"
            )
        text = (
            f"  → {row.system} / {row.db}: capacity {f['capacity'] or 'CPU-bound'} runs/s; "
            + "; ".join(parts)
            + f"; recovered {_fmt(f['recover_s'], '.0f')} s after the load dropped; CPU per executed run: "
            f"engine {f['engine_cpu_ms_per_run']:.2f} ms, its PostgreSQL sessions {f['db_cpu_ms_per_run']:.2f} ms"
        )
    elif row.phase == "burst":
        text = (
            f"  → {row.system} / {row.db}: {f['done']:,}/{f['runs']:,} runs in "
            f"{_fmt(f['span_s'], '.1f')} s = {_fmt(f['rate'])} runs/s"
        )
    else:
        text = (
            f"  → {row.system} / {row.db}: {f['jobs']:,} jobs: started in {f['startup_s']:.1f} s, "
            f"peak RSS {f['peak_mb']:.0f} MB, CPU {f['idle_cpu_pct']:.0f}% afterwards"
        )
    log(text)
    for note in row.notes:
        log(f"    note: {note}")


def print_tables(cfg: Config) -> list[tuple[str, bool | None, str]]:
    print()
    print("=" * 100)
    print("RESULTS")
    print("=" * 100)
    print(
        "CPU = the runscheduler process (100% = one core); machine busy = all "
        f"{os.cpu_count()} cores during the scenario\n(the engine or APScheduler, "
        "PostgreSQL, and anything else running on the machine)"
    )
    rows = [r for r in RESULTS if r.phase == "lateness"]
    if rows:
        print(
            f"\n1. Fire lateness (started − scheduled), {cfg.lateness_jobs:,} jobs every "
            f"{cfg.lateness_interval} s (≈{cfg.lateness_jobs / cfg.lateness_interval:,.0f} runs/s)"
        )
        _lateness_table(rows)
    rows = [r for r in RESULTS if r.phase == "rate1000"]
    if rows:
        print(
            f"\n2. Rate: {cfg.rate_jobs:,} jobs every {cfg.rate_interval} s "
            f"(≈{cfg.rate_jobs / cfg.rate_interval:,.0f} runs/s)"
        )
        _lateness_table(rows)
    rows = [r for r in RESULTS if r.phase == "overload"]
    if rows:
        print(
            (
                f"\n2b. Overload: {cfg.overload_cpu_rate:,} demo.noop fires/s (the node's CPU the limit) "
                f"for {cfg.overload_seconds:g} s, then a quarter of it"
                if cfg.overload_cpu_rate
                else f"\n2b. Overload: 2x the pool's {cfg.overload_capacity} runs/s for {cfg.overload_seconds:g} s, "
                "then 0.5x"
            )
            + f" for {cfg.overload_after_seconds:g} s (misfire skip, grace {cfg.overload_grace} s)"
        )
        print(
            f"   {'phase':<6} {'fires/s':>8} {'runs/s':>7} {'halves':>11} {'skipped':>8} {'left':>6} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        )
        for r in rows:
            f = r.figures
            for label in ("2x", "0.5x"):
                p = f[label]
                halves = "/".join(str(h) for h in p["exec_halves"])
                print(
                    f"   {label:<6} {p['fires_s']:>8,.0f} {p['exec_s']:>7,.0f} {halves:>11} {p['skipped']:>8,} "
                    f"{p['queued_left']:>6,} {_fmt(p['p50_ms'], '8.0f')} {_fmt(p['p99_ms'], '8.0f')} "
                    f"{_fmt(p['max_ms'], '8.0f')}"
                )
            print(
                f"   recovered {_fmt(f['recover_s'], '.0f')} s after the load dropped; CPU per executed run: "
                f"engine {f['engine_cpu_ms_per_run']:.2f} ms, its PostgreSQL sessions "
                f"{f['db_cpu_ms_per_run']:.2f} ms; engine CPU {f['cpu_pct']:.0f}%, machine "
                f"{f['machine_busy_pct']:.0f}% busy"
            )
    rows = [r for r in RESULTS if r.phase == "burst"]
    if rows:
        print(f"\n3. Burst: {cfg.burst_runs:,} runs due at once (first start → last finish)")
        print(f"   {'system':<34} {'db':<11} {'done':>13} {'span s':>8} {'runs/s':>8} {'setup s':>8}  notes")
        for r in rows:
            f = r.figures
            setup = f.get("add_s", f.get("queue_s"))
            notes = list(r.notes)
            if "machine_busy_pct" in f:
                notes.insert(0, f"machine {f['machine_busy_pct']:.0f}% busy")
            if "cpu_pct" in f:
                notes.insert(0, f"CPU {f['cpu_pct']:.0f}%")
            if not math.isnan(f.get("recorded_rate", math.nan)):
                notes.insert(0, f"all outcomes written at {f['recorded_rate']:,.0f} runs/s (±0.25 s)")
            print(
                f"   {r.system:<34} {r.db:<11} {f['done']:>6,}/{f['runs']:<6,} "
                f"{_fmt(f['span_s'], '8.1f')} {_fmt(f['rate'], '8,.0f')} {_fmt(setup, '8.1f')}  "
                f"{'; '.join(notes)[:160]}"
            )
        print("   (setup s: queueing the runs / adding the jobs to the store, not part of runs/s)")
    rows = [r for r in RESULTS if r.phase == "startup"]
    if rows:
        print("\n4. Start-up of runscheduler (spawn → 'scheduler started'), memory job store")
        print(
            f"   {'db':<11} {'jobs':>8} {'start-up s':>10} {'RSS at start MB':>16} "
            f"{'peak RSS MB':>12} "
            f"{'CPU% after':>10}  notes"
        )
        for r in rows:
            f = r.figures
            print(
                f"   {r.db:<11} {f['jobs']:>8,} {f['startup_s']:>10.1f} {f['rss_ready_mb']:>16.0f} "
                f"{f['peak_mb']:>12.0f} {f['idle_cpu_pct']:>10.0f}  {'; '.join(r.notes)[:160]}"
            )
    return targets(cfg)


def _lateness_table(rows: list[Row]) -> None:
    print(
        f"   {'system':<34} {'db':<11} {'due':>7} {'ran':>7} {'missing':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>9} {'exec/s':>7}  notes"
    )
    for r in rows:
        f = r.figures
        notes = list(r.notes)
        if "machine_busy_pct" in f:
            notes.insert(0, f"machine {f['machine_busy_pct']:.0f}% busy")
        if "cpu_pct" in f:
            notes.insert(0, f"CPU {f['cpu_pct']:.0f}%")
        print(
            f"   {r.system:<34} {r.db:<11} {f['due']:>7,} {f['ran']:>7,} {f['missing']:>7,} "
            f"{_fmt(f['p50_ms'], '8.1f')} {_fmt(f['p99_ms'], '8.1f')} {_fmt(f['max_ms'], '9.1f')} "
            f"{_fmt(f['exec_rate'], '7,.0f')}  {'; '.join(notes)[:200]}"
        )


def targets(cfg: Config) -> list[tuple[str, bool | None, str]]:
    def engine(phase: str, db: str = "PostgreSQL") -> list[Row]:
        return [
            r for r in RESULTS if r.phase == phase and r.db == db and r.system.startswith("scheduler_app")
        ]

    checks: list[tuple[str, bool | None, str]] = []
    full = cfg.lateness_jobs == 1000 and cfg.rate_jobs == 1000
    for r in engine("lateness"):
        f = r.figures
        ok = f["p99_ms"] < 50 and f["missing"] == 0
        checks.append(
            (
                f"≈{cfg.lateness_jobs // cfg.lateness_interval} runs/s on PostgreSQL: "
                "every due run "
                "ran and lateness p99 < 50 ms",
                ok,
                f"p99 {_fmt(f['p99_ms'], '.1f')} ms, {f['missing']:,} of {f['due']:,} due runs missing",
            )
        )
    for r in engine("rate1000"):
        f = r.figures
        ok = f["missing"] == 0 and f["p99_ms"] < 250
        checks.append(
            (
                f"≈{cfg.rate_jobs // cfg.rate_interval} runs/s on PostgreSQL: "
                "every due run executed "
                "and p99 < 250 ms",
                ok,
                f"{f['ran']:,}/{f['due']:,} ran, p99 {_fmt(f['p99_ms'], '.1f')} ms",
            )
        )
    for r in engine("overload"):
        f = r.figures
        hot, cool = f["2x"], f["0.5x"]
        bound_ms = (cfg.overload_grace + 1) * 1000
        if cfg.overload_cpu_rate:  # capacity unknown: it must not fall while the backlog lasts
            at_capacity = hot["exec_halves"][1] >= 0.9 * hot["exec_halves"][0]
        else:
            at_capacity = min(hot["exec_halves"]) >= 0.9 * cfg.overload_capacity
        ok = at_capacity and hot["max_ms"] <= bound_ms and hot["skipped"] > 0 and f["recover_s"] is not None
        checks.append(
            (
                "2x capacity: throughput at capacity in both halves, lateness ≤ grace + 1 s, "
                "excess shed as skipped, recovered after the load drops",
                ok,
                f"runs/s {'/'.join(str(h) for h in hot['exec_halves'])}"
                + (" (second half vs first), " if cfg.overload_cpu_rate else f" of {cfg.overload_capacity}, ")
                + f"max lateness {_fmt(hot['max_ms'], '.0f')} ms (bound {bound_ms} ms), "
                f"{hot['skipped']:,} skipped, recovered in {_fmt(f['recover_s'], '.0f')} s, "
                f"then {cool['exec_s']:,.0f} runs/s for {cool['fires_s']:,.0f} fires/s",
            )
        )
    for r in engine("burst"):
        f = r.figures
        ok = f["rate"] >= 1000 and f["done"] == f["runs"]
        checks.append(
            (
                "burst ≥ 1,000 runs/s on PostgreSQL with one node",
                ok,
                f"{_fmt(f['rate'])} runs/s ({f['done']:,}/{f['runs']:,} done)",
            )
        )
    for r in engine("startup"):
        f = r.figures
        if f["jobs"] != max(cfg.startup_jobs):
            continue
        checks.append(
            (
                f"start-up with {f['jobs']:,} jobs < 30 s",
                f["startup_s"] < 30,
                f"{f['startup_s']:.1f} s",
            )
        )
        checks.append(
            (
                f"start-up with {f['jobs']:,} jobs < 500 MB peak RSS",
                f["peak_mb"] < 500,
                f"{f['peak_mb']:.0f} MB",
            )
        )
    if checks:
        print("\nTargets" + ("" if full else " (QUICK MODE: smaller numbers than the targets assume)"))
        for text, ok, detail in checks:
            print(f"   [{'PASS' if ok else 'FAIL'}] {text}: {detail}")
    return checks


# -- py-spy summary -------------------------------------------------------------------------------


def _frame_key(frame: str) -> str:
    """'Func (path/to/file.py:12)' -> 'Func (file.py:12)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit('/', 1)[-1]})" if where else name


def summarize_pyspy(path: Path, top: int = 10) -> str:
    """From py-spy's raw (collapsed-stack) output: per thread, its share of the samples,
    the scheduler_app/APScheduler functions most often on its stack (inclusive), and the
    innermost frames (where the samples were taken)."""
    if not path.exists():
        return ""
    plumbing = (
        "Thread._bootstrap",
        "Thread.run ",
        "Node._guard",
        "_worker (concurrent",
        "Thread._bootstrap_inner",
    )
    per_thread: dict[str, Counter] = {}
    leaf: dict[str, Counter] = {}
    thread_total: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or ";" not in stack:
            continue
        n = int(count)
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[-1] if ": " in head else head
        thread = thread.rstrip("0123456789_") or thread  # run-thread_3 -> run-thread
        thread_total[thread] += n
        seen = set()
        for frame in frames:
            key = _frame_key(frame)
            if key in seen or any(frame.startswith(p) for p in plumbing):
                continue
            if "scheduler_app/" not in frame and "apscheduler/" not in frame:
                continue  # only the product's (and APScheduler's) own frames
            seen.add(key)
            per_thread.setdefault(thread, Counter())[key] += n
        if frames:
            leaf.setdefault(thread, Counter())[_frame_key(frames[-1])] += n
    total = sum(thread_total.values()) or 1
    lines = [f"py-spy {path.name}: {total} samples of non-idle threads"]
    for thread, n in thread_total.most_common(8):
        lines.append(f"  thread {thread}: {n / total:.0%} of samples")
        for func, c in per_thread.get(thread, Counter()).most_common(top):
            lines.append(f"      {c / n:5.0%}  {func}")
        leaves = ", ".join(f"{k} {c / n:.0%}" for k, c in leaf.get(thread, Counter()).most_common(3))
        lines.append(f"      on-CPU leaves: {leaves}")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def code_version() -> str:
    """Commit and whether product files differ from it (read-only git commands; other
    engineers edit this checkout while the benchmark runs)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "scheduler_app", "project"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        changed = [line for line in dirty if line.strip()]
        return f"{head}" + (
            f" + {len(changed)} uncommitted product file change(s)" if changed else " (clean)"
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"


SNAPSHOT_PARTS = ("manage.py", "project", "scheduler_app", "templates")


def take_snapshot(code: str, logdir: Path) -> Path:
    """Copy the code the benchmark runs to a temporary directory, so edits landing in
    the checkout mid-run cannot mix versions or break a scenario half-way. ``code`` is
    "worktree" (the files as they are now, committed or not) or "head" (the last commit,
    via the read-only ``git archive``). The benchmark's own helpers always come from
    this checkout's bench/. The uncommitted diff is saved in the log directory."""
    dest = Path(tempfile.mkdtemp(prefix="engine_bench-src-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if code == "head":
        tracked = subprocess.run(
            ["git", "ls-tree", "HEAD", "--name-only"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        parts = [p for p in SNAPSHOT_PARTS if p in tracked]
        archive = subprocess.run(
            ["git", "archive", "HEAD", *parts], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        for name in SNAPSHOT_PARTS:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=ignore)
            elif src.exists():
                shutil.copy2(src, dest / name)
        try:
            diff = subprocess.run(
                ["git", "diff", "HEAD", "--", "scheduler_app", "project"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout
            (logdir / "worktree.diff").write_text(diff)
        except OSError:
            pass
    shutil.copytree(HERE, dest / "bench", ignore=ignore)
    (dest / "var").mkdir(exist_ok=True)
    return dest


def code_fingerprint(root: Path) -> str:
    """Short hash of the product's Python files as run (tells two snapshots apart)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((root / "scheduler_app").rglob("*.py")) + sorted((root / "project").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cleanup(dbs: list[Database]) -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    for db in dbs:
        try:
            db.drop()
        except Exception as exc:  # report, keep cleaning
            log(f"cleanup: could not drop {db.label} database: {exc}")
    try:
        import redis

        u = urlparse(REDIS_URL)
        redis.Redis(host=u.hostname, port=u.port, db=14).flushdb()
    except Exception:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers for a smoke run")
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run: {','.join(PHASES)}",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="measure only scheduler_app, not plain APScheduler",
    )
    parser.add_argument(
        "--burst-mode",
        choices=["bulk", "runnow"],
        default="bulk",
        help="queue the burst with bulk-created JobRun rows (default) or "
        "services.run_jobs_now (slow to set up)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy (if installed in the venv) on each runscheduler and "
        "print where its threads spend time",
    )
    parser.add_argument(
        "--overload-cpu",
        type=int,
        default=0,
        metavar="N",
        help="overload with demo.noop jobs: N fires/s, then N/4 (N ≈ 2x what rate1000 executes here)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the log directory")
    parser.add_argument(
        "--code",
        choices=["worktree", "head"],
        default="worktree",
        help="what to measure: a copy of the checkout's files as they are at start "
        "(default) or of its last commit (git archive HEAD)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="run the checkout's files directly instead of a copy taken at start",
    )
    parser.add_argument("--json", help="also write all figures to this JSON file")
    args = parser.parse_args()
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    cfg = Config.quick() if args.quick else Config()
    cfg.overload_cpu_rate = args.overload_cpu
    logdir = Path(tempfile.mkdtemp(prefix="engine_bench-"))
    pg, lite = Database("postgresql"), Database("sqlite")
    baseline = not args.no_baseline
    global SRC
    version = code_version()
    if not args.in_place:
        SRC = take_snapshot(args.code, logdir)
        version = (
            f"commit {version.split()[0]} (git archive HEAD)"
            if args.code == "head"
            else f"working tree at {version}"
        )
    version += f"; product code fingerprint {code_fingerprint(SRC)}"
    log(f"code under test: {version}")
    log(
        f"engine benchmark ({'quick' if args.quick else 'full'}): phases {', '.join(only)}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; logs in {logdir}"
    )
    failed: list[str] = []

    def attempt(label: str, func, *a) -> None:
        try:
            func(*a)
        except Exception as exc:
            failed.append(f"{label}: {exc}")
            log(f"  !! {label} failed: {exc}")
            traceback.print_exc()

    try:
        if "lateness" in only:
            for db in (lite, pg):
                attempt(
                    f"lateness engine {db.kind}",
                    engine_interval,
                    "lateness",
                    db,
                    cfg.lateness_jobs,
                    cfg.lateness_interval,
                    cfg,
                    logdir,
                    args.profile,
                )
            if baseline:
                for db in (lite, pg):
                    attempt(
                        f"lateness aps django {db.kind}",
                        aps_interval,
                        "lateness",
                        "django",
                        db,
                        cfg.lateness_jobs,
                        cfg.lateness_interval,
                        cfg,
                        logdir,
                    )
                attempt(
                    "lateness aps memory",
                    aps_interval,
                    "lateness",
                    "memory",
                    None,
                    cfg.lateness_jobs,
                    cfg.lateness_interval,
                    cfg,
                    logdir,
                )
        if "rate1000" in only:
            attempt(
                "rate1000 engine",
                engine_interval,
                "rate1000",
                pg,
                cfg.rate_jobs,
                cfg.rate_interval,
                cfg,
                logdir,
                args.profile,
            )
            if baseline:
                for store, db in (("django", pg), ("sqlalchemy", pg), ("memory", None)):
                    attempt(
                        f"rate1000 aps {store}",
                        aps_interval,
                        "rate1000",
                        store,
                        db,
                        cfg.rate_jobs,
                        cfg.rate_interval,
                        cfg,
                        logdir,
                    )
        if "overload" in only:
            attempt("overload engine", engine_overload, pg, cfg, logdir, args.profile)
        if "burst" in only:
            for db in (pg, lite):
                attempt(
                    f"burst engine {db.kind}",
                    engine_burst,
                    db,
                    cfg,
                    logdir,
                    args.profile,
                    args.burst_mode,
                )
            if baseline:
                for store, db in (
                    ("django", pg),
                    ("sqlalchemy", pg),
                    ("redis", None),
                    ("memory", None),
                ):
                    attempt(f"burst aps {store}", aps_burst, store, db, cfg, logdir)
        if "startup" in only:
            for n in cfg.startup_jobs:
                attempt(f"startup {n}", engine_startup, pg, n, cfg, logdir, args.profile)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
    finally:
        cleanup([pg, lite])
    checks = print_tables(cfg)
    print(
        f"\ncode under test: {version}"
        + (
            ""
            if args.in_place
            else f"; the checkout is now at {code_version()}, fingerprint {code_fingerprint(ROOT)}"
        )
    )
    if args.profile:
        for path in sorted(logdir.glob("*.pyspy.txt")):
            print()
            print(summarize_pyspy(path))
    problems = [r for r in RESULTS if r.figures.get("problems")]
    for r in problems:
        print(f"\nEngine errors during {r.phase} / {r.db}:")
        for p in r.figures["problems"]:
            print("   " + p.replace("\n", "\n   "))
    if failed:
        print("\nScenarios that could not be measured:")
        for f in failed:
            print(f"   {f.splitlines()[0]}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "config": cfg.__dict__,
                    "results": [r.__dict__ for r in RESULTS],
                    "targets": [{"target": t, "pass": ok, "measured": d} for t, ok, d in checks],
                },
                indent=2,
                default=str,
            )
        )
    keep = args.keep_logs or problems or failed or args.profile
    if keep:
        print(f"\nLogs kept in {logdir}")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    if SRC != ROOT:
        shutil.rmtree(SRC, ignore_errors=True)
    log(f"done (load average {os.getloadavg()[0]:.2f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
