"""User and group pickers (hardening #7): a tenant admin adds members, and grants object
permissions, by exact user name or e-mail (groups by exact name) and is never shown the
installation's accounts; what they can learn about other users is "no such user" and
nothing more. Superusers keep the full pickers."""

import pytest
from django.contrib.auth.models import Group
from guardian.shortcuts import get_user_perms

from scheduler_app.models import Membership
from tests.integration.test_admin import form_values, url
from tests.integration.test_isolation import build_world, login, object_url, staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(tenant, other_tenant):
    world = build_world(tenant, other_tenant)
    world["secret_user"] = staff("quiet-bob", email="bob@globex.example")
    Membership.objects.create(tenant=other_tenant, user=world["secret_user"], role="viewer")
    world["secret_group"] = Group.objects.create(name="globex-night-shift")
    return world


def outsiders(world):
    """Names no page of tenant A's admin may show to A's admin."""
    return [
        "quiet-bob",
        "bob@globex.example",
        "globex-boss",
        "nobody",
        "root",
        "AnonymousUser",
        "globex-night-shift",
    ]


def pages(world):
    a = world["a"]
    return [
        object_url("tenant", "change", a["tenant"].pk),
        url("membership", "add"),
        object_url("membership", "change", a["membership"].pk),
        object_url("job", "permissions", a["job"].pk),
        object_url("jobgroup", "permissions", a["group"].pk),
    ]


def test_tenant_admin_pages_list_no_accounts(client, world):
    login(client, world["users"]["admin"])
    for page in pages(world):
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for name in outsiders(world):
            assert name not in html, (page, name)
        assert 'name="user"' not in html or "<select" not in html.split('name="user"')[0][-200:]


def test_superuser_keeps_the_full_picker(client, world):
    login(client, world["root"])
    html = client.get(url("membership", "add")).content.decode()
    assert "quiet-bob" in html and "nobody" in html
    html = client.get(object_url("job", "permissions", world["a"]["job"].pk)).content.decode()
    assert "globex-night-shift" in html


def add_member(client, world, name):
    tenant = world["a"]["tenant"]
    data = form_values(client.get(object_url("tenant", "change", tenant.pk)), "tenant_form")
    total = int(data["memberships-TOTAL_FORMS"][0])
    data.update(
        {
            "memberships-TOTAL_FORMS": [str(total + 1)],
            f"memberships-{total}-user": [name],
            f"memberships-{total}-role": ["viewer"],
        }
    )
    return client.post(object_url("tenant", "change", tenant.pk), data)


def test_tenant_admin_adds_a_member_by_exact_name_or_email(client, world):
    login(client, world["users"]["admin"])
    newbie = staff("newbie", email="New.Bie@example.com")
    other = staff("other", email="other@example.com")
    assert add_member(client, world, "newbie").status_code == 302
    assert add_member(client, world, "other@example.com").status_code == 302
    members = set(
        Membership.objects.filter(tenant=world["a"]["tenant"]).values_list("user__username", flat=True)
    )
    assert {newbie.username, other.username} <= members


def test_what_a_tenant_admin_learns_is_no_such_user(client, world):
    """Unknown names, near misses, patterns, the anonymous user and e-mails that are not
    exact all give the same answer, and nothing is added."""
    login(client, world["users"]["admin"])
    before = Membership.objects.count()
    answers = set()
    for probe in [
        "ghost",
        "quiet",
        "QUIET-BOB ",
        "quiet-b%",
        "quiet-bo_",
        "*",
        "bob@globex",
        "@globex.example",
        "AnonymousUser",
        "1",
        str(world["secret_user"].pk),
    ]:
        response = add_member(client, world, probe)
        assert response.status_code == 200, probe
        formset = response.context["inline_admin_formsets"][0].formset
        errors = [e for form in formset.forms for e in form.errors.get("user", [])]
        answers.add(tuple(errors))
        html = response.content.decode()
        assert "quiet-bob" not in html and "bob@globex.example" not in html
    assert answers == {("No such user.",)}
    assert Membership.objects.count() == before


def test_permissions_page_takes_exact_names_of_members_and_groups(client, world):
    admin, viewer = world["users"]["admin"], world["users"]["viewer"]
    job = world["a"]["job"]
    login(client, admin)
    page = object_url("job", "permissions", job.pk)
    response = client.post(page, {"user": viewer.username, "actions": ["run"]})
    assert response.status_code == 302
    assert list(get_user_perms(viewer, job)) == ["run_job"]
    # a user of another tenant, the anonymous user, a pattern: "no such user"
    for probe in ["quiet-bob", "bob@globex.example", "AnonymousUser", "viewer%"]:
        response = client.post(page, {"user": probe, "actions": ["run"]})
        assert response.status_code == 200
        assert response.context["form"].errors["user"] == ["No such user."], probe
    response = client.post(page, {"group": "globex-night", "actions": ["run"]})
    assert response.context["form"].errors["group"] == ["No such group."]
    response = client.post(page, {"group": "globex-night-shift", "actions": ["run"]})
    assert response.status_code == 302
    assert not get_user_perms(world["secret_user"], job)
