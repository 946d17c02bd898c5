#!/usr/bin/env python
"""Benchmark of scheduler_app on several nodes: real ``manage.py runscheduler``
processes on one PostgreSQL database.

    .venv/bin/python bench/cluster_bench.py [--quick] [--only scaleout,failover,burst]

Scenarios (see bench/README.md, "Several nodes", for what each figure means):

1. scaleout — a backlog of 20,000 runs of demo.sleep(0.05) drained by 1, 2, then 3
              nodes (10 threads each): drain time, runs/s, speed-up 2/1 and 3/1, CPU
              seconds per node, machine busy %, share of runs per node.
2. failover — two nodes, 1,000 interval jobs every 1 s (misfire run_all): kill -9 the
              leader, seconds until fires resume, lost and duplicated fire times; then
              kill -9 a worker node with 100 runs of demo.append_line in flight: time
              until all are retried, executions counted from the file the task writes.
3. burst    — 10,000 demo.noop runs due at once on one node, against pgbench TPC-B tps
              and Procrastinate's worker draining the same burst, in the same run.

Each scenario gets a fresh, freshly migrated database ``bench_cluster`` (dropped at the
end); pgbench uses ``bench_pgbench`` and Procrastinate ``bench_procrastinate`` (both
dropped at the end).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engine_bench  # noqa: E402  (shared helpers: /proc readings, code snapshot)
from engine_bench import (  # noqa: E402
    CLK_TCK,
    code_fingerprint,
    code_version,
    machine_busy,
    machine_ticks,
    pct,
    proc_status,
    take_snapshot,
)

ROOT = HERE.parent
SRC = ROOT  # replaced by a snapshot of the checkout at start (see engine_bench)
PY = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_CLUSTER_DB", "bench_cluster")
PGBENCH_DB = os.environ.get("BENCH_PGBENCH_DB", "bench_pgbench")
PROCRASTINATE_DB = os.environ.get("BENCH_PROCRASTINATE_DB", "bench_procrastinate")
#: The engine the burst is also compared with, measured in the same run (the issue's
#: "≥ 3× the engine of commit d039118"); ``--baseline none`` skips it.
BASELINE_COMMIT = "d039118"
PGBENCH = os.environ.get("BENCH_PGBENCH", shutil.which("pgbench") or "/usr/bin/pgbench")
PROCRASTINATE_PY = Path(
    os.environ.get("BENCH_PROCRASTINATE_PY", ROOT / "var" / "bench-procrastinate-venv" / "bin" / "python")
)
PHASES = ("scaleout", "failover", "burst")

T0 = time.monotonic()
CHILDREN: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


@dataclass
class Config:
    scaleout_runs: int = 20_000
    scaleout_sleep: float = 0.05
    scaleout_nodes: tuple[int, ...] = (1, 2, 3)
    scaleout_timeout: float = 1800.0
    failover_jobs: int = 1000
    failover_interval: int = 1
    failover_steady: float = 20.0  # both nodes up and firing this long before the kill
    failover_after: float = 25.0  # observed this long after fires resume
    failover_catchup: float = 120.0  # then at most this long for the fires to be written
    failover_timeout: float = 90.0
    worker_runs: int = 100
    worker_task_seconds: float = 20.0
    burst_runs: int = 10_000
    burst_timeout: float = 300.0
    pgbench_seconds: int = 15
    pgbench_scale: int = 10
    pgbench_twice: bool = True  # before and after the engine, to bracket the machine's drift

    @classmethod
    def quick(cls) -> Config:
        return cls(
            scaleout_runs=2000,
            scaleout_timeout=300.0,
            failover_jobs=100,
            failover_steady=10.0,
            failover_after=15.0,
            failover_catchup=60.0,
            burst_runs=1000,
            burst_timeout=120.0,
            pgbench_seconds=5,
            pgbench_twice=False,
        )


# -- databases and steps ------------------------------------------------------------------


def db_url(name: str = PG_DB) -> str:
    return urlparse(PG_ADMIN_URL)._replace(path=f"/{name}").geturl()


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def drop_db(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# SCHEDULER_APP keys set on every node with --set (for diagnosis; the README's figures
# use the product defaults).
OVERRIDES: dict[str, Any] = {}


def node_env(settings: dict | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url(),
        DJANGO_SETTINGS_MODULE="bench.cluster_settings",
        BENCH_SCHEDULER_APP=json.dumps({**OVERRIDES, **(settings or {})}),
        PYTHONUNBUFFERED="1",
        SCHEDULER_JOB_STORE="memory",
    )
    return env


def fresh_db() -> None:
    for attempt in range(3):
        try:
            drop_db(PG_DB)
            admin(f'CREATE DATABASE "{PG_DB}"')
            done = subprocess.run(
                [PY, "manage.py", "migrate", "-v0"], cwd=SRC, env=node_env(), capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"migrate failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
            return
        except Exception as exc:
            if attempt == 2:
                raise
            log(f"  fresh database failed ({str(exc).strip()[-300:]}); retrying")
            time.sleep(2)


def step(*args: str) -> dict:
    out = subprocess.run(
        [PY, str(SRC / "bench" / "cluster_django.py"), *args],
        cwd=SRC,
        env=node_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cluster_django.py {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def query(sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(db_url()) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(sql: str, params: tuple = ()) -> Any:
    return query(sql, params)[0][0]


def dump_runs(logdir: Path, name: str) -> list[list]:
    path = logdir / f"{name}.runs.json"
    step("dump", "--out", str(path))
    return json.loads(path.read_text())


# -- nodes ------------------------------------------------------------------------------------


class NodeProc:
    """One ``manage.py runscheduler --node NAME`` with its output in a log file."""

    def __init__(self, name: str, logdir: Path, settings: dict | None = None) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.settings = settings or {}
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        fh = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [PY, "manage.py", "runscheduler", "--node", self.name],
            cwd=SRC,
            env=node_env(self.settings),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        CHILDREN.append(self.proc)
        fh.close()

    def wait_started(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if " scheduler started" in self.text():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; log tail:\n{self.tail()}"
                )
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within {timeout:g} s; log tail:\n{self.tail()}")

    def ticks(self) -> int:
        return proc_status(self.pid).get("ticks", 0) if self.proc else 0

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 90.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"  {self.name} did not exit {timeout:g} s after SIGTERM; killing it")
            self.proc.kill()
            self.proc.wait()
            return None

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def problems(self) -> list[str]:
        found = []
        lines = self.text().splitlines()
        for i, line in enumerate(lines):
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                found.append("\n".join(lines[i : i + 20]) if line.startswith("Traceback") else line)
        return found


def start_nodes(nodes: list[NodeProc]) -> None:
    for n in nodes:
        n.spawn()
    for n in nodes:
        n.wait_started()


def lease_holder() -> str | None:
    rows = query("SELECT holder FROM scheduler_app_lease WHERE expires_at > now() AND holder <> ''")
    return rows[0][0] if rows else None


# -- results ------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, bool | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    table: list[str] = field(default_factory=list)


RESULTS: list[Result] = []


def check(res: Result, text: str, ok: bool | None, detail: str) -> None:
    res.checks.append((text, ok, detail))


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        out.append(
            "  "
            + " | ".join(str(c).rjust(w) if k else str(c).ljust(w) for c, w in zip(r, widths, strict=True))
        )
        if k == 0:
            out.append("  " + "-+-".join("-" * w for w in widths))
    return out


def note_problems(res: Result, nodes: list[NodeProc], expected: tuple[str, ...] = ()) -> None:
    for n in nodes:
        found = [p for p in n.problems() if not any(e in p for e in expected)]
        if found:
            res.notes.append(
                f"{n.name}: {len(found)} ERROR/CRITICAL lines or tracebacks, first: {found[0][:300]}"
            )


# -- 1. scale-out -------------------------------------------------------------------------------


def scaleout(cfg: Config, logdir: Path) -> Result:
    res = Result("scaleout")
    n_runs = cfg.scaleout_runs
    phases = []
    for n in cfg.scaleout_nodes:
        log(
            f"scaleout: {n} node(s), fresh database, {n_runs:,} manual jobs of "
            f"demo.sleep(seconds={cfg.scaleout_sleep:g}), default settings (10 threads/node)"
        )
        fresh_db()
        step(
            "backlog",
            "--count",
            str(n_runs),
            "--task",
            "demo.sleep",
            "--kwargs",
            json.dumps({"seconds": cfg.scaleout_sleep}),
            "--jobs-only",
        )
        nodes = [NodeProc(f"scale{n}-node{i + 1}", logdir) for i in range(n)]
        try:
            start_nodes(nodes)
            time.sleep(2)  # every node has heartbeated once: each sees the others as live
            t0_ticks = {x.name: x.ticks() for x in nodes}
            m0 = machine_ticks()
            load0 = os.getloadavg()[0]
            queued = step("backlog", "--count", str(n_runs), "--task", "demo.sleep", "--runs-only")
            t_commit = queued["committed_at"]
            log(f"  {queued['queued']:,} runs queued in {queued['queue_seconds']:.1f} s; draining")
            deadline = time.time() + cfg.scaleout_timeout
            t_done, last_print = math.nan, time.time()
            while time.time() < deadline:
                done = scalar("SELECT count(*) FROM scheduler_app_jobrun WHERE finished_at IS NOT NULL")
                if done >= n_runs:
                    t_done = time.time()
                    break
                if time.time() - last_print >= 15:
                    log(f"  … {done:,}/{n_runs:,} finished")
                    last_print = time.time()
                time.sleep(0.25)
            cpu = {x.name: (x.ticks() - t0_ticks[x.name]) / CLK_TCK for x in nodes}
            busy = machine_busy(m0)
            wall_recorded = t_done - t_commit
            for x in nodes:
                x.stop()
        finally:
            for x in nodes:
                x.stop()
        runs = dump_runs(logdir, f"scaleout-{n}")
        finished = [r for r in runs if r[3] is not None and r[4] is not None]
        states = Counter(r[5] for r in runs)
        first, last = (min(r[3] for r in finished), max(r[4] for r in finished)) if finished else (0, 0)
        drain = last - first if finished else math.nan
        per_node = Counter(r[8] for r in finished)
        # One claim sets one claimed_at (the transaction's time) on the runs it takes.
        claims = len({(r[8], r[11]) for r in finished if len(r) > 11 and r[11] is not None})
        shares = {x.name: per_node.get(x.name, 0) / max(len(finished), 1) for x in nodes}
        worst = max(abs(s - 1 / n) * n for s in shares.values())
        phase = {
            "nodes": n,
            "runs": n_runs,
            "done": len(finished),
            "drain_s": drain,
            "recorded_s": wall_recorded,
            "rate": len(finished) / drain if finished else 0.0,
            "cpu_s": cpu,
            "cpu_ms_per_run": sum(cpu.values()) / max(len(finished), 1) * 1000,
            "claims": claims,
            "runs_per_claim": len(finished) / claims if claims else math.nan,
            "machine_busy_pct": round(busy),
            "load_at_start": round(load0, 2),
            "shares": shares,
            "worst_share_dev": worst,
            "states": dict(states),
            "ideal_s": n_runs * cfg.scaleout_sleep / (10 * n),
        }
        phases.append(phase)
        log(
            f"  → {n} node(s): {len(finished):,}/{n_runs:,} in {drain:.1f} s = {phase['rate']:,.0f} runs/s "
            f"(ideal {phase['ideal_s']:.0f} s); CPU "
            + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items())
            + f"; machine {busy:.0f}% busy; shares "
            + ", ".join(f"{v:.1%}" for v in shares.values())
        )
        if states.get("succeeded", 0) != n_runs:
            res.notes.append(f"{n} node(s): states {dict(states)}")
        note_problems(res, nodes)
    res.figures = {"phases": phases}
    base = next((p for p in phases if p["nodes"] == 1), None)
    rows = [
        [
            "nodes",
            "runs done",
            "drain s",
            "runs/s",
            "speed-up",
            "ideal s",
            "CPU s per node",
            "CPU ms/run",
            "runs/claim",
            "machine busy",
            "share per node",
        ]
    ]
    for p in phases:
        speed = base["drain_s"] / p["drain_s"] if base and p["drain_s"] else math.nan
        p["speedup"] = speed
        rows.append(
            [
                str(p["nodes"]),
                f"{p['done']:,}/{p['runs']:,}",
                f"{p['drain_s']:.1f}",
                f"{p['rate']:,.0f}",
                f"{speed:.2f}×",
                f"{p['ideal_s']:.0f}",
                " / ".join(f"{v:.1f}" for v in p["cpu_s"].values()),
                f"{p['cpu_ms_per_run']:.2f}",
                f"{p['runs_per_claim']:.1f}",
                f"{p['machine_busy_pct']}%",
                " / ".join(f"{v:.1%}" for v in p["shares"].values()),
            ]
        )
    res.table = table(rows)
    for p in phases:
        if p["nodes"] == 1:
            continue
        target = {2: 1.8, 3: 2.7}.get(p["nodes"])
        if target:
            check(
                res,
                f"{p['nodes']} nodes drain ≥ {target}× faster than 1",
                p["speedup"] >= target and p["done"] == p["runs"],
                f"{p['speedup']:.2f}× ({base['drain_s']:.1f} s → {p['drain_s']:.1f} s)",
            )
        check(
            res,
            f"{p['nodes']} nodes: each node's share within ±15% of 1/{p['nodes']}",
            p["worst_share_dev"] <= 0.15,
            "shares "
            + ", ".join(f"{v:.1%}" for v in p["shares"].values())
            + f" (worst {p['worst_share_dev']:.0%} off)",
        )
    RESULTS.append(res)
    return res


# -- 2. failover --------------------------------------------------------------------------------


def _due(jobs: int, step_s: float, base: float, a: float, b: float) -> int:
    """Fire times in [a, b) of jobs i = 0..jobs-1 firing at base + i*step/jobs + k*step."""
    total = 0
    for i in range(jobs):
        start = base + i * step_s / jobs
        total += max(math.ceil((b - start) / step_s) - max(math.ceil((a - start) / step_s), 0), 0)
    return total


def failover_leader(cfg: Config, logdir: Path, res: Result) -> None:
    jobs, step_s = cfg.failover_jobs, cfg.failover_interval
    log(
        f"failover/leader: fresh database, {jobs:,} interval jobs every {step_s} s "
        f"(demo.noop, misfire run_all, phases spread evenly), two nodes, default LEADER_LEASE"
    )
    fresh_db()
    base = math.floor(time.time()) + 5.0
    step(
        "interval",
        "--count",
        str(jobs),
        "--interval",
        str(step_s),
        "--base",
        repr(base),
        "--misfire",
        "run_all",
    )
    nodes = [NodeProc("fo-node-a", logdir), NodeProc("fo-node-b", logdir)]
    by_name = {n.name: n for n in nodes}
    f: dict[str, Any] = {"jobs": jobs, "interval_s": step_s}
    try:
        start_nodes(nodes)
        t_up = time.time()
        log(f"  both nodes started; steady state for {cfg.failover_steady:g} s")
        time.sleep(cfg.failover_steady)
        leader = lease_holder()
        if leader not in by_name:
            raise RuntimeError(f"no leader after {cfg.failover_steady:g} s (lease holder {leader!r})")
        survivor = next(n for n in nodes if n.name != leader)
        rate_before = (
            scalar("SELECT count(*) FROM scheduler_app_jobrun WHERE queued_at > now() - interval '5 seconds'")
            / 5
        )
        t_kill = time.time()
        by_name[leader].kill9()
        log(f"  kill -9 of the leader {leader} (fires written in the 5 s before: {rate_before:,.0f}/s)")
        t_lease = t_resume = math.nan
        deadline = t_kill + cfg.failover_timeout
        while time.time() < deadline and (math.isnan(t_lease) or math.isnan(t_resume)):
            if math.isnan(t_lease) and lease_holder() == survivor.name:
                t_lease = time.time()
            if math.isnan(t_resume):
                first = scalar(
                    "SELECT extract(epoch FROM min(queued_at)) FROM scheduler_app_jobrun WHERE queued_at > to_timestamp(%s)",
                    (t_kill,),
                )
                if first is not None:
                    t_resume = float(first)
            time.sleep(0.1)
        if math.isnan(t_resume):
            raise RuntimeError(f"no fire written within {cfg.failover_timeout:g} s of the kill")
        log(
            f"  fires resumed {t_resume - t_kill:.1f} s after the kill (lease taken by {survivor.name} "
            f"after {t_lease - t_kill:.1f} s); observing {cfg.failover_after:g} s more"
        )
        time.sleep(max(cfg.failover_after - (time.time() - t_resume), 0))
        a, b = t_up + 3.0, time.time() - 5.0  # the window of fire times checked
        want = _due(jobs, step_s, base, a, b)
        count_sql = (
            "SELECT count(*) FROM scheduler_app_jobrun WHERE attempt = 1 AND target_node = '' "
            "AND scheduled_for >= to_timestamp(%s) AND scheduled_for < to_timestamp(%s)"
        )
        at_end = scalar(count_sql, (a, b))
        log(
            f"  {at_end:,} of {want:,} fire times in the window written by the end of the observation; "
            f"letting {survivor.name} catch up (until all are written, no progress for 20 s, "
            f"or {cfg.failover_catchup:g} s)"
        )
        t_c0 = last_change = time.time()
        seen = at_end
        while time.time() - t_c0 < cfg.failover_catchup and time.time() - last_change < 20:
            now_seen = scalar(count_sql, (a, b))
            if now_seen != seen:
                seen, last_change = now_seen, time.time()
            if seen >= want:
                break
            time.sleep(1.0)
        f.update(written_at_observation_end=at_end, catchup_s=round(time.time() - t_c0, 1))
        survivor.stop()
    finally:
        for n in nodes:
            n.stop()
    runs = dump_runs(logdir, "failover-leader")
    # Fire times per job, as fire numbers k (job i fires at base + i*step/jobs + k*step).
    fired: dict[int, list[int]] = defaultdict(list)
    dup_rows = Counter()
    late_after: list[float] = []
    for r in runs:
        name, sched, queued, attempt, target = r[0], r[1], r[2], r[7], r[9]
        if not name.startswith("tick-") or attempt != 1:
            continue
        i = int(name.split("-")[1])
        start = base + i * step_s / jobs
        k = round((sched - start) / step_s)
        fired[i].append(k)
        dup_rows[(i, k, target)] += 1
        if queued > t_resume and sched > t_kill:
            late_after.append(queued - sched)
    expected = lost = interior = 0
    lost_jobs = set()
    for i in range(jobs):
        start = base + i * step_s / jobs
        k_a, k_b = math.ceil((a - start) / step_s), math.ceil((b - start) / step_s)
        have = set(fired.get(i, []))
        want = set(range(max(k_a, 0), k_b))
        expected += len(want)
        missing = want - have
        lost += len(missing)
        if missing:
            lost_jobs.add(i)
        ks = sorted(have)
        interior += sum(y - x - 1 for x, y in zip(ks, ks[1:], strict=False) if y - x > 1)
    duplicated = sum(c - 1 for c in dup_rows.values() if c > 1)
    states = Counter(r[5] for r in runs)
    text = survivor.text().split(" scheduler stopping ")[0]  # before the SIGTERM
    f["survivor_lost_lease"] = text.count("this node stopped leading")
    f["survivor_lease_renewal_errors"] = text.count("cluster heartbeat failed")
    f["survivor_fires_dropped"] = sum(
        int(m) for m in re.findall(r"fire dropped: not the leader.*?times=(\d+)", text)
    )
    f["survivor_fires_not_written"] = sum(
        int(m)
        for m in re.findall(
            r"fires not written: this node no longer holds the leader lease.*?fires=(\d+)", text
        )
    )
    f.update(
        leader=leader,
        survivor=survivor.name,
        fires_per_s_before=rate_before,
        lease_taken_s=t_lease - t_kill,
        resume_s=t_resume - t_kill,
        window_s=round(b - a, 1),
        expected_fires=expected,
        lost_fires=lost,
        jobs_with_lost=len(lost_jobs),
        gaps=interior,
        duplicated=duplicated,
        enqueue_lag_p50_s=pct(late_after, 0.5),
        enqueue_lag_p99_s=pct(late_after, 0.99),
        states=dict(states),
    )
    res.figures["leader"] = f
    res.table += table(
        [
            ["leader kill -9", "value"],
            ["jobs × interval", f"{jobs:,} × {step_s} s"],
            ["fires written before the kill", f"{rate_before:,.0f}/s"],
            ["lease taken by the other node", f"{f['lease_taken_s']:.1f} s after the kill"],
            ["fires resume (first run row queued after the kill)", f"{f['resume_s']:.1f} s after the kill"],
            ["fire times checked (window)", f"{expected:,} over {f['window_s']} s"],
            [
                "written by the end of the observation",
                f"{f['written_at_observation_end']:,} (then {f['catchup_s']:g} s of catch-up)",
            ],
            ["lost fire times (still missing after the catch-up)", f"{lost:,} ({len(lost_jobs)} jobs)"],
            ["gaps inside each job's recorded sequence", f"{interior:,}"],
            ["duplicated fire times", f"{duplicated:,}"],
            [
                "enqueue lag after resume p50 / p99",
                f"{_s(f['enqueue_lag_p50_s'])} / {_s(f['enqueue_lag_p99_s'])} s",
            ],
            [
                "new leader before SIGTERM: lease lost / renewal errors / fires dropped / not written",
                f"{f['survivor_lost_lease']} / {f['survivor_lease_renewal_errors']} / "
                f"{f['survivor_fires_dropped']:,} / {f['survivor_fires_not_written']:,} (its log)",
            ],
            ["run states", ", ".join(f"{k} {v:,}" for k, v in states.most_common())],
        ]
    )
    check(
        res,
        "leader kill -9: fires resume ≤ 10 s later (LEADER_LEASE default 10 s)",
        f["resume_s"] <= 10,
        f"{f['resume_s']:.1f} s",
    )
    check(res, "leader kill -9: 0 fire times lost", lost == 0, f"{lost:,} of {expected:,}")
    check(res, "leader kill -9: 0 fire times duplicated", duplicated == 0, f"{duplicated:,}")
    note_problems(res, nodes)


def failover_worker(cfg: Config, logdir: Path, res: Result) -> None:
    n_runs, secs = cfg.worker_runs, cfg.worker_task_seconds
    sizing = {"THREAD_POOL_SIZE": n_runs, "MAX_CONCURRENT_RUNS": n_runs}
    log(
        f"failover/worker: fresh database, {n_runs} runs of demo.append_line(seconds={secs:g}) "
        f"(retry: 2 attempts, no backoff) in flight on one node; settings {sizing}, NODE_DEAD_AFTER default"
    )
    fresh_db()
    out = logdir / "executions.txt"
    out.unlink(missing_ok=True)
    step(
        "backlog",
        "--count",
        str(n_runs),
        "--task",
        "demo.append_line",
        "--kwargs",
        json.dumps({"path": str(out), "seconds": secs}),
        "--line-prefix",
        "run-",
        "--retries",
        "2",
        "--backoff",
        "0",
        "--jobs-only",
    )
    victim, survivor = NodeProc("wk-victim", logdir, sizing), NodeProc("wk-survivor", logdir, sizing)
    f: dict[str, Any] = {"runs": n_runs, "task_seconds": secs, "settings": sizing}
    dead_after = float(
        subprocess.run(
            [
                PY,
                "-c",
                "import django; django.setup(); from scheduler_app.backends import cluster; "
                "print(cluster.timings().node_dead_after)",
            ],
            cwd=SRC,
            env=node_env(sizing),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    f["node_dead_after_s"] = dead_after
    try:
        start_nodes([victim])
        step("backlog", "--count", str(n_runs), "--task", "demo.append_line", "--runs-only")
        deadline = time.time() + 60
        while time.time() < deadline:
            running = scalar(
                "SELECT count(*) FROM scheduler_app_jobrun WHERE state = 'running' AND node = %s",
                (victim.name,),
            )
            if running >= n_runs:
                break
            time.sleep(0.1)
        start_nodes([survivor])
        time.sleep(1.0)
        in_flight = scalar(
            "SELECT count(*) FROM scheduler_app_jobrun WHERE state = 'running' AND node = %s", (victim.name,)
        )
        lines_before = len(out.read_text().splitlines()) if out.exists() else 0
        t_kill = time.time()
        victim.kill9()
        log(
            f"  kill -9 of {victim.name} with {in_flight} runs running on it ({lines_before} finished before)"
        )
        t_retried = math.nan
        deadline = t_kill + dead_after + 60
        while time.time() < deadline:
            started = scalar(
                "SELECT count(*) FROM scheduler_app_jobrun WHERE attempt = 2 AND started_at IS NOT NULL"
            )
            if started >= in_flight and math.isnan(t_retried):
                t_retried = time.time()
            done = scalar(
                "SELECT count(*) FROM scheduler_app_jobrun WHERE attempt = 2 AND finished_at IS NOT NULL"
            )
            if done >= in_flight:
                break
            time.sleep(0.2)
        time.sleep(2.0)  # any straggler execution (an orphan) would write its line by now
        survivor.stop()
    finally:
        victim.kill9()
        survivor.stop()
    runs = dump_runs(logdir, "failover-worker")
    first = {r[0]: r for r in runs if r[7] == 1}
    retries = {r[0]: r for r in runs if r[7] == 2}
    lost_at = [r[4] - t_kill for r in first.values() if r[5] == "lost" and r[4]]
    retry_queued = [r[2] - t_kill for r in retries.values()]
    retry_started = [r[3] - t_kill for r in retries.values() if r[3]]
    lines = out.read_text().splitlines() if out.exists() else []
    per_run = Counter(line.split()[0] for line in lines)
    after = Counter(line.split()[0] for line in lines if float(line.split()[1]) >= t_kill)
    once = sum(
        1 for i in range(n_runs) if per_run.get(f"run-{i:05d}", 0) == 1 and after.get(f"run-{i:05d}", 0) == 1
    )
    twice = sum(1 for c in per_run.values() if c > 1)
    never = n_runs - len(per_run)
    states = Counter(f"{r[5]} (attempt {r[7]})" for r in runs)
    f.update(
        in_flight=in_flight,
        finished_before_kill=lines_before,
        marked_lost_s=max(lost_at) if lost_at else math.nan,
        retries_queued=len(retries),
        retry_queued_last_s=max(retry_queued) if retry_queued else math.nan,
        retry_started_first_s=min(retry_started) if retry_started else math.nan,
        retry_started_last_s=max(retry_started) if retry_started else math.nan,
        executed_once_after=once,
        executed_twice=twice,
        never_executed=never,
        states=dict(states),
    )
    res.figures["worker"] = f
    limit = dead_after + 5
    res.table += [""] + table(
        [
            ["worker kill -9", "value"],
            ["runs in flight on the killed node", f"{in_flight} (finished before the kill: {lines_before})"],
            ["marked lost (last)", f"{_s(f['marked_lost_s'])} s after the kill"],
            ["retries queued", f"{len(retries)} (last {_s(f['retry_queued_last_s'])} s after the kill)"],
            [
                "retries started first / last",
                f"{_s(f['retry_started_first_s'])} / {_s(f['retry_started_last_s'])} s after the kill",
            ],
            ["executed exactly once after the crash (file lines)", f"{once} of {n_runs}"],
            ["executed twice / never", f"{twice} / {never}"],
            ["run states", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))],
        ]
    )
    check(
        res,
        f"worker kill -9: all {in_flight} retried (started) within NODE_DEAD_AFTER + 5 s = {limit:g} s",
        len(retry_started) == in_flight and in_flight > 0 and f["retry_started_last_s"] <= limit,
        f"{len(retry_started)} started, last {_s(f['retry_started_last_s'])} s",
    )
    check(
        res,
        "worker kill -9: each executed exactly once after the crash (side effects)",
        once == n_runs and twice == 0,
        f"{once} once, {twice} twice, {never} never",
    )
    note_problems(res, [victim, survivor])


def _s(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def failover(cfg: Config, logdir: Path) -> Result:
    res = Result("failover")
    RESULTS.append(res)
    try:
        failover_leader(cfg, logdir, res)
    except Exception as exc:
        res.notes.append(f"leader kill could not be measured: {exc}")
        log(f"  !! leader kill failed: {exc}")
        traceback.print_exc()
    failover_worker(cfg, logdir, res)
    return res


# -- 3. burst -------------------------------------------------------------------------------------


def pgbench(cfg: Config, logdir: Path, label: str) -> dict:
    u = urlparse(PG_ADMIN_URL)
    conn = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]
    drop_db(PGBENCH_DB)
    admin(f'CREATE DATABASE "{PGBENCH_DB}"')
    try:
        init = subprocess.run(
            [PGBENCH, *conn, "-i", "-s", str(cfg.pgbench_scale), "-q", PGBENCH_DB],
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i failed: {init.stderr[-1000:]}")
        m0 = machine_ticks()
        run = subprocess.run(
            [PGBENCH, *conn, "-c", "4", "-j", "2", "-T", str(cfg.pgbench_seconds), PGBENCH_DB],
            capture_output=True,
            text=True,
        )
        busy = machine_busy(m0)
        (logdir / f"pgbench-{label}.txt").write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            raise RuntimeError(f"pgbench failed: {run.stderr[-1000:]}")
        found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
        if not found:
            found = re.search(r"tps = ([0-9.]+)", run.stdout)
        tps = float(found.group(1))
        lat = re.search(r"latency average = ([0-9.]+) ms", run.stdout)
        return {
            "tps": tps,
            "latency_ms": float(lat.group(1)) if lat else math.nan,
            "machine_busy_pct": round(busy),
        }
    finally:
        drop_db(PGBENCH_DB)


def engine_burst(cfg: Config, logdir: Path) -> dict:
    n = cfg.burst_runs
    fresh_db()
    made = step("backlog", "--count", str(n), "--task", "demo.noop")
    log(
        f"  {made['queued']:,} demo.noop runs queued (bulk) in {made['queue_seconds']:.1f} s; starting one node"
    )
    node = NodeProc("burst-node", logdir)
    try:
        node.spawn()
        node.wait_started()
        t0, m0 = node.ticks(), machine_ticks()
        deadline = time.time() + cfg.burst_timeout
        while time.time() < deadline:
            if scalar("SELECT count(*) FROM scheduler_app_jobrun WHERE finished_at IS NOT NULL") >= n:
                break
            time.sleep(0.25)
        cpu_s = (node.ticks() - t0) / CLK_TCK
        busy = machine_busy(m0)
        node.stop()
    finally:
        node.stop()
    runs = dump_runs(logdir, "burst")
    finished = [r for r in runs if r[3] is not None and r[4] is not None and r[5] == "succeeded"]
    span = max(r[4] for r in finished) - min(r[3] for r in finished) if finished else math.nan
    problems: list[str] = []
    res = {
        "runs": n,
        "done": len(finished),
        "span_s": span,
        "rate": len(finished) / span if finished else 0.0,
        "cpu_s": cpu_s,
        "cpu_ms_per_run": cpu_s / max(len(finished), 1) * 1000,
        "machine_busy_pct": round(busy),
        "states": dict(Counter(r[5] for r in runs)),
    }
    problems = node.problems()
    if problems:
        res["problems"] = problems[:3]
    return res


def baseline_burst(cfg: Config, logdir: Path, commit: str) -> dict:
    """The same burst on the engine of an earlier commit: its product files and bench/
    taken with the read-only ``git archive``, its own migrations and its own burst step
    (``bench/bench_django.py burst --mode bulk``), one ``runscheduler`` on the same
    database server with that commit's defaults (``project.settings``)."""
    src = Path(tempfile.mkdtemp(prefix="cluster_bench-baseline-"))
    try:
        archive = subprocess.run(
            ["git", "archive", commit, *engine_bench.SNAPSHOT_PARTS, "bench"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        (src / "var").mkdir(exist_ok=True)
        env = node_env()
        env.update(DJANGO_SETTINGS_MODULE="project.settings")
        env.pop("BENCH_SCHEDULER_APP", None)
        drop_db(PG_DB)
        admin(f'CREATE DATABASE "{PG_DB}"')
        subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=src, env=env, check=True, capture_output=True)
        made = subprocess.run(
            [PY, "bench/bench_django.py", "burst", "--count", str(cfg.burst_runs), "--mode", "bulk"],
            cwd=src,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        n = json.loads(made.stdout.strip().splitlines()[-1])["queued"]
        log_path = logdir / f"baseline-{commit}.log"
        with open(log_path, "ab") as fh:
            proc = subprocess.Popen(
                [PY, "manage.py", "runscheduler", "--node", "baseline-node"],
                cwd=src,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        CHILDREN.append(proc)
        try:
            deadline = time.time() + 120
            while " scheduler started" not in log_path.read_text(errors="replace"):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the {commit} engine did not start; see {log_path}")
                time.sleep(0.1)
            t0, m0 = proc_status(proc.pid).get("ticks", 0), machine_ticks()
            deadline = time.time() + cfg.burst_timeout
            while time.time() < deadline:
                if scalar("SELECT count(*) FROM scheduler_app_jobrun WHERE finished_at IS NOT NULL") >= n:
                    break
                time.sleep(0.25)
            cpu_s = (proc_status(proc.pid).get("ticks", 0) - t0) / CLK_TCK
            busy = machine_busy(m0)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        first, last, done = query(
            "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)), count(*)"
            " FROM scheduler_app_jobrun WHERE state = 'succeeded' AND finished_at IS NOT NULL"
        )[0]
        span = float(last) - float(first) if done else math.nan
        return {
            "commit": commit,
            "runs": n,
            "done": done,
            "span_s": span,
            "rate": done / span if done else 0.0,
            "cpu_s": cpu_s,
            "cpu_ms_per_run": cpu_s / max(done, 1) * 1000,
            "machine_busy_pct": round(busy),
        }
    finally:
        shutil.rmtree(src, ignore_errors=True)


def procrastinate_burst(cfg: Config, logdir: Path, kind: str) -> dict:
    if not PROCRASTINATE_PY.exists():
        return {
            "skipped": (
                f"no Procrastinate venv at {PROCRASTINATE_PY} (python3 -m venv var/bench-procrastinate-venv && "
                'var/bench-procrastinate-venv/bin/pip install "procrastinate==3.*" "psycopg[binary]")'
            )
        }
    drop_db(PROCRASTINATE_DB)
    admin(f'CREATE DATABASE "{PROCRASTINATE_DB}"')
    try:
        m0 = machine_ticks()
        limit = cfg.burst_timeout + 120
        proc = subprocess.Popen(
            [
                str(PROCRASTINATE_PY),
                str(SRC / "bench" / "procrastinate_bench.py"),
                "--dsn",
                db_url(PROCRASTINATE_DB),
                "--count",
                str(cfg.burst_runs),
                "--concurrency",
                "10",
                "--kind",
                kind,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        CHILDREN.append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            # Stopped: the rate over the jobs that finished, from its events table.
            proc.kill()
            stdout, stderr = proc.communicate()
            busy = machine_busy(m0)
            import psycopg

            with psycopg.connect(db_url(PROCRASTINATE_DB)) as conn:
                first, last, succeeded = conn.execute(
                    "SELECT extract(epoch FROM min(at) FILTER (WHERE type = 'started')),"
                    " extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')),"
                    " count(*) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
                ).fetchone()
            version = subprocess.run(
                [str(PROCRASTINATE_PY), "-c", "import procrastinate; print(procrastinate.__version__)"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            span = float(last or 0) - float(first or 0)
            return {
                "version": version,
                "kind": kind,
                "succeeded": succeeded,
                "span_s": span,
                "rate": succeeded / span if span > 0 else 0.0,
                "machine_busy_pct": round(busy),
                "stopped": f"stopped after {limit:g} s with {succeeded:,} of {cfg.burst_runs:,} done; "
                "rate over those",
            }
        busy = machine_busy(m0)
        (logdir / f"procrastinate-{kind}.txt").write_text(stdout + stderr)
        if proc.returncode != 0:
            return {"skipped": f"Procrastinate run failed ({proc.returncode}): {stderr.strip()[-500:]}"}
        out = json.loads(stdout.strip().splitlines()[-1])
        span = (out["last_succeeded"] or 0) - (out["first_started"] or 0)
        out.update(
            span_s=span, rate=out["succeeded"] / span if span > 0 else 0.0, machine_busy_pct=round(busy)
        )
        return out
    finally:
        drop_db(PROCRASTINATE_DB)


def burst(
    cfg: Config, logdir: Path, baseline: str | None = BASELINE_COMMIT, procrastinate: bool = True
) -> Result:
    res = Result("burst")
    RESULTS.append(res)
    f: dict[str, Any] = {}
    log(
        f"burst: pgbench -c 4 -j 2 -T {cfg.pgbench_seconds} (TPC-B, -i -s {cfg.pgbench_scale}) on the same server"
    )
    f["pgbench_before"] = pgbench(cfg, logdir, "before")
    log(f"  → pgbench: {f['pgbench_before']['tps']:,.0f} tps")
    log(f"burst: scheduler_app, {cfg.burst_runs:,} demo.noop runs due at once, one node, PostgreSQL")
    f["engine"] = eng = engine_burst(cfg, logdir)
    log(
        f"  → scheduler_app: {eng['done']:,}/{eng['runs']:,} in {_s(eng['span_s'])} s = {eng['rate']:,.0f} runs/s"
    )
    if baseline:
        log(f"burst: the engine of commit {baseline}, same burst, one node")
        try:
            f["baseline"] = b = baseline_burst(cfg, logdir, baseline)
            log(
                f"  → commit {baseline}: {b['done']:,}/{b['runs']:,} in {_s(b['span_s'])} s = {b['rate']:,.0f} runs/s"
            )
        except Exception as exc:
            res.notes.append(f"engine of commit {baseline} not measured: {str(exc).strip()[-300:]}")
    for kind in ("sync", "async") if procrastinate else ():
        log(f"burst: Procrastinate worker (concurrency 10), {cfg.burst_runs:,} {kind} no-op jobs")
        f[f"procrastinate_{kind}"] = p = procrastinate_burst(cfg, logdir, kind)
        if "skipped" in p:
            log(f"  → Procrastinate not measured: {p['skipped']}")
            res.notes.append(f"Procrastinate ({kind}) not measured: {p['skipped']}")
            if not PROCRASTINATE_PY.exists():
                break
            continue
        if "stopped" in p:
            res.notes.append(f"Procrastinate ({kind}): {p['stopped']}")
        log(
            f"  → Procrastinate {p['version']} ({kind}): {p['succeeded']:,} in {p['span_s']:.1f} s = {p['rate']:,.0f} runs/s"
        )
    if cfg.pgbench_twice:
        f["pgbench_after"] = pgbench(cfg, logdir, "after")
        log(f"  → pgbench again: {f['pgbench_after']['tps']:,.0f} tps")
    tps_runs = [f[k]["tps"] for k in ("pgbench_before", "pgbench_after") if k in f]
    tps = sum(tps_runs) / len(tps_runs)
    f["pgbench_tps"] = tps
    rows = [["system", "done", "span s", "runs/s or tps", "CPU", "machine busy", "ratio engine ÷ it"]]
    rows.append(
        [
            "scheduler_app (1 node, 10 threads)",
            f"{eng['done']:,}/{eng['runs']:,}",
            _s(eng["span_s"]),
            f"{eng['rate']:,.0f} runs/s",
            f"{eng['cpu_ms_per_run']:.2f} ms/run",
            f"{eng['machine_busy_pct']}%",
            "",
        ]
    )
    b = f.get("baseline")
    if b:
        rows.append(
            [
                f"scheduler_app at commit {b['commit']} (1 node)",
                f"{b['done']:,}/{b['runs']:,}",
                _s(b["span_s"]),
                f"{b['rate']:,.0f} runs/s",
                f"{b['cpu_ms_per_run']:.2f} ms/run",
                f"{b['machine_busy_pct']}%",
                f"{eng['rate'] / b['rate']:.2f}×" if b["rate"] else "—",
            ]
        )
    for label in ("pgbench_before", "pgbench_after"):
        if label in f:
            p = f[label]
            rows.append(
                [
                    f"pgbench TPC-B -c 4 -j 2 ({label.split('_')[1]})",
                    "",
                    str(cfg.pgbench_seconds),
                    f"{p['tps']:,.0f} tps",
                    "",
                    f"{p['machine_busy_pct']}%",
                    f"{eng['rate'] / p['tps']:.2f}×",
                ]
            )
    best_p = None
    for kind in ("sync", "async"):
        p = f.get(f"procrastinate_{kind}")
        if not p or "skipped" in p:
            continue
        rows.append(
            [
                f"Procrastinate {p['version']} worker, {kind} no-op, concurrency 10",
                f"{p['succeeded']:,}/{cfg.burst_runs:,}",
                f"{p['span_s']:.1f}",
                f"{p['rate']:,.0f} runs/s",
                "",
                f"{p['machine_busy_pct']}%",
                f"{eng['rate'] / p['rate']:.2f}×" if p["rate"] else "—",
            ]
        )
        if best_p is None or p["rate"] > best_p["rate"]:
            best_p = p
    res.table = table(rows)
    res.figures = f
    ratio = eng["rate"] / tps if tps else math.nan
    check(
        res,
        "burst runs/s ≥ 1.0× pgbench TPC-B tps"
        + (" (mean of before and after)" if len(tps_runs) > 1 else ""),
        ratio >= 1.0 and eng["done"] == eng["runs"],
        f"{eng['rate']:,.0f} runs/s ÷ {tps:,.0f} tps = {ratio:.2f}×",
    )
    if b:
        r = eng["rate"] / b["rate"] if b["rate"] else math.nan
        check(
            res,
            f"burst runs/s ≥ 3× the engine of commit {b['commit']}",
            r >= 3.0 and eng["done"] == eng["runs"],
            f"{eng['rate']:,.0f} ÷ {b['rate']:,.0f} = {r:.2f}×",
        )
    elif baseline:
        check(res, f"burst runs/s ≥ 3× the engine of commit {baseline}", None, "not measured (see note)")
    if best_p is not None:
        r = eng["rate"] / best_p["rate"]
        check(
            res,
            "burst runs/s ≥ 5× Procrastinate's worker (its faster kind)",
            r >= 5.0,
            f"{eng['rate']:,.0f} ÷ {best_p['rate']:,.0f} ({best_p['kind']}) = {r:.2f}×",
        )
    else:
        check(res, "burst runs/s ≥ 5× Procrastinate's worker", None, "not measured (see note)")
    if eng.get("problems"):
        res.notes.append(f"engine errors: {eng['problems'][0][:300]}")
    return res


# -- main -------------------------------------------------------------------------------------------


def cleanup() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    for name in (PG_DB, PGBENCH_DB, PROCRASTINATE_DB):
        try:
            drop_db(name)
        except Exception as exc:
            log(f"cleanup: could not drop {name}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller numbers for a smoke run")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated: {','.join(PHASES)}")
    parser.add_argument(
        "--nodes",
        default="1,2,3",
        help="scaleout: the node counts to measure, comma-separated (default 1,2,3)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if: a SCHEDULER_APP setting for every node (VALUE as JSON, e.g. POLL_INTERVAL=0.1); "
        "the figures then do not describe the defaults",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the log directory")
    parser.add_argument(
        "--code",
        choices=["worktree", "head"],
        default="worktree",
        help="measure a copy of the checkout's files as they are (default) or of its last commit",
    )
    parser.add_argument("--in-place", action="store_true", help="run the checkout itself, not a copy")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    parser.add_argument(
        "--baseline",
        default=BASELINE_COMMIT,
        help=f"burst: also measure the engine of this commit (default {BASELINE_COMMIT}; 'none' skips it)",
    )
    parser.add_argument(
        "--no-procrastinate", action="store_true", help="burst: skip Procrastinate (a quicker run)"
    )
    args = parser.parse_args()
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(only) - set(PHASES)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    cfg = Config.quick() if args.quick else Config()
    try:
        cfg.scaleout_nodes = tuple(int(n) for n in args.nodes.split(",") if n.strip())
    except ValueError:
        parser.error(f"--nodes: not a list of whole numbers: {args.nodes!r}")
    if not cfg.scaleout_nodes or min(cfg.scaleout_nodes) < 1:
        parser.error("--nodes: give at least one node count, each 1 or more")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            OVERRIDES[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            OVERRIDES[key.strip()] = value
    logdir = Path(tempfile.mkdtemp(prefix="cluster_bench-"))
    global SRC
    version = code_version()
    if not args.in_place:
        SRC = take_snapshot(args.code, logdir)
        engine_bench.SRC = SRC
        version = (
            f"commit {version.split()[0]} (git archive HEAD)"
            if args.code == "head"
            else f"working tree at {version}"
        )
    version += f"; product code fingerprint {code_fingerprint(SRC)}"
    load_start = load()
    log(f"code under test: {version}")
    log(
        f"cluster benchmark ({'quick' if args.quick else 'full'}): {', '.join(only)}; {load_start}; logs in {logdir}"
    )
    failed: list[str] = []
    try:
        baseline = None if args.baseline.lower() == "none" else args.baseline
        for name, func in (
            ("scaleout", scaleout),
            ("failover", failover),
            ("burst", lambda c, d: burst(c, d, baseline, not args.no_procrastinate)),
        ):
            if name not in only:
                continue
            before = load()
            try:
                res = func(cfg, logdir)
                res.figures["load_before"] = before
                res.figures["load_after"] = load()
            except Exception as exc:
                failed.append(f"{name}: {exc}")
                log(f"  !! {name} failed: {exc}")
                traceback.print_exc()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
    finally:
        cleanup()
    mode = "" if not args.quick else " (QUICK MODE: smaller numbers than the targets assume)"
    for res in RESULTS:
        print(f"\n== {res.scenario}{mode}; {res.figures.get('load_before', '')} at its start")
        for line in res.table:
            print(line)
        for text, ok, detail in res.checks:
            word = "PASS" if ok else ("FAIL" if ok is not None else "N/A ")
            print(f"   [{word}] {text}: {detail}")
        for n in res.notes:
            print(f"   note: {n}")
    print(f"\ncode under test: {version}")
    if OVERRIDES:
        print(f"WHAT-IF settings on every node (not the defaults): {OVERRIDES}")
    print(f"machine: {load_start} at start; {load()} at the end")
    if failed:
        print("\nScenarios that could not be measured:")
        for f in failed:
            print(f"   {f.splitlines()[0]}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "config": cfg.__dict__,
                    "version": version,
                    "load_start": load_start,
                    "results": [r.__dict__ for r in RESULTS],
                },
                indent=2,
                default=str,
            )
        )
    if args.keep_logs or failed or any(r.notes for r in RESULTS):
        print(f"\nLogs kept in {logdir}")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    if SRC != ROOT:
        shutil.rmtree(SRC, ignore_errors=True)
    log(f"done ({load()})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
