"""Jobs files ("jobs as code"): importjobs/exportjobs and scheduler_app.interchange.jobsfile.

Import is keyed by (tenant slug, job name), idempotent, atomic (an error changes nothing
and names the entry and the field) and round-trips with export."""

import copy
import datetime as dt
import io
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from scheduler_app import services, signals
from scheduler_app.interchange import jobsfile
from scheduler_app.models import (
    Calendar,
    CalendarDate,
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    Tenant,
)
from scheduler_app.registry import registry

pytestmark = pytest.mark.django_db

DEMO_FILE = Path(__file__).resolve().parents[2] / "project" / "sample_jobs.json"

#: The issue's sample document: tenant acme, group billing, a month-end invoices job
#: that runs after extract.
SAMPLE = {
    "version": 1,
    "tenants": [{"slug": "acme", "name": "Acme Corp"}],
    "groups": [
        {"tenant": "acme", "name": "billing", "description": "Invoices and payments"},
        {"tenant": "acme", "name": "etl", "description": "Nightly data pipeline"},
    ],
    "jobs": [
        {
            "tenant": "acme",
            "name": "extract",
            "group": "etl",
            "task": "demo.sleep",
            "kwargs": {"seconds": 1},
            "trigger": {"type": "cron", "expression": "30 1 * * *", "timezone": "Europe/Berlin"},
        },
        {
            "tenant": "acme",
            "name": "invoices",
            "group": "billing",
            "task": "demo.echo",
            "kwargs": {"n": 1},
            "trigger": {"type": "cron", "expression": "0 2 L * *", "timezone": "Europe/Berlin"},
            "misfire": {"policy": "coalesce", "grace_seconds": 600},
            "retry": {
                "max_attempts": 3,
                "backoff_seconds": 30,
                "backoff_factor": 2.0,
                "max_backoff_seconds": 600,
            },
            "depends_on": [{"job": "extract", "condition": "success"}],
        },
    ],
}


# -- helpers ----------------------------------------------------------------------------


def summary(t=(), g=(), c=(), j=()):
    """importjobs' summary: per kind (tenants, groups, calendars, jobs), created, changed,
    unchanged, deleted; every kind and count on every run."""
    parts = []
    for kind, counts in zip(("tenants", "groups", "calendars", "jobs"), (t, g, c, j), strict=True):
        n = [*counts, 0, 0, 0, 0][:4]
        parts.append(f"{kind} {n[0]} created, {n[1]} changed, {n[2]} unchanged, {n[3]} deleted")
    return "; ".join(parts)


def sample():
    return copy.deepcopy(SAMPLE)


def write(tmp_path, doc, name="jobs.json"):
    path = tmp_path / name
    if isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    elif name.endswith((".yaml", ".yml")):
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    else:
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def import_file(path, *options):
    out = io.StringIO()
    call_command("importjobs", str(path), *options, stdout=out, stderr=io.StringIO(), no_color=True)
    return out.getvalue()


def export(*options):
    out, err = io.StringIO(), io.StringIO()
    call_command("exportjobs", *options, stdout=out, stderr=err, no_color=True)
    return out.getvalue()


def db_state():
    """Every scheduler_app row (timestamps included), to prove that nothing changed."""
    state = {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (
            Tenant,
            JobGroup,
            Calendar,
            CalendarDate,
            Job,
            JobDependency,
            JobRun,
            ConfigVersion,
        )  # the version the scheduler polls: bumped on changes
    }
    state["job_calendars"] = list(
        Job.calendars.through.objects.order_by("pk").values("job_id", "calendar_id")
    )
    return state


def flush():
    Job.objects.all().delete()  # cascades runs and dependencies
    Tenant.objects.all().delete()  # cascades groups, calendars and their dates
    ConfigVersion.objects.all().delete()
    assert all(not rows for rows in db_state().values())


def refused(path, *options):
    with pytest.raises(CommandError) as info:
        import_file(path, *options)
    assert info.value.returncode != 0
    return str(info.value)


def job(tenant_slug, name):
    return Job.objects.select_related("tenant", "group").get(tenant__slug=tenant_slug, name=name)


# -- importing --------------------------------------------------------------------------


