"""backup / restore: one JSON document with the whole configuration (and optionally the
run history), restored all or nothing into an empty database or over the current one."""

import datetime as dt
import io
import json
import stat

import pytest
from auditlog.models import LogEntry
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from guardian.models import GroupObjectPermission, UserObjectPermission

from scheduler_app import services
from scheduler_app.interchange import backup
from scheduler_app.models import (
    Calendar,
    CalendarDate,
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    JobVersion,
    Membership,
    Tenant,
)
from scheduler_app.services import permissions

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)


# -- helpers ----------------------------------------------------------------------------


def run_backup(path, *options):
    out, err = io.StringIO(), io.StringIO()
    call_command("backup", "-o", str(path), *options, stdout=out, stderr=err, no_color=True)
    return out.getvalue(), err.getvalue()


def run_restore(path, *options):
    out, err = io.StringIO(), io.StringIO()
    call_command("restore", str(path), *options, stdout=out, stderr=err, no_color=True)
    return out.getvalue(), err.getvalue()


def refused(path, *options):
    with pytest.raises(CommandError) as info:
        run_restore(path, *options)
    assert info.value.returncode != 0
    message = str(info.value)
    assert message.startswith(f"{path}: ") and message.endswith("; nothing was changed")
    return message


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def write(path, doc):
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def without_created_at(doc):
    return {k: v for k, v in doc.items() if k != "created_at"}


def db_state():
    """Every row a restore could touch, to prove that nothing changed."""
    models = (
        Tenant,
        Membership,
        JobGroup,
        Calendar,
        CalendarDate,
        Job,
        JobDependency,
        JobVersion,
        JobRun,
        ConfigVersion,
        UserObjectPermission,
        GroupObjectPermission,
        Group,
        get_user_model(),
    )
    state = {m.__name__: list(m.objects.order_by("pk").values()) for m in models}
    state["job_calendars"] = list(Job.calendars.through.objects.order_by("pk").values())
    state["user_groups"] = list(get_user_model().groups.through.objects.order_by("pk").values())
    return state


def job(tenant, name):
    return Job.objects.get(tenant__slug=tenant, name=name)


@pytest.fixture
def configuration():
    """Users in Django groups, two tenants with memberships, job groups, a calendar,
    jobs (one with secrets and every optional field), a dependency, versions by
    different authors, user and group object permissions, and runs linked by a
    dependency."""
    User = get_user_model()
    ops = Group.objects.create(name="ops")
    Group.objects.create(name="unrelated")
    alice = User.objects.create_user(
        "alice",
        "alice@example.com",
        "pw-alice",
        first_name="Alice",
        last_name="Adams",
        is_staff=True,
    )
    alice.groups.add(ops)
    bob = User.objects.create_user("bob", "bob@example.com", "pw-bob")
    carol = User.objects.create_user("carol", "carol@example.com", "pw-carol")
    User.objects.create_user("mallory", "m@example.com", "pw-m")  # referenced by nothing
    User.objects.create_superuser("root", "root@example.com", "pw-root")

    acme = Tenant.objects.create(slug="acme", name="Acme Corp")
    globex = Tenant.objects.create(slug="globex", name="Globex")
    Membership.objects.create(tenant=acme, user=alice, role="editor")
    Membership.objects.create(tenant=acme, user=bob, role="viewer")
    Membership.objects.create(tenant=globex, user=carol, role="admin")
    billing = JobGroup.objects.create(tenant=acme, name="billing", description="Invoices")
    etl = JobGroup.objects.create(tenant=acme, name="etl")
    holidays = Calendar.objects.create(tenant=acme, name="holidays", description="Closed")
    CalendarDate.objects.create(calendar=holidays, date=dt.date(2026, 12, 25), label="Christmas")
    CalendarDate.objects.create(calendar=holidays, date=dt.date(2027, 1, 1))

    extract = services.save_job(
        Job(
            tenant=acme,
            name="extract",
            group=etl,
            task="demo.sleep",
            kwargs={"seconds": 1},
            trigger={"type": "cron", "expression": "30 1 * * *", "timezone": "Europe/Berlin"},
        ),
        actor=alice,
    )
    invoices = services.save_job(
        Job(
            tenant=acme,
            name="invoices",
            group=billing,
            task="demo.echo",
            kwargs={"n": 1},
            secret_kwargs={"api_token": "s3cr3t"},
            description="Ünïcode 'quoted'",
            trigger={"type": "cron", "expression": "0 2 L * *", "timezone": "Europe/Berlin"},
            paused=True,
            priority=5,
            executor="process",
            max_instances=2,
            overlap_policy="queue",
            misfire_policy="run_all",
            misfire_grace_seconds=600,
            retry_max_attempts=3,
            retry_backoff_seconds=30,
            retry_backoff_factor=1.5,
            retry_max_backoff_seconds=600,
            timeout_seconds=12.5,
            cpu_limit_seconds=3.0,
            memory_limit_mb=256,
            routing="tags",
            routing_tags=["eu", "gpu"],
        ),
        calendars=[holidays],
    )
    crunch = services.save_job(
        Job(
            tenant=globex,
            name="crunch",
            task="demo.noop",
            trigger={"type": "manual"},
            enabled=False,
        )
    )
    services.add_dependency(extract, invoices, "completion")
    crunch.priority = 2
    services.save_job(crunch, actor=carol, summary="more urgent")  # version 2, by carol
    User.objects.filter(pk=carol.pk).update(is_active=False)  # left since
    services.set_object_permissions(invoices, bob, ["change", "run"])
    services.set_object_permissions(billing, ops, ["run", "pause"])

    first = services.enqueue_run(extract, scheduled_for=T0)
    JobRun.objects.filter(pk=first.pk).update(
        state="succeeded",
        node="node-a",
        started_at=T0,
        heartbeat_at=T0,
        finished_at=T0 + dt.timedelta(seconds=2),
        duration=2.0,
        result={"rows": [1, 2]},
        is_final=True,
    )
    services.enqueue_run(
        invoices,
        scheduled_for=T0 + dt.timedelta(seconds=3),
        reason="dependency",
        triggered_by=first,
    )
    failed = services.enqueue_run(extract, scheduled_for=T0 + dt.timedelta(days=1))
    JobRun.objects.filter(pk=failed.pk).update(state="failed", error="boom", traceback="Trace…")
    services.enqueue_run(
        extract,
        scheduled_for=T0 + dt.timedelta(days=1),
        attempt=2,
        reason="retry",
        kwargs_override={"seconds": 0},
    )
    return {"acme": acme, "globex": globex, "invoices": invoices, "billing": billing}


