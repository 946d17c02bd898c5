"""Tenant isolation and permissions of the API, as real non-superusers with real keys,
in the two-tenant world of the admin tests (tests/integration/test_isolation.py).

Every endpoint that takes an object id, with every method, is probed with tenant B's
objects by keys that may not see B: the answer is 404, exactly as for an id that does
not exist, and nothing changes. Keys restricted to a lower role than their user get
only that role's rights."""

import pytest
from django.contrib.auth import get_user_model

from scheduler_app.models import Calendar, Job, JobDependency, JobGroup, JobRun, Membership, Tenant
from tests.integration.api_support import client_for, errors_of, key_for
from tests.integration.test_isolation import MARK, MISSING, build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(tenant, other_tenant):
    from scheduler_app import services
    from scheduler_app.models import AlertChannel, AlertRule

    out = build_world(tenant, other_tenant)
    channel = services.save_channel(
        AlertChannel(tenant=other_tenant, name=f"{MARK}-mail", type="email", config={"to": ["b@example.com"]})
    )
    out["b"]["alertchannel"] = channel
    out["b"]["alertrule"] = services.save_rule(
        AlertRule(tenant=other_tenant, name=f"{MARK}-rule", events=["failed"]), channels=[channel]
    )
    return out


#: (method, URL template, which object of the world, body): every endpoint with an id.
OBJECT_ENDPOINTS = [
    ("get", "/api/tenants/{id}/", "tenant", None),
    ("get", "/api/tenants/{id}/members/", "tenant", None),
    ("post", "/api/tenants/{id}/members/", "tenant", {"user": "viewer-a", "role": "admin"}),
    ("delete", "/api/tenants/{id}/members/{user}/", "tenant", None),
    ("get", "/api/groups/{id}/", "group", None),
    ("put", "/api/groups/{id}/", "group", {"name": "hijacked"}),
    ("patch", "/api/groups/{id}/", "group", {"name": "hijacked"}),
    ("delete", "/api/groups/{id}/", "group", None),
    ("get", "/api/calendars/{id}/", "calendar", None),
    ("put", "/api/calendars/{id}/", "calendar", {"name": "hijacked", "dates": []}),
    ("patch", "/api/calendars/{id}/", "calendar", {"dates": []}),
    ("delete", "/api/calendars/{id}/", "calendar", None),
    ("get", "/api/jobs/{id}/", "job", None),
    ("put", "/api/jobs/{id}/", "job", {"name": "hijacked"}),
    ("patch", "/api/jobs/{id}/", "job", {"name": "hijacked"}),
    ("delete", "/api/jobs/{id}/", "job", None),
    ("post", "/api/jobs/{id}/run/", "job", {}),
    ("post", "/api/jobs/{id}/pause/", "job", None),
    ("post", "/api/jobs/{id}/resume/", "job", None),
    ("post", "/api/jobs/{id}/enable/", "job", None),
    ("post", "/api/jobs/{id}/disable/", "job", None),
    ("get", "/api/jobs/{id}/versions/", "job", None),
    ("get", "/api/jobs/{id}/versions/1/", "job", None),
    ("get", "/api/jobs/{id}/versions/diff/?from=1&to=1", "job", None),
    ("post", "/api/jobs/{id}/versions/1/rollback/", "job", None),
    ("get", "/api/jobs/{id}/audit/", "job", None),
    ("get", "/api/dependencies/{id}/", "jobdependency", None),
    ("delete", "/api/dependencies/{id}/", "jobdependency", None),
    ("get", "/api/runs/{id}/", "jobrun", None),
    ("post", "/api/runs/{id}/cancel/", "jobrun", None),
    ("post", "/api/runs/{id}/stop/", "running", None),
    *[
        ("post", f"/api/tenants/{{id}}/{op}/", "tenant", None)
        for op in ("pause", "resume", "enable", "disable", "run")
    ],
    *[
        ("post", f"/api/groups/{{id}}/{op}/", "group", None)
        for op in ("pause", "resume", "enable", "disable", "run")
    ],
    (
        "post",
        "/api/jobs/{id}/backfill/",
        "job",
        {"from": "2026-12-01T00:00:00+00:00", "to": "2026-12-01T06:00:00+00:00"},
    ),
    ("get", "/api/alert-channels/{id}/", "alertchannel", None),
    ("put", "/api/alert-channels/{id}/", "alertchannel", {"name": "hijacked"}),
    ("patch", "/api/alert-channels/{id}/", "alertchannel", {"name": "hijacked"}),
    ("delete", "/api/alert-channels/{id}/", "alertchannel", None),
    ("post", "/api/alert-channels/{id}/test/", "alertchannel", None),
    ("get", "/api/alert-rules/{id}/", "alertrule", None),
    ("put", "/api/alert-rules/{id}/", "alertrule", {"name": "hijacked"}),
    ("patch", "/api/alert-rules/{id}/", "alertrule", {"name": "hijacked"}),
    ("delete", "/api/alert-rules/{id}/", "alertrule", None),
]
#: Endpoints with an id that are not a tenant's: nodes are cluster-wide (every member
#: reads them, only superusers drain them: tests/integration/test_api_ops.py).
NOT_TENANT_OBJECTS = {"nodes"}
IDS = [f"{m}-{u.split('?')[0]}" for m, u, _, _ in OBJECT_ENDPOINTS]


