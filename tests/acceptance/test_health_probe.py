"""``runscheduler --health-port``: a real scheduler process answers /live and /ready;
when its database stops answering (a TCP proxy in front of the database is cut), /ready
turns 503 naming the database while /live stays 200; a taken port is refused at start
with one line and no traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.acceptance.conftest import ROOT, database_url, wait_until
from tests.netfaults import CuttableProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_live_and_ready_follow_the_process_and_its_database(scheduler):
    proxy = CuttableProxy.for_test_database()
    port = free_port()
    try:
        node = scheduler(
            "probed",
            extra_env={"DATABASE_URL": proxy.database_url()},
            extra_args=["--health-port", str(port)],
        )
        assert get(port, "/live") == (200, {"status": "ok"})
        status, body = wait_until(lambda: (r := get(port, "/ready"))[0] == 200 and r, 20)
        assert body["status"] == "ok" and body["node"] == "probed" and body["problems"] == []
        assert get(port, "/nothing")[0] == 404

        proxy.cut()
        status, body = wait_until(lambda: (r := get(port, "/ready"))[0] == 503 and r, 40)
        assert body["status"] == "unavailable"
        assert any("database" in problem for problem in body["problems"]), body
        assert get(port, "/live")[0] == 200  # alive, just not ready
    finally:
        proxy.close()
    node.kill9()


def test_a_taken_health_port_is_refused_in_one_line(transactional_db):
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
        }
        done = subprocess.run(
            [sys.executable, "manage.py", "runscheduler", "--node", "x", "--health-port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"--health-port {port}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
