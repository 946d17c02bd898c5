"""Authentication of the API: API keys (hashed, revocable, expiring, scoped), sessions
with CSRF, throttling per key; as real users with real keys."""

import datetime as dt
import hashlib

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from scheduler_app.models import ApiKey, Membership
from scheduler_app.services import keys
from tests.integration.api_support import JOB, client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(tenant):
    user = get_user_model().objects.create_user("alice", password="pw-alice")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return user


def test_no_credentials_is_401_with_a_challenge(alice):
    response = APIClient().get("/api/jobs/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert errors_of(response) == [(None, "Authentication credentials were not provided.")]


@pytest.mark.parametrize(
    "header",
    ["Bearer sk_not-a-key", "Bearer", "Bearer a b", "Bearer sk_\u00e9"],
    ids=["unknown", "empty", "two-parts", "non-ascii"],
)
def test_a_wrong_key_is_401(alice, header):
    key_for(alice)
    client = APIClient()
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_key_reads_and_the_key_is_stored_only_as_a_digest(alice, make_job):
    make_job("nightly")
    token = key_for(alice, name="ci")
    response = client_for(token).get("/api/jobs/")
    assert response.status_code == 200
    assert [j["name"] for j in response.json()["results"]] == ["nightly"]
    key = ApiKey.objects.get()
    assert key.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(key.prefix) and len(key.prefix) == 11
    assert token not in str(ApiKey.objects.values().get())
    assert not LogEntry.objects.filter(changes_text__contains=token).exists()
    assert not [e for e in LogEntry.objects.all() if token in str(e.additional_data)]


def test_a_revoked_key_is_refused_from_the_next_request(alice):
    token = key_for(alice)
    client = client_for(token)
    assert client.get("/api/jobs/").status_code == 200
    assert keys.revoke_key(ApiKey.objects.get(), actor=alice) is True
    response = client.get("/api/jobs/")
    assert response.status_code == 401
    assert errors_of(response) == [(None, "Invalid, revoked or expired API key.")]


def test_an_expired_key_is_refused(alice):
    token = key_for(alice, expires_at=timezone.now() + dt.timedelta(seconds=30))
    assert client_for(token).get("/api/jobs/").status_code == 200
    ApiKey.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert client_for(token).get("/api/jobs/").status_code == 401


def test_a_key_of_an_inactive_user_is_refused(alice):
    token = key_for(alice)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    assert client_for(token).get("/api/jobs/").status_code == 401


def test_last_used_is_written_at_most_once_a_minute(alice, django_assert_num_queries):
    token = key_for(alice)
    client = client_for(token)
    client.get("/api/tenants/")
    first = ApiKey.objects.get().last_used_at
    assert first is not None
    client.get("/api/tenants/")
    assert ApiKey.objects.get().last_used_at == first  # not rewritten within the minute
    ApiKey.objects.update(last_used_at=first - dt.timedelta(minutes=2))
    client.get("/api/tenants/")
    assert ApiKey.objects.get().last_used_at > first


def test_key_creation_refuses_a_role_above_the_users_and_foreign_tenants(alice, tenant, other_tenant):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="admin is above alice's role in acme"):
        keys.create_key(alice, tenant=tenant, role="admin")
    with pytest.raises(ValidationError, match="alice is not a member of globex"):
        keys.create_key(alice, tenant=other_tenant)
    bob = get_user_model().objects.create_user("bob")
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        keys.create_key(alice, actor=bob)
    assert keys.create_key(alice, tenant=tenant, role="viewer", actor=alice).key.role == "viewer"


def test_creation_and_revocation_are_audited(alice):
    new = keys.create_key(alice, name="deploy", actor=alice)
    keys.revoke_key(new.key, actor=alice)
    ops = [
        (e.additional_data["operation"], e.actor, e.additional_data["prefix"])
        for e in LogEntry.objects.filter(action=LogEntry.Action.ACCESS).order_by("pk")
    ]
    assert ops == [("create_api_key", alice, new.key.prefix), ("revoke_api_key", alice, new.key.prefix)]


def test_session_authentication_enforces_csrf(alice, tenant):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="pw-alice")
    assert client.get("/api/jobs/").status_code == 200
    response = client.post("/api/jobs/", JOB, format="json")
    assert response.status_code == 403
    assert "CSRF" in errors_of(response)[0][1]
    from scheduler_app.models import Job

    assert not Job.objects.exists()
    # with the token the browsable API's form sends, it works
    client.get("/api/jobs/", HTTP_ACCEPT="text/html")
    csrf = client.cookies["csrftoken"].value
    response = client.post("/api/jobs/", JOB, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201, response.json()


def test_the_browsable_api_renders_for_a_logged_in_user(alice):
    client = APIClient()
    client.force_login(alice)
    response = client.get("/api/jobs/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Job" in response.content


@override_settings(SCHEDULER_APP={"API_THROTTLE_RATE": "3/minute"})
def test_throttling_is_per_key(alice):
    from django.core.cache import cache

    cache.clear()
    first, second = client_for(key_for(alice)), client_for(key_for(alice))
    assert [first.get("/api/tenants/").status_code for _ in range(3)] == [200, 200, 200]
    response = first.get("/api/tenants/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert errors_of(response)[0][1].startswith("Request was throttled.")
    assert second.get("/api/tenants/").status_code == 200  # another key has its own budget


def test_host_projects_rest_framework_settings_do_not_change_the_api(alice, make_job):
    make_job("nightly")
    token = key_for(alice)
    host = {
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
        "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.BrowsableAPIRenderer"],
        "EXCEPTION_HANDLER": "tests.integration.test_api_auth.no_handler",
    }
    with override_settings(REST_FRAMEWORK=host):
        response = client_for(token).get("/api/jobs/")
        assert response.status_code == 200
        assert response.json()["count"] == 1
        assert APIClient().get("/api/jobs/").status_code == 401
        assert "errors" in APIClient().get("/api/jobs/").json()


def no_handler(exc, context):  # a host's exception handler that the API must not use
    raise AssertionError("the host's exception handler was used")


def test_apikey_command_creates_lists_and_revokes(alice, tenant, capsys):
    call_command(
        "apikey",
        "create",
        "--user",
        "alice",
        "--tenant",
        "acme",
        "--role",
        "viewer",
        "--expires",
        "30",
        "--name",
        "ci",
    )
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("sk_") and "shown only now" in out.err
    key = ApiKey.objects.get()
    assert (key.tenant, key.role, key.name) == (tenant, "viewer", "ci")
    assert dt.timedelta(days=29, hours=23) < key.expires_at - timezone.now() <= dt.timedelta(days=30)
    assert client_for(token).get("/api/jobs/").status_code == 200
    call_command("apikey", "list")
    listing = capsys.readouterr().out
    assert key.prefix in listing and "acme" in listing and "active" in listing and token not in listing
    call_command("apikey", "revoke", key.prefix)
    assert "revoked" in capsys.readouterr().out
    assert client_for(token).get("/api/jobs/").status_code == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody"], "--user: no user named 'nobody'"),
        (["--user", "alice", "--tenant", "nope"], "--tenant: no tenant 'nope'"),
        (["--user", "alice", "--role", "admin"], "--role: admin is above alice's role (editor)"),
        (["--user", "alice", "--expires", "0"], "--expires: give a number of days greater than 0"),
    ],
)
def test_apikey_command_errors(alice, args, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as info:
        call_command("apikey", "create", *args)
    assert str(info.value) == message
    assert not ApiKey.objects.exists()