def url_of(template, obj_id, world):
    return template.format(id=obj_id, user=world["b_admin"].pk)


def test_the_list_above_covers_every_endpoint_that_takes_an_id():
    """A new endpoint with an id must join OBJECT_ENDPOINTS (or say why not)."""
    import re

    from scheduler_app.api.urls import router

    listed = {(m, u.split("?")[0]) for m, u, _, _ in OBJECT_ENDPOINTS}
    routed = set()
    for pattern in router.urls:
        route = str(pattern.pattern)
        if "(?P<pk>" not in route or route.split("/")[0].lstrip("^") in NOT_TENANT_OBJECTS:
            continue
        template = "/api/" + route.lstrip("^").rstrip("$")
        template = template.replace("(?P<pk>[^/.]+)", "{id}").replace("(?P<user_id>[0-9]+)", "{user}")
        template = re.sub(r"\(\?P<number>\[0-9\]\+\)", "1", template)
        # Not "head": DRF adds it to the view's shared actions on the first GET it serves,
        # so it appears once another test has made a request in this process.
        routed |= {(method, template) for method in pattern.callback.actions if method != "head"}
    assert routed - listed == set()


def state(world):
    """Everything a hijack could change."""
    from scheduler_app.models import AlertChannel, AlertOutbox, AlertRule

    b = world["b"]
    return {
        "channels": sorted(AlertChannel.objects.values_list("pk", "name", "enabled")),
        "rules": sorted(AlertRule.objects.values_list("pk", "name", "enabled")),
        "alerts": AlertOutbox.objects.count(),
        "jobs": sorted(Job.objects.values_list("pk", "name", "enabled", "paused", "tenant_id", "priority")),
        "groups": sorted(JobGroup.objects.values_list("pk", "name")),
        "calendars": sorted(Calendar.objects.values_list("pk", "name")),
        "dates": b["calendar"].dates.count(),
        "deps": JobDependency.objects.count(),
        "runs": sorted(JobRun.objects.values_list("pk", "state", "stop_requested")),
        "members": sorted(Membership.objects.values_list("tenant_id", "user_id", "role")),
        "versions": b["job"].versions.count(),
    }


def keys_that_cannot_see_b(world):
    """A tenant-A user of each role; and B's own admin with a key restricted to A (after
    making them an admin of A too): the restriction, not the membership, must hide B."""
    out = {role: key_for(user) for role, user in world["users"].items()}
    both = world["b_admin"]
    Membership.objects.create(tenant=world["a"]["tenant"], user=both, role="admin")
    out["b-admin-restricted-to-a"] = key_for(both, tenant=world["a"]["tenant"])
    root = world["root"]
    out["superuser-restricted-to-a"] = key_for(root, tenant=world["a"]["tenant"])
    return out


@pytest.mark.parametrize(("method", "template", "key", "body"), OBJECT_ENDPOINTS, ids=IDS)
def test_every_endpoint_answers_404_for_another_tenants_object(world, method, template, key, body):
    tokens = keys_that_cannot_see_b(world)
    before = state(world)
    target = world["b"][key]
    for who, token in tokens.items():
        client = client_for(token)
        seen = getattr(client, method)(url_of(template, target.pk, world), body, format="json")
        missing = getattr(client, method)(url_of(template, MISSING, world), body, format="json")
        assert seen.status_code == 404, (who, seen.status_code, seen.content)
        assert seen.json() == missing.json() == {"errors": [{"field": None, "message": "Not found."}]}
        assert MARK not in seen.content.decode().lower()
    assert state(world) == before


@pytest.mark.parametrize(("method", "template", "key", "body"), OBJECT_ENDPOINTS, ids=IDS)
def test_control_the_same_endpoints_answer_for_a_key_that_sees_b(world, method, template, key, body):
    """B's admin's unrestricted key reaches B's objects on every endpoint (so the 404s
    above mean something)."""
    if template.startswith("/api/tenants/{id}/members/{user}"):
        Membership.objects.create(tenant=world["b"]["tenant"], user=world["users"]["viewer"], role="viewer")
        template = template.replace("{user}", str(world["users"]["viewer"].pk))
    client = client_for(key_for(world["b_admin"]))
    response = getattr(client, method)(url_of(template, world["b"][key].pk, world), body, format="json")
    assert response.status_code in (200, 201, 202, 204, 400, 409), (response.status_code, response.content)