# -- round trip -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the backup takes its own snapshot transaction
def test_round_trip_through_an_empty_database(tmp_path, configuration):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    out, err = run_backup(first, "--with-runs")
    assert out.strip() == (
        f"Backed up 1 auth groups, 3 users, 2 tenants, 3 memberships, 2 groups, 1 calendars, "
        f"3 jobs, 1 dependencies, 5 job versions, 4 object permissions, 0 alert channels, "
        f"0 alert rules, 4 runs, 0 join rounds to {first}."
    )
    assert err == ""  # progress only for large sections
    text = first.read_text(encoding="utf-8")
    assert "s3cr3t" not in text and "md5$" not in text and "pw-" not in text
    assert stat.S_IMODE(first.stat().st_mode) == 0o600

    call_command("flush", interactive=False, verbosity=0)
    User = get_user_model()
    assert not Tenant.objects.exists() and not User.objects.filter(username="alice").exists()

    out, err = run_restore(first)
    assert out.strip() == (
        f"Restored {first}: 1 auth groups, 3 users, 2 tenants, 3 memberships, 2 groups, "
        "1 calendars, 2 calendar dates, 3 jobs, 1 dependencies, 5 job versions, "
        "4 object permissions, 0 alert channels, 0 alert rules, 4 runs, 0 join rounds (3 user(s) and 1 Django group(s) created; new users "
        "have no usable password)."
    )
    assert err == ""
    run_backup(second, "--with-runs")
    assert without_created_at(load(second)) == without_created_at(load(first))
    # Same text too, except the time of the backup (line 4).
    assert text.splitlines()[:3] + text.splitlines()[4:] == (
        second.read_text(encoding="utf-8").splitlines()[:3]
        + second.read_text(encoding="utf-8").splitlines()[4:]
    )

    invoices = job("acme", "invoices")
    assert invoices.reveal_secret_kwargs() == {"api_token": "s3cr3t"}
    assert invoices.secret_kwargs == {"api_token": "••••••"}
    assert invoices.trigger_changed_at == configuration["invoices"].trigger_changed_at
    assert invoices.created_at == configuration["invoices"].created_at
    assert [c.name for c in invoices.calendars.all()] == ["holidays"]
    bob, alice = User.objects.get(username="bob"), User.objects.get(username="alice")
    assert bob.has_perm("scheduler_app.change_job", invoices)
    assert bob.has_perm("scheduler_app.run_job", invoices)
    assert not bob.has_perm("scheduler_app.delete_job", invoices)
    assert not bob.has_perm("scheduler_app.change_job", job("acme", "extract"))
    assert alice.has_perm("scheduler_app.run_jobgroup", invoices.group)
    assert permissions.can(alice, "pause", invoices)  # the group grant reaches the job
    assert not bob.has_usable_password() and not bob.check_password("pw-bob")
    assert (
        alice.email,
        alice.first_name,
        alice.is_staff,
        list(alice.groups.values_list("name", flat=True)),
    ) == ("alice@example.com", "Alice", True, ["ops"])
    assert not User.objects.get(username="carol").is_active
    assert not User.objects.filter(username__in=["mallory", "root"]).exists()
    dependent = JobRun.objects.get(reason="dependency")
    assert dependent.triggered_by.job.name == "extract" and dependent.triggered_by.scheduled_for == T0
    assert ConfigVersion.current() >= 1
    restored = LogEntry.objects.filter(additional_data__operation="restore")
    assert sorted(e.object_repr for e in restored) == ["Acme Corp", "Globex"]
    assert {e.additional_data["source"] for e in restored} == {str(first)}


