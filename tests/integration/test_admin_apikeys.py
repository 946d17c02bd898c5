"""API keys made in the admin: the key is shown once, in the message after saving, and
works against the API; it is never shown again (change page, list, audit) and is stored
only as a digest; a non-superuser makes keys only for themselves."""

from __future__ import annotations

import re

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from rest_framework.test import APIClient

from scheduler_app.models import ApiKey, Membership

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"sk_[A-Za-z0-9_\-]+")


@pytest.fixture
def owner(tenant):
    user = get_user_model().objects.create_user("owner", password="pw", is_staff=True)
    Membership.objects.create(tenant=tenant, user=user, role="admin")
    return user


def add_key(client, actor, tenant, **extra):
    client.force_login(actor)
    response = client.post(
        "/admin/scheduler_app/apikey/add/",
        {"user": actor.pk, "name": "ci", "tenant": tenant.pk, "role": "", "expires_at": "", **extra},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    tokens = [t for m in shown for t in TOKEN.findall(m)]
    return response, shown, tokens


def test_the_key_is_shown_once_works_and_is_never_shown_again(client, owner, tenant):
    response, shown, tokens = add_key(client, owner, tenant)
    assert len(tokens) == 1, shown
    token = tokens[0]
    key = ApiKey.objects.get()
    assert token not in (key.prefix, key.digest) and key.digest != token

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/jobs/").status_code == 200

    for page in ("/admin/scheduler_app/apikey/", f"/admin/scheduler_app/apikey/{key.pk}/change/"):
        body = client.get(page).content.decode()
        assert token not in body, page
        assert not TOKEN.findall(body.replace(key.prefix, "")), page
    assert not [e for e in LogEntry.objects.all() if token in str(e.changes) + str(e.additional_data)]


def test_a_non_superuser_cannot_make_a_key_for_someone_else(client, owner, tenant):
    other = get_user_model().objects.create_user("other")
    Membership.objects.create(tenant=tenant, user=other, role="viewer")
    response, shown, tokens = add_key(client, owner, tenant, user=other.pk)
    assert tokens == []
    assert not ApiKey.objects.filter(user=other).exists()
