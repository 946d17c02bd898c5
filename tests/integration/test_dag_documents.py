"""Trigger rules and upstream results through every face: the job document (jobs files,
versions), the API and the admin form, each refusing bad values naming the field; and
the claim's upstream results (masked, bounded) on the real database."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends import joins
from scheduler_app.models import Job, JobDependency, JobRun, Membership, RunReason, RunState
from tests.integration.api_support import JOB, client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


def importjobs(tmp_path, doc):
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    call_command("importjobs", str(path), stdout=io.StringIO(), stderr=io.StringIO(), no_color=True)


def exportjobs():
    out = io.StringIO()
    call_command("exportjobs", stdout=out, stderr=io.StringIO(), no_color=True)
    return json.loads(out.getvalue())


def file_with(**down):
    jobs = [
        {"tenant": "acme", "name": name, "task": "demo.noop", "trigger": {"type": "manual"}}
        for name in ("extract", "load")
    ]
    jobs.append(
        {
            "tenant": "acme",
            "name": "report",
            "task": "tests.receive",
            "kwargs": {"path": "/dev/null"},
            "trigger": {"type": "manual"},
            "depends_on": [{"job": "extract"}, {"job": "load"}],
            **down,
        }
    )
    return {"version": 1, "tenants": [{"slug": "acme", "name": "Acme"}], "jobs": jobs}


def test_jobs_file_round_trip(tmp_path):
    importjobs(tmp_path, file_with(trigger_rule="one_success", upstream_param="upstream"))
    job = Job.objects.get(name="report")
    assert (job.trigger_rule, job.upstream_param) == ("one_success", "upstream")
    exported = exportjobs()
    entry = next(e for e in exported["jobs"] if e["name"] == "report")
    assert (entry["trigger_rule"], entry["upstream_param"]) == ("one_success", "upstream")
    Job.objects.all().delete()
    importjobs(tmp_path, exported)
    assert exportjobs() == exported


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"trigger_rule": "any_success"},
            "jobs[2] (acme/report): trigger_rule: Value 'any_success' is not a valid choice.",
            id="rule",
        ),
        pytest.param(
            {"upstream_param": "up stream"},
            "jobs[2] (acme/report): upstream_param: 'up stream' is not a valid argument name",
            id="not-an-identifier",
        ),
        pytest.param(
            {"upstream_param": "results"},
            "upstream_param: task tests.receive has no keyword argument 'results'",
            id="task-lacks-it",
        ),
        pytest.param(
            {"upstream_param": "path"},
            "upstream_param: 'path' is also given in kwargs",
            id="taken-by-kwargs",
        ),
        pytest.param(
            {"trigger_rule": "all_done", "depends_on": [{"job": "extract", "condition": "failure"}]},
            "jobs[2] (acme/report): depends_on[0].condition: the trigger rule all_done decides on the "
            "upstream outcomes itself; every dependency needs the condition success, not failure",
            id="condition-with-rule",
        ),
    ],
)
def test_jobs_file_refuses_bad_values_naming_the_field(tmp_path, change, message):
    with pytest.raises(CommandError) as info:
        importjobs(tmp_path, file_with(**change))
    assert message in str(info.value)
    assert not Job.objects.exists()  # all or nothing


def test_a_rule_change_with_a_stored_failure_edge_is_refused(tmp_path, make_job):
    up, down = make_job("up"), make_job("down")
    services.add_dependency(up, down, "failure")
    from scheduler_app.documents import job as job_document

    stored = Job.objects.get(pk=down.pk)
    with pytest.raises(job_document.DocumentError) as refused:
        job_document.apply_job_document(stored, {"trigger_rule": "one_failed"}, where="down")
    assert "trigger_rule: the trigger rule one_failed decides on the upstream outcomes itself" in str(
        refused.value
    )
    assert refused.value.validation.message_dict == {"trigger_rule": [str(refused.value).split(": ", 2)[2]]}


def test_an_edge_condition_other_than_success_is_refused_under_another_rule(make_job):
    up = make_job("up")
    down = make_job("down", trigger_rule="all_done")
    with pytest.raises(Exception) as info:
        services.add_dependency(up, down, "completion")
    assert "only used with the trigger rule all_success" in str(info.value)
    assert not JobDependency.objects.exists()


def test_versions_keep_the_rule_and_a_rollback_restores_it(make_job):
    job = make_job("report", task="tests.receive", kwargs={"path": "/dev/null"})
    job.trigger_rule, job.upstream_param = "none_failed", "upstream"
    services.save_job(job)
    job.trigger_rule, job.upstream_param = "all_done", ""
    services.save_job(job)
    numbers = list(job.versions.order_by("number").values_list("number", flat=True))
    snapshot = job.versions.get(number=numbers[-2]).snapshot
    assert (snapshot["trigger_rule"], snapshot["upstream_param"]) == ("none_failed", "upstream")
    services.rollback_job(job, numbers[-2])
    job.refresh_from_db()
    assert (job.trigger_rule, job.upstream_param) == ("none_failed", "upstream")


@pytest.fixture
def api(tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return client_for(key_for(user))


def test_api_reads_writes_and_refuses_the_fields(api):
    body = {**JOB, "task": "tests.receive", "kwargs": {"path": "/dev/null"}}
    created = api.post(
        "/api/jobs/", {**body, "trigger_rule": "all_done", "upstream_param": "upstream"}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert (created.json()["trigger_rule"], created.json()["upstream_param"]) == ("all_done", "upstream")
    bad = api.patch(
        f"/api/jobs/{created.json()['id']}/",
        {"trigger_rule": "sometimes", "upstream_param": "1x"},
        format="json",
    )
    assert bad.status_code == 400
    assert sorted(errors_of(bad)) == [
        ("trigger_rule", "Value 'sometimes' is not a valid choice."),
        ("upstream_param", "'1x' is not a valid argument name"),
    ]
    schema = api.get("/api/schema/?format=json").json()
    props = schema["components"]["schemas"]["Job"]["properties"]
    assert props["trigger_rule"]["enum"] == [
        "all_success",
        "all_done",
        "none_failed",
        "one_success",
        "one_failed",
    ]
    assert "upstream_param" in props


def test_admin_form_shows_and_refuses_the_fields(admin_client, tenant, make_job):
    from tests.integration.test_admin import form_values, url

    up = make_job("up")
    page = admin_client.get(url("job", "add"))
    assert b"After upstream jobs" in page.content
    data = form_values(page)
    data.update(
        tenant=[str(tenant.pk)],
        name=["report"],
        task=["tests.receive"],
        kwargs=['{"path": "/dev/null"}'],
        trigger_type=["manual"],
        trigger_rule=["one_success"],
        upstream_param=["nothing"],
        **{
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(up.pk)],
            "upstream_edges-0-condition": ["failure"],
        },
    )
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["upstream_param"] == [
        "task tests.receive has no keyword argument 'nothing'"
    ]
    data["upstream_param"] = ["upstream"]
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 200
    inline = next(
        f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "upstream_edges"
    )
    assert "only used with the trigger rule all_success" in str(inline.formset.forms[0].errors["condition"])
    data["upstream_edges-0-condition"] = ["success"]
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get(name="report")
    assert (job.trigger_rule, job.upstream_param) == ("one_success", "upstream")


# -- the claim's upstream results -----------------------------------------------------------


def finished(job, result, state=RunState.SUCCEEDED):
    now = timezone.now()
    return JobRun.objects.create(
        job=job, scheduled_for=now, state=state, result=result, finished_at=now, is_final=True
    )


def test_results_are_bounded_with_many_upstream_runs(make_job, settings, django_assert_max_num_queries):
    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "UPSTREAM_RESULTS_MAX_BYTES": 10_000}
    down = make_job("down", task="tests.receive", kwargs={"path": "/dev/null"}, upstream_param="upstream")
    ups = [finished(make_job(f"u{i:03d}"), {"v": "x" * (i * 10)}) for i in range(200)]
    for up in ups:
        services.add_dependency(up.job, down)
    run = JobRun.objects.create(
        job=down, scheduled_for=timezone.now(), reason=RunReason.DEPENDENCY, upstream_runs=[u.pk for u in ups]
    )
    with django_assert_max_num_queries(2):
        got = joins.upstream_results([(run, down)])[run.pk]
    assert set(got) == {f"u{i:03d}" for i in range(200)}
    assert len(json.dumps(got).encode()) <= 10_000
    # the smallest results are kept whole, the larger ones say how large they were
    assert got["u000"] == {"v": ""} and got["u010"] == {"v": "x" * 100}
    assert got["u199"]["truncated"] is True and got["u199"]["size_bytes"] >= 1990
    # no upstream_param: nothing fetched
    down.upstream_param = ""
    with django_assert_max_num_queries(0):
        assert joins.upstream_results([(run, down)]) == {}
