"""backup --with-runs / restore of DAG state: open join rounds (``JobJoin``) and the
upstream runs a dependency run received, both named by natural keys (run ids differ
in the database restored into)."""

import datetime as dt

import pytest
from django.core.management.base import CommandError

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Outcome
from scheduler_app.models import Job, JobJoin, JobRun, RunState
from tests.integration.test_backup import load, run_backup, run_restore, without_created_at, write

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)


def ended(job, state, minutes, result=None):
    """A run of ``job`` recorded by the run store (so the joins see its end)."""
    when = T0 + dt.timedelta(minutes=minutes)
    run = JobRun.objects.create(
        job=job, scheduled_for=when, state=RunState.RUNNING, node="n1", started_at=when, executor="thread"
    )
    DjangoRunStore().record(
        [Outcome(run_id=run.pk, state=state, started_at=when, finished_at=when, result=result)]
    )
    return JobRun.objects.get(pk=run.pk)


@pytest.fixture
def dag(make_job):
    """B, C → D (all_done, upstream_param) and C, G → F (none_failed; G never runs).
    B succeeds, C fails (D runs with both, its round closes), C's next run is skipped:
    open rounds D {C skipped}, F {C failed}, F {C skipped}."""
    b, c = make_job("B"), make_job("C")
    d = make_job("D", task="tests.give", trigger_rule="all_done", upstream_param="upstream")
    f, g = make_job("F", trigger_rule="none_failed"), make_job("G")
    for up, down in ((b, d), (c, d), (c, f), (g, f)):
        services.add_dependency(up, down)
    b1 = ended(b, RunState.SUCCEEDED, 1, result={"from": "B"})
    c1 = ended(c, RunState.FAILED, 2)
    d1 = JobRun.objects.get(job=d)
    assert sorted(d1.upstream_runs) == sorted([b1.pk, c1.pk])
    skipped = services.enqueue_run(c, scheduled_for=T0 + dt.timedelta(minutes=4), state=RunState.SKIPPED)
    DjangoRunStore()._enqueue_dependents([skipped], T0, DjangoRunStore._edges({c.pk}))
    return {"b": b, "c": c, "d": d, "f": f}


def rounds():
    """Every open round as names and natural keys (no ids)."""
    out = []
    for r in JobJoin.objects.select_related("job").order_by("job__name", "opened_at"):
        ends = {}
        for key, end in r.ends.items():
            run = JobRun.objects.select_related("job").get(pk=end["run"])
            assert str(run.job_id) == key
            ends[run.job.name] = (run.scheduled_for, run.attempt, end["end"], end["ok"])
        out.append((r.job.name, r.opened_at, r.fired, ends))
    return out


def upstream_of_runs():
    return {
        (run.job.name, run.scheduled_for): sorted(
            (up.job.name, up.scheduled_for) for up in JobRun.objects.filter(pk__in=run.upstream_runs)
        )
        for run in JobRun.objects.select_related("job").exclude(upstream_runs=[])
    }


def test_join_rounds_and_upstream_runs_round_trip(tmp_path, dag):
    before_rounds, before_upstream = rounds(), upstream_of_runs()
    assert [name for name, *_ in before_rounds] == ["D", "F", "F"]
    assert before_upstream[("D", JobRun.objects.get(job=dag["d"]).scheduled_for)] == [
        ("B", T0 + dt.timedelta(minutes=1)),
        ("C", T0 + dt.timedelta(minutes=2)),
    ]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    out, _err = run_backup(first, "--with-runs")
    assert out.strip().endswith(f"runs, 3 join rounds to {first}.")
    doc = load(first)
    f_round = next(r for r in doc["join_rounds"] if r["job"] == "F" and r["ends"][0]["end"] == "skipped")
    assert f_round["ends"] == [
        {
            "upstream": "C",
            "run": {"tenant": "acme", "job": "C", "scheduled_for": "2026-03-01T02:04:00+00:00", "attempt": 1},
            "end": "skipped",
        }
    ]
    assert all(isinstance(u, dict) for r in doc["runs"] for u in r["upstream_runs"])
    old_ids = set(JobRun.objects.values_list("pk", flat=True))

    out, err = run_restore(first, "--replace")
    assert "3 join rounds" in out and err == ""
    assert not set(JobRun.objects.values_list("pk", flat=True)) & old_ids  # other ids, same runs
    assert rounds() == before_rounds
    assert upstream_of_runs() == before_upstream
    run_backup(second, "--with-runs")
    assert without_created_at(load(second)) == without_created_at(load(first))
    # the restored rounds go on: B's next end completes D's open round
    ended(Job.objects.get(name="B"), RunState.SUCCEEDED, 9)
    assert JobRun.objects.filter(job__name="D").count() == 2
    assert JobJoin.objects.filter(job__name="D").count() == 0


