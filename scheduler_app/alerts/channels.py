"""Alert channels: e-mail (Django's mail backend), webhook (signed JSON POST) and
apprise (Slack, Teams and the rest). Each ``send`` raises :class:`DeliveryError` (or any
exception) on failure and returns a short description of the response on success.

Webhook signature: header ``X-Scheduler-Signature: t=<unix time>,v1=<hex>`` where hex is
HMAC-SHA256 over ``"<t>." + body`` with the channel's secret, plus
``X-Scheduler-Alert-Id`` (the payload's ``alert_id``, stable across resends)."""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import time
from collections.abc import Mapping
from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _

#: Variables a subject or body template may use, as ``{name}``.
TEMPLATE_VARIABLES = (
    "alert_id",
    "event",
    "tenant",
    "rule",
    "job",
    "group",
    "run_id",
    "state",
    "attempt",
    "scheduled_for",
    "started_at",
    "finished_at",
    "duration",
    "node",
    "error",
    "url",
    "occurred_at",
)
DEFAULT_TIMEOUT = 10.0
#: What replaces a NUL in a stored response or error (as run outcomes do).
NUL_REPLACEMENT = "\ufffd"


def storable(value: Any, limit: int) -> str:
    """``value`` as text that can be stored: every NUL replaced (PostgreSQL text refuses
    it), at most ``limit`` characters."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:limit].replace("\x00", NUL_REPLACEMENT)


class DeliveryError(Exception):
    """A channel refused or could not take an alert; ``status`` and ``response`` say how."""

    def __init__(self, message: str, status: str = "", response: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.response = response


def template_problems(text: str) -> list[str]:
    """Why ``text`` is not a usable template ({name} placeholders of TEMPLATE_VARIABLES)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        return [f"invalid template: {exc}"]
    problems = []
    for field in fields:
        root = field.split(".")[0].split("[")[0]
        if root != field:
            problems.append(f"{{{field}}}: attribute and index lookups are not allowed")
        elif root not in TEMPLATE_VARIABLES:
            problems.append(f"unknown variable {{{field}}}; known: {', '.join(TEMPLATE_VARIABLES)}")
    return problems


def _values(payload: Mapping[str, Any]) -> dict[str, str]:
    return {name: "" if payload.get(name) is None else str(payload.get(name)) for name in TEMPLATE_VARIABLES}


def default_subject(payload: Mapping[str, Any]) -> str:
    if payload.get("event") == "digest":
        return _("[scheduler] %(count)s alerts") % {"count": len(payload.get("alerts") or [])}
    return _("[scheduler] %(event)s: %(job)s (%(tenant)s)") % {
        "event": payload.get("event"),
        "job": payload.get("job") or "-",
        "tenant": payload.get("tenant") or "-",
    }


def default_body(payload: Mapping[str, Any]) -> str:
    if payload.get("event") == "digest":
        return "\n\n".join(default_body(p) for p in payload.get("alerts") or [])
    lines = [
        _("Event: %(v)s") % {"v": payload.get("event")},
        _("Job: %(v)s") % {"v": payload.get("job") or "-"},
        _("Run: %(v)s (state %(s)s, attempt %(a)s)")
        % {
            "v": payload.get("run_id") or "-",
            "s": payload.get("state") or "-",
            "a": payload.get("attempt") or "-",
        },
        _("Scheduled for: %(v)s") % {"v": payload.get("scheduled_for") or "-"},
    ]
    if payload.get("error"):
        lines.append(_("Error: %(v)s") % {"v": payload["error"]})
    if payload.get("url"):
        lines.append(_("Details: %(v)s") % {"v": payload["url"]})
    return "\n".join(lines)


