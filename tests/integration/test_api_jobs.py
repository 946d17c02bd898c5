"""Jobs through the API: the job document read and written back, every field of the
jobs file, errors in the admin's and jobs files' words, version conflicts, actions,
bulk actions, versions and the audit trail; as a real editor with a real key."""

import datetime as dt
import json
import threading

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from scheduler_app import services
from scheduler_app.documents.job import export_job
from scheduler_app.models import (
    Calendar,
    CalendarDate,
    Job,
    JobGroup,
    JobRun,
    JobVersion,
    Membership,
    RunRequest,
)
from tests.integration.api_support import JOB, client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor(tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return user


@pytest.fixture
def api(editor):
    return client_for(key_for(editor))


def create(api, **fields):
    response = api.post("/api/jobs/", {**JOB, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


FULL = {
    **JOB,
    "description": "the nightly export",
    "group": "etl",
    "args": [],
    "kwargs": {"n": 1},
    "secret_kwargs": {"token": "s3cr3t-value"},
    "calendars": ["holidays"],
    "enabled": True,
    "paused": False,
    "priority": 5,
    "executor": "thread",
    "max_instances": 2,
    "overlap_policy": "queue",
    "misfire": {"policy": "run_all", "grace_seconds": 30},
    "retry": {"max_attempts": 3, "backoff_seconds": 5.0, "backoff_factor": 2.0, "max_backoff_seconds": 60.0},
    "timeout_seconds": 120.0,
    "limits": {"cpu_seconds": None, "memory_mb": None},
    "routing": {"mode": "tags", "tags": ["gpu"]},
}


@pytest.fixture
def references(tenant):
    JobGroup.objects.create(tenant=tenant, name="etl")
    cal = Calendar.objects.create(tenant=tenant, name="holidays")
    CalendarDate.objects.create(calendar=cal, date=dt.date(2030, 12, 25))


def test_create_with_every_field_and_read_back_as_the_job_document(api, references):
    body = create(api, **FULL)
    job = Job.objects.get(name="nightly")
    document = export_job(job)
    assert {k: body[k] for k in document} == document
    assert body["secret_kwarg_names"] == ["token"]
    assert "secret_kwargs" not in body and "s3cr3t-value" not in json.dumps(body)
    assert job.reveal_secret_kwargs() == {"token": "s3cr3t-value"}
    assert body["id"] == job.pk and body["version"] == 1
    assert body["last_run"] is None
    next_fire = dt.datetime.fromisoformat(body["next_fire_time"])
    assert next_fire.utcoffset() is not None and next_fire > timezone.now()
    assert next_fire == job.upcoming_fire_times(timezone.now(), 1)[0]
    response = api.get(f"/api/jobs/{job.pk}/")
    assert response.json() == body
    assert response["ETag"] == '"1"'


def test_a_job_read_from_the_api_can_be_written_back_unchanged(api, references):
    body = create(api, **FULL)
    response = api.put(f"/api/jobs/{body['id']}/", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == body
    assert JobVersion.objects.filter(job_id=body["id"]).count() == 1  # nothing changed
    assert Job.objects.get().reveal_secret_kwargs() == {"token": "s3cr3t-value"}  # kept


def test_update_changes_fields_and_makes_a_version_with_the_keys_user(api, editor):
    body = create(api)
    response = api.patch(f"/api/jobs/{body['id']}/", {"priority": 7, "paused": True}, format="json")
    assert response.status_code == 200
    assert (response.json()["priority"], response.json()["paused"], response.json()["version"]) == (
        7,
        True,
        2,
    )
    assert response["ETag"] == '"2"'
    version = JobVersion.objects.get(job_id=body["id"], number=2)
    assert version.author == editor


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"trigger": {"type": "cron", "expression": "0 0 32 * *"}},
            "trigger.expression",
            "field 3 (day of month): '32' is outside 1-31",
        ),
        (
            {"trigger": {"type": "cron", "expression": "0 2 * * *", "timezone": "Mars/Base"}},
            "trigger.timezone",
            "unknown time zone 'Mars/Base'",
        ),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"retry": {"max_attempts": 3, "bogus": 1}}, "retry.bogus", "unknown field"),
        ({"task": "no.such.task"}, "task", "task 'no.such.task' is not registered"),
        (
            {"kwargs": {"unexpected": 1}, "task": "demo.noop"},
            "kwargs",
            "task demo.noop has no argument 'unexpected'",
        ),
        ({"group": "nope"}, "group", "unknown group 'nope' in tenant acme"),
        ({"calendars": ["nope"]}, "calendars", "unknown calendar 'nope'"),
        ({"tenant": "globex"}, "tenant", "unknown tenant 'globex'"),
        (
            {"misfire": {"grace_seconds": -1}},
            "misfire.grace_seconds",
            "Ensure this value is greater than or equal to 0.",
        ),
        ({"executor": "gpu"}, "executor", "Value 'gpu' is not a valid choice."),
        ({"depends_on": [{"job": "ghost"}]}, "depends_on[0]", "job: unknown job 'ghost' in tenant acme"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_documents_are_400_naming_the_field_and_nothing_is_saved(
    api, other_tenant, change, field, message
):
    response = api.post("/api/jobs/", {**JOB, **change}, format="json")
    assert response.status_code == 400
    errors = errors_of(response)
    assert errors[0][0] == field
    assert errors[0][1].startswith(message), errors
    assert not Job.objects.exists()
    assert not JobVersion.objects.exists()


def test_the_400_wording_is_the_jobs_files(api):
    from scheduler_app.interchange.jobsfile import JobsFileError, import_document

    change = {"trigger": {"type": "cron", "expression": "0 0 32 * *"}}
    response = api.post("/api/jobs/", {**JOB, **change}, format="json")
    with pytest.raises(JobsFileError) as info:
        import_document({"version": 1, "jobs": [{**JOB, **change}]})
    field, message = errors_of(response)[0]
    assert str(info.value).endswith(f"{field}: {message}")


def test_malformed_json_is_400(api):
    response = api.generic("POST", "/api/jobs/", '{"tenant": "acme", ', content_type="application/json")
    assert response.status_code == 400
    assert errors_of(response)[0][1].startswith("Malformed JSON: Expecting property name")
    for body in ('{"kwargs": NaN}', "\xff\xfe"):
        response = api.generic("POST", "/api/jobs/", body.encode("latin-1"), content_type="application/json")
        assert response.status_code == 400, body
    assert api.post("/api/jobs/", [1, 2], format="json").status_code == 400
    assert not Job.objects.exists()


def test_oversized_bodies_and_kwargs_are_413(api, settings):
    settings.SCHEDULER_APP = {
        **settings.SCHEDULER_APP,
        "API_MAX_REQUEST_BYTES": 2000,
        "API_MAX_KWARGS_BYTES": 500,
    }
    response = api.post("/api/jobs/", {**JOB, "description": "x" * 3000}, format="json")
    assert response.status_code == 413
    assert errors_of(response) == [(None, "The request body is larger than 2000 bytes.")]
    response = api.post("/api/jobs/", {**JOB, "kwargs": {"n": "y" * 600}}, format="json")
    assert response.status_code == 413
    assert errors_of(response) == [("kwargs", "larger than 500 bytes as JSON")]
    assert not Job.objects.exists()


def test_if_match_with_an_old_version_is_409_and_changes_nothing(api):
    body = create(api)
    api.patch(f"/api/jobs/{body['id']}/", {"priority": 1}, format="json")
    response = api.patch(f"/api/jobs/{body['id']}/", {"priority": 2}, format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 409
    assert "version 2, not 1" in errors_of(response)[0][1]
    assert Job.objects.get().priority == 1
    # the version in the body counts the same way; the current one is accepted
    assert (
        api.patch(f"/api/jobs/{body['id']}/", {"priority": 3, "version": 1}, format="json").status_code == 409
    )
    ok = api.patch(f"/api/jobs/{body['id']}/", {"priority": 3}, format="json", HTTP_IF_MATCH='W/"2"')
    assert ok.status_code == 200 and ok.json()["version"] == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_one_wins_the_other_gets_409(tenant, editor):
    token = key_for(editor)
    body = create(client_for(token))
    results = {}
    barrier = threading.Barrier(2)

    def update(name, priority):
        try:
            barrier.wait()
            response = client_for(token).patch(
                f"/api/jobs/{body['id']}/", {"priority": priority}, format="json", HTTP_IF_MATCH='"1"'
            )
            results[name] = response.status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=update, args=(n, p)) for n, p in (("a", 10), ("b", 20))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()) == [200, 409]
    winner = 10 if results["a"] == 200 else 20
    assert Job.objects.get().priority == winner
    assert JobVersion.objects.filter(job_id=body["id"]).count() == 2


