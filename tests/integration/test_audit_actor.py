"""The actor of audit entries. django-auditlog's middleware sets a context variable for
the request and never resets it, so in a thread that served a request the context of
that request stays behind; an explicit actor given to a service must still win, and no
entry may carry a stale actor of an earlier request."""

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from scheduler_app import audit, services
from scheduler_app.models import Job, Membership

pytestmark = pytest.mark.django_db


def entries(obj, **filters):
    ct = ContentType.objects.get_for_model(obj)
    return LogEntry.objects.filter(content_type=ct, object_pk=str(obj.pk), **filters).order_by("pk")


@pytest.fixture
def people(tenant):
    User = get_user_model()
    alice = User.objects.create_user("alice", password="x", is_staff=True)
    bob = User.objects.create_user("bob", password="x", is_staff=True)
    for user in (alice, bob):
        Membership.objects.create(tenant=tenant, user=user, role="editor")
    return alice, bob


def test_explicit_actor_wins_after_a_request_in_the_same_thread(client, tenant, people, make_job):
    alice, bob = people
    job = make_job("nightly")
    client.force_login(alice)
    assert client.get(reverse("admin:scheduler_app_job_changelist")).status_code == 200
    # The request is over; now a service call in the same thread names bob.
    job.description = "changed by bob"
    services.save_job(job, actor=bob)
    update = entries(job, action=LogEntry.Action.UPDATE).last()
    assert update.actor == bob


def test_operation_entries_name_the_explicit_actor_after_requests(client, tenant, people, make_job):
    alice, bob = people
    job = make_job("nightly")
    for user in (alice, bob, alice):
        client.force_login(user)
        client.get(reverse("admin:scheduler_app_job_changelist"))
    services.run_jobs_now([job], actor=bob)
    run_now = entries(job, action=LogEntry.Action.ACCESS).last()
    assert (run_now.additional_data["operation"], run_now.actor) == ("run_now", bob)


def test_system_changes_after_a_request_carry_no_stale_actor(client, tenant, people, make_job):
    alice, _ = people
    job = make_job("nightly")
    client.force_login(alice)
    client.get(reverse("admin:scheduler_app_job_changelist"))
    job.description = "changed by the system"
    services.save_job(job, actor=None)
    update = entries(job, action=LogEntry.Action.UPDATE).last()
    assert update.actor is None


def test_requests_still_record_their_own_user_and_address(client, tenant, people, make_job):
    alice, bob = people
    job = make_job("nightly")
    services.save_job(job, actor=bob)  # a service call before any request
    client.force_login(alice)
    change_url = reverse("admin:scheduler_app_job_change", args=[job.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    response = client.post(
        reverse("admin:scheduler_app_job_changelist"),
        {"action": "pause_selected", "_selected_action": [job.pk]},
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 302
    update = entries(Job.objects.get(pk=job.pk), action=LogEntry.Action.UPDATE).last()
    assert (update.actor, update.remote_addr) == (alice, "10.1.2.3")


def test_nested_acting_as_restores_the_outer_actor(tenant, people, make_job):
    alice, bob = people
    job = make_job("nightly")
    with audit.acting_as(alice):
        with audit.acting_as(bob):
            audit.record(job, "inner")
        audit.record(job, "outer")
    inner, outer = entries(job, action=LogEntry.Action.ACCESS).order_by("pk")[:2]
    assert (inner.actor, outer.actor) == (bob, alice)
