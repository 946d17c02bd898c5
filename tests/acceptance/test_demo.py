"""The demo as a newcomer runs it: real ``rundemo`` processes (one through ``./dev demo``) on
free ports, each with its own var directory, serving the styled admin; and every way the demo
can end leaves no ``runserver`` or ``runscheduler`` behind.

A process belongs to a test when its environment holds that test's ``SCHEDULER_VAR_DIR``;
``/proc`` tells. On the SQLite pass the demo uses a SQLite file in the var directory (its
default); on the PostgreSQL pass a fresh PostgreSQL database of its own."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CRON_PREVIEW_JS = ROOT / "scheduler_app" / "static" / "scheduler_app" / "cron_preview.js"
# Variables of the test run that must not leak into the demo: it runs on its own settings.
NOT_INHERITED = (
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_DEBUG",
    "DATABASE_URL",
    "SCHEDULER_APP_ENCRYPTION_KEYS",
    "SCHEDULER_TEST_OVERRIDES",
    "SCHEDULER_JOB_STORE",
    "PYTHONPATH",
)
STOP_TIMEOUT = 60.0  # the scheduler's shutdown grace (30 s) plus a margin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_processes(var_dir: Path) -> dict[int, str]:
    """pid → Django command ('rundemo', 'runserver', 'runscheduler') of every live process
    started for this var directory. Zombies have no cmdline and do not count: they are dead."""
    marker = f"SCHEDULER_VAR_DIR={var_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker not in environ:
            continue
        for command in ("rundemo", "runserver", "runscheduler"):
            if command.encode() in argv:
                found[int(entry.name)] = command
    return found


def process_group(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[2])


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Demo:
    """One demo process in a session of its own, as a terminal would start it; its output
    (and its children's, which share the pipe) collected line by line."""

    def __init__(self, var_dir: Path, database_url: str, *args: str, via_dev: bool = False):
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(SCHEDULER_VAR_DIR=str(var_dir), DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
        if via_dev:
            command = ["./dev", "demo", *args]
        else:
            command = [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "rundemo", *args]
        self.var_dir = var_dir
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, port: int, timeout: float = 90.0) -> None:
        """Until the login page answers and the scheduler has started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.3)
                raise AssertionError(f"the demo exited ({self.proc.returncode}):\n{self.output}")
            try:
                status, _, _ = get(f"http://127.0.0.1:{port}/admin/login/")
            except OSError:
                status = None
            if status == 200 and any("scheduler started" in line for line in self.lines):
                return
            time.sleep(0.2)
        raise AssertionError(f"the demo did not come up on port {port} within {timeout} s:\n{self.output}")

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not exit within {timeout} s:\n{self.output}") from None
        time.sleep(0.2)  # the last lines
        return code

    def children(self) -> dict[int, str]:
        return {pid: cmd for pid, cmd in demo_processes(self.var_dir).items() if cmd != "rundemo"}

    def pid_of(self, command: str) -> int:
        pids = [pid for pid, cmd in self.children().items() if cmd == command]
        assert len(pids) == 1, (command, self.children(), self.output)
        return pids[0]


def assert_none_survive(var_dir: Path, output: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while demo_processes(var_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = demo_processes(var_dir)
    assert not survivors, f"still alive after the demo exited: {survivors}\n{output}"


@pytest.fixture
def database_url(tmp_path):
    """The demo's own database: a SQLite file on the SQLite pass, a fresh PostgreSQL
    database on the PostgreSQL pass (dropped afterwards)."""
    default = settings.DATABASES["default"]
    if default["ENGINE"] == "django.db.backends.sqlite3":
        yield f"sqlite:///{tmp_path / 'var' / 'demo.sqlite3'}"
        return
    import psycopg

    server = f"postgres://{default.get('USER') or 'postgres'}@{default.get('HOST') or '127.0.0.1'}:{default.get('PORT') or 5432}"
    name = f"{os.environ.get('SCHEDULER_TEST_DB', 'test_scheduler_app')}_demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def demos(tmp_path, database_url):
    """Start demos on this test's var directory; whatever a test leaves alive (a bug) is
    killed afterwards so it cannot disturb the next test."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    started: list[Demo] = []

    def start(*args: str, via_dev: bool = False) -> Demo:
        demo = Demo(var_dir, database_url, *args, via_dev=via_dev)
        started.append(demo)
        return demo

    start.var_dir = var_dir
    yield start
    for demo in started:
        if demo.proc.poll() is None:
            os.killpg(demo.proc.pid, signal.SIGKILL)
            demo.proc.wait(timeout=10)
    for pid in demo_processes(var_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_dev_demo_serves_the_styled_admin_on_the_given_port_and_sigterm_stops_everything(demos):
    port = free_port()
    demo = demos("--port", str(port), via_dev=True)
    demo.wait_ready(port, timeout=300)  # ./dev demo first runs pip install

    status, _, body = get(f"http://127.0.0.1:{port}/admin/login/")
    assert status == 200
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+\.css)"', body.decode())
    base_css = [href for href in stylesheets if "admin/css/base" in href]
    assert base_css, stylesheets
    status, headers, css = get(f"http://127.0.0.1:{port}{base_css[0]}")
    assert status == 200, css[:200]
    assert headers["Content-Type"].startswith("text/css")
    assert b"body" in css
    status, headers, js = get(f"http://127.0.0.1:{port}/static/scheduler_app/cron_preview.js")
    assert status == 200
    assert "javascript" in headers["Content-Type"]
    assert js == CRON_PREVIEW_JS.read_bytes()

    # Both children run in the demo's process group (a terminal's Ctrl-C reaches them).
    children = demo.children()
    assert sorted(children.values()) == ["runscheduler", "runserver"], children
    assert {process_group(pid) for pid in children} == {demo.proc.pid}

    demo.proc.send_signal(signal.SIGTERM)
    assert demo.wait_exit() == 0, demo.output
    assert "scheduler stopped node=demo" in demo.output  # a graceful stop, not a kill
    assert_none_survive(demos.var_dir, demo.output)


def test_ctrl_c_stops_the_web_server_and_the_scheduler(demos):
    port = free_port()
    demo = demos("--port", str(port))
    demo.wait_ready(port)
    os.killpg(demo.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert demo.wait_exit() == 0, demo.output
    assert_none_survive(demos.var_dir, demo.output)


@pytest.mark.parametrize("option", ["--port", "--addrport"])
def test_a_taken_port_is_refused_before_anything_starts(demos, option):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = demos(option, str(port) if option == "--port" else f"127.0.0.1:{port}")
        code = demo.wait_exit()
        assert code != 0, demo.output
        assert_none_survive(demos.var_dir, demo.output, timeout=0)
        time.sleep(2)  # nothing was left starting either
        assert_none_survive(demos.var_dir, demo.output, timeout=0)
    errors = [line for line in demo.lines if line.startswith("CommandError")]
    assert len(errors) == 1, demo.output
    assert f"port {port} on 127.0.0.1 is already in use" in errors[0]
    assert "--port" in errors[0]
    assert "Traceback" not in demo.output


def test_the_scheduler_dies_with_a_killed_demo_and_leaves_no_stale_lock(demos):
    port = free_port()
    demo = demos("--port", str(port))
    demo.wait_ready(port)
    os.kill(demo.proc.pid, signal.SIGKILL)  # the demo only: its children must follow by themselves
    demo.wait_exit(10)
    assert_none_survive(demos.var_dir, demo.output, timeout=STOP_TIMEOUT)

    again = demos("--port", str(port))
    again.wait_ready(port)
    again.proc.send_signal(signal.SIGTERM)
    assert again.wait_exit() == 0, again.output
    assert_none_survive(demos.var_dir, again.output)


def test_a_scheduler_outliving_its_killed_demo_still_keeps_a_second_one_out(demos):
    """The lock goes with the scheduler, not only with the demo: a scheduler still finishing
    (here: stopped, so its death signal waits) after its demo was killed keeps a new demo out."""
    port = free_port()
    demo = demos("--port", str(port))
    demo.wait_ready(port)
    scheduler = demo.pid_of("runscheduler")
    os.kill(scheduler, signal.SIGSTOP)
    try:
        os.kill(demo.proc.pid, signal.SIGKILL)
        demo.wait_exit(10)
        assert list(demo_processes(demos.var_dir)) == [scheduler]  # the web server went with the demo

        second = demos("--port", str(free_port()))
        assert second.wait_exit() != 0, second.output
        assert "a demo scheduler is already running on" in second.output
        assert f"(pid {scheduler})" in second.output
    finally:
        os.kill(scheduler, signal.SIGCONT)
    # The pending death signal (SIGTERM) now stops it, gracefully.
    assert_none_survive(demos.var_dir, demo.output, timeout=STOP_TIMEOUT)
    assert "scheduler stopped node=demo" in demo.output


def test_a_second_demo_on_the_same_database_is_refused(demos, database_url):
    port = free_port()
    first = demos("--port", str(port))
    first.wait_ready(port)
    before = first.children()

    second = demos("--port", str(free_port()))
    assert second.wait_exit() != 0, second.output
    errors = [line for line in second.lines if line.startswith("CommandError")]
    assert len(errors) == 1, second.output
    if database_url.startswith("sqlite:///"):
        database = database_url.removeprefix("sqlite:///")
    else:
        database = f"database {database_url.rsplit('/', 1)[1]} on 127.0.0.1:5432"
    assert f"a demo scheduler is already running on {database} (pid {first.proc.pid})" in errors[0]
    assert "stop it first or use another DATABASE_URL" in errors[0]
    # The first demo is untouched and is still the only one.
    assert first.children() == before
    assert get(f"http://127.0.0.1:{port}/admin/login/")[0] == 200

    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit() == 0, first.output
    assert_none_survive(demos.var_dir, first.output)


def test_a_web_server_crash_stops_the_scheduler(demos):
    port = free_port()
    demo = demos("--port", str(port))
    demo.wait_ready(port)
    os.kill(demo.pid_of("runserver"), signal.SIGKILL)
    assert demo.wait_exit() != 0, demo.output
    assert "the web server exited (killed by SIGKILL); stopped the scheduler" in demo.output
    assert "scheduler stopped node=demo" in demo.output  # a graceful stop, not a kill
    assert_none_survive(demos.var_dir, demo.output)


def test_a_scheduler_crash_stops_the_web_server(demos):
    port = free_port()
    demo = demos("--port", str(port))
    demo.wait_ready(port)
    os.kill(demo.pid_of("runscheduler"), signal.SIGKILL)
    assert demo.wait_exit() != 0, demo.output
    assert "the scheduler exited (killed by SIGKILL); stopped the web server" in demo.output
    assert_none_survive(demos.var_dir, demo.output)
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/admin/login/")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "eighty"], "argument --port: 'eighty' is not a port number"),
        (["--port", "0"], "argument --port: 0 is outside 1-65535"),
        (["--port", "65536"], "argument --port: 65536 is outside 1-65535"),
        (["--addrport", "localhost"], "argument --addrport: 'localhost' is not HOST:PORT"),
        (["--addrport", "127.0.0.1:99999"], "argument --addrport: 99999 is outside 1-65535"),
        (
            ["--port", "8001", "--addrport", "127.0.0.1:8002"],
            "argument --addrport: not allowed with argument --port",
        ),
    ],
    ids=["not-a-number", "zero", "too-large", "no-port", "addrport-too-large", "both"],
)
def test_bad_options_get_a_clear_error_and_start_nothing(demos, args, message):
    demo = demos(*args)
    assert demo.wait_exit(30) == 2, demo.output
    assert message in demo.output
    assert "Traceback" not in demo.output
    assert not (demos.var_dir / "demo.sqlite3").exists()  # not even migrated
    assert_none_survive(demos.var_dir, demo.output, timeout=0)