def test_moving_a_job_into_a_tenant_the_key_cannot_write_is_refused(editor, tenant, other_tenant):
    Membership.objects.create(tenant=other_tenant, user=editor, role="operator")
    api = client_for(key_for(editor))
    body = create(api)
    response = api.patch(f"/api/jobs/{body['id']}/", {"tenant": "globex"}, format="json")
    assert response.status_code == 403
    assert Job.objects.get().tenant == tenant
    # a key restricted to acme cannot even see globex
    narrow = client_for(key_for(editor, tenant=tenant))
    response = narrow.patch(f"/api/jobs/{body['id']}/", {"tenant": "globex"}, format="json")
    assert response.status_code == 400
    assert errors_of(response) == [("tenant", "unknown tenant 'globex'")]
    # control: as an editor of globex the move works
    Membership.objects.filter(tenant=other_tenant, user=editor).update(role="editor")
    response = client_for(key_for(editor)).patch(
        f"/api/jobs/{body['id']}/", {"tenant": "globex"}, format="json"
    )
    assert response.status_code == 200 and Job.objects.get().tenant == other_tenant


def test_a_dependency_cycle_is_refused(api):
    create(api, name="a")
    create(api, name="b", depends_on=[{"job": "a", "condition": "success"}])
    a = Job.objects.get(name="a")
    response = api.patch(f"/api/jobs/{a.pk}/", {"depends_on": [{"job": "b"}]}, format="json")
    assert response.status_code == 400
    assert errors_of(response) == [("depends_on", "This dependency would create a cycle: b → a → b.")]
    assert not a.upstream_edges.exists()