def test_sample_document_imports(tmp_path):
    path = write(tmp_path, sample())
    out = import_file(path)
    assert out.splitlines() == [
        "create tenant acme",
        "create group acme/billing",
        "create group acme/etl",
        "create job acme/extract",
        "create job acme/invoices",
        f"Imported {path}: {summary(t=(1,), g=(2,), j=(2,))}.",
    ]
    assert Tenant.objects.get().name == "Acme Corp"
    invoices = job("acme", "invoices")
    assert invoices.group.name == "billing"
    assert invoices.task == "demo.echo"
    assert invoices.kwargs == {"n": 1}
    assert invoices.trigger == {
        "type": "cron",
        "expression": "0 2 L * *",
        "dialect": "crontab",
        "timezone": "Europe/Berlin",
    }
    assert invoices.describe_trigger() == ("At 02:00 on the last day of the month (Europe/Berlin)")
    assert (invoices.misfire_policy, invoices.misfire_grace_seconds) == ("coalesce", 600)
    assert (
        invoices.retry_max_attempts,
        invoices.retry_backoff_seconds,
        invoices.retry_backoff_factor,
        invoices.retry_max_backoff_seconds,
    ) == (3, 30, 2, 600)
    edge = JobDependency.objects.get()
    assert (edge.upstream, edge.downstream, edge.condition) == (job("acme", "extract"), invoices, "success")
    assert edge.tenant == invoices.tenant
    extract = job("acme", "extract")
    assert extract.group.name == "etl" and extract.kwargs == {"seconds": 1}


def test_sample_document_as_yaml_imports(tmp_path):
    path = write(tmp_path, sample(), "jobs.yaml")
    out = import_file(path)
    assert out.splitlines()[-1] == f"Imported {path}: {summary(t=(1,), g=(2,), j=(2,))}."
    assert job("acme", "invoices").trigger["expression"] == "0 2 L * *"


def test_demo_project_sample_file_imports():
    out = import_file(DEMO_FILE)
    assert out.splitlines()[-1] == (f"Imported {DEMO_FILE}: {summary(t=(2,), g=(3,), c=(1,), j=(8,))}.")
    assert Job.objects.count() == 8
    assert job("acme", "invoices").calendars.get().name == "holidays"
    assert list(job("acme", "load").upstream_edges.values_list("upstream__name", flat=True)) == ["transform"]
    assert job("globex", "crunch").trigger["dialect"] == "quartz"


def test_import_is_idempotent(tmp_path):
    path = write(tmp_path, sample())
    import_file(path)
    before = db_state()
    exported = export("--include-secrets")
    out = import_file(path)
    assert out.splitlines() == [
        f"Imported {path}: {summary(t=(0, 0, 1), g=(0, 0, 2), j=(0, 0, 2))}.",
    ]
    assert db_state() == before  # updated_at included
    assert export("--include-secrets") == exported


def test_reimport_reports_what_changed(tmp_path):
    import_file(write(tmp_path, sample()))
    untouched = job("acme", "extract").updated_at
    doc = sample()
    doc["jobs"][1]["kwargs"] = {"n": 2}
    doc["jobs"][1]["priority"] = 7
    doc["jobs"][1]["depends_on"] = []
    doc["groups"][0]["description"] = "Money"
    path = write(tmp_path, doc)
    out = import_file(path)
    assert out.splitlines() == [
        "change group acme/billing (description)",
        "change job acme/invoices (kwargs, priority, depends_on)",
        f"Imported {path}: {summary(t=(0, 0, 1), g=(0, 1, 1), j=(0, 1, 1))}.",
    ]
    invoices = job("acme", "invoices")
    assert (invoices.kwargs, invoices.priority) == ({"n": 2}, 7)
    assert not JobDependency.objects.exists()
    assert JobGroup.objects.get(name="billing").description == "Money"
    assert job("acme", "extract").updated_at == untouched


def test_fields_left_out_keep_their_value(tmp_path):
    import_file(write(tmp_path, sample()))
    extract = job("acme", "extract")
    services.pause_jobs([extract])
    Job.objects.filter(pk=extract.pk).update(priority=9, description="kept")
    closures = Calendar.objects.create(tenant=extract.tenant, name="closures")
    extract.calendars.add(closures)
    doc = sample()
    doc["jobs"][0] = {"tenant": "acme", "name": "extract", "kwargs": {"seconds": 3}}
    out = import_file(write(tmp_path, doc))
    assert out.splitlines()[0] == "change job acme/extract (kwargs)"
    extract = job("acme", "extract")
    assert (extract.kwargs, extract.task, extract.group.name) == ({"seconds": 3}, "demo.sleep", "etl")
    assert (extract.paused, extract.priority, extract.description) == (True, 9, "kept")
    assert extract.trigger["expression"] == "30 1 * * *"
    assert list(extract.calendars.all()) == [closures]
    # ... while an explicit value clears them.
    doc["jobs"][0].update(group=None, calendars=[])
    out = import_file(write(tmp_path, doc))
    assert out.splitlines()[0] == "change job acme/extract (calendars, group)"
    extract = job("acme", "extract")
    assert extract.group is None and not extract.calendars.exists()


def test_new_job_gets_the_defaults(tmp_path):
    doc = sample()
    doc["jobs"].append({"tenant": "acme", "name": "minimal", "task": "demo.noop"})
    import_file(write(tmp_path, doc))
    minimal = job("acme", "minimal")
    assert minimal.trigger == {"type": "manual"}
    assert (minimal.enabled, minimal.paused, minimal.priority, minimal.executor) == (True, False, 0, "thread")
    assert (minimal.retry_max_attempts, minimal.misfire_policy, minimal.group) == (1, "coalesce", None)


