"""Job functions for the plain-APScheduler side of the benchmark.

Persistent APScheduler job stores pickle a textual reference to the function
(``aps_jobs:record``), so the functions live in their own importable module rather than
in the ``__main__`` script. APScheduler 3 does not pass the scheduled time to the
function, so ``record`` notes only when it started; bench_aps.py pairs those starts,
per job and in order, with the ``scheduled_run_time`` of the job's EVENT_JOB_EXECUTED
events (max_instances=1, so one job's runs never overlap).
"""

from __future__ import annotations

import time
from collections import defaultdict

STARTS: dict[int, list[float]] = defaultdict(list)  # job index -> start times
SPANS: list[tuple[float, float]] = []  # (start, end) of burst runs


def record(index: int) -> None:
    STARTS[index].append(time.time())


def burst(index: int) -> None:
    start = time.time()
    SPANS.append((start, time.time()))
