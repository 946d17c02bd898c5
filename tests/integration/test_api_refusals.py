"""The services say what kind of refusal each one is (forbidden, invalid, conflict,
not found); the API chooses its status code from that kind, never from the reason's
words. Before, the API parsed the English reason ("kwargs override: ...", "you may
not ...") and called the services under ``translation.override("en")`` to make that
work, so the reasons were English whatever the request's language."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from scheduler_app import services
from scheduler_app.api import errors
from scheduler_app.models import Membership, RunState
from scheduler_app.services import bulk
from scheduler_app.services.runs import enqueue_run
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture
def editor(tenant):
    user = get_user_model().objects.create_user("ed-refusals")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return user


@pytest.fixture
def api(editor):
    return client_for(key_for(editor))


def test_a_refusal_unpacks_as_a_pair_and_carries_its_kind():
    result = bulk.BulkResult()
    result.refuse("job", "you may not run this job", bulk.FORBIDDEN)
    result.refuse("job", "kwargs override: n: bad", bulk.INVALID, field="kwargs", message="n: bad")
    ((obj, reason), (_obj, _reason)) = result.refused
    assert (obj, reason) == ("job", "you may not run this job")
    assert [r.kind for r in result.refused] == ["forbidden", "invalid"]
    assert result.refused[1].field == "kwargs" and result.refused[1].message == "n: bad"
    assert bulk.refusal(("x", "why")).kind == bulk.CONFLICT  # a bare pair
    with pytest.raises(ValueError):
        bulk.Refusal("x", "why", "teapot")


@pytest.mark.parametrize(
    ("kind", "status", "field"),
    [("forbidden", 403, None), ("invalid", 400, "kwargs"), ("conflict", 409, None), ("not_found", 404, None)],
)
def test_the_api_maps_each_kind_to_its_status(kind, status, field):
    exc = errors.refused(bulk.Refusal("x", "raison", kind, field=field))
    assert exc.status_code == status


def test_the_services_refusals_have_kinds(make_job, tenant):
    viewer = get_user_model().objects.create_user("viewer-kinds")
    Membership.objects.create(tenant=tenant, user=viewer, role="viewer")
    job = make_job("k", task="demo.sleep", kwargs={"seconds": 0})
    assert services.run_jobs_now([job], actor=viewer).refused[0].kind == bulk.FORBIDDEN
    bad = services.run_jobs_now([job], kwargs_override={"unknown": 1}).refused[0]
    assert (bad.kind, bad.field) == (bulk.INVALID, "kwargs")
    assert bad.reason == f"kwargs override: {bad.message}"
    services.disable_jobs([job])
    assert services.run_jobs_now([job]).refused[0].kind == bulk.CONFLICT
    run = enqueue_run(job, scheduled_for=timezone.now())
    run.state = RunState.SUCCEEDED
    run.save(update_fields=["state"])
    (refused,) = services.rerun_runs([run]).refused
    assert (refused.obj, refused.kind) == (run, bulk.CONFLICT)  # about the run, kind kept
    assert services.cancel_runs([run]).refused[0].kind == bulk.CONFLICT
    assert services.cancel_runs([run], actor=viewer).refused[0].kind == bulk.FORBIDDEN


def test_a_zh_hans_request_gets_the_status_by_kind_and_the_reason_in_chinese(api, make_job):
    job = make_job("zh", task="demo.sleep", kwargs={"seconds": 0})
    response = api.post(f"/api/jobs/{job.pk}/run/", {"kwargs": {"unknown": 1}}, format="json", **ZH)
    assert response.status_code == 400, response.content
    ((field, message),) = errors_of(response)
    assert field == "kwargs"
    assert "unknown" in message and "关键字参数覆盖" not in message  # the field names it, no prefix

    services.disable_jobs([job])
    response = api.post(f"/api/jobs/{job.pk}/run/", {}, format="json", **ZH)
    assert response.status_code == 409, response.content
    assert errors_of(response) == [(None, "作业已停用")]

    run = enqueue_run(job, scheduled_for=timezone.now())
    run.state = RunState.SUCCEEDED
    run.save(update_fields=["state"])
    response = api.post(f"/api/runs/{run.pk}/cancel/", {}, format="json", **ZH)
    assert response.status_code == 409, response.content
    assert "不在队列中" in errors_of(response)[0][1]


def test_a_bulk_report_names_each_refusals_kind(api, make_job):
    enabled = make_job("on")
    disabled = make_job("off", enabled=False)
    response = api.post("/api/jobs/bulk/run/", {"ids": [enabled.pk, disabled.pk]}, format="json", **ZH)
    assert response.status_code == 200, response.content
    done, refused = response.json()["results"]
    assert done["status"] == "done" and "kind" not in done
    assert refused == {"id": disabled.pk, "status": "refused", "reason": "作业已停用", "kind": "conflict"}


def test_the_admin_run_now_page_puts_an_invalid_override_on_its_field_in_chinese(admin_client, make_job):
    """The page chose the field by looking for "kwargs" in the reason's words."""
    from tests.integration.test_admin import url

    admin_client.cookies["django_language"] = "zh-hans"
    job = make_job("zh-admin", task="demo.sleep", kwargs={"seconds": 0})
    response = admin_client.post(url("job", "run", job.pk), {"kwargs_override": '{"unknown": 1}'})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == ["kwargs_override"], errors
    assert "关键字参数覆盖" in errors["kwargs_override"][0]
    services.disable_jobs([job])
    response = admin_client.post(url("job", "run", job.pk), {"kwargs_override": "{}"})
    assert response.context["form"].non_field_errors() == ["作业已停用"]