def test_a_backup_without_runs_has_no_rounds(tmp_path, dag):
    path = tmp_path / "plain.json"
    run_backup(path)
    assert "join_rounds" not in load(path)


def test_an_older_backup_with_run_ids_restores_without_upstream_runs(tmp_path, dag):
    path = tmp_path / "old.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    for entry in doc["runs"]:
        if entry["upstream_runs"]:
            entry["upstream_runs"] = [1, 2]  # as backups before join rounds wrote them
    del doc["join_rounds"], doc["counts"]["join_rounds"]
    _out, err = run_restore(write(path, doc), "--replace")
    assert "list their upstream runs by the ids of the database the backup came from" in err
    assert not JobRun.objects.exclude(upstream_runs=[]).exists()
    assert not JobJoin.objects.exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r["ends"][0].update(end="maybe"),
            "join_rounds[0] (acme/D): ends[0]: end: must be one of success, failed, skipped",
        ),
        (
            lambda r: r["ends"][0]["run"].update(attempt=7),
            "join_rounds[0] (acme/D): ends[0]: run: no run acme/C @ 2026-03-01T02:04:00+00:00 #7 in the file",
        ),
        (lambda r: r["ends"][0].update(upstream="nope"), "join_rounds[0] (acme/D): ends[0]: upstream:"),
        (lambda r: r.update(ends={}), "join_rounds[0] (acme/D): ends: must be a list"),
        (lambda r: r.update(opened_at=None), "join_rounds[0] (acme/D): opened_at:"),
    ],
    ids=["end", "run", "upstream", "ends", "opened_at"],
)
def test_bad_rounds_are_named_and_change_nothing(tmp_path, dag, change, expected):
    path = tmp_path / "bad.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    change(doc["join_rounds"][0])
    before = rounds()
    with pytest.raises(CommandError) as info:
        run_restore(write(path, doc), "--replace")
    assert expected in str(info.value)
    assert rounds() == before  # all or nothing


@pytest.fixture
def broadcast_fire(make_job):
    """A broadcast job E whose one fire has a run per node (n1 fails, n2 succeeds), a
    dependent H (all_done) with both as its upstream runs, a retry of n1's copy triggered
    by it, and an open round of J {E's n1 copy} (J also waits on G, which never runs)."""
    e = make_job("E", routing="broadcast")
    h = make_job("H", task="tests.give", trigger_rule="all_done", upstream_param="upstream")
    j, g = make_job("J", trigger_rule="all_success"), make_job("G")
    services.add_dependency(e, h)
    services.add_dependency(e, j)
    services.add_dependency(g, j)
    when = T0 + dt.timedelta(minutes=5)
    runs = {}
    for node, state in (("n1", RunState.FAILED), ("n2", RunState.SUCCEEDED)):
        runs[node] = JobRun.for_job(e, when, reason="schedule", target_node=node)
        runs[node].node, runs[node].state, runs[node].finished_at = node, state, when
        runs[node].save()
    JobRun.for_job(
        e, when, reason="retry", attempt=2, target_node="n1", triggered_by=runs["n1"], state=RunState.SKIPPED
    ).save()
    JobRun.for_job(h, when, reason="dependency", upstream_runs=[runs["n1"].pk, runs["n2"].pk]).save()
    JobJoin.objects.create(
        job=j, opened_at=when, ends={str(e.pk): {"run": runs["n1"].pk, "ok": False, "end": "failed"}}
    )
    return runs


