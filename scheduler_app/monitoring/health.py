"""Health checks and their endpoints (mount with ``include("scheduler_app.monitoring.urls")``;
the API mounts them at ``/api/health/``):

* ``live`` — 200 while the web process answers;
* ``ready`` — 200 only if the database answers and every migration is applied; 503
  with a body naming what failed;
* ``scheduler`` — 200 if at least one scheduler node shows a fresh heartbeat (and, once
  there is a leader lease, a leader holds it); 503 otherwise, with the nodes seen.

``live`` and ``ready`` need no authentication (an orchestrator probes them);
``scheduler`` needs an API key when ``HEALTH_SCHEDULER_REQUIRES_KEY`` is set."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connection
from rest_framework import permissions, renderers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler_app.api.base import OpenApiInspector, doc
from scheduler_app.conf import app_settings
from scheduler_app.monitoring import nodes

logger = logging.getLogger(__name__)

_migrations_lock = threading.Lock()
_migrations_cache: dict[str, Any] = {}


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readiness: database check failed", extra={"error": str(exc)})
        return {"ok": False, "error": f"the database does not answer: {exc}".strip()}
    return {"ok": True}


def check_migrations(*, max_age: float | None = None) -> dict[str, Any]:
    """Whether every migration is applied; the answer is reused for
    ``HEALTH_MIGRATIONS_CACHE_SECONDS`` (building the migration graph is costly)."""
    max_age = app_settings.HEALTH_MIGRATIONS_CACHE_SECONDS if max_age is None else max_age
    with _migrations_lock:
        cached = _migrations_cache.get("result")
        if cached is not None and time.monotonic() - _migrations_cache["at"] < max_age:
            return cached
        from django.db.migrations.executor import MigrationExecutor

        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            return {"ok": False, "error": f"cannot read the migration state: {exc}".strip()}
        pending = [f"{m.app_label}.{m.name}" for m, _backwards in plan]
        result: dict[str, Any] = {
            "ok": not pending,
            "unapplied": pending[:20],
            "unapplied_count": len(pending),
        }
        if pending:
            result["error"] = f"{len(pending)} unapplied migration(s); run manage.py migrate"
        _migrations_cache.update(result=result, at=time.monotonic())
        return result


def forget_migrations() -> None:
    with _migrations_lock:
        _migrations_cache.clear()


def readiness() -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {"database": check_database()}
    if checks["database"]["ok"]:
        checks["migrations"] = check_migrations()
    else:
        checks["migrations"] = {"ok": False, "error": "not checked: the database does not answer"}
    ok = all(c["ok"] for c in checks.values())
    return ok, {"status": "ok" if ok else "unavailable", "checks": checks}


def scheduler_health() -> tuple[bool, dict[str, Any]]:
    state = nodes.cluster_state()
    alive = state.alive
    problems = []
    if not alive:
        problems.append(
            f"no scheduler node has shown a heartbeat within {float(app_settings.LOST_AFTER):g} s"
        )
    if alive and state.has_lease and state.leader is None:
        problems.append("no node holds the leader lease")
    body = {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "leader": state.leader,
        "nodes": [
            {
                "name": n.name,
                "state": n.state,
                "heartbeat_at": n.heartbeat_at.isoformat() if n.heartbeat_at else None,
                "fresh": n.fresh,
                "running": n.running,
            }
            for n in state.nodes
        ],
    }
    return not problems, body


# -- views ------------------------------------------------------------------------------


class HealthView(APIView):
    """Unauthenticated, unthrottled JSON; the host's DRF settings do not apply."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list[Any] = []
    renderer_classes = [renderers.JSONRenderer]
    parser_classes: list[Any] = []
    versioning_class = None

    def get_exception_handler(self) -> Any:
        from scheduler_app.api.errors import exception_handler

        return exception_handler

    schema = OpenApiInspector()


def _health_schema(summary: str, example: dict[str, Any]) -> Any:
    body = {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}},
        "required": ["status"],
        "additionalProperties": True,
        "example": example,
    }
    return doc(summary=summary, responses={200: body, 503: body}, auth=[])


class LiveView(HealthView):
    @_health_schema("Liveness of the web process", {"status": "ok"})
    def get(self, request: Any) -> Response:
        return Response({"status": "ok"})


class ReadyView(HealthView):
    @_health_schema(
        "Readiness: the database answers and migrations are applied",
        {
            "status": "unavailable",
            "checks": {
                "database": {"ok": True},
                "migrations": {"ok": False, "error": "1 unapplied migration(s); run manage.py migrate"},
            },
        },
    )
    def get(self, request: Any) -> Response:
        ok, body = readiness()
        return Response(body, status=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE)


class SchedulerView(HealthView):
    def get_authenticators(self) -> list[Any]:
        if not app_settings.HEALTH_SCHEDULER_REQUIRES_KEY:
            return []
        from scheduler_app.api import auth

        return [auth.ApiKeyAuthentication(), auth.SessionAuthentication()]

    def get_permissions(self) -> list[Any]:
        if not app_settings.HEALTH_SCHEDULER_REQUIRES_KEY:
            return [permissions.AllowAny()]
        from scheduler_app.api import auth

        return [auth.IsActiveUser()]

    @_health_schema(
        "Whether a scheduler node is alive (needs a key if HEALTH_SCHEDULER_REQUIRES_KEY)",
        {
            "status": "ok",
            "problems": [],
            "leader": None,
            "nodes": [
                {
                    "name": "web-1:4242",
                    "state": "active",
                    "heartbeat_at": "2026-12-01T09:00:00+00:00",
                    "fresh": True,
                    "running": 3,
                }
            ],
        },
    )
    def get(self, request: Any) -> Response:
        ok, body = scheduler_health()
        return Response(body, status=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE)