def render(channel: Any, payload: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and body in the channel's language; a template that fails at send time
    falls back to the default one, so the alert still goes out."""
    with translation.override(channel.language or None):
        subject, body = default_subject(payload), default_body(payload)
        if payload.get("event") != "digest":
            values = _values(payload)
            try:
                if channel.subject_template:
                    subject = channel.subject_template.format_map(values)
            except Exception:  # noqa: BLE001 - any failure: the default template
                subject = default_subject(payload)
            try:
                if channel.body_template:
                    body = channel.body_template.format_map(values)
            except Exception:  # noqa: BLE001
                body = default_body(payload)
    return subject, body


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def send_webhook(channel: Any, payload: Mapping[str, Any], timeout: float) -> str:
    import requests

    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "scheduler_app-alerts/1",
        "X-Scheduler-Alert-Id": str(payload.get("alert_id", "")),
        "X-Scheduler-Event": str(payload.get("event", "")),
    }
    secret = channel.reveal_secret()
    if secret:
        headers["X-Scheduler-Signature"] = sign(secret, int(time.time()), body)
    url = channel.config.get("url", "")
    wait = min(float(channel.config.get("timeout") or DEFAULT_TIMEOUT), timeout)
    try:
        response = requests.post(url, data=body, headers=headers, timeout=wait, allow_redirects=False)
    except requests.Timeout:
        raise DeliveryError(f"no answer within {wait:g} s", status="timeout") from None
    except requests.RequestException as exc:
        raise DeliveryError(f"cannot reach {url}: {exc.__class__.__name__}", status="unreachable") from None
    text = response.text[:1000]
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}", status=str(response.status_code), response=text)
    return f"HTTP {response.status_code} {text[:200]}".strip()


def send_email(channel: Any, payload: Mapping[str, Any], timeout: float) -> str:
    from django.core.mail import EmailMultiAlternatives, get_connection
    from django.utils.html import escape, linebreaks, urlize

    subject, body = render(channel, payload)
    to = list(channel.config.get("to") or [])
    connection = get_connection(timeout=timeout)
    message = EmailMultiAlternatives(subject.replace("\n", " "), body, to=to, connection=connection)
    message.extra_headers["X-Scheduler-Alert-Id"] = str(payload.get("alert_id", ""))
    message.attach_alternative(urlize(linebreaks(escape(body))), "text/html")
    try:
        sent = message.send()
    except Exception as exc:  # SMTP refusal, connection refused, timeout
        raise DeliveryError(f"{exc.__class__.__name__}: {exc}", status="smtp") from None
    if not sent:
        raise DeliveryError("the mail backend sent nothing", status="smtp")
    return f"sent to {len(to)} recipient(s)"


def apprise_problems(url: str) -> list[str]:
    try:
        import apprise
    except ImportError:
        return ["apprise is not installed (pip install 'django-scheduler-app[apprise]')"]
    if not url:
        return ["an apprise URL is required"]
    if apprise.Apprise.instantiate(url) is None:
        return ["not an apprise URL apprise can use (see https://github.com/caronc/apprise/wiki)"]
    return []


def send_apprise(channel: Any, payload: Mapping[str, Any], timeout: float) -> str:
    import apprise

    subject, body = render(channel, payload)
    target = apprise.Apprise()
    if not target.add(channel.reveal_secret()):
        raise DeliveryError("the apprise URL is not usable", status="config")
    if not target.notify(body=body, title=subject):
        raise DeliveryError("apprise reported a failed notification", status="failed")
    return "notified"


SENDERS = {"email": send_email, "webhook": send_webhook, "apprise": send_apprise}


def send_plugin(channel: Any, payload: Mapping[str, Any], timeout: float) -> str:
    """A plugin channel: its ``send(config, message)`` with the secret fields decrypted
    into ``config``; ``message`` is the payload plus the rendered ``subject`` and ``body``."""
    from scheduler_app import plugins

    kind = plugins.alert_channel_type(channel.type)
    if kind is None:
        raise DeliveryError(
            f"unknown channel type {channel.type!r} (is the plugin that provides it installed?)",
            status="config",
        )
    subject, body = render(channel, payload)
    config = {**(channel.config or {}), **channel.reveal_secrets()}
    answer = kind.send(config, {**payload, "subject": subject, "body": body})
    return f"sent by the {kind.plugin or kind.name} plugin" + (f": {str(answer)[:200]}" if answer else "")


def send(channel: Any, payload: Mapping[str, Any], timeout: float) -> str:
    sender = SENDERS.get(channel.type, send_plugin)
    return sender(channel, payload, timeout)
