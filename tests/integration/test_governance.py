"""Governance in the admin, as real staff users (not superusers) logged in through the
test client: tenant roles, guardian object grants, the audit trail (django-auditlog),
numbered versions with diffs and rollback, and write-only secrets in the job form.

The data (tenant A "acme" with one user per role, tenant B "globex") is
``test_isolation.world``."""

import json
import warnings

import pytest
from auditlog.models import LogEntry
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.paginator import UnorderedObjectListWarning
from django.test import override_settings
from django.urls import reverse
from guardian.shortcuts import assign_perm, get_group_perms, get_user_perms

from scheduler_app import services
from scheduler_app.models import (
    Calendar,
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    JobVersion,
    Membership,
    Tenant,
)
from tests.integration.test_admin import form_values, form_values_of_plain_form, messages_of, url
from tests.integration.test_isolation import build_world, login, object_url, staff
from tests.settings import TEST_KEYS

# The SQLite pass leaves this module out: roles, grants, audit and versions through the admin are
# ORM queries only.
DB_INDEPENDENT = True
pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-Value-that-must-never-show"
ALL_JOB_ACTIONS = [
    "enable_selected",
    "disable_selected",
    "pause_selected",
    "resume_selected",
    "run_selected_now",
    "move_selected_to_group",
    "mute_alerts_selected",
    "unmute_alerts_selected",
    "backfill_selected",
    "delete_selected",
]


# -- helpers ----------------------------------------------------------------------------


def html_of(response):
    return response.content.decode()


def offered_actions(client, model="job"):
    form = client.get(url(model)).context["action_form"]
    return [] if form is None else [n for n, _ in form.fields["action"].choices if n]


def act(client, action, objs, model="job", **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objs], **extra}
    return client.post(url(model), data, follow=True)


def change_data(client, job, **changes):
    """What the job's change form submits, with ``changes`` applied."""
    response = client.get(object_url("job", "change", job.pk))
    assert response.status_code == 200
    data = form_values(response)
    data.update({k: v if isinstance(v, list) else [v] for k, v in changes.items()})
    return data


def post_change(client, job, **changes):
    return client.post(object_url("job", "change", job.pk), change_data(client, job, **changes))


def consume_messages(client):
    """Show (and so drop) the messages queued by earlier requests."""
    client.get(reverse("admin:index"))


def is_read_only(response):
    html = html_of(response)
    return response.status_code == 200 and 'name="_save"' not in html and 'name="_continue"' not in html


def entries_for(obj, **filters):
    ct = ContentType.objects.get_for_model(obj)
    return LogEntry.objects.filter(content_type=ct, object_pk=str(obj.pk), **filters).order_by("pk")


def operations(obj):
    return [e.additional_data["operation"] for e in entries_for(obj, action=LogEntry.Action.ACCESS)]


def snapshot_of(job):
    return {f: getattr(Job.objects.get(pk=job.pk), f) for f in ("enabled", "paused", "priority", "group_id")}


@pytest.fixture
def world(tenant, other_tenant):
    """Tenant A "acme" (a staff user per role), tenant B "globex": see test_isolation."""
    return build_world(tenant, other_tenant)


@pytest.fixture
def users(world):
    return world["users"]


@pytest.fixture
def a(world):
    return world["a"]


# == 2. roles ===========================================================================


class TestViewer:
    def test_change_pages_are_read_only_and_posts_are_refused(self, client, users, a):
        login(client, users["viewer"])
        for model, key in [
            ("job", "job"),
            ("jobgroup", "group"),
            ("calendar", "calendar"),
            ("jobdependency", "jobdependency"),
            ("tenant", "tenant"),
            ("membership", "membership"),
            ("jobrun", "jobrun"),
        ]:
            response = client.get(object_url(model, "change", a[key].pk))
            assert is_read_only(response), model
            assert client.post(object_url(model, "change", a[key].pk), {"name": "x"}).status_code == 403, (
                model
            )
        job = a["job"]
        # even with exactly what the form would submit
        data = form_values(client.get(object_url("job", "change", job.pk)))
        data["priority"] = ["9"]
        assert client.post(object_url("job", "change", job.pk), data).status_code == 403
        assert Job.objects.get(pk=job.pk).priority == 0

    def test_no_add_delete_run_rollback_or_grants(self, client, users, a):
        login(client, users["viewer"])
        job = a["job"]
        for name in ("job", "jobgroup", "calendar", "jobdependency", "membership", "tenant"):
            assert client.get(url(name, "add")).status_code == 403, name
        assert client.get(object_url("job", "delete", job.pk)).status_code == 403
        assert client.post(object_url("job", "delete", job.pk), {"post": "yes"}).status_code == 403
        assert client.get(object_url("job", "run", job.pk)).status_code == 403
        assert client.post(object_url("job", "run", job.pk), {"kwargs_override": "{}"}).status_code == 403
        assert client.get(object_url("job", "permissions", job.pk)).status_code == 403
        assert client.post(object_url("job", "history", job.pk), {"rollback": "1"}).status_code == 403
        assert Job.objects.filter(pk=job.pk).exists()
        assert not JobRun.objects.filter(reason="manual").exists()
        # the pages it may see
        for view in ("history", "audit"):
            assert client.get(object_url("job", view, job.pk)).status_code == 200, view

    def test_no_bulk_action_is_offered_and_a_forged_one_does_nothing(self, client, users, a):
        login(client, users["viewer"])
        assert offered_actions(client, "job") == []
        assert offered_actions(client, "jobrun") == []
        before = {j.pk: snapshot_of(j) for j in Job.objects.all()}
        for action in ALL_JOB_ACTIONS:
            act(client, action, [a["extract"], a["report"]], post="yes", apply="1", group="")
        assert {j.pk: snapshot_of(j) for j in Job.objects.all()} == before
        assert not JobRun.objects.filter(reason="manual").exists()
        act(client, "cancel_selected", [a["jobrun"]], model="jobrun")
        assert JobRun.objects.get(pk=a["jobrun"].pk).state == "queued"

    def test_history_page_offers_no_restore(self, client, users, a):
        job = a["job"]
        services.save_job(Job.objects.get(pk=job.pk) | _set(priority=3))
        login(client, users["viewer"])
        response = client.get(object_url("job", "history", job.pk))
        assert response.context["can_rollback"] is False
        assert 'name="rollback"' not in html_of(response)
        login(client, users["editor"])  # control
        assert 'name="rollback"' in html_of(client.get(object_url("job", "history", job.pk)))


