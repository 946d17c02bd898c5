"""Helpers for the API tests: real users with real API keys, through DRF's test client."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from scheduler_app.services import keys


def key_for(user: Any, **options: Any) -> str:
    """A new API key (the token) for ``user``; options as for ``keys.create_key``."""
    return keys.create_key(user, **options).token


def client_for(token: str | None) -> APIClient:
    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def errors_of(response: Any) -> list[tuple[str | None, str]]:
    body = response.json()
    assert set(body) == {"errors"}, body
    return [(e["field"], e["message"]) for e in body["errors"]]


JOB = {
    "tenant": "acme",
    "name": "nightly",
    "task": "demo.echo",
    "kwargs": {"n": 1},
    "trigger": {"type": "cron", "expression": "0 2 * * *", "dialect": "crontab", "timezone": "Europe/Berlin"},
}