def test_readme_error_example(tmp_path):
    doc = sample()
    doc["jobs"].insert(0, {"tenant": "acme", "name": "first", "task": "demo.noop"})
    doc["jobs"][2]["trigger"]["expression"] = "0 2 32 * *"
    path = write(tmp_path, doc)
    assert refused(path) == (
        f"{path}: jobs[2] (acme/invoices): trigger.expression: field 3 (day of month): "
        "'32' is outside 1-31; nothing was changed"
    )


def test_dependency_only_change_is_reported(tmp_path):
    doc = sample()
    doc["jobs"][1]["depends_on"] = []
    import_file(write(tmp_path, doc))
    path = write(tmp_path, sample())
    out = import_file(path)
    assert out.splitlines() == [
        "change job acme/invoices (depends_on)",
        f"Imported {path}: {summary(t=(0, 0, 1), g=(0, 0, 2), j=(0, 1, 1))}.",
    ]
    assert JobDependency.objects.get().upstream == job("acme", "extract")


def test_import_sends_job_changed_after_commit(tmp_path, django_capture_on_commit_callbacks):
    seen = []

    def listener(sender, job, created, **kwargs):
        seen.append((job.name, created))

    signals.job_changed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            import_file(write(tmp_path, sample()))
    finally:
        signals.job_changed.disconnect(listener)
    assert sorted(seen) == [("extract", True), ("invoices", True)]


# -- round trip -------------------------------------------------------------------------


@pytest.fixture
def rich_configuration(tmp_path):
    """Everything a jobs file can hold: calendars, combined and quartz triggers, dates
    with zones, secrets, limits, routing, dependencies with conditions."""
    import_file(DEMO_FILE)
    acme = Tenant.objects.get(slug="acme")
    services.save_job(
        Job(
            tenant=acme,
            name="one-off",
            task="demo.echo",
            args=[],
            kwargs={"to": "ops"},
            secret_kwargs={"token": "s3cr3t"},
            trigger={"type": "date", "run_at": "2026-12-01T09:00:00", "timezone": "Europe/Berlin"},
            enabled=False,
            paused=True,
            priority=-3,
            executor="process",
            max_instances=2,
            overlap_policy="queue",
            misfire_policy="run_all",
            misfire_grace_seconds=5,
            timeout_seconds=12.5,
            cpu_limit_seconds=3.0,
            memory_limit_mb=256,
            routing="tags",
            routing_tags=["gpu", "eu"],
            description="Ünïcode: déjà vu, 'quotes' and yes/no: on",
        ),
        calendars=[Calendar.objects.get(name="holidays")],
    )
    services.save_job(
        Job(
            tenant=acme,
            name="windowed",
            task="demo.sleep",
            args=[2],
            trigger={
                "type": "interval",
                "seconds": 90,
                "start": "2026-01-01T00:00:00+00:00",
                "end": "2027-01-01T00:00:00",
                "jitter": 5,
                "timezone": "Asia/Tokyo",
            },
        ),
    )
    services.add_dependency(job("acme", "one-off"), job("acme", "windowed"), "failure")
    services.add_dependency(job("acme", "extract"), job("acme", "windowed"), "completion")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_into_empty_database(tmp_path, rich_configuration, fmt):
    first = export("--include-secrets", "--format", fmt)
    path = write(tmp_path, first, f"export.{fmt}")
    flush()
    out = import_file(path)
    assert out.splitlines()[-1] == (f"Imported {path}: {summary(t=(2,), g=(3,), c=(1,), j=(10,))}.")
    assert export("--include-secrets", "--format", fmt) == first
    assert job("acme", "one-off").reveal_secret_kwargs() == {"token": "s3cr3t"}
    # The file is a faithful document, not just stable text.
    loaded = jobsfile.load_document(path)
    assert loaded == jobsfile.export_document(include_secrets=True)