class TestOperator:
    def test_actions_offered_are_run_and_pause_only(self, client, users):
        login(client, users["operator"])
        # A backfill queues runs: the run permission, like run now.
        assert offered_actions(client, "job") == [
            "pause_selected",
            "resume_selected",
            "run_selected_now",
            "backfill_selected",
        ]
        assert offered_actions(client, "jobrun") == ["cancel_selected", "stop_selected"]

    def test_run_now_page_queues_a_run(self, client, users, a):
        login(client, users["operator"])
        job = a["report"]
        assert client.get(object_url("job", "run", job.pk)).status_code == 200
        response = client.post(object_url("job", "run", job.pk), {"kwargs_override": "{}"}, follow=True)
        run = JobRun.objects.get(job=job, reason="manual")
        assert response.redirect_chain == [(object_url("job", "change", job.pk), 302)]
        assert messages_of(response) == [f"Queued run {run.pk}."]

    def test_pause_resume_and_run_actions(self, client, users, a):
        login(client, users["operator"])
        chosen = [a["extract"], a["report"]]
        assert messages_of(act(client, "pause_selected", chosen)) == ["Paused: 2."]
        assert set(Job.objects.filter(pk__in=[j.pk for j in chosen]).values_list("paused", flat=True)) == {
            True
        }
        assert messages_of(act(client, "resume_selected", chosen)) == ["Resumed: 2."]
        assert set(Job.objects.filter(pk__in=[j.pk for j in chosen]).values_list("paused", flat=True)) == {
            False
        }
        assert messages_of(act(client, "run_selected_now", chosen)) == ["Queued runs: 2."]
        assert JobRun.objects.filter(reason="manual").count() == 2

    def test_cancel_and_stop_runs(self, client, users, a):
        login(client, users["operator"])
        queued, running = a["jobrun"], a["running"]
        assert messages_of(act(client, "cancel_selected", [queued], model="jobrun")) == ["Cancelled: 1."]
        assert JobRun.objects.get(pk=queued.pk).state == "cancelled"
        assert messages_of(act(client, "stop_selected", [running], model="jobrun")) == ["Stop requested: 1."]
        assert JobRun.objects.get(pk=running.pk).stop_requested is True

    def test_cannot_change_add_or_delete(self, client, users, a):
        login(client, users["operator"])
        job = a["job"]
        assert is_read_only(client.get(object_url("job", "change", job.pk)))
        assert post_change_forbidden(client, job)
        assert client.get(url("job", "add")).status_code == 403
        assert client.post(object_url("job", "delete", job.pk), {"post": "yes"}).status_code == 403
        act(client, "disable_selected", [job])
        act(client, "move_selected_to_group", [job], apply="1", group="")
        act(client, "delete_selected", [job], post="yes")
        assert snapshot_of(job) == {
            "enabled": True,
            "paused": False,
            "priority": 0,
            "group_id": a["group"].pk,
        }
        assert client.post(object_url("job", "history", job.pk), {"rollback": "1"}).status_code == 403


def post_change_forbidden(client, job):
    data = form_values(client.get(object_url("job", "change", job.pk)))
    data["priority"] = ["9"]
    return (
        client.post(object_url("job", "change", job.pk), data).status_code == 403
        and Job.objects.get(pk=job.pk).priority == 0
    )


class TestEditor:
    def test_every_job_action_is_offered(self, client, users):
        login(client, users["editor"])
        assert offered_actions(client, "job") == ALL_JOB_ACTIONS

    def test_add_change_delete_through_the_admin(self, client, users, a):
        login(client, users["editor"])
        data = form_values(client.get(url("job", "add")))
        data.update(
            tenant=[str(a["tenant"].pk)],
            name=["fresh"],
            task=["demo.noop"],
            cron_expression=["0 3 * * *"],
            trigger_timezone=["UTC"],
        )
        assert client.post(url("job", "add"), data).status_code == 302
        job = Job.objects.get(name="fresh")
        assert post_change(client, job, priority="4").status_code == 302
        assert Job.objects.get(pk=job.pk).priority == 4
        assert client.post(object_url("job", "delete", job.pk), {"post": "yes"}).status_code == 302
        assert not Job.objects.filter(pk=job.pk).exists()
        # groups and calendars too
        response = client.post(url("jobgroup", "add"), {"tenant": a["tenant"].pk, "name": "newgroup"})
        assert response.status_code == 302 and JobGroup.objects.filter(name="newgroup").exists()

    def test_cannot_manage_members_tenants_or_grants(self, client, users, a):
        login(client, users["editor"])
        tenant = a["tenant"]
        assert is_read_only(client.get(object_url("tenant", "change", tenant.pk)))
        assert (
            client.post(object_url("tenant", "change", tenant.pk), {"slug": "x", "name": "x"}).status_code
            == 403
        )
        assert client.get(url("membership", "add")).status_code == 403
        nobody = staff("newbie")
        assert (
            client.post(
                url("membership", "add"), {"tenant": tenant.pk, "user": nobody.pk, "role": "admin"}
            ).status_code
            == 403
        )
        assert (
            client.post(
                object_url("membership", "change", a["membership"].pk),
                {"tenant": tenant.pk, "user": users["viewer"].pk, "role": "admin"},
            ).status_code
            == 403
        )
        assert client.get(object_url("job", "permissions", a["job"].pk)).status_code == 403
        assert client.get(object_url("jobgroup", "permissions", a["group"].pk)).status_code == 403
        assert not Membership.objects.filter(user=nobody).exists()
        assert Membership.objects.get(pk=a["membership"].pk).role == "viewer"
        assert Tenant.objects.get(pk=tenant.pk).slug == "acme"