def test_delete(api, editor):
    body = create(api)
    assert api.delete(f"/api/jobs/{body['id']}/").status_code == 204
    assert not Job.objects.exists()
    assert api.get(f"/api/jobs/{body['id']}/").status_code == 404


def test_list_filters_and_pagination(api, references):
    for i in range(5):
        create(api, name=f"job{i}", group="etl" if i % 2 else None, paused=i == 4)
    assert api.get("/api/jobs/?page_size=2").json()["count"] == 5
    assert len(api.get("/api/jobs/?page_size=2").json()["results"]) == 2
    assert [j["name"] for j in api.get("/api/jobs/?group=etl").json()["results"]] == ["job1", "job3"]
    assert [j["name"] for j in api.get("/api/jobs/?paused=true").json()["results"]] == ["job4"]
    assert errors_of(api.get("/api/jobs/?paused=maybe")) == [("paused", "must be true or false")]
    assert errors_of(api.get("/api/jobs/?page_size=0")) == [("page_size", "must be at least 1")]
    assert api.get("/api/jobs/?page=99").status_code == 404


def test_list_reads_a_fixed_number_of_queries(api, references, django_assert_max_num_queries):
    for i in range(3):
        create(api, name=f"job{i}", calendars=["holidays"], group="etl")
    for i in range(3, 30):
        create(api, name=f"job{i}", calendars=["holidays"], depends_on=[{"job": "job0"}])
    with django_assert_max_num_queries(12):
        response = api.get("/api/jobs/?page_size=100")
    assert len(response.json()["results"]) == 30


# -- actions ----------------------------------------------------------------------------


def test_run_now_with_kwargs_override(api, editor):
    body = create(api)
    response = api.post(f"/api/jobs/{body['id']}/run/", {"kwargs": {"n": 2}}, format="json")
    assert response.status_code == 201, response.json()
    run = JobRun.objects.get()
    assert (response.json()["id"], run.reason, run.kwargs_override) == (run.pk, "manual", {"n": 2})
    entry = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).order_by("pk").last()
    assert (entry.additional_data["operation"], entry.actor) == ("run_now", editor)


