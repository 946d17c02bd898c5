"""The job group, tenant and membership admin pages save and delete through
scheduler_app.services: audited with the acting user, the configuration version bumped,
permission and tenant rules checked, a refused change shown on its field and nothing
written."""

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType

from scheduler_app.models import ConfigVersion, JobGroup, Membership, Tenant
from tests.integration.test_admin import form_values, url

DB_INDEPENDENT = True  # admin pages: Python above the ORM
pytestmark = pytest.mark.django_db


def login(client, tenant, role, name):
    user = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    Membership.objects.create(tenant=tenant, user=user, role=role)
    client.force_login(user)
    return user


def last_entry(obj):
    ct = ContentType.objects.get_for_model(type(obj))
    return LogEntry.objects.filter(content_type=ct, object_pk=str(obj.pk)).order_by("pk").last()


def test_a_group_saved_in_the_admin_is_audited_with_its_editor_and_bumps_the_version(client, tenant):
    editor = login(client, tenant, "editor", "ed")
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    before = ConfigVersion.current()
    values = form_values(client.get(url("jobgroup", "change", group.pk)), "jobgroup_form")
    values["rate_limit"] = ["10/m"]
    response = client.post(url("jobgroup", "change", group.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    group.refresh_from_db()
    assert group.rate_limit == "10/m"
    entry = last_entry(group)
    assert entry.action == LogEntry.Action.UPDATE and entry.actor == editor
    assert entry.changes_dict["rate_limit"] == ["", "10/m"]
    assert ConfigVersion.current() > before  # the claim reads the group's rate limit


def test_a_group_cannot_move_to_another_tenant_the_form_says_so(admin_client, tenant, other_tenant):
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    values = form_values(admin_client.get(url("jobgroup", "change", group.pk)), "jobgroup_form")
    values["tenant"] = [str(other_tenant.pk)]
    response = admin_client.post(url("jobgroup", "change", group.pk), values)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"tenant": ["the job group cannot move to another tenant"]}, errors
    group.refresh_from_db()
    assert group.tenant_id == tenant.pk


def test_a_group_deleted_in_the_admin_gives_its_jobs_a_version(admin_client, tenant, make_job):
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    job = make_job("invoices", group=group)
    before = ConfigVersion.current()
    response = admin_client.post(url("jobgroup", "delete", group.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not JobGroup.objects.exists()
    job.refresh_from_db()
    assert job.group is None
    assert job.versions.order_by("-number").first().summary == "group deleted"
    assert ConfigVersion.current() > before


def test_a_tenant_admin_renames_the_tenant_but_may_not_lift_its_rate_limit(client, tenant, make_job):
    tenant.rate_limit = "100/h"
    tenant.save()
    job = make_job("invoices")
    boss = login(client, tenant, "admin", "boss")
    before = ConfigVersion.current()
    page = client.get(url("tenant", "change", tenant.pk))
    values = form_values(page, "tenant_form")
    values["rate_limit"] = [""]
    response = client.post(url("tenant", "change", tenant.pk), values)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["rate_limit"], errors
    assert "only superusers" in errors["rate_limit"][0]
    tenant.refresh_from_db()
    assert tenant.rate_limit == "100/h" and ConfigVersion.current() == before
    # a new slug is allowed, audited with its actor, and gives every job a new version
    values = form_values(page, "tenant_form")
    values.update(name=["Acme Corp"], slug=["acme-corp"])
    response = client.post(url("tenant", "change", tenant.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (tenant.slug, tenant.name, tenant.rate_limit) == ("acme-corp", "Acme Corp", "100/h")
    entry = last_entry(tenant)
    assert entry.actor == boss and entry.changes_dict["slug"] == ["acme", "acme-corp"]
    assert ConfigVersion.current() > before
    assert job.versions.order_by("-number").first().summary == "tenant renamed to acme-corp"


def test_a_superuser_sets_a_tenants_rate_limit(admin_client, admin_user, tenant):
    before = ConfigVersion.current()
    values = form_values(admin_client.get(url("tenant", "change", tenant.pk)), "tenant_form")
    values["rate_limit"] = ["1000/h"]
    response = admin_client.post(url("tenant", "change", tenant.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.rate_limit == "1000/h"
    assert last_entry(tenant).actor == admin_user
    assert ConfigVersion.current() > before


def test_the_members_inline_saves_through_the_services(client, tenant):
    boss = login(client, tenant, "admin", "boss")
    get_user_model().objects.create_user("newbie", is_staff=True)
    values = form_values(client.get(url("tenant", "change", tenant.pk)), "tenant_form")
    total = int(values["memberships-TOTAL_FORMS"][0])
    values.update(
        {
            "memberships-TOTAL_FORMS": [str(total + 1)],
            f"memberships-{total}-user": ["newbie"],
            f"memberships-{total}-role": ["viewer"],
        }
    )
    response = client.post(url("tenant", "change", tenant.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    member = Membership.objects.get(tenant=tenant, user__username="newbie")
    assert member.role == "viewer"
    assert last_entry(member).actor == boss


def test_tenants_are_deleted_through_the_services(tenant, other_tenant, make_job, admin_user):
    from scheduler_app import services

    make_job("invoices")  # acme keeps a job: refused, naming why
    Membership.objects.create(tenant=other_tenant, user=admin_user, role="admin")
    before = ConfigVersion.current()
    result = services.delete_tenants([tenant, other_tenant], actor=admin_user)
    assert result.done == [other_tenant]
    assert [(t, str(reason)) for t, reason in result.refused] == [
        (tenant, "it has 1 job(s); delete or move them first")
    ]
    assert list(Tenant.objects.all()) == [tenant] and not Membership.objects.exists()
    assert ConfigVersion.current() > before
    boss = get_user_model().objects.create_user("boss", is_staff=True)
    Membership.objects.create(tenant=tenant, user=boss, role="admin")
    refused = services.delete_tenants([tenant], actor=boss)
    assert [str(reason) for _t, reason in refused.refused] == ["only superusers delete tenants"]


def test_a_tenant_deleted_in_the_admin_is_audited_and_bumps_the_version(
    admin_client, admin_user, other_tenant
):
    before = ConfigVersion.current()
    response = admin_client.post(url("tenant", "delete", other_tenant.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Tenant.objects.exists()
    ct = ContentType.objects.get_for_model(Tenant)
    entry = LogEntry.objects.get(
        content_type=ct, object_pk=str(other_tenant.pk), action=LogEntry.Action.DELETE
    )
    assert entry.actor == admin_user
    assert ConfigVersion.current() > before


# -- calendars ------------------------------------------------------------------------------


def test_calendar_dates_saved_in_the_admin_go_through_the_services(client, tenant, make_job):
    import datetime as dt

    from scheduler_app.models import Calendar, CalendarDate

    editor = login(client, tenant, "editor", "ed")
    holidays = Calendar.objects.create(tenant=tenant, name="holidays")
    CalendarDate.objects.create(calendar=holidays, date=dt.date(2030, 12, 25), label="Christmas")
    job = make_job("invoices")
    job.calendars.set([holidays])
    versions = job.versions.count()
    values = form_values(client.get(url("calendar", "change", holidays.pk)), "calendar_form")
    values.update(
        {"dates-1-date": ["2030-12-31"], "dates-1-label": ["New Year's Eve"], "dates-0-DELETE": ["on"]}
    )
    response = client.post(url("calendar", "change", holidays.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(holidays.dates.values_list("date", "label")) == [(dt.date(2030, 12, 31), "New Year's Eve")]
    added = last_entry(holidays.dates.get())
    assert added.action == LogEntry.Action.CREATE and added.actor == editor
    assert job.versions.count() == versions + 1
    assert job.versions.order_by("-number").first().summary == "calendar holidays changed"
    # saved again unchanged: no new version of the job
    values = form_values(client.get(url("calendar", "change", holidays.pk)), "calendar_form")
    assert client.post(url("calendar", "change", holidays.pk), values).status_code == 302
    assert job.versions.count() == versions + 1


def test_a_calendar_cannot_move_to_another_tenant_the_form_says_so(admin_client, tenant, other_tenant):
    from scheduler_app.models import Calendar

    holidays = Calendar.objects.create(tenant=tenant, name="holidays")
    values = form_values(admin_client.get(url("calendar", "change", holidays.pk)), "calendar_form")
    values["tenant"] = [str(other_tenant.pk)]
    response = admin_client.post(url("calendar", "change", holidays.pk), values)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "tenant": ["the exclusion calendar cannot move to another tenant"]
    }
    holidays.refresh_from_db()
    assert holidays.tenant_id == tenant.pk


# -- dependencies ---------------------------------------------------------------------------


def test_an_edge_moved_in_the_dependency_admin_versions_both_jobs(admin_client, admin_user, make_job):
    from scheduler_app import services
    from scheduler_app.models import JobDependency

    up, before_down, after_down = make_job("extract"), make_job("load"), make_job("report")
    edge = services.add_dependency(up, before_down)
    version = ConfigVersion.current()
    response = admin_client.post(
        url("jobdependency", "change", edge.pk),
        {"upstream": up.pk, "downstream": after_down.pk, "condition": "completion"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    edge.refresh_from_db()
    assert (edge.downstream, edge.condition) == (after_down, "completion")
    assert after_down.versions.order_by("-number").first().summary == "depends on extract"
    assert before_down.versions.order_by("-number").first().summary == "no longer depends on extract"
    assert last_entry(edge).actor == admin_user
    assert ConfigVersion.current() > version
    response = admin_client.post(url("jobdependency", "delete", edge.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not JobDependency.objects.exists()
    assert after_down.versions.order_by("-number").first().summary.startswith("no longer depends on extract")


def test_the_dependency_admin_refuses_an_edge_whose_downstream_one_may_not_change(client, tenant, make_job):
    from guardian.shortcuts import assign_perm

    from scheduler_app.models import JobDependency

    up, mine, theirs = make_job("extract"), make_job("load"), make_job("report")
    edge = JobDependency.objects.create(upstream=up, downstream=mine)
    user = login(client, tenant, "viewer", "vic")
    assign_perm("scheduler_app.change_job", user, mine)
    response = client.post(
        url("jobdependency", "change", edge.pk),
        {"upstream": up.pk, "downstream": theirs.pk, "condition": "success"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors(), response.context["adminform"].form.errors
    edge.refresh_from_db()
    assert edge.downstream == mine


def test_the_job_pages_dependency_lists_go_through_set_job_edges(admin_client, admin_user, make_job):
    from scheduler_app import services
    from scheduler_app.models import JobDependency

    extract, job, load, report = (make_job(n) for n in ("extract", "invoices", "load", "report"))
    services.add_dependency(job, load)  # invoices → load
    values = form_values(admin_client.get(url("job", "change", job.pk)))
    assert values["downstream_edges-0-downstream"] == [str(load.pk)]
    values.update(
        {
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(extract.pk)],
            "upstream_edges-0-condition": ["failure"],
            "downstream_edges-0-downstream": [str(report.pk)],  # the row now names report
            "downstream_edges-0-condition": ["completion"],
        }
    )
    response = admin_client.post(url("job", "change", job.pk), values)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert sorted(JobDependency.objects.values_list("upstream__name", "downstream__name", "condition")) == [
        ("extract", "invoices", "failure"),
        ("invoices", "report", "completion"),
    ]
    for other in (load, report):  # both other ends get a version naming the job
        latest = other.versions.order_by("-number").first()
        assert latest.summary == "upstream edges changed on invoices", other
    edge = JobDependency.objects.get(downstream=report)
    assert last_entry(edge).actor == admin_user
