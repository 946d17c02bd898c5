"""Captured run logs through the real engine: a node (its real loops, the real run store
on the test database) executes registered tasks on the thread executor and in real
process-executor workers; what they log (and print, in a worker) is stored with the
run, capped, secrets masked, written while the run goes on, and shown by the API and
the run page."""

from __future__ import annotations

import gc
import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore, is_transient, write_logs
from scheduler_app.backends.service import resolve_task
from scheduler_app.engine.executors import ProcessExecutor, ThreadExecutor
from scheduler_app.engine.interfaces import Outcome, RunLog
from scheduler_app.engine.node import Node, NodeConfig
from scheduler_app.engine.redaction import MASK
from scheduler_app.models import JobRun, JobRunLog, RunState
from tests.integration.api_support import client_for, key_for
from tests.secret_forms import find_leaks

SECRET = "Pässwörd-Ω"
TOKEN = "tok-Ω-98765"
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (INFO|WARNING|STDOUT|STDERR) [\w.]+: ")


@pytest.fixture
def engine(transactional_db):
    """start(max_bytes=...) -> a running node with a thread and a process executor."""
    nodes: list[Node] = []

    def start(max_bytes: int = 65_536, flush: float = 0.2) -> Node:
        config = NodeConfig(
            name="logs-node", poll_interval=0.1, heartbeat_interval=0.2, log_flush_interval=flush
        )
        node = Node(config, DjangoRunStore(), {}, is_transient=is_transient)
        node.executors = {
            "thread": ThreadExecutor(4, resolve_task, node.outcome, 65_536, log_max_bytes=max_bytes),
            "process": ProcessExecutor(
                1, "scheduler_app.backends.procinit:setup", node.outcome, 65_536, log_max_bytes=max_bytes
            ),
        }
        node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.shutdown(2)
    # The loops' database connections belong to their threads, which have ended: let
    # them go now, before the test database is flushed or dropped.
    nodes.clear()
    gc.collect()


def wait_for(predicate, timeout: float = 60.0, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message or f"not within {timeout} s")


def run_once(job) -> JobRun:
    run = services.run_jobs_now([job]).done[0]
    wait_for(lambda: JobRun.objects.get(pk=run.pk).finished_at, message=f"run of {job.name} did not finish")
    return JobRun.objects.get(pk=run.pk)


def stored(run: JobRun) -> JobRunLog:
    return JobRunLog.objects.get(run=run)


def messages(log: JobRunLog) -> list[str]:
    """The lines without their time stamps (the marker line kept as it is)."""
    return [line[13:] if LINE.match(line) else line for line in log.text.split("\n")]


def test_a_process_run_keeps_what_it_logged_and_printed_in_order(engine, make_job):
    engine()
    job = make_job("proc", task="tests.log_lines", executor="process", kwargs={"label": "p", "count": 4})
    run = run_once(job)
    assert run.state == RunState.SUCCEEDED, run.error
    log = stored(run)
    assert all(LINE.match(line) for line in log.text.split("\n")), log.text
    assert messages(log) == [
        line
        for n in range(4)
        for line in (f"INFO tests.tasks.logs: p {n} logged ", f"STDOUT stdout: p {n} printed ")
    ]
    assert (log.lines_total, log.lines_dropped) == (8, 0)


def test_a_run_that_logs_nothing_has_no_log_row(engine, make_job):
    engine()
    run = run_once(make_job("quiet", task="tests.log_lines", kwargs={"count": 0}))
    assert run.state == RunState.SUCCEEDED
    assert not JobRunLog.objects.filter(run=run).exists()
    api = client_for(key_for(get_user_model().objects.create_superuser("root", "r@example.com", "pw")))
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert (body["log"], body["log_next_offset"], body["log_lines_dropped"]) == ("", 0, 0)