def test_export_to_file_picks_format_from_suffix(tmp_path, rich_configuration):
    err = io.StringIO()
    target = tmp_path / "jobs.yml"
    call_command("exportjobs", "-o", str(target), stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == f"Exported 10 job(s) to {target}.\n"
    assert yaml.safe_load(target.read_text()) == jobsfile.export_document()
    assert json.loads(export()) == jobsfile.export_document()


def test_export_document_shape(tmp_path):
    import_file(write(tmp_path, sample()))
    doc = json.loads(export())
    assert doc["version"] == 1
    assert doc["tenants"] == [{"slug": "acme", "name": "Acme Corp"}]
    invoices = doc["jobs"][1]
    assert invoices == {
        "tenant": "acme",
        "name": "invoices",
        "description": "",
        "group": "billing",
        "task": "demo.echo",
        "args": [],
        "kwargs": {"n": 1},
        "trigger": {
            "type": "cron",
            "expression": "0 2 L * *",
            "dialect": "crontab",
            "timezone": "Europe/Berlin",
        },
        "calendars": [],
        "enabled": True,
        "paused": False,
        "priority": 0,
        "executor": "thread",
        "max_instances": 1,
        "overlap_policy": "skip",
        "misfire": {"policy": "coalesce", "grace_seconds": 600},
        "retry": {
            "max_attempts": 3,
            "backoff_seconds": 30.0,
            "backoff_factor": 2.0,
            "max_backoff_seconds": 600.0,
        },
        "timeout_seconds": None,
        "limits": {"cpu_seconds": None, "memory_mb": None},
        "routing": {"mode": "any", "tags": []},
        "pause_after_failures": None,
        "rate_limit": "",
        "concurrency_key": "",
        "concurrency_limit": None,
        "throttle_policy": "wait",
        "load": {"policy": "run", "max_delay_seconds": 300},
        "trigger_rule": "all_success",
        "upstream_param": "",
        "depends_on": [{"job": "extract", "condition": "success"}],
    }


def test_calendars_in_any_order_are_the_same_calendars(tmp_path):
    doc = sample()
    doc["calendars"] = [
        {"tenant": "acme", "name": "zeta"},
        {"tenant": "acme", "name": "alpha"},
        {"tenant": "acme", "name": "mid"},
    ]
    doc["jobs"][1]["calendars"] = ["zeta", "alpha", "mid"]
    path = write(tmp_path, doc)
    import_file(path)
    assert json.loads(export())["jobs"][1]["calendars"] == ["alpha", "mid", "zeta"]
    assert import_file(path).splitlines() == [
        f"Imported {path}: {summary(t=(0, 0, 1), g=(0, 0, 2), c=(0, 0, 3), j=(0, 0, 2))}.",
    ]


# -- atomicity --------------------------------------------------------------------------


def test_bad_third_job_changes_nothing(tmp_path):
    doc = sample()
    doc["jobs"].append(
        {
            "tenant": "acme",
            "name": "reminders",
            "task": "demo.sleep",
            "kwargs": {},
            "trigger": {"type": "manual"},
        }
    )
    path = write(tmp_path, doc)
    message = refused(path)
    assert message == (
        f"{path}: jobs[2] (acme/reminders): kwargs: task demo.sleep is missing required "
        "argument 'seconds'; nothing was changed"
    )
    assert not Job.objects.filter(name__in=["extract", "invoices"]).exists()
    assert all(not rows for rows in db_state().values())


def test_bad_job_rolls_back_changes_to_existing_rows(tmp_path):
    import_file(write(tmp_path, sample()))
    before = db_state()
    doc = sample()
    doc["tenants"].append({"slug": "initech", "name": "Initech"})
    doc["groups"][0]["description"] = "changed"
    doc["groups"].append({"tenant": "acme", "name": "new-group"})
    doc["jobs"][0]["kwargs"] = {"seconds": 5}
    doc["jobs"][1]["depends_on"] = []
    doc["jobs"].append({"tenant": "acme", "name": "new-job", "task": "demo.noop"})
    doc["jobs"].append({"tenant": "acme", "name": "broken", "task": "demo.noop", "args": [1]})
    path = write(tmp_path, doc)
    assert refused(path, "--prune") == (
        f"{path}: jobs[3] (acme/broken): args: task demo.noop takes 0 positional "
        "argument(s) but 1 were given; nothing was changed"
    )
    assert db_state() == before


def _without_group(doc):
    doc["jobs"][1]["group"] = "marketing"
    return doc


BAD_DOCUMENTS = {
    "unknown-top-level": (
        lambda d: d.update(schedules=[]),
        "schedules: unknown top-level field",
    ),
    "unknown-job-field": (
        lambda d: d["jobs"][1].update(cron="0 2 L * *"),
        "jobs[1] (acme/invoices): cron: unknown field",
    ),
    "unknown-nested-field": (
        lambda d: d["jobs"][1]["retry"].update(attempts=3),
        "jobs[1] (acme/invoices): retry.attempts: unknown field",
    ),
    "newer-version": (
        lambda d: d.update(version=2),
        "version: the file is format version 2, newer than this release understands (1); "
        "upgrade scheduler_app to import it",
    ),
    "missing-version": (
        lambda d: d.pop("version"),
        "version: required, a whole number (this release writes 1)",
    ),
    "unknown-task": (
        lambda d: d["jobs"][1].update(task="billing.send_invoices"),
        None,  # built in the test: lists the registered tasks
    ),
    "kwargs-missing": (
        lambda d: d["jobs"][0].update(kwargs={}),
        "jobs[0] (acme/extract): kwargs: task demo.sleep is missing required argument 'seconds'",
    ),
    "kwargs-unexpected": (
        lambda d: d["jobs"][0].update(kwargs={"seconds": 1, "verbose": True}),
        "jobs[0] (acme/extract): kwargs: task demo.sleep has no argument 'verbose'",
    ),
    "too-many-args": (
        lambda d: d["jobs"][0].update(args=[1, 2]),
        "jobs[0] (acme/extract): args: task demo.sleep takes 1 positional argument(s) but 2 were given",
    ),
    "args-not-a-list": (
        lambda d: d["jobs"][0].update(args="1"),
        "jobs[0] (acme/extract): args: args must be a list",
    ),
    "invalid-time-zone": (
        lambda d: d["jobs"][1]["trigger"].update(timezone="Europe/Atlantis"),
        "jobs[1] (acme/invoices): trigger.timezone: unknown time zone 'Europe/Atlantis'",
    ),
    "bad-cron-expression": (
        lambda d: d["jobs"][1]["trigger"].update(expression="0 25 L * *"),
        "jobs[1] (acme/invoices): trigger.expression: field 2 (hour): '25' is outside 0-23",
    ),
    "bad-retry-value": (
        lambda d: d["jobs"][1]["retry"].update(max_attempts=0),
        "jobs[1] (acme/invoices): retry.max_attempts: Ensure this value is greater than or equal to 1.",
    ),
    "cycle-with-existing-edge": (
        # invoices already depends on extract (in the database and in the file)
        lambda d: d["jobs"][0].update(depends_on=[{"job": "invoices"}]),
        "jobs[0] (acme/extract): depends_on: This dependency would create a cycle: "
        "invoices → extract → invoices.",
    ),
    "self-dependency": (
        lambda d: d["jobs"][0].update(depends_on=[{"job": "extract"}]),
        "jobs[0] (acme/extract): depends_on: A job cannot depend on itself.",
    ),
    "dependency-on-other-tenant": (
        lambda d: d["jobs"][1].update(depends_on=[{"job": "crunch"}]),
        "jobs[1] (acme/invoices): depends_on[0]: job: unknown job 'crunch' in tenant acme",
    ),
    "dependency-on-unknown-job": (
        lambda d: d["jobs"][1].update(depends_on=[{"job": "extrakt"}]),
        "jobs[1] (acme/invoices): depends_on[0]: job: unknown job 'extrakt' in tenant acme",
    ),
    "bad-dependency-condition": (
        lambda d: d["jobs"][1].update(depends_on=[{"job": "extract", "condition": "maybe"}]),
        "jobs[1] (acme/invoices): depends_on: condition: Value 'maybe' is not a valid choice.",
    ),
    "duplicate-job-name": (
        lambda d: d["jobs"].append(copy.deepcopy(d["jobs"][0])),
        "jobs[2] (acme/extract): name: job 'extract' appears twice in tenant acme",
    ),
    "unknown-group": (
        _without_group,
        "jobs[1] (acme/invoices): group: unknown group 'marketing' in tenant acme",
    ),
    "group-not-a-name": (
        lambda d: d["jobs"][1].update(group=["billing"]),
        "jobs[1] (acme/invoices): group: unknown group ['billing'] in tenant acme",
    ),
    "group-of-other-tenant": (
        lambda d: d["jobs"][1].update(group="ops"),
        "jobs[1] (acme/invoices): group: unknown group 'ops' in tenant acme",
    ),
    "unknown-tenant": (
        lambda d: d["jobs"][1].update(tenant="initech"),
        "jobs[1] (initech/invoices): tenant: unknown tenant 'initech' (add it to 'tenants')",
    ),
    "unknown-calendar": (
        lambda d: d["jobs"][1].update(calendars=["holidays"]),
        "jobs[1] (acme/invoices): calendars: unknown calendar 'holidays'",
    ),
    "bad-tenant-slug": (
        lambda d: d["tenants"].append({"slug": "Initech Inc", "name": "Initech"}),
        "tenants[1] (Initech Inc): slug: Enter a valid “slug” consisting of letters, "
        "numbers, underscores or hyphens.",
    ),
    "job-without-name": (
        lambda d: d["jobs"][1].pop("name"),
        "jobs[1]: name: required, a non-empty string",
    ),
}


#: Known bugs outside the jobs file code; strict, so the fix makes these fail as a reminder.
KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.xfail(reason=KNOWN_BUGS[case], strict=True))
        if case in KNOWN_BUGS
        else case
        for case in BAD_DOCUMENTS
    ],
)
def test_bad_document_is_refused_and_changes_nothing(tmp_path, case):
    # An existing configuration, including a job of another tenant that the file must
    # not be able to reach.
    import_file(write(tmp_path, sample(), "base.json"))
    globex = Tenant.objects.create(slug="globex", name="Globex")
    JobGroup.objects.create(tenant=globex, name="ops")
    services.save_job(Job(tenant=globex, name="crunch", task="demo.noop"))
    before = db_state()
    mutate, expected = BAD_DOCUMENTS[case]
    doc = sample()
    # Earlier valid changes in the same file that must be rolled back as well.
    doc["groups"][1]["description"] = "changed"
    doc["groups"].append({"tenant": "acme", "name": "reports"})
    mutate(doc)
    if expected is None:
        expected = (
            "jobs[1] (acme/invoices): task: task 'billing.send_invoices' is not registered; "
            f"registered tasks: {', '.join(registry.names())}"
        )
    path = write(tmp_path, doc)
    message = refused(path)
    assert db_state() == before
    # The library function reports the same message without the file name.
    with pytest.raises(jobsfile.JobsFileError) as info:
        jobsfile.import_document(doc)
    assert db_state() == before
    assert message == f"{path}: {str(info.value)}; nothing was changed"
    assert str(info.value) == expected