def test_run_at_a_time(api):
    body = create(api)
    at = (timezone.now() + dt.timedelta(hours=1)).replace(microsecond=0)
    response = api.post(f"/api/jobs/{body['id']}/run/", {"at": at.isoformat()}, format="json")
    assert response.status_code == 201
    run = JobRun.objects.get()
    assert (run.reason, run.scheduled_for) == ("run_at", at)


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2020-01-01T00:00:00+00:00", "2020-01-01T00:00:00+00:00 is in the past"),
        ("tomorrow", "'tomorrow' is not an ISO 8601 time"),
        ("2030-01-01T00:00:00", "add a UTC offset, e.g. 2026-12-01T09:00:00+01:00"),
        (12, "an ISO 8601 time with a UTC offset"),
    ],
)
def test_run_at_in_the_past_or_unparseable_is_400(api, at, message):
    body = create(api)
    response = api.post(f"/api/jobs/{body['id']}/run/", {"at": at}, format="json")
    assert response.status_code == 400
    assert errors_of(response) == [("at", message)]
    assert not JobRun.objects.exists()


def test_run_refusals(api):
    body = create(api)
    response = api.post(f"/api/jobs/{body['id']}/run/", {"kwargs": {"n": 1}, "when": "now"}, format="json")
    assert errors_of(response) == [("when", "unknown field")]
    response = api.post(f"/api/jobs/{body['id']}/run/", {"kwargs": [1]}, format="json")
    assert errors_of(response) == [("kwargs", "must be an object")]
    api.post(f"/api/jobs/{body['id']}/disable/")
    response = api.post(f"/api/jobs/{body['id']}/run/", {}, format="json")
    assert response.status_code == 409
    assert errors_of(response) == [(None, "job is disabled")]
    assert not JobRun.objects.exists()


def test_idempotency_key_returns_the_same_run(api):
    body = create(api)
    first = api.post(f"/api/jobs/{body['id']}/run/", {"idempotency_key": "deploy-42"}, format="json")
    again = api.post(f"/api/jobs/{body['id']}/run/", {"idempotency_key": "deploy-42"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert JobRun.objects.count() == 1
    other = api.post(f"/api/jobs/{body['id']}/run/", {"idempotency_key": "deploy-43"}, format="json")
    assert other.status_code == 201 and JobRun.objects.count() == 2


def test_a_refused_run_does_not_keep_its_idempotency_key(api):
    body = create(api)
    api.post(f"/api/jobs/{body['id']}/disable/")
    assert (
        api.post(f"/api/jobs/{body['id']}/run/", {"idempotency_key": "k"}, format="json").status_code == 409
    )
    assert not RunRequest.objects.exists()
    api.post(f"/api/jobs/{body['id']}/enable/")
    assert (
        api.post(f"/api/jobs/{body['id']}/run/", {"idempotency_key": "k"}, format="json").status_code == 201
    )


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_identical_run_requests_racing_queue_one_run(tenant, editor):
    token = key_for(editor)
    body = create(client_for(token))
    barrier = threading.Barrier(4)
    answers = []

    def request():
        try:
            barrier.wait()
            response = client_for(token).post(
                f"/api/jobs/{body['id']}/run/", {"idempotency_key": "same"}, format="json"
            )
            answers.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(code for code, _ in answers) == [200, 200, 200, 201]
    assert len({run_id for _, run_id in answers}) == 1
    assert JobRun.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "field", "value"), [("pause", "paused", True), ("disable", "enabled", False)]
)
def test_flag_actions(api, name, field, value):
    body = create(api)
    response = api.post(f"/api/jobs/{body['id']}/{name}/")
    assert response.status_code == 200 and response.json()[field] is value
    assert getattr(Job.objects.get(), field) is value
    undo = {"pause": "resume", "disable": "enable"}[name]
    assert api.post(f"/api/jobs/{body['id']}/{undo}/").json()[field] is (not value)