LISTS = ["/api/tenants/", "/api/groups/", "/api/calendars/", "/api/jobs/", "/api/dependencies/", "/api/runs/"]


@pytest.mark.parametrize("path", LISTS)
def test_lists_show_only_the_keys_tenants(world, path):
    for who, token in keys_that_cannot_see_b(world).items():
        response = client_for(token).get(path)
        assert response.status_code == 200
        assert response.json()["results"], who
        assert MARK not in response.content.decode().lower(), who
    # control: B's admin's own key lists B's objects
    assert MARK in client_for(key_for(world["b_admin"])).get(path).content.decode().lower()


@pytest.mark.parametrize(
    "query",
    ["tenant=globex", "job={job}", "group=globex-etl", "node=globex-node"],
)
def test_run_filters_with_another_tenants_values_find_nothing(world, query):
    token = key_for(world["users"]["viewer"])
    response = client_for(token).get("/api/runs/?" + query.format(job=world["b"]["job"].pk))
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize("action", ["pause", "disable", "run", "delete"])
def test_bulk_actions_report_other_tenants_ids_as_not_found(world, action):
    client = client_for(key_for(world["users"]["editor"]))
    a_job, b_job = world["a"]["report"], world["b"]["report"]
    response = client.post(f"/api/jobs/bulk/{action}/", {"ids": [b_job.pk, a_job.pk]}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0] == {"id": b_job.pk, "status": "not found"}
    assert results[1]["status"] == "done"
    b_now = Job.objects.get(pk=b_job.pk)
    assert (b_now.enabled, b_now.paused) == (True, False)
    assert not JobRun.objects.filter(job=b_job, reason="manual").exists()


def test_bulk_run_actions_report_other_tenants_runs_as_not_found(world):
    client = client_for(key_for(world["users"]["operator"]))
    b_run, a_run = world["b"]["jobrun"], world["a"]["jobrun"]
    response = client.post("/api/runs/bulk/cancel/", {"ids": [b_run.pk, a_run.pk]}, format="json")
    assert response.json()["results"] == [
        {"id": b_run.pk, "status": "not found"},
        {"id": a_run.pk, "status": "done"},
    ]
    assert JobRun.objects.get(pk=b_run.pk).state == "queued"


def test_creating_in_or_referring_to_another_tenant_is_refused(world):
    client = client_for(key_for(world["users"]["editor"]))
    b = world["b"]
    cases = [
        ("/api/jobs/", {"tenant": "globex", "name": "x", "task": "demo.noop"}, "tenant"),
        ("/api/groups/", {"tenant": "globex", "name": "x"}, "tenant"),
        ("/api/calendars/", {"tenant": "globex", "name": "x"}, "tenant"),
        (
            "/api/dependencies/",
            {"upstream": b["extract"].pk, "downstream": world["a"]["report"].pk},
            "upstream",
        ),
        (
            "/api/dependencies/",
            {"upstream": world["a"]["report"].pk, "downstream": b["report"].pk},
            "downstream",
        ),
    ]
    before = state(world)
    for path, body, field in cases:
        response = client.post(path, body, format="json")
        assert response.status_code == 400, (path, response.content)
        assert errors_of(response)[0][0] == field
        if field != "tenant":  # (which echoes the slug that was sent)
            assert MARK not in response.content.decode().lower()
    assert state(world) == before


def test_a_dependency_across_tenants_is_refused_even_for_a_member_of_both(world):
    editor = world["users"]["editor"]
    Membership.objects.create(tenant=world["b"]["tenant"], user=editor, role="editor")
    client = client_for(key_for(editor))
    response = client.post(
        "/api/dependencies/",
        {"upstream": world["b"]["extract"].pk, "downstream": world["a"]["report"].pk},
        format="json",
    )
    assert response.status_code == 400
    assert errors_of(response) == [
        ("downstream", "Dependencies cannot cross tenants: globex-extract is in Globex, report is in Acme.")
    ]


# -- roles ------------------------------------------------------------------------------