def test_two_concurrent_thread_runs_do_not_mix_their_lines(engine, make_job):
    engine()
    jobs = [
        make_job(name, task="tests.log_lines", kwargs={"label": name, "count": 60, "pause": 0.005})
        for name in ("alpha", "beta")
    ]
    runs = services.run_jobs_now(jobs).done
    wait_for(
        lambda: JobRun.objects.filter(pk__in=[r.pk for r in runs], finished_at__isnull=False).count() == 2
    )
    a, b = (JobRun.objects.get(pk=r.pk) for r in runs)
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # they overlapped
    for run, name in ((a, "alpha"), (b, "beta")):
        assert run.state == RunState.SUCCEEDED
        # the thread executor captures records, not the process's shared stdout
        assert messages(stored(run)) == [f"INFO tests.tasks.logs: {name} {n} logged " for n in range(60)]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_the_cap_keeps_the_newest_lines_under_a_marker(engine, make_job, executor):
    engine(max_bytes=2048)
    job = make_job(
        "chatty",
        task="tests.log_lines",
        executor=executor,
        kwargs={"label": "c", "count": 400, "printed": False},
    )
    run = run_once(job)
    log = stored(run)
    lines = messages(log)
    assert len(log.text.encode()) <= 2048
    assert log.lines_total == 400 and log.lines_dropped == 400 - (len(lines) - 1) > 300
    assert lines[0] == f"… {log.lines_dropped} earlier lines dropped …"
    numbers = [int(line.split()[3]) for line in lines[1:]]
    assert numbers == list(range(400 - len(numbers), 400))  # the newest, in order


def test_the_run_page_shows_the_marker_in_the_readers_language(engine, make_job, client):
    engine(max_bytes=1024)
    run = run_once(make_job("chatty", task="tests.log_lines", kwargs={"count": 100, "printed": False}))
    dropped = stored(run).lines_dropped
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    url = reverse("admin:scheduler_app_jobrun_change", args=[run.pk])
    assert f"… {dropped} earlier lines dropped …" in client.get(url).content.decode()
    client.cookies["django_language"] = "zh-hans"
    html = client.get(url).content.decode()
    assert f"… 已丢弃之前的 {dropped} 行 …" in html and "earlier lines dropped" not in html
    assert "line 99 logged" in html


def test_a_running_runs_log_can_be_followed(engine, make_job, tmp_path):
    engine(flush=0.1)
    gate = tmp_path / "go"
    job = make_job(
        "slow",
        task="tests.log_lines",
        executor="process",
        kwargs={"label": "s", "count": 2, "gate": str(gate)},
    )
    run = services.run_jobs_now([job]).done[0]
    log = wait_for(
        lambda: JobRunLog.objects.filter(run=run, text__contains="s waiting").first(),
        message="the running run's log was not written",
    )
    assert JobRun.objects.get(pk=run.pk).state == RunState.RUNNING
    assert messages(log)[-1] == "INFO tests.tasks.logs: s waiting"

    api = client_for(key_for(get_user_model().objects.create_superuser("root", "r@example.com", "pw")))
    first = api.get(f"/api/runs/{run.pk}/").json()
    assert first["state"] == "running" and "s waiting" in first["log"]
    assert first["log_next_offset"] == 5 and first["log_lines_dropped"] == 0
    gate.touch()
    wait_for(lambda: JobRun.objects.get(pk=run.pk).finished_at)
    newer = api.get(f"/api/runs/{run.pk}/?log_offset={first['log_next_offset']}").json()
    assert newer["state"] == "succeeded" and newer["log_offset"] == 5
    assert newer["log"] == ""  # nothing was written after "waiting"
    whole = api.get(f"/api/runs/{run.pk}/?log_offset=3").json()
    assert [line[13:] for line in whole["log"].split("\n")] == [
        "STDOUT stdout: s 1 printed ",
        "INFO tests.tasks.logs: s waiting",
    ]
    bad = api.get(f"/api/runs/{run.pk}/?log_offset=-1")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "log_offset"


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_secrets_never_reach_the_stored_log_the_api_or_the_page(engine, make_job, executor, client):
    engine()
    job = make_job(
        "secretive",
        task="tests.log_lines",
        executor=executor,
        kwargs={"label": "x", "count": 2},
        secret_kwargs={"password": SECRET, "token": TOKEN},
    )
    run = run_once(job)
    assert run.state == RunState.SUCCEEDED, run.error
    log = stored(run)
    assert f"x 0 logged password={MASK} token={MASK}" in log.text
    assert f"repr of the secrets: {{'password': '{MASK}', 'token': '{MASK}'}}" in log.text
    if executor == "process":
        assert f"x 1 printed password={MASK} token={MASK}" in log.text
        assert f"STDERR stderr: stderr {{'password': '{MASK}'" in log.text

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    api = client_for(key_for(root)).get(f"/api/runs/{run.pk}/")
    assert api.status_code == 200 and MASK in api.json()["log"]
    client.force_login(root)
    page = client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<pre class="sa-run-log"' in html and "x 1 logged password=" in html
    places = {"stored log": log.text, "api": api.content.decode(), "page": html}
    assert find_leaks(places, [SECRET, TOKEN]) == []