def test_cycle_made_by_the_file_alone(tmp_path):
    doc = sample()
    doc["jobs"][0]["depends_on"] = [{"job": "invoices", "condition": "completion"}]
    path = write(tmp_path, doc)
    assert refused(path) == (
        f"{path}: jobs[1] (acme/invoices): depends_on: This dependency would create a "
        "cycle: extract → invoices → extract.; nothing was changed"
    )
    assert all(not rows for rows in db_state().values())


def test_longer_cycle_is_named(tmp_path):
    doc = sample()
    doc["jobs"].append(
        {"tenant": "acme", "name": "notify", "task": "demo.noop", "depends_on": [{"job": "invoices"}]}
    )
    doc["jobs"][0]["depends_on"] = [{"job": "notify"}]
    path = write(tmp_path, doc)
    assert refused(path) == (
        f"{path}: jobs[2] (acme/notify): depends_on: This dependency would create a "
        "cycle: invoices → notify → extract → invoices.; nothing was changed"
    )
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "jobs.json",
            '{"version": 1,\n  "jobs": [\n    {"tenant": "acme",}\n  ]\n}',
            "{path} is not valid JSON: Expecting property name enclosed in double quotes at line 3 column 23",
        ),
        ("jobs.json", "", "{path} is not valid JSON: Expecting value at line 1 column 1"),
        ("jobs.json", "[1, 2]", "{path}: the document must be an object with a 'version'"),
        ("jobs.yaml", "- 1\n- 2\n", "{path}: the document must be an object with a 'version'"),
    ],
    ids=["bad-json", "empty-json", "json-list", "yaml-list"],
)
def test_unparsable_file_is_refused(tmp_path, name, text, expected):
    import_file(write(tmp_path, sample(), "base.json"))
    before = db_state()
    path = write(tmp_path, text, name)
    expected = expected.format(path=path)
    assert refused(path) == f"{path}: {expected}; nothing was changed"
    assert db_state() == before