#: (method, URL template, object, body, the least role that may)
ACTIONS = [
    ("get", "/api/jobs/{id}/", "job", None, "viewer"),
    ("post", "/api/jobs/{id}/run/", "report", {}, "operator"),
    ("post", "/api/jobs/{id}/pause/", "report", None, "operator"),
    ("post", "/api/runs/{id}/cancel/", "jobrun", None, "operator"),
    ("patch", "/api/jobs/{id}/", "report", {"priority": 4}, "editor"),
    ("post", "/api/jobs/{id}/disable/", "report", None, "editor"),
    ("delete", "/api/jobs/{id}/", "report", None, "editor"),
    ("patch", "/api/groups/{id}/", "group", {"description": "x"}, "editor"),
    ("get", "/api/tenants/{id}/members/", "tenant", None, "admin"),
]
ROLES = ["viewer", "operator", "editor", "admin"]


@pytest.mark.parametrize(
    ("method", "template", "key", "body", "least"), ACTIONS, ids=[f"{a[0]}-{a[1]}" for a in ACTIONS]
)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_do_exactly_its_actions(world, role, method, template, key, body, least):
    client = client_for(key_for(world["users"][role]))
    response = getattr(client, method)(template.format(id=world["a"][key].pk), body, format="json")
    if ROLES.index(role) >= ROLES.index(least):
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code == 403, response.content
        assert errors_of(response)[0][1].startswith("you may not")


@pytest.mark.parametrize(
    ("method", "template", "key", "body", "least"), ACTIONS, ids=[f"{a[0]}-{a[1]}" for a in ACTIONS]
)
@pytest.mark.parametrize("cap", ["viewer", "operator", "editor"])
def test_a_key_with_a_lower_role_gets_only_that_roles_rights(world, cap, method, template, key, body, least):
    admin = world["users"]["admin"]
    client = client_for(key_for(admin, role=cap))
    response = getattr(client, method)(template.format(id=world["a"][key].pk), body, format="json")
    if ROLES.index(cap) >= ROLES.index(least):
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code == 403, response.content


def test_a_capped_key_does_not_get_object_grants_above_its_role(world):
    """A viewer with a run grant on a job may run it; a viewer-capped key of that
    grant holder may not."""
    from guardian.shortcuts import assign_perm

    viewer = world["users"]["viewer"]
    job = world["a"]["report"]
    assign_perm("scheduler_app.run_job", viewer, job)
    assert client_for(key_for(viewer)).post(f"/api/jobs/{job.pk}/run/", {}, format="json").status_code == 201
    response = client_for(key_for(viewer, role="viewer")).post(f"/api/jobs/{job.pk}/run/", {}, format="json")
    assert response.status_code == 403


def test_a_restricted_superuser_key_acts_only_in_its_tenant_with_its_role(world):
    root = world["root"]
    client = client_for(key_for(root, tenant=world["a"]["tenant"], role="viewer"))
    assert client.get(f"/api/jobs/{world['a']['job'].pk}/").status_code == 200
    assert client.post(f"/api/jobs/{world['a']['job'].pk}/pause/").status_code == 403
    assert client.get(f"/api/jobs/{world['b']['job'].pk}/").status_code == 404
    assert [t["slug"] for t in client.get("/api/tenants/").json()["results"]] == ["acme"]
    # control: the unrestricted key of the superuser sees both
    full = client_for(key_for(root))
    assert {t["slug"] for t in full.get("/api/tenants/").json()["results"]} == {"acme", "globex"}


def test_a_user_without_membership_gets_no_key_and_sees_nothing(world):
    from django.core.exceptions import ValidationError
    from rest_framework.test import APIClient

    from scheduler_app.services import keys

    nobody = world["nobody"]
    with pytest.raises(ValidationError, match="is not a member of any tenant"):
        keys.create_key(nobody)
    session = APIClient()
    session.force_login(nobody)
    assert session.get("/api/jobs/").json()["results"] == []
    assert session.get(f"/api/jobs/{world['a']['job'].pk}/").status_code == 404


def test_tenant_admin_manages_members(world):
    admin = world["users"]["admin"]
    client = client_for(key_for(admin))
    tenant = world["a"]["tenant"]
    newcomer = get_user_model().objects.create_user("newcomer")
    response = client.post(
        f"/api/tenants/{tenant.pk}/members/", {"user": "newcomer", "role": "operator"}, format="json"
    )
    assert response.status_code == 200
    assert Membership.objects.get(tenant=tenant, user=newcomer).role == "operator"
    members = client.get(f"/api/tenants/{tenant.pk}/members/").json()["results"]
    assert {"user": "newcomer", "user_id": newcomer.pk, "role": "operator"} in members
    assert client.delete(f"/api/tenants/{tenant.pk}/members/{newcomer.pk}/").status_code == 204
    assert not Membership.objects.filter(user=newcomer).exists()
    bad = client.post(
        f"/api/tenants/{tenant.pk}/members/", {"user": "ghost", "role": "viewer"}, format="json"
    )
    assert errors_of(bad) == [("user", "unknown user 'ghost'")]
    assert Tenant.objects.count() == 2