@pytest.mark.django_db(transaction=True)
def test_backup_is_one_consistent_snapshot(tmp_path, configuration, monkeypatch):
    """A job saved by another connection while the backup is being written (after the
    first rows were read, before the jobs are) is not in it: one snapshot throughout."""
    import threading

    from django.db import connection

    written = []
    user_entry = backup._user_entry

    def slow_user_entry(user):
        if not written:

            def write_job():
                try:
                    services.save_job(
                        Job(tenant=Tenant.objects.get(slug="acme"), name="late", task="demo.noop")
                    )
                    written.append("late")
                finally:
                    connection.close()

            thread = threading.Thread(target=write_job)
            thread.start()
            thread.join(30)
        return user_entry(user)

    monkeypatch.setattr(backup, "_user_entry", slow_user_entry)
    path = tmp_path / "b.json"
    run_backup(path)
    assert written == ["late"] and Job.objects.filter(name="late").exists()
    assert "late" not in [j["name"] for j in load(path)["jobs"]]
    assert len(load(path)["job_versions"]) == 5


def test_backup_content(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    doc = load(path)
    assert list(doc) == [
        "format",
        "version",
        "created_at",
        "with_runs",
        *backup.SECTIONS[:-2],  # no runs, no join rounds
        "counts",
    ]
    assert (doc["format"], doc["version"], doc["with_runs"]) == ("scheduler_app-backup", 1, False)
    assert [u["username"] for u in doc["users"]] == ["alice", "bob", "carol"]  # referenced only
    assert "password" not in doc["users"][0]
    assert doc["auth_groups"] == [{"name": "ops"}]
    invoices = next(j for j in doc["jobs"] if j["name"] == "invoices")
    stored = configuration["invoices"]
    assert invoices["secrets_token"] == stored.secrets_token  # the ciphertext, as stored
    assert invoices["secret_names"] == ["api_token"]
    assert invoices["secret_fingerprints"] == stored.secret_fingerprints
    assert invoices["calendars"] == ["holidays"] and invoices["group"] == "billing"
    assert invoices["trigger_changed_at"] == stored.trigger_changed_at.isoformat()
    assert "id" not in invoices and "tenant_id" not in invoices
    assert {
        (p.get("user") or p.get("group"), p["permission"], p["name"]) for p in doc["object_permissions"]
    } == {
        ("bob", "change_job", "invoices"),
        ("bob", "run_job", "invoices"),
        ("ops", "pause_jobgroup", "billing"),
        ("ops", "run_jobgroup", "billing"),
    }
    versions = [(v["job"], v["number"], v["author"]) for v in doc["job_versions"]]
    assert ("crunch", 2, "carol") in versions and ("extract", 1, "alice") in versions
    assert "runs" not in doc


def test_progress_on_stderr(tmp_path, configuration, monkeypatch):
    monkeypatch.setattr(backup, "PROGRESS_EVERY", 2)
    path = tmp_path / "b.json"
    _, err = run_backup(path, "--with-runs")
    assert "backup: runs: 2 written" in err.splitlines()
    assert "backup: runs: 4 written" in err.splitlines()
    _, err = run_restore(path, "--replace")
    assert "restore: runs: 4 done" in err.splitlines()


# -- restore: refusals --------------------------------------------------------------------


def test_restore_into_a_non_empty_database_is_refused(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    before = db_state()
    message = refused(path)
    assert "the database already holds scheduler_app configuration (2 tenant(s), 3 job(s))" in message
    assert "--replace" in message
    assert db_state() == before


def test_replace_restores_the_backed_up_state(tmp_path, configuration):
    path, again = tmp_path / "b.json", tmp_path / "again.json"
    run_backup(path, "--with-runs")
    # Change everything a little after the backup.
    Job.objects.filter(name="extract").update(priority=99)
    services.save_job(Job(tenant=configuration["acme"], name="new", task="demo.noop"))
    services.set_object_permissions(
        configuration["invoices"], get_user_model().objects.get(username="bob"), []
    )
    Tenant.objects.filter(slug="globex").update(name="Renamed")
    JobRun.objects.filter(reason="retry").delete()

    out, _ = run_restore(path, "--replace")
    assert out.startswith(f"Restored {path}: ")
    run_backup(again, "--with-runs")
    assert without_created_at(load(again)) == without_created_at(load(path))
    assert not Job.objects.filter(name="new").exists()
    # Existing users keep their password.
    assert get_user_model().objects.get(username="bob").check_password("pw-bob")


def test_replace_is_atomic(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    Tenant.objects.filter(slug="globex").update(name="Changed after the backup")
    doc["jobs"][1]["priority"] = "high"
    before = db_state()
    message = refused(write(path, doc), "--replace")
    assert "jobs[1] (acme/invoices): priority: " in message
    assert db_state() == before


def test_truncated_file_is_refused(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    Job.objects.all().delete()
    Tenant.objects.all().delete()
    message = refused(path)
    assert f"{path}: not valid JSON (truncated or damaged?): " in message
    assert "(line " in message and ", column " in message
    assert not Tenant.objects.exists()


def test_newer_version_is_refused(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    doc = load(path)
    doc["version"] = 2
    message = refused(write(path, doc), "--replace")
    assert "newer than this release understands (1); upgrade scheduler_app to restore it" in message


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "something-else",
            "format: 'something-else' is not a scheduler_app backup (expected 'scheduler_app-backup')",
        ),
        (
            None,
            "is not a scheduler_app backup (expected 'scheduler_app-backup'); this looks "
            "like a jobs file: load it with importjobs",
        ),
    ],
)
def test_wrong_format_is_refused(tmp_path, configuration, fmt, expected):
    path = tmp_path / "b.json"
    if fmt is None:
        call_command("exportjobs", "-o", str(path), stderr=io.StringIO())
    else:
        run_backup(path)
        doc = load(path)
        doc["format"] = fmt
        write(path, doc)
    before = db_state()
    assert expected in refused(path, "--replace")
    assert db_state() == before


def test_secret_no_configured_key_decrypts_is_refused(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    doc = load(path)
    foreign = Fernet(Fernet.generate_key()).encrypt(b'{"api_token": "other"}').decode()
    doc["jobs"][1]["secrets_token"] = foreign
    before = db_state()
    message = refused(write(path, doc), "--replace")
    assert (
        "jobs[1] (acme/invoices): secrets_token: the secret kwargs cannot be decrypted "
        "with any configured key" in message
    )
    assert db_state() == before
    assert job("acme", "invoices").reveal_secret_kwargs() == {"api_token": "s3cr3t"}


def test_secrets_encrypted_with_an_older_key_restore(tmp_path, configuration, settings):
    """Ciphertext made with any configured key (not only the newest) is accepted as is."""
    from django.conf import settings as django_settings

    path = tmp_path / "b.json"
    run_backup(path)
    doc = load(path)
    old_key = django_settings.SCHEDULER_APP["ENCRYPTION_KEYS"][1]
    doc["jobs"][1]["secrets_token"] = Fernet(old_key).encrypt(b'{"api_token": "old"}').decode()
    run_restore(write(path, doc), "--replace")
    assert job("acme", "invoices").secrets_token == doc["jobs"][1]["secrets_token"]
    assert job("acme", "invoices").reveal_secret_kwargs() == {"api_token": "old"}


def corrupt(section, index, **changes):
    def apply(doc):
        doc[section][index].update(changes)

    return apply


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            corrupt("jobs", 0, group="nope"),
            "jobs[0] (acme/extract): group: unknown group 'nope' in tenant acme",
        ),
        (
            corrupt("jobs", 2, tenant="initech"),
            "jobs[2] (initech/crunch): tenant: unknown tenant 'initech' (not in 'tenants')",
        ),
        (
            corrupt("jobs", 0, trigger={"type": "cron", "expression": "0 0 30 2 *"}),
            "jobs[0] (acme/extract): trigger: ",
        ),
        (corrupt("jobs", 0, colour="blue"), "jobs[0] (acme/extract): colour: unknown field"),
        (
            corrupt("jobs", 1, secret_names=["api_token", "password"]),
            "jobs[1] (acme/invoices): secret_names: ['api_token', 'password'] do not match",
        ),
        (
            corrupt("jobs", 2, name="extract", tenant="acme"),
            "jobs[2] (acme/extract): name: job 'extract' appears twice in tenant acme",
        ),
        (
            corrupt("memberships", 1, user="zed"),
            "memberships[1] (acme/zed): user: unknown user 'zed' (not in 'users')",
        ),
        (
            corrupt("dependencies", 0, upstream="ghost"),
            "dependencies[0] (acme/ghost → invoices): upstream: unknown job 'ghost' in tenant acme",
        ),
        (
            corrupt("object_permissions", 0, permission="fly_job"),
            "object_permissions[0] (fly_job on job acme/invoices for user bob): permission: "
            "unknown permission 'fly_job' for job",
        ),
        (
            corrupt(
                "runs",
                1,
                triggered_by={
                    "tenant": "acme",
                    "job": "extract",
                    "scheduled_for": "2020-01-01T00:00:00+00:00",
                    "attempt": 1,
                },
            ),
            "runs[1] (acme/extract @ 2026-03-02T02:00:00+00:00 #1): triggered_by: no run "
            "acme/extract @ 2020-01-01T00:00:00+00:00 #1 in the file",
        ),
        (
            corrupt("calendars", 0, dates=[{"date": "2026-02-30"}]),
            "calendars[0] (acme/holidays): dates[0]: date: ",
        ),
        (corrupt("tenants", 0, slug="not a slug"), "tenants[0] (not a slug): slug: "),
        (
            corrupt("users", 0, groups=["ghosts"]),
            "users[0] (alice): groups: unknown group 'ghosts' (not in 'auth_groups')",
        ),
        (
            lambda doc: doc["jobs"].pop(),
            "counts: the file lists 2 jobs but says 3; it was edited or damaged",
        ),
    ],
)
def test_bad_entries_are_named_and_change_nothing(tmp_path, configuration, mutate, expected):
    path = tmp_path / "b.json"
    run_backup(path, "--with-runs")
    doc = load(path)
    mutate(doc)
    before = db_state()
    message = refused(write(path, doc), "--replace")
    assert expected in message
    assert db_state() == before


