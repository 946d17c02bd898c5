"""Refusals found by review of the refusal kinds: a refusal survives copy and pickle,
a job whose stored arguments no longer fit its task is a conflict (not the caller's
kwargs), and the reasons the services give read in the request's language."""

import copy
import pickle

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone, translation

from scheduler_app import services
from scheduler_app.models import Job, Membership
from scheduler_app.services import bulk
from scheduler_app.services.runs import enqueue_run
from tests.integration.api_support import client_for, key_for

pytestmark = pytest.mark.django_db
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


def api_as(tenant, name, role):
    user = get_user_model().objects.create_user(name)
    Membership.objects.create(tenant=tenant, user=user, role=role)
    return client_for(key_for(user))


def test_a_refusal_survives_copy_and_pickle():
    refusal = bulk.Refusal("obj", "why", bulk.INVALID, field="kwargs", message="m")
    for again in (copy.copy(refusal), copy.deepcopy(refusal), pickle.loads(pickle.dumps(refusal))):
        assert tuple(again) == ("obj", "why")
        assert (again.kind, again.field, again.message) == (bulk.INVALID, "kwargs", "m")


def test_a_job_whose_stored_args_no_longer_fit_is_a_conflict_not_the_callers_kwargs(tenant, make_job):
    job = make_job("stale", task="demo.echo")
    Job.objects.filter(pk=job.pk).update(args=[1, 2])  # demo.echo takes no positional argument
    response = api_as(tenant, "ed", "editor").post(f"/api/jobs/{job.pk}/run/", {}, format="json")
    assert response.status_code == 409, response.content
    assert "stored arguments" in response.content.decode()
    assert not job.runs.exists()
    # A bad override on a job that fits is still the caller's field.
    Job.objects.filter(pk=job.pk).update(args=[])
    response = api_as(tenant, "ed2", "editor").post(
        f"/api/jobs/{job.pk}/run/", {"kwargs": {"not an identifier": 1}}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == "kwargs"


def test_a_bulk_run_of_an_unregistered_task_is_refused_in_chinese(tenant, make_job):
    job = make_job("gone", task="demo.echo")
    Job.objects.filter(pk=job.pk).update(task="demo.no_such_task")
    response = api_as(tenant, "ed", "editor").post(
        "/api/jobs/bulk/run/", {"ids": [job.pk]}, format="json", **ZH
    )
    (item,) = response.json()["results"]
    assert item["kind"] == "conflict"
    assert "未注册" in item["reason"] and "demo.no_such_task" in item["reason"], item


def test_a_retry_of_a_queued_run_is_refused_in_chinese(make_job):
    run = enqueue_run(make_job("zh", task="demo.echo"), scheduled_for=timezone.now())
    with translation.override("zh-hans"):
        (refusal,) = services.retry_runs([run]).refused
    assert refusal.kind == bulk.CONFLICT
    assert "重试" in refusal.reason, refusal.reason


def test_a_403_from_the_permission_check_reads_in_chinese(tenant, make_job):
    job = make_job("z", task="demo.echo")
    response = api_as(tenant, "viewer", "viewer").post(f"/api/jobs/{job.pk}/pause/", {}, format="json", **ZH)
    assert response.status_code == 403
    message = response.json()["errors"][0]["message"]
    assert message.startswith("您无权暂停") and "z" in message, message
    response = api_as(tenant, "viewer2", "viewer").post(f"/api/jobs/{job.pk}/pause/", {}, format="json")
    assert response.json()["errors"][0]["message"].startswith("you may not pause job"), response.content
