"""Alerting: rule evaluation on run outcomes (writes outbox rows in the caller's
transaction), the periodic checks for late and missed runs, the delivery loop that
runs inside ``runscheduler`` on any node, and the channels (e-mail, webhook, apprise).

The run store calls :func:`on_outcome` once per recorded batch, inside the transaction
that records the outcomes, so an alert exists exactly when its outcome does."""

from scheduler_app.alerts.evaluate import on_outcome

__all__ = ["on_outcome"]
