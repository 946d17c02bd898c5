"""Settings of the cluster benchmark's runscheduler processes: the demo project's
settings, plus ``SCHEDULER_APP`` keys given as JSON in ``BENCH_SCHEDULER_APP`` (for
example ``{"THREAD_POOL_SIZE": 100}``), so one scenario can size a node without a
settings file per case. Product defaults for everything not named there.

Not a product module: only bench/cluster_bench.py uses it.
"""

import json
import os

from project.settings import *  # noqa: F403
from project.settings import SCHEDULER_APP

SCHEDULER_APP = {**SCHEDULER_APP, **json.loads(os.environ.get("BENCH_SCHEDULER_APP") or "{}")}
