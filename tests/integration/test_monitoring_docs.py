"""docs/metrics.md, docs/prometheus-alerts.yml and docs/grafana-dashboard.json name only
metrics that /metrics really exports, and the alert file has Prometheus' rule format."""

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scheduler_app import services
from scheduler_app.models import JobRun
from scheduler_app.monitoring import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\bscheduler_[a-z_]+\b")
pytestmark = pytest.mark.django_db


@pytest.fixture
def exported(client, make_job):
    """Every sample name a scrape gives once there are runs of every kind."""
    job = make_job("j")
    run = services.enqueue_run(job, scheduled_for=timezone.now())
    JobRun.objects.filter(pk=run.pk).update(state="running", node="n1", heartbeat_at=timezone.now())
    from tests.integration.test_monitoring import finish

    finish([services.enqueue_run(job, scheduled_for=timezone.now() + dt.timedelta(seconds=1))])
    metrics.collector.forget()
    text = client.get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def referenced(text):
    return set(NAME.findall(text)) - {"scheduler_app", "scheduler_alerts_sent_total"}


def test_metrics_reference_lists_every_exported_metric(exported):
    text = (DOCS / "metrics.md").read_text()
    table = set(re.findall(r"^\| `(scheduler_[a-z_]+)` \|", text, re.M))
    families = {n for n in exported if not n.endswith(("_bucket", "_count", "_sum", "_created"))}
    assert {n.removesuffix("_total") for n in table} == {n.removesuffix("_total") for n in families}


def test_alert_rules_have_prometheus_rule_format_and_known_metrics(exported):
    doc = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    assert set(doc) == {"groups"}
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"])
            assert referenced(rule["expr"]) and referenced(rule["expr"]) <= exported, rule["expr"]
            assert rule["expr"].count("(") == rule["expr"].count(")")


def test_grafana_dashboard_is_importable_json_using_known_metrics(exported):
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dash["title"] and dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"]
        for target in panel["targets"]:
            assert referenced(target["expr"]) <= exported, target["expr"]