# -- users ------------------------------------------------------------------------------


def test_existing_users_keep_password_and_fields(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    User = get_user_model()
    User.objects.filter(username="alice").update(email="new@example.com")
    alice = User.objects.get(username="alice")
    alice.groups.clear()
    _, err = run_restore(path, "--replace")
    assert (
        "warning: users[0] (alice): the user exists; kept its password and account fields "
        "(email differ from the backup)"
    ) in err
    alice = User.objects.get(username="alice")
    assert alice.email == "new@example.com" and alice.check_password("pw-alice")
    assert list(alice.groups.values_list("name", flat=True)) == ["ops"]  # group memberships added


def test_unregistered_task_restores_with_a_warning(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    doc = load(path)
    doc["jobs"][2]["task"] = "gone.task"
    _, err = run_restore(write(path, doc), "--replace")
    assert (
        "warning: jobs[2] (globex/crunch): task 'gone.task' is not registered in this "
        "installation; its runs will fail until it is"
    ) in err
    assert job("globex", "crunch").task == "gone.task"


def test_empty_database_backup_restores(tmp_path):
    path = tmp_path / "empty.json"
    out, _ = run_backup(path)
    assert "0 tenants" in out
    out, _ = run_restore(path)
    assert out.startswith(f"Restored {path}: ")


def test_replace_warns_about_a_live_scheduler(tmp_path, configuration):
    path = tmp_path / "b.json"
    run_backup(path)
    now = dt.datetime.now(dt.UTC)
    JobRun.objects.filter(reason="retry").update(state="running", node="n1:7", heartbeat_at=now)
    _, err = run_restore(path, "--replace")
    assert (
        "warning: a scheduler seems to be running against this database: 1 run(s) are running "
        "with a heartbeat within the last 30 s (e.g. run"
    ) in err
    assert "stop the schedulers before restoring" in err
