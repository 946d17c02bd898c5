"""``runscheduler --health-port PORT``: liveness and readiness of the scheduler process
itself, for a container orchestrator, on a small HTTP server in a thread.

* ``GET /live``  — 200 while the process serves;
* ``GET /ready`` — 200 if its loops are alive (``SchedulerService.problems()`` is empty)
  and its last database round trip is recent; 503 with a JSON body naming what is wrong.

No authentication: bind it to an address only the orchestrator reaches."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

#: The database must have answered within this many seconds for /ready.
DATABASE_FRESH_SECONDS = 15.0


def readiness(service: Any, fresh: float = DATABASE_FRESH_SECONDS) -> tuple[bool, dict[str, Any]]:
    problems = list(service.problems())
    age = service.database_contact_age()
    if age is None:
        problems.append("the database has not answered yet")
    elif age > fresh:
        problems.append(f"the database last answered {age:.0f} s ago")
    body = {
        "status": "ok" if not problems else "unavailable",
        "node": service.node_name,
        "problems": problems,
        "database_contact_age": None if age is None else round(age, 3),
    }
    return not problems, body


class _Handler(BaseHTTPRequestHandler):
    check: Callable[[], tuple[bool, dict[str, Any]]]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/live":
            self._send(200, {"status": "ok"})
        elif path == "/ready":
            try:
                ok, body = type(self).check()
            except Exception as exc:  # a probe must answer, never hang or crash
                ok, body = False, {"status": "unavailable", "problems": [f"readiness check failed: {exc}"]}
            self._send(200 if ok else 503, body)
        else:
            self._send(404, {"errors": [{"field": None, "message": "Not found: use /live or /ready."}]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("health probe request", extra={"request": format % args})


class HealthProbe:
    """The probe server; ``port`` 0 picks a free one (see :attr:`port`)."""

    def __init__(self, service: Any, port: int, host: str = "0.0.0.0") -> None:
        handler = type("ProbeHandler", (_Handler,), {"check": staticmethod(lambda: readiness(service))})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="health-probe", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> HealthProbe:
        self.thread.start()
        logger.info("health probe listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