class TestTenantAdmin:
    def test_adds_a_member_on_the_tenant_page(self, client, users, a):
        tenant = a["tenant"]
        newbie = staff("newbie")
        login(client, users["admin"])
        response = client.get(object_url("tenant", "change", tenant.pk))
        assert not is_read_only(response)
        data = form_values(response, "tenant_form")
        total = int(data["memberships-TOTAL_FORMS"][0])
        data.update(
            {
                "memberships-TOTAL_FORMS": [str(total + 1)],
                f"memberships-{total}-user": [newbie.username],
                f"memberships-{total}-role": ["operator"],
            }
        )
        response = client.post(object_url("tenant", "change", tenant.pk), data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        assert Membership.objects.get(user=newbie).role == "operator"
        entry = entries_for(Membership.objects.get(user=newbie)).get()
        assert (entry.action, entry.actor) == (LogEntry.Action.CREATE, users["admin"])

    def test_manages_memberships_in_the_membership_admin(self, client, users, a, world):
        login(client, users["admin"])
        newbie = staff("newbie")
        response = client.post(
            url("membership", "add"),
            {"tenant": a["tenant"].pk, "user": newbie.username, "role": "editor"},
        )
        assert response.status_code == 302
        assert Membership.objects.get(user=newbie).tenant == a["tenant"]
        response = client.post(
            object_url("membership", "change", a["membership"].pk),
            {"tenant": a["tenant"].pk, "user": users["viewer"].username, "role": "operator"},
        )
        assert response.status_code == 302
        assert Membership.objects.get(pk=a["membership"].pk).role == "operator"
        # ... but not into another tenant
        response = client.post(
            url("membership", "add"),
            {"tenant": world["b"]["tenant"].pk, "user": newbie.username, "role": "admin"},
        )
        assert response.status_code == 200
        assert "tenant" in response.context["adminform"].form.errors
        assert not Membership.objects.filter(user=newbie, tenant=world["b"]["tenant"]).exists()

    def test_opens_the_permission_pages(self, client, users, a):
        login(client, users["admin"])
        assert client.get(object_url("job", "permissions", a["job"].pk)).status_code == 200
        assert client.get(object_url("jobgroup", "permissions", a["group"].pk)).status_code == 200

    @pytest.mark.parametrize(
        ("role", "manages"),
        [("viewer", False), ("operator", False), ("editor", False), ("admin", True)],
    )
    def test_members_inline_is_editable_only_for_admins(self, client, users, a, role, manages):
        login(client, users[role])
        response = client.get(object_url("tenant", "change", a["tenant"].pk))
        assert is_read_only(response) is not manages
        inline = response.context["inline_admin_formsets"][0]
        assert inline.formset.prefix == "memberships"
        assert (
            inline.has_add_permission,
            inline.has_change_permission,
            inline.has_delete_permission,
        ) == (manages, manages, manages)
        assert "viewer-a" in html_of(response)  # members are listed either way


# == 3. object permissions (guardian) ====================================================


def _set(**fields):
    class Setter:
        def __ror__(self, job):
            for k, v in fields.items():
                setattr(job, k, v)
            return job

    return Setter()


class TestObjectGrants:
    def test_change_grant_on_one_job(self, client, users, a):
        viewer = users["viewer"]
        assign_perm("scheduler_app.change_job", viewer, a["extract"])
        login(client, viewer)
        assert not is_read_only(client.get(object_url("job", "change", a["extract"].pk)))
        response = post_change(client, a["extract"], priority="7")
        assert response.status_code == 302, response.context and response.context["adminform"].form.errors
        assert Job.objects.get(pk=a["extract"].pk).priority == 7
        assert a["extract"].versions.order_by("-number").first().author == viewer
        for other in (a["load"], a["report"]):
            assert is_read_only(client.get(object_url("job", "change", other.pk)))
            assert post_change_forbidden(client, other)
        # the grant is only "change"
        assert client.get(object_url("job", "run", a["extract"].pk)).status_code == 403
        assert client.post(object_url("job", "delete", a["extract"].pk), {"post": "yes"}).status_code == 403

    def test_change_grant_on_a_group_applies_to_its_jobs(self, client, users, a):
        viewer = users["viewer"]
        assign_perm("scheduler_app.change_jobgroup", viewer, a["group"])
        login(client, viewer)
        for job in (a["extract"], a["load"]):  # in the group
            assert post_change(client, job, priority="5").status_code == 302, job
            assert Job.objects.get(pk=job.pk).priority == 5
        assert post_change_forbidden(client, a["report"])  # not in the group

    def test_change_grant_on_a_group_lets_its_holder_edit_the_group(self, client, users, a):
        viewer = users["viewer"]
        assign_perm("scheduler_app.change_jobgroup", viewer, a["group"])
        login(client, viewer)
        response = client.get(object_url("jobgroup", "change", a["group"].pk))
        assert not is_read_only(response)
        data = form_values(response, "jobgroup_form")
        data["description"] = ["changed under a grant"]
        response = client.post(object_url("jobgroup", "change", a["group"].pk), data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        assert JobGroup.objects.get(pk=a["group"].pk).description == "changed under a grant"

    def test_change_grant_on_a_group_does_not_open_other_groups(self, client, users, a):
        viewer = users["viewer"]
        other = JobGroup.objects.create(tenant=a["tenant"], name="other")
        assign_perm("scheduler_app.change_jobgroup", viewer, a["group"])
        login(client, viewer)
        assert is_read_only(client.get(object_url("jobgroup", "change", other.pk)))
        response = client.post(
            object_url("jobgroup", "change", other.pk),
            {"tenant": a["tenant"].pk, "name": "renamed"},
        )
        assert response.status_code == 403
        assert JobGroup.objects.get(pk=other.pk).name == "other"

    def test_run_and_pause_grants_on_a_group(self, client, users, a):
        viewer = users["viewer"]
        assign_perm("scheduler_app.run_jobgroup", viewer, a["group"])
        assign_perm("scheduler_app.pause_jobgroup", viewer, a["group"])
        login(client, viewer)
        assert (
            client.post(object_url("job", "run", a["extract"].pk), {"kwargs_override": "{}"}).status_code
            == 302
        )
        assert (
            client.post(object_url("job", "run", a["report"].pk), {"kwargs_override": "{}"}).status_code
            == 403
        )
        consume_messages(client)
        assert list(JobRun.objects.filter(reason="manual").values_list("job__name", flat=True)) == ["extract"]
        response = act(client, "pause_selected", [a["extract"], a["report"]])
        assert messages_of(response) == [
            "Paused: 1.",
            "Refused report: you may not pause this job.",
        ]
        assert (
            Job.objects.get(pk=a["extract"].pk).paused,
            Job.objects.get(pk=a["report"].pk).paused,
        ) == (True, False)
        # the run grant covers the group's runs: cancel one of them, not another job's
        other_run = services.enqueue_run(a["report"], scheduled_for=a["jobrun"].scheduled_for)
        response = act(client, "cancel_selected", [a["jobrun"], other_run], model="jobrun")
        assert messages_of(response) == [
            "Cancelled: 1.",
            f"Refused {other_run}: you may not cancel runs of this job.",
        ]
        assert JobRun.objects.get(pk=other_run.pk).state == "queued"

    def test_a_grant_to_a_django_group_applies_to_its_users(self, client, users, a):
        team = Group.objects.create(name="night-shift")
        assign_perm("scheduler_app.change_job", team, a["report"])
        viewer, operator = users["viewer"], users["operator"]
        viewer.groups.add(team)
        login(client, viewer)
        assert post_change(client, a["report"], priority="2").status_code == 302
        assert Job.objects.get(pk=a["report"].pk).priority == 2
        login(client, operator)  # not in the group
        assert post_change_forbidden(client, a["extract"])
        assert is_read_only(client.get(object_url("job", "change", a["report"].pk)))

    @pytest.mark.parametrize(
        ("action", "grant", "verb", "refusal", "extra"),
        [
            ("enable_selected", "change", "Enabled", "you may not change this job", {}),
            ("disable_selected", "change", "Disabled", "you may not change this job", {}),
            ("pause_selected", "pause", "Paused", "you may not pause this job", {}),
            ("resume_selected", "pause", "Resumed", "you may not pause this job", {}),
            ("run_selected_now", "run", "Queued runs", "you may not run this job", {}),
            (
                "move_selected_to_group",
                "change",
                "Moved",
                "you may not change this job",
                {"apply": "1", "group": ""},
            ),
        ],
    )
    def test_bulk_action_on_a_mix_does_the_permitted_and_reports_the_refused(
        self, client, users, a, action, grant, verb, refusal, extra
    ):
        viewer = users["viewer"]
        allowed, denied = a["extract"], a["report"]
        assign_perm(f"scheduler_app.{grant}_job", viewer, allowed)
        if action == "enable_selected":
            Job.objects.filter(pk__in=[allowed.pk, denied.pk]).update(enabled=False)
        if action == "resume_selected":
            Job.objects.filter(pk__in=[allowed.pk, denied.pk]).update(paused=True)
        before = snapshot_of(denied)
        login(client, viewer)
        response = act(client, action, [allowed, denied], **extra)
        assert response.redirect_chain == [(url("job"), 302)]
        assert messages_of(response) == [f"{verb}: 1.", f"Refused {denied.name}: {refusal}."]
        assert snapshot_of(denied) == {**before}
        assert not JobRun.objects.filter(job=denied, reason="manual").exists()
        after = Job.objects.get(pk=allowed.pk)
        assert {
            "enable_selected": after.enabled is True,
            "disable_selected": after.enabled is False,
            "pause_selected": after.paused is True,
            "resume_selected": after.paused is False,
            "run_selected_now": JobRun.objects.filter(job=allowed, reason="manual").count() == 1,
            "move_selected_to_group": after.group_id is None,
        }[action]

    def test_bulk_delete_on_a_mix_deletes_the_permitted_and_reports_the_refused(self, client, users, a):
        viewer = users["viewer"]
        allowed, denied = a["report"], a["load"]
        assign_perm("scheduler_app.delete_job", viewer, allowed)
        login(client, viewer)
        response = act(client, "delete_selected", [allowed, denied], post="yes")
        assert response.status_code == 200
        assert not Job.objects.filter(pk=allowed.pk).exists()
        assert Job.objects.filter(pk=denied.pk).exists()
        assert f"Refused {denied.name}: you may not delete this job." in messages_of(response)

    def test_bulk_delete_with_a_delete_grant(self, client, users, a):
        viewer = users["viewer"]
        allowed = a["report"]
        assign_perm("scheduler_app.delete_job", viewer, allowed)
        login(client, viewer)
        assert offered_actions(client) == ["delete_selected"]
        response = act(client, "delete_selected", [allowed])
        assert "Are you sure you want to delete the selected job?" in html_of(response)
        response = act(client, "delete_selected", [allowed], post="yes")
        assert messages_of(response) == ["Successfully deleted 1 job."]
        assert not Job.objects.filter(pk=allowed.pk).exists()
        assert Job.objects.filter(tenant=a["tenant"]).count() == 2


class TestPermissionsPage:
    def grant(self, client, obj, model="job", **data):
        return client.post(object_url(model, "permissions", obj.pk), data, follow=True)

    def test_grant_and_revoke_as_tenant_admin(self, client, users, a):
        admin, viewer = users["admin"], users["viewer"]
        job = a["report"]
        login(client, admin)
        response = self.grant(client, job, user=viewer.username, actions=["change", "run"])
        assert response.redirect_chain == [(object_url("job", "permissions", job.pk), 302)]
        assert messages_of(response) == ["viewer-a: granted change, run; revoked nothing."]
        assert sorted(get_user_perms(viewer, job)) == ["change_job", "run_job"]
        assert ("user", viewer, ["change", "run"]) in response.context["grants"]
        assert "<td>viewer-a</td><td>user</td><td>change, run</td>" in html_of(response)
        # the grant works
        login(client, viewer)
        assert post_change(client, job, priority="6").status_code == 302
        consume_messages(client)
        # exactly the ticked actions are kept
        login(client, admin)
        response = self.grant(client, job, user=viewer.username, actions=["run"])
        assert messages_of(response) == ["viewer-a: granted nothing; revoked change."]
        assert list(get_user_perms(viewer, job)) == ["run_job"]
        login(client, viewer)
        data = form_values(client.get(object_url("job", "change", job.pk)))
        data["priority"] = ["1"]
        assert client.post(object_url("job", "change", job.pk), data).status_code == 403
        assert Job.objects.get(pk=job.pk).priority == 6

    def test_group_page_grants_to_a_django_group(self, client, users, a):
        team = Group.objects.create(name="night-shift")
        users["viewer"].groups.add(team)
        login(client, users["admin"])
        response = self.grant(client, a["group"], model="jobgroup", group=team.name, actions=["pause"])
        assert messages_of(response) == ["night-shift: granted pause; revoked nothing."]
        assert list(get_group_perms(team, a["group"])) == ["pause_jobgroup"]
        login(client, users["viewer"])
        response = act(client, "pause_selected", [a["load"], a["report"]])
        assert messages_of(response) == [
            "Paused: 1.",
            "Refused report: you may not pause this job.",
        ]

    @pytest.mark.parametrize("role", ["viewer", "operator", "editor"])
    def test_refused_for_non_admins(self, client, users, a, role):
        login(client, users[role])
        for model, obj in (("job", a["job"]), ("jobgroup", a["group"])):
            assert client.get(object_url(model, "permissions", obj.pk)).status_code == 403
            response = client.post(
                object_url(model, "permissions", obj.pk),
                {"user": users[role].pk, "actions": ["change", "delete"]},
            )
            assert response.status_code == 403
        assert not get_user_perms(users[role], a["job"]) and not get_user_perms(users[role], a["group"])
        with pytest.raises(PermissionDenied):
            services.set_object_permissions(a["job"], users[role], ["change"], actor=users[role])

    def test_a_user_outside_the_tenant_is_refused_with_a_clear_message(self, client, users, a, world):
        outsider = world["b_admin"]
        login(client, users["admin"])
        response = client.post(
            object_url("job", "permissions", a["job"].pk),
            {"user": outsider.username, "actions": ["view"]},
        )
        assert response.status_code == 200
        assert response.context["form"].errors["user"] == ["No such user."]
        # not offered either: only the name typed is echoed back in its box
        assert html_of(response).count("globex-boss") == 1
        assert 'value="globex-boss"' in html_of(response)
        assert not get_user_perms(outsider, a["job"])
        with pytest.raises(ValidationError) as info:
            services.set_object_permissions(a["job"], outsider, ["view"], actor=users["admin"])
        assert info.value.message_dict == {"user": ["globex-boss is not a member of Acme; add them first"]}
        assert not get_user_perms(outsider, a["job"])

    def test_unknown_action_and_missing_holder(self, client, users, a):
        login(client, users["admin"])
        response = client.post(object_url("job", "permissions", a["job"].pk), {"actions": ["view"]})
        assert response.context["form"].non_field_errors() == ["Choose a user or a group (one of them)."]
        with pytest.raises(ValidationError, match="'manage' cannot be granted"):
            services.set_object_permissions(a["job"], users["viewer"], ["manage"], actor=users["admin"])

    def test_granting_is_audited(self, client, users, a):
        login(client, users["admin"])
        self.grant(client, a["job"], user=users["viewer"].username, actions=["run", "view"])
        self.grant(client, a["job"], user=users["viewer"].username, actions=["view"])
        entries = list(entries_for(a["job"], action=LogEntry.Action.ACCESS))
        assert [e.additional_data for e in entries] == [
            {
                "operation": "permissions",
                "holder": "viewer-a",
                "holder_type": "user",
                "granted": ["run", "view"],
                "revoked": [],
            },
            {
                "operation": "permissions",
                "holder": "viewer-a",
                "holder_type": "user",
                "granted": [],
                "revoked": ["run"],
            },
        ]
        assert {(e.actor, e.remote_addr) for e in entries} == {(users["admin"], "127.0.0.1")}
        html = html_of(client.get(object_url("job", "audit", a["job"].pk)))
        assert "<td>permissions</td>" in html and "admin-a" in html


# == 4. audit ===========================================================================


class TestAudit:
    def test_create_update_delete_through_the_admin(self, client, users, a):
        editor = users["editor"]
        login(client, editor)
        data = form_values(client.get(url("job", "add")))
        data.update(
            tenant=[str(a["tenant"].pk)],
            name=["audited"],
            task=["demo.noop"],
            cron_expression=["0 3 * * *"],
            trigger_timezone=["UTC"],
        )
        assert client.post(url("job", "add"), data).status_code == 302
        job = Job.objects.get(name="audited")
        created = entries_for(job).get()
        assert (created.action, created.actor, created.remote_addr) == (
            LogEntry.Action.CREATE,
            editor,
            "127.0.0.1",
        )
        assert created.changes["name"][1] == "audited"
        assert created.changes["tenant"][1] == str(a["tenant"].pk)
        assert post_change(client, job, priority="5", description="now described").status_code == 302
        updated = entries_for(job, action=LogEntry.Action.UPDATE).get()
        assert (updated.actor, updated.remote_addr) == (editor, "127.0.0.1")
        assert updated.changes == {"priority": ["0", "5"], "description": ["", "now described"]}
        pk = job.pk
        assert client.post(object_url("job", "delete", pk), {"post": "yes"}).status_code == 302
        deleted = LogEntry.objects.get(
            content_type=ContentType.objects.get_for_model(Job),
            object_pk=str(pk),
            action=LogEntry.Action.DELETE,
        )
        assert (deleted.actor, deleted.remote_addr, deleted.object_repr) == (
            editor,
            "127.0.0.1",
            "audited",
        )

    @pytest.mark.parametrize(
        ("action", "field", "extra"),
        [
            ("disable_selected", "enabled", {}),
            ("pause_selected", "paused", {}),
            ("move_selected_to_group", "group", {"apply": "1", "group": ""}),
        ],
    )
    def test_bulk_actions_log_each_job(self, client, users, a, action, field, extra):
        login(client, users["editor"])
        chosen = [a["extract"], a["load"]]
        last = LogEntry.objects.order_by("-pk").first().pk
        assert act(client, action, chosen, **extra).status_code == 200
        for job in chosen:
            entry = entries_for(job, action=LogEntry.Action.UPDATE, pk__gt=last).get()
            assert (entry.actor, entry.remote_addr) == (users["editor"], "127.0.0.1")
            assert list(entry.changes) == [field]
        assert not entries_for(a["report"], pk__gt=last).exists()

    def test_enable_resume_and_delete_actions_log(self, client, users, a):
        Job.objects.filter(pk=a["report"].pk).update(enabled=False, paused=True)
        login(client, users["editor"])
        act(client, "enable_selected", [a["report"]])
        act(client, "resume_selected", [a["report"]])
        changes = [e.changes for e in entries_for(a["report"], action=LogEntry.Action.UPDATE)]
        assert changes == [{"enabled": ["False", "True"]}, {"paused": ["True", "False"]}]
        # (load has a running run, which blocks its deletion)
        response = act(client, "delete_selected", [a["report"], a["extract"]], post="yes")
        assert messages_of(response) == ["Successfully deleted 2 jobs."]
        ct = ContentType.objects.get_for_model(Job)
        deleted = LogEntry.objects.filter(content_type=ct, action=LogEntry.Action.DELETE)
        assert sorted((e.object_repr, e.actor.username, e.remote_addr) for e in deleted) == [
            ("extract", "editor-a", "127.0.0.1"),
            ("report", "editor-a", "127.0.0.1"),
        ]

    def test_importjobs_logs_creations_and_an_import_entry(self, tmp_path, a):
        doc = {
            "version": 1,
            "jobs": [
                {
                    "tenant": "acme",
                    "name": "imported",
                    "task": "demo.noop",
                    "trigger": {"type": "manual"},
                    "depends_on": [{"job": "extract", "condition": "success"}],
                }
            ],
        }
        path = tmp_path / "jobs.json"
        path.write_text(json.dumps(doc))
        call_command("importjobs", str(path))
        job = Job.objects.get(name="imported")
        created = entries_for(job).get()
        assert (created.action, created.actor) == (LogEntry.Action.CREATE, None)
        edge = JobDependency.objects.get(downstream=job)
        assert entries_for(edge, action=LogEntry.Action.CREATE).exists()
        imports = entries_for(a["tenant"], action=LogEntry.Action.ACCESS)
        assert [e.additional_data for e in imports] == [
            {"operation": "import", "source": str(path), "created": 1, "changed": 0, "deleted": 0}
        ]

    def test_operations_are_logged_and_listed_on_the_audit_page(self, client, users, a):
        admin = users["admin"]
        job = a["extract"]
        login(client, admin)
        client.post(object_url("job", "run", job.pk), {"kwargs_override": "{}"})
        client.post(
            object_url("job", "run", job.pk),
            {"kwargs_override": "{}", "run_at": "2030-01-01 10:00:00"},
        )
        act(client, "cancel_selected", [a["jobrun"]], model="jobrun")
        running = services.enqueue_run(job, scheduled_for=a["jobrun"].scheduled_for, attempt=2)
        JobRun.objects.filter(pk=running.pk).update(state="running")
        act(client, "stop_selected", [running], model="jobrun")
        post_change(client, job, priority="3")
        client.post(object_url("job", "history", job.pk), {"rollback": "1"})
        client.post(
            object_url("job", "permissions", job.pk),
            {"user": users["viewer"].username, "actions": ["view"]},
        )
        assert operations(job) == [
            "run_now",
            "run_at",
            "cancel_run",
            "stop_run",
            "rollback",
            "permissions",
        ]
        for entry in entries_for(job, action=LogEntry.Action.ACCESS):
            assert (entry.actor, entry.remote_addr) == (admin, "127.0.0.1"), entry.additional_data
        response = client.get(object_url("job", "audit", job.pk))
        rows = response.context["rows"]
        listed_ops = [r["operation"] for r in rows]
        for op in ("run_now", "run_at", "cancel_run", "stop_run", "rollback", "permissions"):
            assert op in listed_ops
        assert "update" in listed_ops and "create" in listed_ops
        html = html_of(response)
        assert "<td>admin-a</td>" in html and "<td>127.0.0.1</td>" in html
        assert "<code>priority</code>: 0 → 3" in html
        assert "<code>to_version</code>: 1" in html
        # the dependency edge's entries are on the page too
        assert any(r["entry"].content_type.model == "jobdependency" for r in rows)

    def test_rotatekeys_logs_an_operation(self, make_job):
        make_job("keyed", task="demo.echo", secret_kwargs={"token": SECRET})
        new = Fernet.generate_key().decode()
        with override_settings(SCHEDULER_APP={"ENCRYPTION_KEYS": [new, TEST_KEYS[0]]}):
            call_command("rotatekeys")
        entry = LogEntry.objects.get(additional_data__operation="rotate_keys")
        assert entry.additional_data == {"operation": "rotate_keys", "rotated": 1}
        assert entry.actor is None
        assert SECRET not in json.dumps([e.changes for e in LogEntry.objects.all()])


# -- secrets never leak ----------------------------------------------------------------


def all_audit_text():
    parts = []
    for e in LogEntry.objects.all():
        parts += [
            json.dumps(e.changes),
            e.changes_text or "",
            json.dumps(e.additional_data),
            json.dumps(e.serialized_data),
            e.object_repr,
        ]
    return "\n".join(parts)


class TestSecretsNeverShow:
    @pytest.fixture
    def secret_job(self, client, users, a):
        """Created and changed through the admin by an editor, with a secret."""
        login(client, users["editor"])
        data = form_values(client.get(url("job", "add")))
        data.update(
            tenant=[str(a["tenant"].pk)],
            name=["mailer"],
            task=["demo.echo"],
            kwargs=['{"to": "ops"}'],
            secret_kwargs=[json.dumps({"password": SECRET})],
            trigger_type=["manual"],
        )
        assert client.post(url("job", "add"), data).status_code == 302
        job = Job.objects.get(name="mailer")
        assert job.reveal_secret_kwargs() == {"password": SECRET}
        # change it twice more: the secret, then something else
        assert (
            post_change(client, job, secret_kwargs=json.dumps({"password": SECRET + "-2"})).status_code == 302
        )
        assert post_change(client, job, priority="2").status_code == 302
        client.post(object_url("job", "run", job.pk), {"kwargs_override": "{}"})
        client.post(object_url("job", "history", job.pk), {"rollback": "1"})
        return Job.objects.get(pk=job.pk)

    def test_not_in_any_audit_entry(self, secret_job):
        text = all_audit_text()
        assert SECRET not in text
        assert "password" in text  # the name is
        assert (
            entries_for(secret_job, action=LogEntry.Action.UPDATE)
            .filter(changes__has_key="secret_fingerprints")
            .exists()
        )

    def test_not_in_any_version(self, secret_job):
        assert secret_job.versions.count() >= 4
        for version in secret_job.versions.all():
            assert SECRET not in json.dumps(version.snapshot)

    def test_not_on_any_admin_page(self, client, users, secret_job):
        login(client, users["admin"])
        pages = {
            "change": client.get(object_url("job", "change", secret_job.pk)),
            "history": client.get(object_url("job", "history", secret_job.pk)),
            "diff": client.get(object_url("job", "history", secret_job.pk) + "?a=1&b=2"),
            "audit": client.get(object_url("job", "audit", secret_job.pk)),
            "list": client.get(url("job")),
            "runs": client.get(url("jobrun")),
            "run page": client.get(object_url("job", "run", secret_job.pk)),
        }
        for name, response in pages.items():
            assert response.status_code == 200, name
            assert SECRET not in html_of(response), name
        change = html_of(pages["change"])
        assert "password=••••••" in change
        diff = pages["diff"].context["changes"]
        assert [path for path, _, _ in diff] == ["secret_fingerprints.password"]
        assert "secret_fingerprints.password" in html_of(pages["diff"])
        assert "password" in html_of(pages["audit"])


# == 5. versions & rollback =============================================================


class TestVersions:
    @pytest.fixture
    def job(self, client, users, a):
        """v1 created by the editor in the admin; v2 priority; v3 trigger, group, calendar
        and dependency changed."""
        login(client, users["editor"])
        data = form_values(client.get(url("job", "add")))
        data.update(
            tenant=[str(a["tenant"].pk)],
            name=["versioned"],
            task=["demo.noop"],
            cron_expression=["0 3 * * *"],
            trigger_timezone=["UTC"],
            group=[str(a["group"].pk)],
            calendars=[str(a["calendar"].pk)],
            **{
                "upstream_edges-TOTAL_FORMS": ["1"],
                "upstream_edges-0-upstream": [str(a["extract"].pk)],
                "upstream_edges-0-condition": ["success"],
            },
        )
        assert client.post(url("job", "add"), data).status_code == 302
        job = Job.objects.get(name="versioned")
        assert post_change(client, job, priority="5").status_code == 302
        other = JobGroup.objects.create(tenant=a["tenant"], name="other")
        data = change_data(
            client,
            job,
            trigger_type="interval",
            interval_seconds="600",
            trigger_timezone="",
            group=str(other.pk),
            calendars=[],
        )
        data.update(
            {
                "upstream_edges-0-upstream": [str(a["report"].pk)],
                "upstream_edges-0-condition": ["failure"],
            }
        )
        response = client.post(object_url("job", "change", job.pk), data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        consume_messages(client)
        return Job.objects.get(pk=job.pk)

    def test_each_change_is_a_numbered_authored_version(self, job, users):
        versions = list(job.versions.order_by("number"))
        assert [(v.number, v.author, v.summary) for v in versions] == [
            (1, users["editor"], "created"),
            (2, users["editor"], "changed priority"),
            (
                3,
                users["editor"],
                "changed calendars, depends_on, group, trigger.dialect, trigger.expression, trigger.seconds",
            ),
        ]
        assert versions[0].snapshot["depends_on"] == [{"job": "extract", "condition": "success"}]
        assert versions[2].snapshot["group"] == "other"

    def test_a_no_op_save_makes_no_version(self, client, users, job):
        login(client, users["editor"])
        assert post_change(client, job).status_code == 302
        assert client.post(object_url("job", "change", job.pk), change_data(client, job)).status_code == 302
        services.save_job(Job.objects.get(pk=job.pk), actor=users["editor"])
        act(client, "enable_selected", [job])  # already enabled
        assert job.versions.count() == 3
        assert (
            not entries_for(job, action=LogEntry.Action.UPDATE)
            .filter(timestamp__gt=job.versions.get(number=3).created_at)
            .exists()
        )

    def test_history_page_lists_versions_and_diffs_any_two(self, client, users, job):
        login(client, users["viewer"])
        response = client.get(object_url("job", "history", job.pk))
        assert [v.number for v in response.context["versions"]] == [3, 2, 1]
        html = html_of(response)
        assert "<td>editor-a</td><td>changed priority</td>" in html
        # default: the last two
        assert (response.context["a"], response.context["b"]) == (2, 3)
        response = client.get(object_url("job", "history", job.pk) + "?a=1&b=3")
        assert response.context["changes"] == [
            ("calendars", '["holidays"]', "[]"),
            (
                "depends_on",
                '[{"job": "extract", "condition": "success"}]',
                '[{"job": "report", "condition": "failure"}]',
            ),
            ("group", "etl", "other"),
            ("priority", "0", "5"),
            ("trigger.dialect", "crontab", "—"),
            ("trigger.expression", "0 3 * * *", "—"),
            ("trigger.seconds", "—", "600"),
            ("trigger.timezone", "UTC", "—"),
            ("trigger.type", "cron", "interval"),
        ]
        html = html_of(response)
        assert "Changes from v1 to v3" in html
        assert '<code>group</code></th><td class="old">etl</td>' in html
        response = client.get(object_url("job", "history", job.pk) + "?a=2&b=2")
        assert response.context["changes"] == [] and "No differences." in html_of(response)

    def test_rollback_through_the_page_restores_everything_as_a_new_version(self, client, users, a, job):
        editor = users["editor"]
        login(client, editor)
        response = client.post(object_url("job", "history", job.pk), {"rollback": "1"}, follow=True)
        assert response.redirect_chain == [(object_url("job", "history", job.pk), 302)]
        assert messages_of(response) == ["Restored version 1 as a new version."]
        job = Job.objects.get(pk=job.pk)
        assert job.priority == 0
        assert job.trigger == {
            "type": "cron",
            "expression": "0 3 * * *",
            "dialect": "crontab",
            "timezone": "UTC",
        }
        assert job.group == a["group"]
        assert list(job.calendars.all()) == [a["calendar"]]
        assert [(e.upstream.name, e.condition) for e in job.upstream_edges.all()] == [("extract", "success")]
        latest = job.versions.order_by("-number").first()
        assert (latest.author, latest.summary) == (editor, "rollback to version 1")
        v1 = job.versions.get(number=1).snapshot
        assert latest.snapshot == v1
        rollback = entries_for(job, action=LogEntry.Action.ACCESS).get(additional_data__operation="rollback")
        assert (rollback.actor, rollback.remote_addr, rollback.additional_data["to_version"]) == (
            editor,
            "127.0.0.1",
            1,
        )

    def test_a_rollback_is_exactly_one_new_version(self, client, users, job):
        login(client, users["editor"])
        client.post(object_url("job", "history", job.pk), {"rollback": "1"})
        assert [v.number for v in job.versions.order_by("number")] == [1, 2, 3, 4]
        assert job.versions.get(number=4).snapshot == job.versions.get(number=1).snapshot

    def test_rollback_to_the_current_configuration_still_records_it(self, client, users, job):
        login(client, users["editor"])
        client.post(object_url("job", "history", job.pk), {"rollback": "3"})
        latest = job.versions.order_by("-number").first()
        assert (latest.number, latest.summary) == (4, "rollback to version 3")
        assert operations(job) == ["rollback"]

    @pytest.mark.parametrize("role", ["viewer", "operator"])
    def test_rollback_is_refused_without_change(self, client, users, job, role):
        login(client, users[role])
        response = client.post(object_url("job", "history", job.pk), {"rollback": "1"})
        assert response.status_code == 403
        assert job.versions.count() == 3
        assert Job.objects.get(pk=job.pk).priority == 5
        assert operations(job) == []
        with pytest.raises(PermissionDenied):
            services.rollback_job(job, 1, actor=users[role])

    def test_rollback_to_a_version_whose_group_is_gone(self, client, users, a, job):
        # v3 is in "other"; the group etl of v1 and v2 is deleted
        JobGroup.objects.filter(pk=a["group"].pk).delete()
        before = export(job)
        login(client, users["editor"])
        response = client.post(object_url("job", "history", job.pk), {"rollback": "2"}, follow=True)
        assert messages_of(response) == [
            "cannot restore version 2: jobs[0] (acme/versioned): group: unknown group 'etl' in tenant acme"
        ]
        assert export(job) == before
        assert job.versions.count() == 3
        assert operations(job) == []

    def test_rollback_to_a_version_that_does_not_exist(self, client, users, job):
        login(client, users["editor"])
        response = client.post(object_url("job", "history", job.pk), {"rollback": "99"}, follow=True)
        assert messages_of(response) == ["job versioned has no version 99"]
        assert job.versions.count() == 3

    def test_rollback_of_a_dependency_alone_tells_the_scheduler(self, users, a, job):
        services.add_dependency(a["extract"], job, "success", actor=users["editor"])  # v4
        before = ConfigVersion.current()
        services.rollback_job(job, 3, actor=users["editor"])
        assert [(e.upstream.name, e.condition) for e in job.upstream_edges.all()] == [("report", "failure")]
        assert ConfigVersion.current() > before
        latest = job.versions.order_by("-number").first()
        assert (latest.number, latest.summary) == (5, "rollback to version 3")
        assert latest.snapshot == job.versions.get(number=3).snapshot

    def test_rollback_restores_the_whole_document_every_field_changed(self, users, a):
        """v1 and v2 differ in every key of the job document (issue 11 f: a rollback that
        left out the retry policy passed a test comparing only the changed fields)."""
        from scheduler_app.documents.job import JOB_KEYS

        editor = users["editor"]
        job = services.save_job(
            Job(
                tenant=a["tenant"],
                name="everything",
                description="first",
                group=a["group"],
                task="demo.sleep",
                args=[1],
                kwargs={},
                trigger={"type": "cron", "expression": "0 3 * * *"},
                enabled=True,
                paused=False,
                priority=1,
                executor="process",  # enforces the CPU and memory limits below
                max_instances=1,
                overlap_policy="skip",
                misfire_policy="skip",
                misfire_grace_seconds=10,
                retry_max_attempts=2,
                retry_backoff_seconds=5,
                retry_backoff_factor=3,
                retry_max_backoff_seconds=50,
                timeout_seconds=30,
                cpu_limit_seconds=20,
                memory_limit_mb=256,
                routing="any",
                routing_tags=[],
                pause_after_failures=3,
                rate_limit="10/m",
                concurrency_key="erp",
                concurrency_limit=2,
                throttle_policy="wait",
                load_policy="defer",
                load_max_delay_seconds=60,
                trigger_rule="one_success",  # with the success edge below
                upstream_param="",
            ),
            actor=editor,
            calendars=[a["calendar"]],
        )
        services.add_dependency(a["extract"], job, "success", actor=editor)
        v1, number = export(job), job.versions.order_by("-number").first().number
        other = JobGroup.objects.create(tenant=a["tenant"], name="other-group")
        job = Job.objects.get(pk=job.pk)
        for field, value in {
            "description": "second",
            "group": other,
            "task": "demo.echo",
            "args": [],
            "kwargs": {"b": 2},
            "trigger": {"type": "interval", "seconds": 600},
            "enabled": False,
            "paused": True,
            "priority": 7,
            "executor": "isolated",
            "max_instances": 3,
            "overlap_policy": "queue",
            "misfire_policy": "run_all",
            "misfire_grace_seconds": 99,
            "retry_max_attempts": 4,
            "retry_backoff_seconds": 8,
            "retry_backoff_factor": 1.5,
            "retry_max_backoff_seconds": 80,
            "timeout_seconds": 60,
            "cpu_limit_seconds": 40,
            "memory_limit_mb": 512,
            "routing": "tags",
            "routing_tags": ["gpu"],
            "pause_after_failures": 5,
            "rate_limit": "5/h",
            "concurrency_key": "crm",
            "concurrency_limit": 3,
            "throttle_policy": "skip",
            "load_policy": "shed",
            "load_max_delay_seconds": 120,
            "trigger_rule": "all_success",  # a failure edge (below) needs it
            "upstream_param": "upstream",
        }.items():
            setattr(job, field, value)
        services.save_job(job, actor=editor, calendars=[])
        services.put_dependencies(job, actor=editor, wanted={a["report"].pk: "failure"})
        services.drop_dependencies(job, actor=editor, keep=[a["report"].pk])
        v2 = export(job)
        versioned = JOB_KEYS - {"tenant", "name", "secret_kwargs", "secret_kwargs_encrypted"}
        assert set(v1) >= versioned and {k for k in versioned if v1[k] == v2[k]} == set()
        services.rollback_job(job, number, actor=editor)
        assert export(job) == v1

    def test_rollback_that_would_close_a_cycle_changes_nothing(self, users, a, job):
        services.add_dependency(job, a["extract"], "success")  # v1 had versioned after extract
        before = export(job)
        with pytest.raises(ValidationError) as info:
            services.rollback_job(job, 1, actor=users["editor"])
        assert info.value.message_dict["version"] == [
            "cannot restore version 1: jobs[0] (acme/versioned): depends_on: This dependency would "
            "create a cycle: extract → versioned → extract."
        ]
        assert export(job) == before
        assert job.versions.count() == 3
        assert operations(job) == []

    @pytest.mark.parametrize("service", ["drop_dependencies", "put_dependencies"])
    def test_dependency_services_need_change_on_the_job(self, users, a, job, service):
        edges = list(job.upstream_edges.values_list("upstream_id", "condition"))
        args = {"keep": []} if service == "drop_dependencies" else {"wanted": {a["extract"].pk: "success"}}
        with pytest.raises(PermissionDenied):
            getattr(services, service)(job, actor=users["operator"], **args)
        assert list(job.upstream_edges.values_list("upstream_id", "condition")) == edges
        assert getattr(services, service)(job, actor=users["editor"], **args) is True

    def test_rollback_to_a_version_with_an_unknown_field_changes_nothing(self, users, job):
        v1 = job.versions.get(number=1)
        v1.snapshot = {**v1.snapshot, "colour": "blue"}
        v1.save()
        before = export(job)
        with pytest.raises(ValidationError) as info:
            services.rollback_job(job, 1, actor=users["editor"])
        assert info.value.message_dict["version"] == [
            "cannot restore version 1: jobs[0] (acme/versioned): colour: unknown field"
        ]
        assert export(job) == before

    def test_importjobs_creates_versions(self, tmp_path, a):
        doc = {
            "version": 1,
            "jobs": [
                {
                    "tenant": "acme",
                    "name": "imported",
                    "task": "demo.noop",
                    "trigger": {"type": "manual"},
                    "priority": 1,
                }
            ],
        }
        path = tmp_path / "jobs.json"
        path.write_text(json.dumps(doc))
        call_command("importjobs", str(path))
        call_command("importjobs", str(path))  # idempotent: no new version
        doc["jobs"][0]["priority"] = 2
        path.write_text(json.dumps(doc))
        call_command("importjobs", str(path))
        job = Job.objects.get(name="imported")
        assert [
            (v.number, v.author, v.summary, v.snapshot["priority"]) for v in job.versions.order_by("number")
        ] == [(1, None, "imported from a jobs file", 1), (2, None, "imported from a jobs file", 2)]

    @pytest.mark.parametrize("case", ["created", "fields-and-deps-changed"])
    def test_imported_versions_include_dependencies(self, tmp_path, a, case):
        entry = {
            "tenant": "acme",
            "name": "imported",
            "task": "demo.noop",
            "trigger": {"type": "manual"},
            "depends_on": [{"job": "extract", "condition": "success"}],
        }
        path = tmp_path / "jobs.json"
        if case == "fields-and-deps-changed":
            path.write_text(json.dumps({"version": 1, "jobs": [{**entry, "depends_on": []}]}))
            call_command("importjobs", str(path))
            entry["priority"] = 4
        path.write_text(json.dumps({"version": 1, "jobs": [entry]}))
        call_command("importjobs", str(path))
        job = Job.objects.get(name="imported")
        latest = job.versions.order_by("-number").first()
        assert latest.snapshot["depends_on"] == [{"job": "extract", "condition": "success"}]


def export(job):
    from scheduler_app.documents.job import export_job

    return export_job(Job.objects.get(pk=job.pk), secrets="fingerprints")


# == 6. secrets in the admin form =======================================================


class TestSecretField:
    @pytest.fixture
    def job(self, make_job):
        return make_job("mailer", task="demo.echo", secret_kwargs={"password": SECRET})

    @pytest.fixture
    def editor(self, client, users, job):
        assert Membership.objects.get(user=users["editor"]).tenant == job.tenant
        login(client, users["editor"])
        return users["editor"]

    def test_blank_keeps_the_stored_secrets(self, client, editor, job):
        data = change_data(client, job, priority="1")
        assert data["secret_kwargs"] == [""]  # never filled in
        assert client.post(object_url("job", "change", job.pk), data).status_code == 302
        job = Job.objects.get(pk=job.pk)
        assert (job.priority, job.reveal_secret_kwargs()) == (1, {"password": SECRET})

    def test_empty_object_removes_them(self, client, editor, job):
        assert post_change(client, job, secret_kwargs="{}").status_code == 302
        job = Job.objects.get(pk=job.pk)
        assert (job.reveal_secret_kwargs(), job.secret_names, job.secrets_token) == ({}, [], "")

    def test_an_object_replaces_them(self, client, editor, job):
        assert post_change(client, job, secret_kwargs='{"api_key": "k-123"}').status_code == 302
        job = Job.objects.get(pk=job.pk)
        assert (job.reveal_secret_kwargs(), job.secret_names) == ({"api_key": "k-123"}, ["api_key"])
        version = job.versions.order_by("-number").first()
        assert version.author == editor and version.summary.startswith("changed secret_fingerprints")

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('{"password": "' + SECRET, "Enter a valid JSON object."),
            ('["' + SECRET + '"]', 'Enter a JSON object, e.g. {"token": "..."}.'),
        ],
        ids=["not-json", "not-an-object"],
    )
    def test_invalid_input_is_refused_without_echoing_it_in_the_message(
        self, client, editor, job, text, message
    ):
        response = post_change(client, job, secret_kwargs=text)
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert errors == {"secret_kwargs": [message]}
        assert SECRET not in json.dumps(errors)
        assert Job.objects.get(pk=job.pk).reveal_secret_kwargs() == {"password": SECRET}

    @pytest.mark.parametrize("case", ["invalid-secret", "other-field-invalid"])
    def test_a_refused_form_does_not_echo_the_secret(self, client, editor, job, case):
        if case == "invalid-secret":
            response = post_change(client, job, secret_kwargs='{"password": "' + SECRET)
        else:
            response = post_change(
                client,
                job,
                secret_kwargs=json.dumps({"password": SECRET}),
                cron_expression="99 * * * *",
                trigger_type="cron",
            )
        assert response.status_code == 200
        assert SECRET not in html_of(response)

    def test_the_form_shows_names_masked_never_values(self, client, editor, job):
        html = html_of(client.get(object_url("job", "change", job.pk)))
        assert SECRET not in html
        assert "Current: password=••••••." in html


# == misc ===============================================================================


@pytest.mark.parametrize(("model", "field"), [("job", "tenant"), ("job", "group"), ("job", "calendars")])
def test_autocomplete_pages_are_ordered(client, world, model, field):
    login(client, world["root"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = client.get(
            reverse("admin:autocomplete"),
            {"app_label": "scheduler_app", "model_name": model, "field_name": field, "term": ""},
        )
    assert response.status_code == 200
    assert not [w for w in caught if issubclass(w.category, UnorderedObjectListWarning)]


def dependents_post(client, job, rows):
    """Post the job's change form with its 'dependents' inline set to ``rows``
    ([(downstream, condition, delete)]), the existing rows first."""
    data = change_data(client, job)
    initial = int(data["downstream_edges-INITIAL_FORMS"][0])
    for i, (down, condition, delete) in enumerate(rows):
        data[f"downstream_edges-{i}-downstream"] = [str(down.pk)]
        data[f"downstream_edges-{i}-condition"] = [condition]
        if delete:
            data[f"downstream_edges-{i}-DELETE"] = ["on"]
    data["downstream_edges-TOTAL_FORMS"] = [str(max(len(rows), initial))]
    return client.post(object_url("job", "change", job.pk), data)


def test_dependents_inline_cannot_add_an_edge_to_a_job_the_user_may_not_change(client, users, a):
    viewer = users["viewer"]
    assign_perm("scheduler_app.change_job", viewer, a["report"])
    login(client, viewer)
    response = dependents_post(client, a["report"], [(a["extract"], "success", False)])
    assert response.status_code == 200
    assert not JobDependency.objects.filter(upstream=a["report"], downstream=a["extract"]).exists()


def test_dependents_inline_cannot_remove_an_edge_of_a_job_the_user_may_not_change(client, users, a):
    viewer = users["viewer"]
    assign_perm("scheduler_app.change_job", viewer, a["extract"])  # upstream of load
    login(client, viewer)
    edge = a["jobdependency"]
    response = dependents_post(client, a["extract"], [(a["load"], "success", True)])
    assert response.status_code == 200
    assert JobDependency.objects.filter(pk=edge.pk).exists()


def test_dependency_admin_checks_the_downstream_job(client, users, a):
    """The dependency admin (unlike the inline, BUG-7) asks for change on the downstream."""
    viewer = users["viewer"]
    assign_perm("scheduler_app.change_job", viewer, a["load"])
    mine = a["jobdependency"]  # extract → load
    theirs = services.add_dependency(a["report"], a["extract"])  # extract may not be changed
    login(client, viewer)
    assert (
        client.post(
            url("jobdependency", "add"),
            {"upstream": a["report"].pk, "downstream": a["load"].pk, "condition": "success"},
        ).status_code
        == 403
    )
    assert not is_read_only(client.get(object_url("jobdependency", "change", mine.pk)))
    assert is_read_only(client.get(object_url("jobdependency", "change", theirs.pk)))
    response = client.post(
        object_url("jobdependency", "change", theirs.pk),
        {"upstream": a["report"].pk, "downstream": a["extract"].pk, "condition": "failure"},
    )
    assert response.status_code == 403
    response = client.post(
        object_url("jobdependency", "change", mine.pk),
        {"upstream": a["extract"].pk, "downstream": a["load"].pk, "condition": "failure"},
    )
    assert response.status_code == 302
    assert JobDependency.objects.get(pk=mine.pk).condition == "failure"
    assert JobDependency.objects.get(pk=theirs.pk).condition == "success"
    latest = a["load"].versions.order_by("-number").first()
    assert (latest.snapshot["depends_on"], latest.author) == (
        [{"job": "extract", "condition": "failure"}],
        viewer,
    )


def test_dependents_inline_versions_the_dependent_job(client, users, a):
    login(client, users["editor"])
    response = dependents_post(client, a["report"], [(a["extract"], "success", False)])
    assert response.status_code == 302
    latest = a["extract"].versions.order_by("-number").first()
    assert latest.snapshot["depends_on"] == [{"job": "report", "condition": "success"}]
    assert latest.author == users["editor"]


def test_bulk_deleting_dependencies_versions_the_downstream_jobs(client, users, a):
    from scheduler_app.models import ConfigVersion

    login(client, users["editor"])
    version = ConfigVersion.current()
    response = act(client, "delete_selected", [a["jobdependency"]], model="jobdependency", post="yes")
    assert messages_of(response) == ["Successfully deleted 1 job dependency."]
    assert not JobDependency.objects.filter(pk=a["jobdependency"].pk).exists()
    assert a["load"].versions.order_by("-number").first().snapshot["depends_on"] == []
    assert ConfigVersion.current() > version


def test_deleting_one_dependency_versions_the_downstream_job(client, users, a):
    login(client, users["editor"])
    edge = a["jobdependency"]
    assert client.post(object_url("jobdependency", "delete", edge.pk), {"post": "yes"}).status_code == 302
    latest = a["load"].versions.order_by("-number").first()
    assert (latest.snapshot["depends_on"], latest.author) == ([], users["editor"])


def test_membership_and_tenant_changes_are_audited(client, users, a):
    login(client, users["admin"])
    client.post(
        object_url("membership", "change", a["membership"].pk),
        {"tenant": a["tenant"].pk, "user": users["viewer"].username, "role": "editor"},
    )
    entry = entries_for(a["membership"], action=LogEntry.Action.UPDATE).get()
    assert (entry.actor, entry.changes) == (users["admin"], {"role": ["viewer", "editor"]})


def test_calendar_and_group_pages_scope_their_tenant_choices(client, users, world):
    login(client, users["editor"])
    for model in ("jobgroup", "calendar"):
        form = client.get(url(model, "add")).context["adminform"].form
        assert [str(t) for t in form.fields["tenant"].queryset] == ["Acme"], model
        response = client.post(
            url(model, "add"),
            {
                "tenant": world["b"]["tenant"].pk,
                "name": "sneaky",
                "dates-TOTAL_FORMS": "0",
                "dates-INITIAL_FORMS": "0",
            },
        )
        assert response.status_code == 200
        assert "tenant" in response.context["adminform"].form.errors
    assert not JobGroup.objects.filter(name="sneaky").exists()
    assert not Calendar.objects.filter(name="sneaky").exists()


def test_version_authors_and_tenants_are_recorded(client, users, a):
    login(client, users["editor"])
    post_change(client, a["report"], priority="8")
    version = JobVersion.objects.filter(job=a["report"]).order_by("-number").first()
    assert (version.tenant_id, version.author) == (a["tenant"].pk, users["editor"])


def test_move_form_offers_only_groups_of_the_jobs_tenant(client, users, a):
    login(client, users["editor"])
    response = act(client, "move_selected_to_group", [a["report"]])
    values = form_values_of_plain_form(html_of(response))
    assert values["action"] == ["move_selected_to_group"]
    assert "globex" not in html_of(response)