def broadcast_state():
    """Every run as natural keys with node, and what it refers to (no ids)."""

    def key(run):
        return (run.job.name, run.scheduled_for, run.attempt, run.target_node)

    by_pk = {run.pk: run for run in JobRun.objects.select_related("job")}
    rounds = [
        (r.job.name, r.opened_at, {end["end"]: key(by_pk[end["run"]]) for end in r.ends.values()})
        for r in JobJoin.objects.select_related("job")
    ]
    return sorted(
        (
            key(run),
            run.state,
            key(run.triggered_by) if run.triggered_by else None,
            sorted(key(by_pk[pk]) for pk in run.upstream_runs),
        )
        for run in by_pk.values()
    ), rounds


def test_a_broadcast_fire_s_runs_per_node_restore_into_an_empty_database(tmp_path, broadcast_fire):
    before = broadcast_state()
    assert [k for k, *_ in before[0] if k[0] == "E"] == [
        ("E", T0 + dt.timedelta(minutes=5), 1, "n1"),
        ("E", T0 + dt.timedelta(minutes=5), 1, "n2"),
        ("E", T0 + dt.timedelta(minutes=5), 2, "n1"),
    ]
    path = tmp_path / "broadcast.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    h_run = next(r for r in doc["runs"] if r["job"] == "H")
    assert [u.get("target_node") for u in h_run["upstream_runs"]] == ["n1", "n2"]

    from scheduler_app.interchange.backup import delete_configuration

    delete_configuration()
    assert not JobRun.objects.exists() and not Job.objects.exists()
    out, err = run_restore(path)
    assert "4 runs, 1 join rounds" in out and err == ""
    assert broadcast_state() == before


def test_an_older_backup_without_target_node_in_references_still_restores(tmp_path, broadcast_fire):
    """Before runs were keyed by node a reference had no target_node: it names the fire's
    only run of that attempt (the retry, here); an ambiguous one is refused by name."""
    before = broadcast_state()
    path = tmp_path / "older.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    retry = next(r for r in doc["runs"] if r["attempt"] == 2)
    retry["triggered_by"].pop("target_node")
    second = [r for r in doc["runs"] if r["job"] == "E" and r["attempt"] == 1][1]
    doc["runs"].remove(second)  # an older backup held one run per fire
    doc["counts"]["runs"] -= 1
    h_run = next(r for r in doc["runs"] if r["job"] == "H")
    h_run["upstream_runs"] = [h_run["upstream_runs"][0]]
    h_run["upstream_runs"][0].pop("target_node")
    doc["join_rounds"][0]["ends"][0]["run"].pop("target_node")
    _out, err = run_restore(write(path, doc), "--replace")
    assert err == ""
    runs, rounds = broadcast_state()
    assert rounds == before[1]
    assert len(runs) == 3 and all(k[3] != "n2" for k, *_ in runs)
    h = next(r for r in runs if r[0][0] == "H")
    assert h[3] == [("E", T0 + dt.timedelta(minutes=5), 1, "n1")]


def test_an_ambiguous_reference_to_a_broadcast_fire_is_refused(tmp_path, broadcast_fire):
    path = tmp_path / "ambiguous.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    h_run = next(r for r in doc["runs"] if r["job"] == "H")
    h_run["upstream_runs"][1].pop("target_node")
    with pytest.raises(CommandError) as info:
        run_restore(write(path, doc), "--replace")
    assert (
        "runs[3] (acme/H @ 2026-03-01T02:05:00+00:00 #1): upstream_runs[1]: no run "
        "acme/E @ 2026-03-01T02:05:00+00:00 #1 in the file"
    ) in str(info.value)


@pytest.fixture
def foreign_run(make_job, other_tenant):
    """A run of globex's own B (same job name as acme's), with a result."""
    return ended(make_job("B", tenant=other_tenant), RunState.SUCCEEDED, 3, result={"globex": "secret"})


def natural_key(doc, tenant, job):
    entry = next(r for r in doc["runs"] if (r["tenant"], r["job"]) == (tenant, job))
    return {
        "tenant": tenant,
        "job": job,
        "scheduled_for": entry["scheduled_for"],
        "attempt": entry["attempt"],
    }


def counts():
    return JobRun.objects.count(), JobJoin.objects.count(), rounds()


