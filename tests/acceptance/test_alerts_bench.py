"""The alert latency benchmark (run by bench/alerts_bench.py, skipped otherwise): 200
failing runs recorded by a real runscheduler, each alert POSTed to a local webhook
receiver; latency = receipt time − the run's recorded finish."""

import json
import os
import statistics
import time
from datetime import UTC
from pathlib import Path

import pytest

from scheduler_app import services
from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule, Job, JobRun, Tenant
from tests.acceptance.conftest import wait_until
from tests.alert_receivers import WebhookReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("ALERTS_BENCH_OUT"), reason="benchmark: bench/alerts_bench.py"),
]


def test_alert_latency(transactional_db, scheduler):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    hook = WebhookReceiver()
    try:
        channel = services.save_channel(
            AlertChannel(tenant=acme, name="hook", type="webhook", config={"url": hook.url}), secret="k"
        )
        services.save_rule(AlertRule(tenant=acme, name="all", events=["failed"]), channels=[channel])
        count = int(os.environ.get("ALERTS_BENCH_COUNT", "200"))
        jobs = [
            services.save_job(
                Job(
                    tenant=acme,
                    name=f"f{i}",
                    task="demo.fail",
                    kwargs={"message": "x"},
                    trigger={"type": "manual"},
                )
            )
            for i in range(count)
        ]
        proc = scheduler("bench")
        for start in range(0, count, 10):  # waves of 10 failures, 0.25 s apart
            services.run_jobs_now(jobs[start : start + 10])
            time.sleep(0.25)
        wait_until(lambda: len(hook.accepted()) >= count, 120, message=proc.output)
        finished = {
            r.pk: r.finished_at.astimezone(UTC).timestamp() for r in JobRun.objects.filter(state="failed")
        }
        latencies = sorted(r["at"] - finished[r["json"]["run_id"]] for r in hook.accepted())
        ids = [r["json"]["alert_id"] for r in hook.accepted()]
        written = sorted(
            o.created_at.timestamp() - finished[o.run_id] for o in AlertOutbox.objects.exclude(run=None)
        )
        figures = {
            "alerts": len(latencies),
            "duplicates": len(ids) - len(set(ids)),
            "unsent": AlertOutbox.objects.exclude(state="sent").count(),
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "max_s": round(latencies[-1], 3),
            # of which: from the run's finish to its outcome (and alert) being recorded
            "recorded_p50_s": round(statistics.median(written), 3),
            "recorded_p95_s": round(written[int(0.95 * (len(written) - 1))], 3),
        }
        Path(os.environ["ALERTS_BENCH_OUT"]).write_text(json.dumps(figures, indent=2))
        assert figures["alerts"] == count and figures["unsent"] == 0
    finally:
        hook.close()
