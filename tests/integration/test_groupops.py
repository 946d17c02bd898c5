"""Group and tenant operations: pause, resume, enable, disable and run now for every job
of a group or tenant, from the service, jobctl, the API and the admin; one audit entry per
operation listing the jobs, permissions per job (group grants apply)."""

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from guardian.shortcuts import assign_perm

from scheduler_app import services
from scheduler_app.models import Job, JobGroup, JobRun, Membership
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def billing(tenant, make_job):
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    make_job("invoices", group=group)
    make_job("reminders", group=group)
    make_job("reports")  # not in the group
    return group


def operations(target):
    return LogEntry.objects.filter(
        object_pk=str(target.pk), content_type__model=target._meta.model_name, action=LogEntry.Action.ACCESS
    )


def test_group_pause_touches_only_the_groups_jobs_and_is_audited_once(billing):
    result = services.operate_on_group(billing, "pause")
    assert sorted(j.name for j in result.done) == ["invoices", "reminders"]
    assert dict(Job.objects.values_list("name", "paused")) == {
        "invoices": True,
        "reminders": True,
        "reports": False,
    }
    (entry,) = operations(billing)
    assert entry.additional_data["operation"] == "group_pause"
    assert entry.additional_data["jobs"] == ["acme/invoices", "acme/reminders"]
    services.operate_on_group(billing, "resume")
    assert not Job.objects.filter(paused=True).exists()
    assert operations(billing).count() == 2


def test_tenant_disable_enable_and_run(billing, tenant):
    services.operate_on_tenant(tenant, "disable")
    assert not Job.objects.filter(enabled=True).exists()
    refused = services.operate_on_tenant(tenant, "run")
    assert not refused.done and {r for _j, r in refused.refused} == {"job is disabled"}
    services.operate_on_tenant(tenant, "enable")
    ran = services.operate_on_tenant(tenant, "run")
    assert sorted(r.job.name for r in ran.done) == ["invoices", "reminders", "reports"]
    assert JobRun.objects.count() == 3
    entry = operations(tenant).filter(additional_data__operation="tenant_run").latest("pk")
    assert entry.additional_data["jobs"] == ["acme/invoices", "acme/reminders", "acme/reports"]


def test_unknown_operation_is_refused_by_name(billing):
    with pytest.raises(Exception, match="unknown operation 'explode'"):
        services.operate_on_group(billing, "explode")


def test_permissions_are_per_job_and_group_grants_apply(billing, tenant):
    user = get_user_model().objects.create_user("viewer")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    assign_perm("scheduler_app.pause_job", user, Job.objects.get(name="invoices"))
    result = services.operate_on_group(billing, "pause", actor=user)
    assert [j.name for j in result.done] == ["invoices"]
    assert [(j.name, r) for j, r in result.refused] == [("reminders", "you may not pause this job")]
    entry = operations(billing).get()
    assert entry.actor == user
    assert entry.additional_data["refused"] == [["acme/reminders", "you may not pause this job"]]
    assign_perm("scheduler_app.pause_jobgroup", user, billing)
    result = services.operate_on_group(billing, "pause", actor=user)
    assert not result.refused and Job.objects.filter(paused=True).count() == 2


def test_jobctl_group_and_tenant(billing, capsys):
    call_command("jobctl", "group", "pause", "acme/billing")
    out = capsys.readouterr().out
    assert "pause: acme/invoices" in out and "group acme/billing: pause 2 job(s), 0 refused" in out
    assert Job.objects.filter(paused=True).count() == 2
    call_command("jobctl", "tenant", "disable", "acme")
    assert not Job.objects.filter(enabled=True).exists()
    with pytest.raises(CommandError, match="3 job\\(s\\) refused"):
        call_command("jobctl", "tenant", "run", "acme")
    with pytest.raises(CommandError, match="'acme/nope': no such group"):
        call_command("jobctl", "group", "pause", "acme/nope")
    with pytest.raises(CommandError, match="TENANT/GROUP"):
        call_command("jobctl", "group", "pause", "billing")
    with pytest.raises(CommandError, match="invalid choice: 'explode'"):
        call_command("jobctl", "group", "explode", "acme/billing")
    with pytest.raises(CommandError, match="'nope': no such tenant"):
        call_command("jobctl", "tenant", "pause", "nope")


def test_api_group_and_tenant_operations(billing, tenant, other_tenant):
    user = get_user_model().objects.create_user("op")
    Membership.objects.create(tenant=tenant, user=user, role="operator")
    api = client_for(key_for(user))
    response = api.post(f"/api/groups/{billing.pk}/pause/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["operation"] == "pause"
    assert sorted(r["status"] for r in body["results"]) == ["done", "done"]
    assert Job.objects.filter(paused=True).count() == 2
    response = api.post(f"/api/tenants/{tenant.pk}/run/")
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["done"] * 3
    assert all("run" in r for r in response.json()["results"])
    # operators may not disable: each job refused, nothing changed
    response = api.post(f"/api/groups/{billing.pk}/disable/")
    assert {r["reason"] for r in response.json()["results"]} == {"you may not change this job"}
    assert Job.objects.filter(enabled=False).count() == 0
    # another tenant's group and tenant are 404
    foreign = JobGroup.objects.create(tenant=other_tenant, name="x")
    assert api.post(f"/api/groups/{foreign.pk}/pause/").status_code == 404
    assert api.post(f"/api/tenants/{other_tenant.pk}/pause/").status_code == 404
    assert errors_of(api.post(f"/api/groups/{billing.pk}/pause/", {"x": 1}, format="json")) == [
        ("x", "unknown field")
    ]


def test_admin_group_action(billing, admin_client):
    url = reverse("admin:scheduler_app_jobgroup_changelist")
    response = admin_client.post(url, {"action": "pause_all", "_selected_action": [billing.pk]}, follow=True)
    assert response.status_code == 200
    assert "Job group billing: pause 2 job(s), 0 refused." in response.content.decode()
    assert Job.objects.filter(paused=True).count() == 2
    response = admin_client.post(
        reverse("admin:scheduler_app_tenant_changelist"),
        {"action": "run_all_now", "_selected_action": [billing.tenant_id]},
        follow=True,
    )
    assert (
        "Tenant Acme: run 3 job(s), 0 refused." in response.content.decode() and JobRun.objects.count() == 3
    )
