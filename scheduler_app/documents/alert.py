"""The alert channel and alert rule documents: what jobs files (and the API) say about
alerting, validated with field paths, model ⇄ document.

Channel::

    {"tenant": "acme", "name": "ops-hook", "type": "webhook", "url": "https://…",
     "secret": "…", "timeout": 10}
    {"tenant": "acme", "name": "ops-mail", "type": "email", "to": ["ops@example.com"]}
    {"tenant": "acme", "name": "chat", "type": "apprise", "url": "slack://…"}

A webhook's ``secret`` and an apprise ``url`` are secrets: exports write them only as
``secret_encrypted`` (ciphertext, with ``--include-secrets``), never in clear.

Rule::

    {"tenant": "acme", "name": "billing failures", "scope": {"group": "billing"},
     "events": ["failed", "missed"], "channels": ["ops-hook"], "missed_after_seconds": 3600,
     "late_after_seconds": 300, "slow_after_seconds": null, "slow_factor": null, "throttle_seconds": 3600,
     "digest": false, "muted_until": null, "enabled": true}

``scope`` is ``{"job": NAME}``, ``{"group": NAME}`` or ``{"tenant": true}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from scheduler_app.documents.job import DocumentError, at, not_encrypted_text
from scheduler_app.models import AlertChannel, AlertRule, Job, JobGroup, Tenant

CHANNEL_KEYS = {
    "tenant",
    "name",
    "type",
    "to",
    "url",
    "timeout",
    "secret",
    "secret_encrypted",
    "config",
    "language",
    "subject_template",
    "body_template",
    "enabled",
}
RULE_KEYS = {
    "tenant",
    "name",
    "scope",
    "events",
    "channels",
    "missed_after_seconds",
    "late_after_seconds",
    "slow_after_seconds",
    "slow_factor",
    "throttle_seconds",
    "digest",
    "muted_until",
    "enabled",
}


def _first(exc: ValidationError) -> tuple[str, str]:
    if hasattr(exc, "error_dict"):
        field, errors = next(iter(exc.message_dict.items()))
        return field, errors[0]
    return "", exc.messages[0]


def _error(where: str, exc: ValidationError, rename: Mapping[str, str] | None = None) -> DocumentError:
    field, message = _first(exc)
    field = (rename or {}).get(field, field)
    field = {"scope_job": "scope", "scope_group": "scope", "__all__": ""}.get(field, field)
    return DocumentError(at(where, field, message))


def _scope_forms() -> str:
    return _('must be {"job": NAME}, {"group": NAME} or {"tenant": true}')


def export_channel(channel: AlertChannel, *, secrets: str = "omit") -> dict[str, Any]:
    """``secrets``: ``omit`` or ``encrypted`` (``secret_encrypted``: the ciphertext)."""
    doc: dict[str, Any] = {"tenant": channel.tenant.slug, "name": channel.name, "type": channel.type}
    config = channel.config or {}
    if channel.type == "email":
        doc["to"] = list(config.get("to") or [])
    elif channel.type == "webhook":
        doc["url"] = config.get("url", "")
        if config.get("timeout") is not None:
            doc["timeout"] = config["timeout"]
    elif channel.type != "apprise":  # a plugin's type: its settings, without the secret fields
        doc["config"] = dict(config)
    if secrets == "encrypted" and channel.secret_token:
        doc["secret_encrypted"] = channel.secret_token
    for name in ("language", "subject_template", "body_template"):
        if getattr(channel, name):
            doc[name] = getattr(channel, name)
    doc["enabled"] = channel.enabled
    return doc


def apply_channel_document(
    channel: AlertChannel, item: Mapping[str, Any], *, where: str
) -> tuple[str | None, bool]:
    """Set ``item``'s fields on ``channel`` (unsaved). Returns the new secret to store
    (None: keep the stored one) and whether an encrypted secret was given."""
    from scheduler_app import plugins

    kind = item.get("type")
    if kind not in plugins.BUILTIN_CHANNELS:
        if not isinstance(kind, str) or plugins.alert_channel_type(kind) is None:
            known = [*plugins.BUILTIN_CHANNELS, *(n for n, _ in plugins.alert_channel_choices())]
            raise DocumentError(
                at(
                    where,
                    "type",
                    _("must be %(known)s, not %(kind)r") % {"known": ", ".join(known), "kind": kind},
                )
            )
        return _apply_plugin_channel(channel, item, where=where)
    if "config" in item:
        raise DocumentError(at(where, "config", _("not a field of %(kind)s channels") % {"kind": kind}))
    channel.type = kind
    allowed = {"email": {"to"}, "webhook": {"url", "timeout", "secret"}, "apprise": {"url"}}[kind]
    for name in ("to", "url", "timeout", "secret"):
        if name in item and name not in allowed:
            raise DocumentError(at(where, name, _("not a field of %(kind)s channels") % {"kind": kind}))
    if "secret_encrypted" in item and ("secret" in item or (kind == "apprise" and "url" in item)):
        raise DocumentError(
            at(where, "secret_encrypted", _("give the secret in clear or encrypted, not both"))
        )
    if kind == "email":
        channel.config = {"to": item.get("to")}
    elif kind == "webhook":
        channel.config = {"url": item.get("url")}
        if item.get("timeout") is not None:
            channel.config["timeout"] = item["timeout"]
    else:
        channel.config = {}
    for name in ("language", "subject_template", "body_template"):
        value = item.get(name, "")
        if not isinstance(value, str):
            raise DocumentError(at(where, name, _("must be a string")))
        setattr(channel, name, value)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DocumentError(at(where, "enabled", _("must be true or false")))
    channel.enabled = enabled
    if "secret_encrypted" in item:
        from scheduler_app import crypto

        token = item["secret_encrypted"]
        try:
            if not isinstance(token, str):
                raise crypto.SecretsError(not_encrypted_text())
            value = crypto.decrypt(token).get("secret", "")
        except crypto.SecretsError as exc:
            raise DocumentError(at(where, "secret_encrypted", str(exc))) from None
        return str(value), True
    secret = item.get("url") if kind == "apprise" else item.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise DocumentError(at(where, "url" if kind == "apprise" else "secret", _("must be a string")))
    if kind == "apprise" and secret is None and not channel.secret_token:
        raise DocumentError(at(where, "url", _("required for apprise channels")))
    return secret, False


def _common_fields(channel: AlertChannel, item: Mapping[str, Any], *, where: str) -> None:
    for name in ("language", "subject_template", "body_template"):
        value = item.get(name, "")
        if not isinstance(value, str):
            raise DocumentError(at(where, name, _("must be a string")))
        setattr(channel, name, value)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DocumentError(at(where, "enabled", _("must be true or false")))
    channel.enabled = enabled


def _apply_plugin_channel(channel: AlertChannel, item: Mapping[str, Any], *, where: str) -> tuple[Any, bool]:
    """A plugin channel type: ``config`` (its settings; secret fields in it are stored
    encrypted), ``secret`` (a string, or an object of secret fields) or
    ``secret_encrypted``."""
    channel.type = item["type"]
    for name in ("to", "url", "timeout"):
        if name in item:
            raise DocumentError(
                at(where, name, _("not a field of %(kind)s channels; use config") % {"kind": channel.type})
            )
    config = item.get("config", {})
    if not isinstance(config, dict):
        raise DocumentError(at(where, "config", _("must be an object")))
    channel.config = dict(config)
    _common_fields(channel, item, where=where)
    if "secret_encrypted" in item:
        if "secret" in item:
            raise DocumentError(
                at(where, "secret_encrypted", _("give the secret in clear or encrypted, not both"))
            )
        from scheduler_app import crypto

        token = item["secret_encrypted"]
        try:
            if not isinstance(token, str):
                raise crypto.SecretsError(not_encrypted_text())
            return crypto.decrypt(token), True
        except crypto.SecretsError as exc:
            raise DocumentError(at(where, "secret_encrypted", str(exc))) from None
    secret = item.get("secret")
    if secret is not None and not isinstance(secret, str | dict):
        raise DocumentError(at(where, "secret", _("must be a string or an object of secret fields")))
    return secret, False


def export_rule(rule: AlertRule) -> dict[str, Any]:
    return {
        "tenant": rule.tenant.slug,
        "name": rule.name,
        "scope": rule.scope,
        "events": list(rule.events or []),
        "channels": sorted(c.name for c in rule.channels.all()),
        "missed_after_seconds": rule.missed_after_seconds,
        "late_after_seconds": rule.late_after_seconds,
        "slow_after_seconds": rule.slow_after_seconds,
        "slow_factor": rule.slow_factor,
        "throttle_seconds": rule.throttle_seconds,
        "digest": rule.digest,
        "muted_until": rule.muted_until.isoformat() if rule.muted_until else None,
        "enabled": rule.enabled,
    }


def apply_rule_document(
    rule: AlertRule, item: Mapping[str, Any], *, tenant: Tenant, where: str
) -> list[AlertChannel]:
    """Set ``item``'s fields on ``rule`` (unsaved); returns its channels."""
    scope = item.get("scope", {"tenant": True})
    rule.scope_job = rule.scope_group = None
    if not isinstance(scope, dict) or len(scope) != 1:
        raise DocumentError(at(where, "scope", _scope_forms()))
    ((key, value),) = scope.items()
    if key == "job":
        job = Job.objects.filter(tenant=tenant, name=value).first() if isinstance(value, str) else None
        if job is None:
            raise DocumentError(
                at(
                    where,
                    "scope.job",
                    _("no job %(name)r in tenant %(tenant)s") % {"name": value, "tenant": tenant.slug},
                )
            )
        rule.scope_job = job
    elif key == "group":
        group = JobGroup.objects.filter(tenant=tenant, name=value).first() if isinstance(value, str) else None
        if group is None:
            raise DocumentError(
                at(
                    where,
                    "scope.group",
                    _("no group %(name)r in tenant %(tenant)s") % {"name": value, "tenant": tenant.slug},
                )
            )
        rule.scope_group = group
    elif key != "tenant" or value is not True:
        raise DocumentError(at(where, "scope", _scope_forms()))
    names = item.get("channels", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DocumentError(at(where, "channels", _("must be a list of channel names")))
    found = {c.name: c for c in AlertChannel.objects.filter(tenant=tenant, name__in=names)}
    for index, name in enumerate(names):
        if name not in found:
            raise DocumentError(
                at(
                    where,
                    f"channels[{index}]",
                    _("no alert channel %(name)r in tenant %(tenant)s")
                    % {"name": name, "tenant": tenant.slug},
                )
            )
    rule.events = item.get("events", [])
    for name in ("missed_after_seconds", "late_after_seconds", "slow_after_seconds", "slow_factor"):
        setattr(rule, name, item.get(name))
    rule.throttle_seconds = item.get("throttle_seconds", 3600)
    for name, default in (("digest", False), ("enabled", True)):
        value = item.get(name, default)
        if not isinstance(value, bool):
            raise DocumentError(at(where, name, _("must be true or false")))
        setattr(rule, name, value)
    muted = item.get("muted_until")
    if muted is None:
        rule.muted_until = None
    else:
        parsed: datetime | None = parse_datetime(muted) if isinstance(muted, str) else None
        if parsed is None or parsed.tzinfo is None:
            raise DocumentError(at(where, "muted_until", _("must be an ISO 8601 time with a UTC offset")))
        rule.muted_until = parsed
    return [found[n] for n in names]


def import_alerts(
    channels: list[dict[str, Any]],
    rules: list[dict[str, Any]],
    tenant_for: Any,
    report: Any,
    actor: Any,
) -> None:
    """Create or change the listed channels, then rules, through services (audited)."""
    from scheduler_app import services

    for index, item in enumerate(channels):
        where = f"alert_channels[{index}] ({item.get('tenant')}/{item['name']})"
        tenant = tenant_for(item, where)
        channel = AlertChannel.objects.filter(tenant=tenant, name=item["name"]).first()
        created = channel is None
        before = None if created else (export_channel(channel), channel.reveal_secret())
        if channel is None:
            channel = AlertChannel(tenant=tenant, name=item["name"])
        secret, _ = apply_channel_document(channel, item, where=where)
        label = f"alert channel {tenant.slug}/{channel.name}"
        if not created and before == (export_channel(channel), secret if secret is not None else before[1]):
            report.unchanged.append(label)
            continue
        try:
            services.save_channel(channel, secret=secret, actor=actor)
        except ValidationError as exc:
            raise _error(where, exc, {"url": "url"}) from None
        (report.created if created else report.changed).append(label)
    for index, item in enumerate(rules):
        where = f"alert_rules[{index}] ({item.get('tenant')}/{item['name']})"
        tenant = tenant_for(item, where)
        rule = AlertRule.objects.filter(tenant=tenant, name=item["name"]).first()
        created = rule is None
        before = None if created else export_rule(rule)
        if rule is None:
            rule = AlertRule(tenant=tenant, name=item["name"])
        wanted = apply_rule_document(rule, item, tenant=tenant, where=where)
        label = f"alert rule {tenant.slug}/{rule.name}"
        if not created:
            after = export_rule(rule)
            after["channels"] = sorted(c.name for c in wanted)
            if after == before:
                report.unchanged.append(label)
                continue
        try:
            services.save_rule(rule, channels=wanted, actor=actor)
        except ValidationError as exc:
            raise _error(where, exc) from None
        (report.created if created else report.changed).append(label)
