"""Nodes (read for members, drain/resume for superusers) and alert channels and rules
(tenant-scoped CRUD through the services; channel secrets write-only; audited with the
API key as well as its user)."""

import datetime as dt

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from scheduler_app import services
from scheduler_app.models import AlertChannel, AlertRule, ApiKey, Membership, Node
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor(tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return user


@pytest.fixture
def api(editor):
    return client_for(key_for(editor))


@pytest.fixture
def node(db):
    now = timezone.now()
    return Node.objects.create(
        name="n1",
        incarnation="x",
        started_at=now,
        heartbeat_at=now,
        capacity={"thread": 4},
        used={"thread": 1},
    )


def foreign_channel(other_tenant):
    return services.save_channel(
        AlertChannel(tenant=other_tenant, name="ops", type="email", config={"to": ["a@b.example"]})
    )


def test_a_tenant_admin_may_not_drain_a_node_and_is_told_why(node, tenant):
    """Nodes are cluster-wide: a tenant admin's rights end at their tenant."""
    from scheduler_app import services

    boss = get_user_model().objects.create_user("boss")
    Membership.objects.create(tenant=tenant, user=boss, role="admin")
    api = client_for(key_for(boss))
    for verb in ("drain", "resume"):
        refused = api.post(f"/api/nodes/{node.pk}/{verb}/")
        assert refused.status_code == 403, refused.content
        assert "nodes are shared by every tenant" in refused.json()["errors"][0]["message"]
    node.refresh_from_db()
    assert node.state == "active"
    # the same reason from the service the admin and jobctl use
    result = services.drain_nodes([node], actor=boss)
    assert not result.done
    assert "nodes are shared by every tenant" in result.refused[0][1]


def test_nodes_are_read_by_members_and_drained_by_superusers_only(api, node, editor):
    listed = api.get("/api/nodes/")
    assert listed.status_code == 200
    (item,) = listed.json()["results"]
    assert (item["name"], item["state"], item["running"], item["capacity"]) == (
        "n1",
        "active",
        1,
        {"thread": 4},
    )
    assert api.get(f"/api/nodes/{node.pk}/").json()["name"] == "n1"
    refused = api.post(f"/api/nodes/{node.pk}/drain/")
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["message"] == (
        "only superusers may drain or resume nodes: nodes are shared by every tenant "
        "(each one runs all tenants' jobs), so draining one affects every tenant"
    )
    node.refresh_from_db()
    assert node.state == "active"

    root = get_user_model().objects.create_superuser("root")
    token = key_for(root)
    admin = client_for(token)
    drained = admin.post(f"/api/nodes/{node.pk}/drain/")
    assert drained.status_code == 200, drained.content
    assert drained.json()["node"]["state"] == "draining"
    node.refresh_from_db()
    assert node.state == "draining"
    entry = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Node)).latest("pk")
    assert entry.actor == root and entry.additional_data["operation"] == "drain"
    assert entry.additional_data["api_key"] == ApiKey.objects.get(user=root).prefix
    assert admin.post(f"/api/nodes/{node.pk}/drain/").status_code == 200  # draining again is a no-op
    assert admin.post(f"/api/nodes/{node.pk}/resume/").json()["node"]["state"] == "active"
    assert admin.post("/api/nodes/999999/drain/").status_code == 404