def test_bad_yaml_message_has_line_and_column(tmp_path):
    import_file(write(tmp_path, sample(), "base.json"))
    before = db_state()
    path = write(tmp_path, "version: 1\njobs:\n  - name: [x\n", "jobs.yaml")
    message = refused(path)
    assert db_state() == before
    assert message.startswith(f"{path}: {path} is not valid YAML: ")
    assert "is not valid YAML" in message and "line 4, column 1" in message


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "nope.json"
    assert refused(path) == (f"{path}: cannot read {path}: No such file or directory; nothing was changed")


# -- dry run and prune ------------------------------------------------------------------


@pytest.fixture
def existing(tmp_path):
    """acme: extract, invoices (from the sample) and stale; globex: crunch."""
    import_file(write(tmp_path, sample(), "base.json"))
    acme = Tenant.objects.get(slug="acme")
    services.save_job(Job(tenant=acme, name="stale", task="demo.noop"))
    globex = Tenant.objects.create(slug="globex", name="Globex")
    services.save_job(Job(tenant=globex, name="crunch", task="demo.noop"))


def changed_document():
    doc = sample()
    doc["jobs"][1]["kwargs"] = {"n": 2}
    doc["jobs"].append({"tenant": "acme", "name": "fresh", "task": "demo.noop"})
    return doc


def test_dry_run_prints_and_changes_nothing(tmp_path, existing, django_capture_on_commit_callbacks):
    before = db_state()
    path = write(tmp_path, changed_document())
    with django_capture_on_commit_callbacks() as callbacks:
        out = import_file(path, "--dry-run", "--prune")
    assert out.splitlines() == [
        "would create job acme/fresh",
        "would change job acme/invoices (kwargs)",
        "would delete job acme/stale",
        f"Dry run: {summary(t=(0, 0, 1), g=(0, 0, 2), j=(1, 1, 1, 1))}; nothing was changed.",
    ]
    assert db_state() == before
    assert callbacks == []  # the scheduler is not told about changes that did not happen