def test_backup_with_runs_carries_the_logs_masked_and_restore_brings_them_back(engine, make_job, tmp_path):
    import io
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    node = engine()
    job = make_job(
        "secretive",
        task="tests.log_lines",
        kwargs={"label": "x", "count": 2},
        secret_kwargs={"password": SECRET, "token": TOKEN},
    )
    logged = run_once(job)
    run_once(make_job("quiet", task="demo.noop"))
    node.shutdown(2)
    before = stored(logged)
    assert f"password={MASK}" in before.text

    path = tmp_path / "backup.json"
    call_command("backup", "-o", str(path), "--with-runs", stdout=io.StringIO())
    text = path.read_text(encoding="utf-8")
    assert find_leaks({"backup": text}, [SECRET, TOKEN]) == []
    runs = {(r["job"], r["attempt"]): r for r in json.loads(text)["runs"]}
    assert runs[("secretive", 1)]["log"]["text"] == before.text
    assert "log" not in runs[("quiet", 1)]  # a run that logged nothing has no log row

    call_command("flush", interactive=False, verbosity=0)
    call_command("restore", str(path), stdout=io.StringIO())
    restored = JobRunLog.objects.get(run__job__name="secretive")
    assert (restored.text, restored.lines_total, restored.lines_dropped, restored.updated_at) == (
        before.text,
        before.lines_total,
        before.lines_dropped,
        before.updated_at,
    )
    assert not JobRunLog.objects.filter(run__job__name="quiet").exists()
    again = tmp_path / "again.json"
    call_command("backup", "-o", str(again), "--with-runs", stdout=io.StringIO())
    assert json.loads(again.read_text())["runs"] == json.loads(text)["runs"]

    doc = json.loads(text)
    index = next(i for i, r in enumerate(doc["runs"]) if r["job"] == "secretive")
    doc["runs"][index]["log"]["lines_dropped"] = 10**6
    path.write_text(json.dumps(doc), encoding="utf-8")
    where = rf"runs\[{index}\] \(acme/secretive @ .*\): log: lines_dropped: 1000000 is more than lines_total"
    with pytest.raises(CommandError, match=where):
        call_command("restore", str(path), "--replace", stdout=io.StringIO())


# -- the store: fencing, the race with the outcome, a bounded number of statements -------


def running_run(job, node="logs-node"):
    from datetime import timedelta

    from django.utils import timezone

    when = timezone.now() - timedelta(seconds=5)
    return JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=when,
        not_before=when,
        state=RunState.RUNNING,
        node=node,
        started_at=when,
        executor="thread",
    )


def a_log(total: int) -> RunLog:
    return RunLog("\n".join(f"line {n}" for n in range(total)), 0, total)


@pytest.mark.django_db
def test_live_logs_are_written_only_for_runs_running_on_that_node(make_job):
    from django.utils import timezone

    store = DjangoRunStore()
    mine, theirs = running_run(make_job("a")), running_run(make_job("b"), node="other-node")
    store.save_logs("logs-node", {mine.pk: a_log(2), theirs.pk: a_log(2)}, timezone.now())
    assert stored(mine).text == "line 0\nline 1"
    assert not JobRunLog.objects.filter(run=theirs).exists()


@pytest.mark.django_db
def test_a_late_live_write_never_replaces_the_final_log(make_job):
    from django.utils import timezone

    run = running_run(make_job())
    write_logs({run.pk: a_log(5)}, timezone.now())  # the outcome's final log
    write_logs({run.pk: a_log(3)}, timezone.now())  # a live write that lost the race
    assert stored(run).lines_total == 5 and stored(run).text.endswith("line 4")
    write_logs({run.pk: a_log(7)}, timezone.now())
    assert stored(run).lines_total == 7


@pytest.mark.django_db
def test_recording_outcomes_costs_the_same_statements_whatever_the_lines(make_job):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    store = DjangoRunStore()

    def record(lines: int) -> tuple[int, int]:
        runs = [running_run(make_job(f"j{lines}-{i}")) for i in range(10)]
        now = timezone.now()
        outcomes = [
            Outcome(run_id=r.pk, state="succeeded", started_at=now, finished_at=now, log=a_log(lines))
            for r in runs
        ]
        with CaptureQueriesContext(connection) as queries:
            store.record(outcomes)
        assert [stored(r).lines_total for r in runs] == [lines] * 10
        return len(queries)

    assert record(1) == record(1000)