def test_channel_crud_with_a_write_only_secret(api, editor):
    made = api.post(
        "/api/alert-channels/",
        {
            "tenant": "acme",
            "name": "hook",
            "type": "webhook",
            "config": {"url": "https://h.example/x"},
            "secret": "s3cret",
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["has_secret"] is True and body["secret_fingerprint"]
    assert "s3cret" not in made.content.decode() and "secret" not in body
    stored = AlertChannel.objects.get(pk=body["id"])
    assert stored.reveal_secret() == "s3cret" and "s3cret" not in stored.secret_token
    assert "s3cret" not in api.get(f"/api/alert-channels/{stored.pk}/").content.decode()

    changed = api.patch(f"/api/alert-channels/{stored.pk}/", {"enabled": False}, format="json")
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    stored.refresh_from_db()
    assert stored.reveal_secret() == "s3cret"  # kept when not sent

    bad = api.patch(f"/api/alert-channels/{stored.pk}/", {"config": {"url": "ftp://x"}}, format="json")
    assert bad.status_code == 400
    assert errors_of(bad)[0][0] == "url"
    assert AlertChannel.objects.get(pk=stored.pk).config == {"url": "https://h.example/x"}
    unknown = api.post(
        "/api/alert-channels/", {"tenant": "acme", "name": "x", "type": "email", "colour": 1}, format="json"
    )
    assert unknown.status_code == 400 and errors_of(unknown)[0][0] == "colour"

    entry = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(AlertChannel), object_pk=str(stored.pk)
    ).latest("pk")
    assert (
        entry.actor == editor and entry.additional_data["api_key"] == ApiKey.objects.get(user=editor).prefix
    )
    assert api.delete(f"/api/alert-channels/{stored.pk}/").status_code == 204
    assert not AlertChannel.objects.filter(pk=stored.pk).exists()


def test_rule_crud_and_scope_checks(api, make_job, other_tenant):
    chan = services.save_channel(
        AlertChannel(tenant=make_job("a").tenant, name="mail", type="email", config={"to": ["a@b.example"]})
    )
    job = make_job("b")
    made = api.post(
        "/api/alert-rules/",
        {
            "tenant": "acme",
            "name": "fail",
            "events": ["failed", "late"],
            "late_after_seconds": 60,
            "channels": [chan.pk],
            "job": job.pk,
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["job"], body["channels"], body["events"]) == (job.pk, [chan.pk], ["failed", "late"])
    rule = AlertRule.objects.get(pk=body["id"])

    missing_threshold = api.patch(f"/api/alert-rules/{rule.pk}/", {"events": ["slow"]}, format="json")
    assert missing_threshold.status_code == 400
    assert errors_of(missing_threshold)[0][0] == "slow_after_seconds"
    assert AlertRule.objects.get(pk=rule.pk).events == ["failed", "late"]

    theirs = foreign_channel(other_tenant)
    cross = api.patch(f"/api/alert-rules/{rule.pk}/", {"channels": [theirs.pk]}, format="json")
    assert cross.status_code == 400 and errors_of(cross)[0][0] == "channels"
    later = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    muted = api.patch(f"/api/alert-rules/{rule.pk}/", {"muted_until": later}, format="json")
    assert muted.status_code == 200 and muted.json()["muted_until"]
    assert (
        api.patch(f"/api/alert-rules/{rule.pk}/", {"muted_until": "soon"}, format="json").status_code == 400
    )
    assert api.delete(f"/api/alert-rules/{rule.pk}/").status_code == 204


def test_another_tenants_alert_objects_are_404(api, other_tenant):
    theirs = foreign_channel(other_tenant)
    rule = services.save_rule(AlertRule(tenant=other_tenant, name="r", events=["failed"]), channels=[theirs])
    assert theirs.pk not in [c["id"] for c in api.get("/api/alert-channels/").json()["results"]]
    assert api.get("/api/alert-rules/").json()["results"] == []
    for path in (f"/api/alert-channels/{theirs.pk}/", f"/api/alert-rules/{rule.pk}/"):
        assert api.get(path).status_code == 404
        assert api.patch(path, {"enabled": False}, format="json").status_code == 404
        assert api.delete(path).status_code == 404
    assert api.post(f"/api/alert-channels/{theirs.pk}/test/").status_code == 404
    created = api.post(
        "/api/alert-channels/",
        {"tenant": "globex", "name": "x", "type": "email", "config": {"to": ["a@b.example"]}},
        format="json",
    )
    assert created.status_code == 400 and errors_of(created)[0][0] == "tenant"
    assert AlertChannel.objects.filter(pk=theirs.pk, enabled=True).exists()


def test_a_viewer_reads_alert_objects_but_may_not_change_them(tenant):
    chan = services.save_channel(
        AlertChannel(tenant=tenant, name="mail", type="email", config={"to": ["a@b.example"]})
    )
    viewer = get_user_model().objects.create_user("v")
    Membership.objects.create(tenant=tenant, user=viewer, role="viewer")
    api = client_for(key_for(viewer))
    assert api.get(f"/api/alert-channels/{chan.pk}/").status_code == 200
    assert api.patch(f"/api/alert-channels/{chan.pk}/", {"enabled": False}, format="json").status_code == 403
    assert api.delete(f"/api/alert-channels/{chan.pk}/").status_code == 403
    assert AlertChannel.objects.get(pk=chan.pk).enabled
