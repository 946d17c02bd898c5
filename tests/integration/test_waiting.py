"""A queued run of a job routed by tags says what it waits for when no live active node
has all the tags (it waits instead of running elsewhere), in the API and the admin; the
reason a claim recorded (a rate limit) is kept; nothing is said once a node can run it."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import JobRun, Membership, Node
from scheduler_app.monitoring import waiting
from tests.integration.api_support import client_for, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(tenant):
    user = get_user_model().objects.create_user("op")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    return client_for(key_for(user))


@pytest.fixture(autouse=True)
def fresh_cache():
    waiting.forget()
    yield
    waiting.forget()


def node(name, tags, state="active", age=0.0):
    at = timezone.now() - dt.timedelta(seconds=age)
    return Node.objects.create(
        name=name, incarnation=name, tags=tags, state=state, started_at=at, heartbeat_at=at
    )


def reason(api, run):
    waiting.forget()
    response = api.get(f"/api/runs/{run.pk}/")
    assert response.status_code == 200, response.content
    return response.json()["wait_reason"]


def test_a_tag_routed_run_says_which_node_it_waits_for(api, make_job):
    gpu = make_job("train", routing="tags", routing_tags=["gpu", "eu"])
    anywhere = make_job("report")
    run = services.enqueue_run(gpu, scheduled_for=timezone.now())
    other = services.enqueue_run(anywhere, scheduled_for=timezone.now())

    assert reason(api, run) == "waiting for a node with tags eu, gpu"
    assert reason(api, other) == ""
    node("cpu-1", ["eu"])  # lacks gpu
    node("gpu-old", ["gpu", "eu"], age=3600)  # dead: its heartbeat is an hour old
    node("gpu-drain", ["gpu", "eu"], state="draining")  # claims nothing new
    assert reason(api, run) == "waiting for a node with tags eu, gpu"
    node("gpu-1", ["gpu", "eu", "fast"])
    assert reason(api, run) == ""

    JobRun.objects.filter(pk=run.pk).update(state="running", node="gpu-1")
    Node.objects.filter(name="gpu-1").delete()
    assert reason(api, JobRun.objects.get(pk=run.pk)) == ""  # only queued runs wait


def test_a_recorded_wait_reason_is_kept(api, make_job):
    gpu = make_job("train", routing="tags", routing_tags=["gpu"])
    run = services.enqueue_run(gpu, scheduled_for=timezone.now())
    JobRun.objects.filter(pk=run.pk).update(wait_reason="rate limit job 10/m")
    assert reason(api, run) == "rate limit job 10/m"


def test_the_run_list_computes_it_in_a_bounded_number_of_queries(
    api, make_job, django_assert_max_num_queries
):
    gpu = make_job("train", routing="tags", routing_tags=["gpu"])
    for i in range(3):
        services.enqueue_run(gpu, scheduled_for=timezone.now() + dt.timedelta(seconds=i))
    waiting.forget()
    response = api.get("/api/runs/")
    few = len(response.json()["results"])
    for i in range(3, 30):
        services.enqueue_run(gpu, scheduled_for=timezone.now() + dt.timedelta(seconds=i))
    waiting.forget()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert len(api.get("/api/runs/?page_size=3").json()["results"]) == 3
    waiting.forget()
    with CaptureQueriesContext(connection) as large:
        body = api.get("/api/runs/").json()
    assert few == 3 and len(body["results"]) > 3
    assert len(large) == len(small)
    assert {r["wait_reason"] for r in body["results"]} == {"waiting for a node with tags gpu"}


def test_the_admin_run_list_and_page_say_it(admin_client, make_job):
    gpu = make_job("train", routing="tags", routing_tags=["gpu"])
    run = services.enqueue_run(gpu, scheduled_for=timezone.now())
    waiting.forget()
    listing = admin_client.get("/admin/scheduler_app/jobrun/")
    assert listing.status_code == 200
    assert "waiting for a node with tags gpu" in listing.content.decode()
    page = admin_client.get(f"/admin/scheduler_app/jobrun/{run.pk}/change/")
    assert page.status_code == 200 and "waiting for a node with tags gpu" in page.content.decode()
    node("gpu-1", ["gpu"])
    waiting.forget()
    assert (
        "waiting for a node with tags gpu"
        not in admin_client.get("/admin/scheduler_app/jobrun/").content.decode()
    )
