#!/usr/bin/env python
"""Alert delivery latency: 200 failing runs recorded by a real ``runscheduler``, each
alert delivered to a local webhook receiver; p50/p95/max of (receipt − recorded finish).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/alerts_bench.py

Runs tests/acceptance/test_alerts_bench.py with pytest (its test database, its real
processes) and prints the figures it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alerts.json"
        env = {**os.environ, "ALERTS_BENCH_OUT": str(out)}
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "tests/acceptance/test_alerts_bench.py"], cwd=ROOT, env=env
        )
        if out.exists():
            print(json.dumps(json.loads(out.read_text()), indent=2))
        return code


if __name__ == "__main__":
    sys.exit(main())
