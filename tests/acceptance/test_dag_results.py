"""Results along DAGs and trigger rules, end to end: a real runscheduler executes the
upstream and downstream runs; the downstream task writes what it received to a file.
Runs on PostgreSQL and (with DATABASE_URL=sqlite:///...) on SQLite, one node."""

import json
import time

import pytest

from scheduler_app import services
from scheduler_app.engine.redaction import MASK
from scheduler_app.models import JobJoin, JobRun
from tests.acceptance.conftest import wait_until
from tests.acceptance.test_engine import job

pytestmark = pytest.mark.slow


def runs(j, **filters):
    return list(JobRun.objects.filter(job=j, **filters).order_by("queued_at", "pk"))


def received(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def join(acme, tmp_path, rule, b, c):
    """root → B, root → C, (B, C) → D with ``rule``; B and C return their name (or
    fail); D writes what it received to a file of its own."""
    root = job(acme, f"root-{rule}-{b}-{c}")
    ups = []
    for label, how in (("B", b), ("C", c)):
        sleep = 1.5 if how.endswith("slow") else 0.1
        ups.append(
            job(
                acme,
                f"{label}-{rule}-{b}-{c}",
                task="tests.give",
                kwargs={"value": {"from": label}, "fail": how.startswith("fail"), "sleep": sleep},
            )
        )
        services.add_dependency(root, ups[-1])
    out = tmp_path / f"D-{rule}-{b}-{c}.jsonl"
    down = job(
        acme,
        f"D-{rule}-{b}-{c}",
        task="tests.receive",
        kwargs={"path": str(out)},
        trigger_rule=rule,
        upstream_param="upstream",
    )
    for up in ups:
        services.add_dependency(up, down)
    return root, ups, down, out


#: rule, B's outcome, C's outcome -> how many D runs, and what D receives
CASES = [
    ("all_success", "ok", "ok", 1),
    ("all_success", "fail", "ok", 0),  # a failed upstream: D waits for a success
    ("all_done", "fail", "ok", 1),
    ("none_failed", "ok", "ok", 1),
    ("none_failed", "fail", "ok", 0),
    ("one_success", "ok", "ok-slow", 1),  # fires before C ends, not again after
    ("one_success", "fail", "fail", 0),
    ("one_failed", "fail", "ok-slow", 1),
    ("one_failed", "ok", "ok", 0),
]


def test_each_trigger_rule_and_what_the_downstream_receives(acme, scheduler, tmp_path):
    dags = {case: join(acme, tmp_path, *case[:3]) for case in CASES}
    proc = scheduler()
    services.run_jobs_now([root for root, _ups, _down, _out in dags.values()])

    def settled():
        upstream_done = all(
            JobRun.objects.filter(job=up, finished_at__isnull=False).exists()
            for _root, ups, _down, _out in dags.values()
            for up in ups
        )
        downs_done = all(
            len(runs(down, finished_at__isnull=False)) == case[3] for case, (_r, _u, down, _o) in dags.items()
        )
        return upstream_done and downs_done

    wait_until(settled, 60, message="the DAGs did not settle")
    time.sleep(1.5)  # a second (wrong) D run would show up by now
    for case, (_root, (b, c), down, out) in dags.items():
        rule, b_how, c_how, expected = case
        done = runs(down)
        assert len(done) == expected, case
        if not expected:
            assert received(out) == [], case
            continue
        assert done[0].state == "succeeded", (case, done[0].error)
        assert done[0].reason == "dependency"
        got = received(out)
        assert len(got) == 1, case
        if rule == "all_success" or rule == "none_failed":
            assert got[0] == {b.name: {"from": "B"}, c.name: {"from": "C"}}, case
        elif rule == "all_done":
            assert got[0] == {b.name: None, c.name: {"from": "C"}}, case  # failed: null
        elif rule == "one_success":
            assert got[0] == {b.name: {"from": "B"}}, case  # C had not ended
            c_run = runs(c)[0]
            assert done[0].started_at < c_run.finished_at, "one_success must not wait for C"
        elif rule == "one_failed":
            assert got[0] == {b.name: None}, case
        assert sorted(done[0].upstream_runs) == sorted(
            r.pk for up in (b, c) for r in runs(up) if r.job.name in got[0]
        )
    # Rounds that ended are gone; none_failed/one_* rounds closed once both ended.
    assert not JobJoin.objects.exists()
    assert proc.stop() == 0


def test_second_round_fires_again_and_a_missing_upstream_keeps_the_round_open(acme, scheduler, tmp_path):
    root, (b, c), down, out = join(acme, tmp_path, "one_success", "ok", "ok-slow")
    # all_done with an upstream that never runs: no downstream run, the round waits.
    lone = job(acme, "lone", task="tests.give", kwargs={"value": 1})
    never = job(acme, "never")
    out2 = tmp_path / "waiting.jsonl"
    waiting = job(acme, "waiting", task="tests.receive", kwargs={"path": str(out2)}, trigger_rule="all_done")
    services.add_dependency(lone, waiting)
    services.add_dependency(never, waiting)
    scheduler()
    for expected in (1, 2):
        services.run_jobs_now([root])
        wait_until(lambda: len(runs(c, state="succeeded")) == expected, 30)  # noqa: B023
        wait_until(lambda: len(runs(down, state="succeeded")) == expected, 30)  # noqa: B023
    services.run_jobs_now([lone])
    wait_until(lambda: runs(lone, state="succeeded"), 30)
    time.sleep(1.5)
    assert len(runs(down)) == 2
    assert [set(r) for r in received(out)] == [{b.name}, {b.name}]
    assert runs(waiting) == []
    (open_round,) = JobJoin.objects.filter(job=waiting)
    assert set(open_round.ends) == {str(lone.pk)} and not open_round.fired
    # the missing upstream ends: the round completes (all_done), no upstream_param: none passed
    services.run_jobs_now([never])
    wait_until(lambda: runs(waiting, state="succeeded"), 30)
    assert received(out2) == [None]
    assert not JobJoin.objects.filter(job=waiting).exists()


def test_secrets_never_reach_the_downstream_and_many_results_stay_bounded(acme, scheduler, tmp_path):
    secret = "tok-3f9a1c77e2b54d10"
    leaky = job(acme, "leaky", task="tests.give", secret_kwargs={"token": secret})
    bigs = [
        job(acme, f"big-{i:02d}", task="tests.give", kwargs={"value": {"blob": f"{i}" * 40_000}})
        for i in range(8)
    ]
    out = tmp_path / "down.jsonl"
    down = job(
        acme,
        "down",
        task="tests.receive",
        kwargs={"path": str(out)},
        trigger_rule="all_done",
        upstream_param="upstream",
    )
    for up in [leaky, *bigs]:
        services.add_dependency(up, down)
    scheduler(UPSTREAM_RESULTS_MAX_BYTES=150_000)
    services.run_jobs_now([leaky, *bigs])
    run = wait_until(lambda: runs(down, state="succeeded"), 60)[0]
    (got,) = received(out)
    assert secret not in out.read_text()
    assert got["leaky"] == {"token": MASK}
    assert len(json.dumps(got).encode()) <= 150_000
    truncated = [name for name, value in got.items() if isinstance(value, dict) and value.get("truncated")]
    kept = [name for name, value in got.items() if isinstance(value, dict) and "blob" in value]
    assert len(kept) == 3 and len(truncated) == 5, (kept, truncated)
    assert all(got[name]["size_bytes"] > 40_000 for name in truncated)
    assert set(got) == {"leaky", *(b.name for b in bigs)}
    assert secret not in json.dumps(run.result)


#: rule -> whether D runs on B's skip and C's success (all_success: later, on B's success)
SKIP_CASES = {"all_done": True, "none_failed": True, "one_failed": False, "all_success": True}


def test_a_skipped_upstream_run_is_an_end_of_its_round(acme, scheduler, tmp_path):
    """B runs for 2 s and may run once at a time (overlap policy skip): its second run
    is skipped at the claim. That skip ends B's part of the round: with C's success,
    all_done and none_failed fire (B passes null), one_failed does not; all_success
    waits for B's success."""
    b = job(
        acme,
        "B",
        task="tests.give",
        kwargs={"value": {"from": "B"}, "sleep": 2},
        max_instances=1,
        overlap_policy="skip",
    )
    c = job(acme, "C", task="tests.give", kwargs={"value": {"from": "C"}})
    downs = {}
    for rule in SKIP_CASES:
        out = tmp_path / f"{rule}.jsonl"
        down = job(
            acme,
            f"D-{rule}",
            task="tests.receive",
            kwargs={"path": str(out)},
            trigger_rule=rule,
            upstream_param="upstream",
        )
        services.add_dependency(b, down)
        services.add_dependency(c, down)
        downs[rule] = (down, out)
    proc = scheduler()
    services.run_jobs_now([b])
    wait_until(lambda: runs(b, state="running"), 30)
    services.run_jobs_now([b])
    (skipped,) = wait_until(lambda: runs(b, state="skipped"), 30)
    assert "overlap policy: skip" in skipped.error
    services.run_jobs_now([c])
    for rule, fires in SKIP_CASES.items():
        if fires:
            wait_until(lambda: runs(downs[rule][0], state="succeeded"), 30)  # noqa: B023
    wait_until(lambda: runs(b, state="succeeded"), 30)
    time.sleep(1.5)  # a wrong D run would show up by now
    c_run = runs(c)[0]
    for rule, fires in SKIP_CASES.items():
        down, out = downs[rule]
        done = runs(down)
        assert len(done) == (1 if fires else 0), rule
        if rule == "all_success":
            b_run = runs(b, state="succeeded")[0]
            assert received(out) == [{"B": {"from": "B"}, "C": {"from": "C"}}]
            assert sorted(done[0].upstream_runs) == sorted([b_run.pk, c_run.pk])
            assert done[0].queued_at >= b_run.finished_at
        elif fires:
            assert received(out) == [{"B": None, "C": {"from": "C"}}], rule
            assert sorted(done[0].upstream_runs) == sorted([skipped.pk, c_run.pk])
    # B's success opened the next round of the round rules (C has not run again)
    rounds = {j.job.name: j for j in JobJoin.objects.select_related("job")}
    assert set(rounds) == {"D-all_done", "D-none_failed", "D-one_failed"}
    assert all(set(r.ends) == {str(b.pk)} and r.ends[str(b.pk)]["end"] == "success" for r in rounds.values())
    assert proc.stop() == 0
