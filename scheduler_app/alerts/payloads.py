"""The alert payload: the stable JSON document a webhook receives (and e-mail and
apprise messages are rendered from). Schema version 1; fields are only ever added.

``alert_id`` is stable across resends: delivery is at least once, so a receiver that
must not act twice drops an ``alert_id`` it has already seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler_app.conf import app_settings

SCHEMA_VERSION = 1


def run_url(run_id: int | None) -> str:
    if run_id is None:
        return ""
    base = (app_settings.ALERTS_BASE_URL or "").rstrip("/")
    return f"{base}/admin/scheduler_app/jobrun/{run_id}/change/"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:500] if (text or "").strip() else ""


def build(
    row: Any, rule: Any, job: Any, run: Any, now: datetime, extra: dict[str, Any] | None
) -> dict[str, Any]:
    tenant = rule.tenant.slug if rule is not None else row.channel.tenant.slug
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "alert_id": str(row.alert_id),
        "event": row.event,
        "tenant": tenant,
        "rule": rule.name if rule is not None else None,
        "job": job.name if job is not None else None,
        "group": job.group.name if job is not None and job.group_id else None,
        "run_id": run.pk if run is not None else None,
        "state": str(run.state) if run is not None else None,
        "attempt": run.attempt if run is not None else None,
        "scheduled_for": _iso(run.scheduled_for) if run is not None else None,
        "started_at": _iso(run.started_at) if run is not None else None,
        "finished_at": _iso(run.finished_at) if run is not None else None,
        "duration": round(run.duration, 3) if run is not None and run.duration is not None else None,
        "node": (run.node or None) if run is not None else None,
        "error": first_line(run.error) if run is not None else "",
        "url": run_url(run.pk if run is not None else None),
        "occurred_at": now.isoformat(),
    }
    payload.update(extra or {})
    return payload