@pytest.mark.parametrize(
    ("run_tenant", "run_job", "expected"),
    [
        (
            "globex",
            "B",
            "join_rounds[0] (acme/D): ends[0]: run: names a run of globex/B, not of the end's upstream acme/C",
        ),
        (
            "acme",
            "B",
            "join_rounds[0] (acme/D): ends[0]: run: names a run of acme/B, not of the end's upstream acme/C",
        ),
    ],
    ids=["other-tenant", "other-job"],
)
def test_a_round_end_naming_a_run_not_of_its_upstream_is_refused(
    tmp_path, dag, foreign_run, run_tenant, run_job, expected
):
    path = tmp_path / "bad.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    (rnd,) = [r for r in doc["join_rounds"] if (r["tenant"], r["job"]) == ("acme", "D")]
    assert doc["join_rounds"].index(rnd) == 0 and rnd["ends"][0]["upstream"] == "C"
    rnd["ends"][0]["run"] = natural_key(doc, run_tenant, run_job)
    before = counts()
    with pytest.raises(CommandError) as info:
        run_restore(write(path, doc), "--replace")
    assert expected in str(info.value)
    assert counts() == before  # nothing restored


def test_upstream_runs_naming_another_tenants_run_are_refused(tmp_path, dag, foreign_run):
    path = tmp_path / "bad.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    index, entry = next((i, r) for i, r in enumerate(doc["runs"]) if r["upstream_runs"])
    entry["upstream_runs"][0] = natural_key(doc, "globex", "B")
    before = counts()
    with pytest.raises(CommandError) as info:
        run_restore(write(path, doc), "--replace")
    assert (
        f"runs[{index}] (acme/D @ {entry['scheduled_for']} #1): upstream_runs[0]: names a run of tenant "
        "globex, not of acme (upstream runs never cross tenants)"
    ) in str(info.value)
    assert counts() == before


def test_triggered_by_naming_another_tenants_run_is_refused(tmp_path, dag, foreign_run):
    """The run's page and API would link acme's run to globex's."""
    path = tmp_path / "bad.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    index, entry = next((i, r) for i, r in enumerate(doc["runs"]) if r["triggered_by"])
    entry["triggered_by"] = natural_key(doc, "globex", "B")
    before = counts()
    with pytest.raises(CommandError) as info:
        run_restore(write(path, doc), "--replace")
    assert (
        f"runs[{index}] ({entry['tenant']}/{entry['job']} @ {entry['scheduled_for']} #1): triggered_by: "
        f"names a run of tenant globex, not of {entry['tenant']} "
        "(a run is never triggered by another tenant's run)"
    ) in str(info.value)
    assert counts() == before


def test_a_restored_round_whose_run_retention_deleted_still_joins(tmp_path, make_job):
    b, c = make_job("B"), make_job("C")
    d = make_job("D", trigger_rule="all_done")
    services.add_dependency(b, d)
    services.add_dependency(c, d)
    b1 = ended(b, RunState.SUCCEEDED, 1)
    JobRun.objects.filter(pk=b1.pk).delete()  # retention; B's end stays in the open round
    path = tmp_path / "b.json"
    run_backup(path, "--with-runs")
    run_restore(path, "--replace")
    (r,) = JobJoin.objects.all()
    assert [end["run"] for end in r.ends.values()] == [None]
    c1 = ended(Job.objects.get(name="C"), RunState.SUCCEEDED, 2)
    assert c1.state == RunState.SUCCEEDED  # recorded (was: TypeError, the batch rolled back)
    (d1,) = JobRun.objects.filter(job__name="D")
    assert d1.upstream_runs == [c1.pk]
    assert not JobJoin.objects.exists()


def test_a_job_moved_to_another_tenant_leaves_a_history_that_backs_up_and_restores(
    tmp_path, dag, other_tenant
):
    """C's dependencies removed, C moved to another tenant (its runs go with it): the runs
    of D it triggered and the rounds that recorded its ends stay behind. The links across
    the tenants are cut at the move, so a backup of the database restores."""
    from scheduler_app.models import JobDependency

    c = Job.objects.get(pk=dag["c"].pk)
    services.delete_dependencies(JobDependency.objects.filter(upstream=c))
    c.tenant = other_tenant
    services.save_job(c)
    assert not JobRun.objects.filter(job__tenant=dag["d"].tenant, triggered_by__job=c).exists()
    path = tmp_path / "moved.json"
    run_backup(path, "--with-runs")
    before = counts()
    out, err = run_restore(path, "--replace")
    assert err == "", err
    assert counts() == before