def test_dry_run_without_prune_deletes_nothing(tmp_path, existing):
    before = db_state()
    out = import_file(write(tmp_path, changed_document()), "--dry-run")
    assert out.splitlines() == [
        "would create job acme/fresh",
        "would change job acme/invoices (kwargs)",
        f"Dry run: {summary(t=(0, 0, 1), g=(0, 0, 2), j=(1, 1, 1))}; nothing was changed.",
    ]
    assert db_state() == before


def test_dry_run_of_bad_file_reports_the_error(tmp_path, existing):
    before = db_state()
    doc = changed_document()
    doc["jobs"][2]["task"] = "demo.sleep"
    path = write(tmp_path, doc)
    assert refused(path, "--dry-run") == (
        f"{path}: jobs[2] (acme/fresh): kwargs: task demo.sleep is missing required "
        "argument 'seconds'; nothing was changed"
    )
    assert db_state() == before


def test_prune_deletes_absent_jobs_of_the_files_tenants_only(tmp_path, existing):
    stale = job("acme", "stale")
    services.run_jobs_now([stale])
    path = write(tmp_path, changed_document())
    out = import_file(path, "--prune")
    assert out.splitlines() == [
        "create job acme/fresh",
        "change job acme/invoices (kwargs)",
        "delete job acme/stale",
        f"Imported {path}: {summary(t=(0, 0, 1), g=(0, 0, 2), j=(1, 1, 1, 1))}.",
    ]
    assert sorted(Job.objects.values_list("tenant__slug", "name")) == [
        ("acme", "extract"),
        ("acme", "fresh"),
        ("acme", "invoices"),
        ("globex", "crunch"),
    ]
    assert not JobRun.objects.exists()


def test_without_prune_absent_jobs_stay(tmp_path, existing):
    import_file(write(tmp_path, changed_document()))
    assert Job.objects.filter(name="stale").exists()


def test_import_document_function_reports(existing):
    report = jobsfile.import_document(changed_document(), dry_run=True, prune=True)
    assert report.created == ["job acme/fresh"]
    assert report.changed == ["job acme/invoices (kwargs)"]
    assert report.deleted == ["job acme/stale"]
    assert report.unchanged == ["tenant acme", "group acme/billing", "group acme/etl", "job acme/extract"]
    assert report.counts()["job"] == {"created": 1, "changed": 1, "unchanged": 1, "deleted": 1}
    assert report.counts()["calendar"] == {"created": 0, "changed": 0, "unchanged": 0, "deleted": 0}
    assert report.has_changes
    assert not Job.objects.filter(name="fresh").exists()
    applied = jobsfile.import_document(changed_document())
    assert (applied.created, applied.changed, applied.deleted) == (
        ["job acme/fresh"],
        ["job acme/invoices (kwargs)"],
        [],
    )
    assert Job.objects.filter(name="fresh").exists()
    again = jobsfile.import_document(changed_document())
    assert not again.has_changes
    assert [u for u in again.unchanged if u.startswith("job ")] == [
        "job acme/extract",
        "job acme/invoices",
        "job acme/fresh",
    ]
    assert again.counts()["tenant"]["unchanged"] == 1 and again.counts()["group"]["unchanged"] == 2


# -- secrets ----------------------------------------------------------------------------


@pytest.fixture
def secret_job(tmp_path):
    doc = sample()
    doc["jobs"][1]["secret_kwargs"] = {"api_token": "s3cr3t"}
    import_file(write(tmp_path, doc, "with-secret.json"))
    assert job("acme", "invoices").reveal_secret_kwargs() == {"api_token": "s3cr3t"}


def test_export_omits_secrets_by_default(secret_job):
    text = export()
    assert "s3cr3t" not in text
    assert all("secret_kwargs" not in j for j in json.loads(text)["jobs"])
    assert "s3cr3t" not in export("--format", "yaml")


def test_export_includes_secrets_encrypted_when_asked(secret_job):
    from scheduler_app import crypto

    text = export("--include-secrets")
    assert "s3cr3t" not in text
    jobs = {j["name"]: j for j in json.loads(text)["jobs"]}
    assert crypto.decrypt(jobs["invoices"]["secret_kwargs_encrypted"]) == {"api_token": "s3cr3t"}
    assert "secret_kwargs_encrypted" not in jobs["extract"]


def test_import_without_secrets_keeps_existing_secrets(tmp_path, secret_job):
    before = db_state()
    path = write(tmp_path, export())  # what a repository would hold: no secrets
    out = import_file(path)
    assert out.splitlines() == [f"Imported {path}: {summary(t=(0, 0, 1), g=(0, 0, 2), j=(0, 0, 2))}."]
    assert db_state() == before
    assert job("acme", "invoices").reveal_secret_kwargs() == {"api_token": "s3cr3t"}
    # ... also when the same import changes something else about the job.
    doc = json.loads(export())
    doc["jobs"][1]["priority"] = 3
    out = import_file(write(tmp_path, doc))
    assert out.splitlines()[0] == "change job acme/invoices (priority)"
    assert job("acme", "invoices").reveal_secret_kwargs() == {"api_token": "s3cr3t"}