def test_bulk_action_mixing_allowed_forbidden_and_foreign_ids(editor, tenant, other_tenant):
    from guardian.shortcuts import assign_perm

    viewer = get_user_model().objects.create_user("vic")
    Membership.objects.create(tenant=tenant, user=viewer, role="viewer")
    api = client_for(key_for(editor))
    allowed = create(api, name="granted")
    forbidden = create(api, name="plain")
    assign_perm("scheduler_app.pause_job", viewer, Job.objects.get(name="granted"))
    foreign = services.save_job(Job(tenant=other_tenant, name="globex-job", task="demo.noop"))
    ids = [allowed["id"], forbidden["id"], foreign.pk, 987654]
    response = client_for(key_for(viewer)).post("/api/jobs/bulk/pause/", {"ids": ids}, format="json")
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": allowed["id"], "status": "done"},
        {
            "id": forbidden["id"],
            "status": "refused",
            "reason": "you may not pause this job",
            "kind": "forbidden",
        },
        {"id": foreign.pk, "status": "not found"},
        {"id": 987654, "status": "not found"},
    ]
    assert {j.name: j.paused for j in Job.objects.all()} == {
        "granted": True,
        "plain": False,
        "globex-job": False,
    }


def test_bulk_run_reports_the_runs(api):
    a, b = create(api, name="a"), create(api, name="b", enabled=False)
    response = api.post("/api/jobs/bulk/run/", {"ids": [a["id"], b["id"]]}, format="json")
    run = JobRun.objects.get()
    assert response.json()["results"] == [
        {"id": a["id"], "status": "done", "run": run.pk},
        {"id": b["id"], "status": "refused", "reason": "job is disabled", "kind": "conflict"},
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"ids": []}, "ids"), ({"ids": ["1"]}, "ids[0]"), ({}, "ids"), ({"ids": [1], "x": 1}, "x")],
)
def test_bulk_bad_input(api, body, field):
    response = api.post("/api/jobs/bulk/pause/", body, format="json")
    assert response.status_code == 400 and errors_of(response)[0][0] == field


def test_unknown_bulk_action_is_404(api):
    assert api.post("/api/jobs/bulk/explode/", {"ids": [1]}, format="json").status_code == 404


# -- versions and audit -----------------------------------------------------------------


def test_versions_diff_and_rollback(api, editor):
    body = create(api)
    api.patch(f"/api/jobs/{body['id']}/", {"priority": 3}, format="json")
    api.patch(f"/api/jobs/{body['id']}/", {"priority": 9, "description": "later"}, format="json")
    listing = api.get(f"/api/jobs/{body['id']}/versions/").json()
    assert [v["number"] for v in listing["results"]] == [3, 2, 1]
    assert listing["results"][0]["author"] == "ed"
    detail = api.get(f"/api/jobs/{body['id']}/versions/2/").json()
    assert detail["snapshot"]["priority"] == 3
    diff = api.get(f"/api/jobs/{body['id']}/versions/diff/?from=1&to=3").json()
    assert diff["changes"] == [
        {"path": "description", "old": "", "new": "later"},
        {"path": "priority", "old": 0, "new": 9},
    ]
    assert errors_of(api.get(f"/api/jobs/{body['id']}/versions/diff/?from=1&to=7")) == [
        ("to", "job nightly has no version 7")
    ]
    assert errors_of(api.get(f"/api/jobs/{body['id']}/versions/diff/?from=x&to=1")) == [
        ("from", "required, a version number")
    ]
    response = api.post(f"/api/jobs/{body['id']}/versions/1/rollback/")
    assert response.status_code == 200
    assert (response.json()["priority"], response.json()["description"], response.json()["version"]) == (
        0,
        "",
        4,
    )
    assert api.post(f"/api/jobs/{body['id']}/versions/99/rollback/").status_code == 404
    assert api.get(f"/api/jobs/{body['id']}/versions/99/").status_code == 404


def test_audit_trail_names_actors_and_never_shows_secrets(api, editor):
    body = create(api, secret_kwargs={"token": "very-secret-token"})
    api.patch(f"/api/jobs/{body['id']}/", {"secret_kwargs": {"token": "another-secret"}}, format="json")
    api.post(f"/api/jobs/{body['id']}/run/", {}, format="json")
    response = api.get(f"/api/jobs/{body['id']}/audit/")
    assert response.status_code == 200
    entries = response.json()["results"]
    assert [e["operation"] for e in entries][:1] == ["run_now"]
    assert {e["actor"] for e in entries} == {"ed"}
    assert {e["action"] for e in entries} >= {"create", "update", "access"}
    for entry in entries:
        assert dt.datetime.fromisoformat(entry["time"]).utcoffset() is not None
    text = json.dumps(entries)
    assert "very-secret-token" not in text and "another-secret" not in text