def test_import_with_secrets_replaces_them(tmp_path, secret_job):
    doc = sample()
    doc["jobs"][1]["secret_kwargs"] = {"api_token": "rotated"}
    out = import_file(write(tmp_path, doc))
    assert out.splitlines()[0] == "change job acme/invoices (secret_kwargs)"
    assert "rotated" not in out
    assert job("acme", "invoices").reveal_secret_kwargs() == {"api_token": "rotated"}


# -- exporting one tenant ---------------------------------------------------------------


def test_export_one_tenant(rich_configuration):
    doc = json.loads(export("--tenant", "globex"))
    assert doc["tenants"] == [{"slug": "globex", "name": "Globex"}]
    assert [g["name"] for g in doc["groups"]] == ["ops"]
    assert doc["calendars"] == []
    assert [(j["tenant"], j["name"]) for j in doc["jobs"]] == [
        ("globex", "crunch"),
        ("globex", "quarterly-close"),
    ]
    acme = json.loads(export("--tenant", "acme"))
    assert {j["tenant"] for j in acme["jobs"]} == {"acme"}
    assert len(acme["jobs"]) == 8


def test_export_unknown_tenant(rich_configuration):
    with pytest.raises(CommandError) as info:
        export("--tenant", "initech")
    assert str(info.value) == "tenant: unknown tenant 'initech'"


def test_export_of_one_tenant_imports_without_touching_others(tmp_path, rich_configuration):
    text = export("--tenant", "globex", "--include-secrets")
    acme_jobs = list(Job.objects.filter(tenant__slug="acme").order_by("pk").values())
    acme_edges = list(JobDependency.objects.filter(tenant__slug="acme").order_by("pk").values())
    services.delete_jobs(list(Job.objects.filter(tenant__slug="globex")))
    out = import_file(write(tmp_path, text), "--prune")
    assert out.splitlines()[-1].endswith(f": {summary(t=(0, 0, 1), g=(0, 0, 1), j=(2,))}.")
    assert export("--tenant", "globex", "--include-secrets") == text
    assert list(Job.objects.filter(tenant__slug="acme").order_by("pk").values()) == acme_jobs
    assert list(JobDependency.objects.filter(tenant__slug="acme").order_by("pk").values()) == acme_edges


# -- telling the scheduler --------------------------------------------------------------


def job_changed_names(callbacks_fixture, action):
    seen = []

    def listener(sender, job, **kwargs):
        seen.append(job.name)

    signals.job_changed.connect(listener)
    try:
        with callbacks_fixture(execute=True):
            action()
    finally:
        signals.job_changed.disconnect(listener)
    return sorted(seen)


def test_dependency_change_notifies_the_downstream_job(tmp_path, django_capture_on_commit_callbacks):
    doc = sample()
    doc["jobs"][1]["depends_on"] = []
    import_file(write(tmp_path, doc))
    path = write(tmp_path, sample())
    names = job_changed_names(django_capture_on_commit_callbacks, lambda: import_file(path))
    assert names == ["invoices"]


def test_calendar_change_notifies_the_jobs_that_use_it(tmp_path, django_capture_on_commit_callbacks):
    doc = sample()
    doc["calendars"] = [{"tenant": "acme", "name": "holidays", "dates": ["2026-12-25"]}]
    doc["jobs"][1]["calendars"] = ["holidays"]
    import_file(write(tmp_path, doc))
    doc["calendars"][0]["dates"].append("2026-12-31")
    path = write(tmp_path, doc)
    names = job_changed_names(django_capture_on_commit_callbacks, lambda: import_file(path))
    assert names == ["invoices"]
    assert job("acme", "invoices").excluded_dates() == [dt.date(2026, 12, 25), dt.date(2026, 12, 31)]


def test_unchanged_import_notifies_nobody(tmp_path, django_capture_on_commit_callbacks):
    doc = sample()
    doc["calendars"] = [{"tenant": "acme", "name": "holidays", "dates": ["2026-12-25"]}]
    doc["jobs"][1]["calendars"] = ["holidays"]
    path = write(tmp_path, doc)
    import_file(path)
    assert job_changed_names(django_capture_on_commit_callbacks, lambda: import_file(path)) == []


def test_prune_refuses_a_dependency_on_a_job_it_would_delete(tmp_path, existing):
    before = db_state()
    doc = sample()
    doc["jobs"][1]["depends_on"] = [{"job": "stale"}]
    path = write(tmp_path, doc)
    assert refused(path, "--prune") == (
        f"{path}: jobs[1] (acme/invoices): depends_on[0]: job: 'stale' is not in the file, "
        "so --prune would delete it; nothing was changed"
    )
    assert db_state() == before
    # Without --prune the job outside the file is a valid upstream.
    import_file(path)
    assert job("acme", "invoices").upstream_edges.get().upstream.name == "stale"
