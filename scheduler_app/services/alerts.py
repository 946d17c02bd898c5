"""Alert channels and rules: the one write path (validated with field names,
permission-checked, audited with the actor, in a transaction). Channel secrets (a
webhook's HMAC secret, an apprise URL) are stored only encrypted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from scheduler_app import audit, plugins
from scheduler_app.alerts import channels as channel_types
from scheduler_app.alerts import evaluate
from scheduler_app.models import AlertChannel, AlertEvent, AlertOutbox, AlertRule, ConfigVersion
from scheduler_app.services import permissions
from scheduler_app.services.bulk import FORBIDDEN, BulkResult
from scheduler_app.services.groups import check_tenant_change

RULE_EVENTS = [e.value for e in AlertEvent if e != AlertEvent.TEST]
#: Channel types whose secret is required (apprise: the URL itself).
SECRET_REQUIRED = {"apprise"}


def _plugin_parts(
    channel: AlertChannel, kind: plugins.AlertChannelType, secret: str | dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """A plugin channel's configuration without its secret fields, the secret fields to
    store (the stored ones, updated by secret keys given in ``config`` and by
    ``secret``), and whether they change. ``secret``: a string for a type with one
    secret field (``""`` removes every secret), or an object of secret fields."""
    config = dict(channel.config)
    given = {k: config.pop(k) for k in kind.secret_fields if k in config}
    if isinstance(secret, str):
        if secret and len(kind.secret_fields) != 1:
            raise ValidationError(
                {
                    "secret": _(
                        "the %(type)s channel has the secret fields %(fields)s: give an object of them"
                    )
                    % {"type": kind.name, "fields": ", ".join(kind.secret_fields) or _("(none)")}
                }
            )
        given = {**({k: None for k in kind.secret_fields} if not secret else {}), **given}
        if secret:
            given[kind.secret_fields[0]] = secret
    elif isinstance(secret, dict):
        unknown = sorted(set(secret) - set(kind.secret_fields))
        if unknown:
            raise ValidationError(
                {
                    "secret": _("%(field)s: not a secret field of %(type)s channels (they are: %(fields)s)")
                    % {
                        "field": unknown[0],
                        "type": kind.name,
                        "fields": ", ".join(kind.secret_fields) or _("none"),
                    }
                }
            )
        given = {**secret, **given}
    elif secret is not None:
        raise ValidationError({"secret": _("must be a string or an object of secret fields")})
    for key, value in given.items():
        if value is not None and not isinstance(value, str):
            raise ValidationError({f"config.{key}": _("a secret field must be a string")})
    try:
        stored = channel.reveal_secrets() if channel.secret_token else {}
    except Exception:  # noqa: BLE001 - a key problem: the secrets must be given again
        stored = {}
    merged = {k: v for k, v in {**stored, **given}.items() if v not in (None, "")}
    return config, merged, bool(given)


def _rules_changed() -> None:
    """A rule, channel or mute changed: bump the configuration version (in the
    caller's transaction), which the alert evaluation's reused rules follow
    (:func:`scheduler_app.alerts.evaluate.rules_for`)."""
    ConfigVersion.bump()


def validate_channel(channel: AlertChannel, secret: str | dict[str, Any] | None) -> None:
    """Field errors of a channel (``secret``: the new one, None keeps the stored one)."""
    errors: dict[str, list[str]] = {}
    config = channel.config if isinstance(channel.config, dict) else None
    if config is None:
        raise ValidationError({"config": _("must be an object")})
    kind = plugins.alert_channel_type(channel.type) if channel.type not in plugins.BUILTIN_CHANNELS else None
    if kind is None and isinstance(secret, dict):
        raise ValidationError(
            {"secret": _("%(type)s channels take one secret (a string)") % {"type": channel.type}}
        )
    if kind is not None:
        public, secrets, _changed = _plugin_parts(channel, kind, secret)
        _cleaned, problems = plugins.clean_channel_config(kind, {**public, **secrets})
        for key, message in problems:
            errors.setdefault(f"config.{key}" if key else "config", []).append(message)
    elif channel.type == "email":
        to = config.get("to")
        if not isinstance(to, list) or not to:
            errors["to"] = [_("list at least one e-mail address")]
        else:
            for index, address in enumerate(to):
                try:
                    validate_email(address)
                except (ValidationError, TypeError):
                    errors.setdefault("to", []).append(
                        _("to[%(index)s]: %(address)r is not an e-mail address")
                        % {"index": index, "address": address}
                    )
    elif channel.type == "webhook":
        url = config.get("url")
        try:
            URLValidator(schemes=["http", "https"])(url or "")
        except ValidationError:
            errors["url"] = [_("%(url)r is not an http(s) URL") % {"url": url}]
        timeout = config.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60
        ):
            errors["timeout"] = [_("must be a number of seconds above 0 and at most 60")]
    elif channel.type == "apprise":
        stored = bool(channel.secret_token) and secret is None
        if not stored:
            problems = channel_types.apprise_problems(secret or "")
            if problems:
                errors["url"] = problems
    else:
        known = [*plugins.BUILTIN_CHANNELS, *(n for n, _ in plugins.alert_channel_choices())]
        errors["type"] = [
            _("unknown channel type %(type)r; use %(known)s")
            % {"type": channel.type, "known": ", ".join(known)}
        ]
    for name in ("subject_template", "body_template"):
        problems = channel_types.template_problems(getattr(channel, name) or "")
        if problems:
            errors[name] = problems
    if errors:
        raise ValidationError(errors)


def save_channel(
    channel: AlertChannel, *, secret: str | dict[str, Any] | None = None, actor: Any = None
) -> AlertChannel:
    """Create or change a channel. ``secret``: a new webhook secret / apprise URL
    (``""`` removes it, None keeps the stored one); for a plugin type, its secret
    fields (see :func:`_plugin_parts`; secret fields in ``config`` are taken out of it
    and stored encrypted too)."""
    check_tenant_change(channel, actor, AlertChannel)
    validate_channel(channel, secret)
    kind = plugins.alert_channel_type(channel.type) if channel.type not in plugins.BUILTIN_CHANNELS else None
    changed = secret is not None
    if kind is not None:
        public, secrets, changed = _plugin_parts(channel, kind, secret)
        cleaned, _problems = plugins.clean_channel_config(kind, {**public, **secrets})
        channel.config = {k: v for k, v in cleaned.items() if k not in kind.secret_fields}
        if changed:
            channel.set_secrets(secrets)
    elif isinstance(secret, str):
        channel.set_secret(secret)
    channel.full_clean()
    with transaction.atomic(), audit.acting_as(actor):
        channel.save()
        _rules_changed()
        if changed:
            audit.record(channel, "set_channel_secret", actor, fingerprint=channel.secret_fingerprint or None)
    return channel


def validate_rule(rule: AlertRule, channels: Sequence[AlertChannel]) -> None:
    errors: dict[str, list[str]] = {}
    events = rule.events
    if not isinstance(events, list) or not events:
        errors["events"] = [_("list at least one of %(events)s") % {"events": ", ".join(RULE_EVENTS)}]
    else:
        unknown = [e for e in events if e not in RULE_EVENTS]
        if unknown:
            errors["events"] = [
                _("unknown event(s) %(unknown)s; known: %(events)s")
                % {"unknown": ", ".join(map(repr, unknown)), "events": ", ".join(RULE_EVENTS)}
            ]
    factor = rule.slow_factor
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1):
        errors["slow_factor"] = [
            _("must be a number of at least 1 (times the job's p95), not %(value)r") % {"value": factor}
        ]
    for name in ("missed_after_seconds", "late_after_seconds", "slow_after_seconds"):
        value = getattr(rule, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            errors[name] = [_("must be a positive number of seconds, not %(value)r") % {"value": value}]
    if isinstance(events, list):
        for event, field in (
            ("missed", "missed_after_seconds"),
            ("late", "late_after_seconds"),
        ):
            if event in events and getattr(rule, field) is None and field not in errors:
                errors[field] = [_("required for the %(event)r event") % {"event": event}]
        if (
            "slow" in events
            and rule.slow_after_seconds is None
            and rule.slow_factor is None
            and not {"slow_after_seconds", "slow_factor"} & set(errors)
        ):
            errors["slow_after_seconds"] = [
                _("the 'slow' event needs slow_after_seconds or slow_factor (× the job's p95)")
            ]
        if "node_down" in events and (rule.scope_job_id or rule.scope_group_id):
            errors["scope"] = [_("the 'node_down' event needs a tenant-wide rule (nodes serve every job)")]
    if rule.throttle_seconds is None or isinstance(rule.throttle_seconds, bool) or rule.throttle_seconds < 0:
        errors["throttle_seconds"] = [_("must be 0 or a positive number of seconds")]
    if rule.scope_job_id and rule.scope_group_id:
        errors["scope"] = [_("a rule is scoped to a job or a group, not both")]
    if rule.scope_job_id and rule.scope_job.tenant_id != rule.tenant_id:
        errors["scope"] = [_("the job is not in the rule's tenant")]
    if rule.scope_group_id and rule.scope_group.tenant_id != rule.tenant_id:
        errors["scope"] = [_("the group is not in the rule's tenant")]
    if not channels:
        errors["channels"] = [_("name at least one channel")]
    for channel in channels:
        if channel.tenant_id != rule.tenant_id:
            errors.setdefault("channels", []).append(
                _("channel %(name)r is not in the rule's tenant") % {"name": channel.name}
            )
    if errors:
        raise ValidationError(errors)


def save_rule(
    rule: AlertRule, *, channels: Sequence[AlertChannel] | None = None, actor: Any = None
) -> AlertRule:
    """Create or change a rule; ``channels`` replaces its channels (None keeps them)."""
    check_tenant_change(rule, actor, AlertRule)
    if channels is None:
        channels = list(rule.channels.all()) if rule.pk else []
    validate_rule(rule, channels)
    rule.full_clean(exclude=["channels"])
    with transaction.atomic(), audit.acting_as(actor):
        rule.save()
        rule.channels.set(channels)
        _rules_changed()
    return rule


def _check_mute_until(until: datetime | None, field: str) -> None:
    if until is None:
        return
    if timezone.is_naive(until):
        raise ValidationError({field: _("must carry a UTC offset")})
    if until <= timezone.now():
        raise ValidationError({field: _("must be in the future")})


def mute_rule(rule: AlertRule, until: datetime | None, *, actor: Any = None) -> AlertRule:
    """Mute a rule until a time (None: unmute), audited."""
    permissions.require(actor, "change", rule)
    _check_mute_until(until, "muted_until")
    with transaction.atomic(), audit.acting_as(actor):
        rule.muted_until = until
        rule.save(update_fields=["muted_until", "updated_at"])
        _rules_changed()
    return rule


def mute_rules(rules: Iterable[AlertRule], until: datetime | None, *, actor: Any = None) -> BulkResult:
    """Mute (or with None unmute) each rule the actor may change; the others are refused."""
    _check_mute_until(until, "muted_until")
    result = BulkResult()
    with transaction.atomic():
        for rule in rules:
            if not permissions.can(actor, "change", rule):
                result.refuse(rule, _("you may not change this alert rule"), FORBIDDEN)
                continue
            result.done.append(mute_rule(rule, until, actor=actor))
    return result


def mute_jobs_alerts(jobs: Iterable[Any], until: datetime | None, *, actor: Any = None) -> BulkResult:
    """Mute (or with None unmute) every alert about each job the actor may change."""
    _check_mute_until(until, "alerts_muted_until")
    result = BulkResult()
    with transaction.atomic():
        for job in jobs:
            if not permissions.can(actor, "change", job):
                result.refuse(job, _("you may not change this job"), FORBIDDEN)
                continue
            result.done.append(mute_job_alerts(job, until, actor=actor))
    return result


def mute_job_alerts(job: Any, until: datetime | None, *, actor: Any = None) -> Any:
    """Mute every alert about ``job`` until a time (None: unmute), audited."""
    permissions.require(actor, "change", job)
    _check_mute_until(until, "alerts_muted_until")
    with transaction.atomic(), audit.acting_as(actor):
        type(job).objects.filter(pk=job.pk).update(alerts_muted_until=until)
        job.alerts_muted_until = until
        audit.record(
            job,
            "mute_alerts" if until else "unmute_alerts",
            actor,
            until=until.isoformat() if until else None,
        )
    return job


def delete_alert_objects(objects: Iterable[AlertRule | AlertChannel], *, actor: Any = None) -> BulkResult:
    result = BulkResult()
    with transaction.atomic(), audit.acting_as(actor):
        for obj in objects:
            if not permissions.can(actor, "delete", obj):
                result.refuse(
                    obj,
                    _("you may not delete this %(object)s") % {"object": obj._meta.verbose_name},
                    FORBIDDEN,
                )
                continue
            pk = obj.pk
            obj.delete()
            obj.pk = pk
            result.done.append(obj)
        if result.done:
            _rules_changed()
    return result


def send_test_alert(channel: AlertChannel, *, actor: Any = None) -> AlertOutbox:
    """Queue a sample alert through ``channel`` (the delivery loop sends it)."""
    permissions.require(actor, "change", channel)
    if not channel.enabled:
        raise ValidationError({"enabled": _("the channel is disabled; enable it to test it")})
    now = timezone.now()
    with transaction.atomic(), audit.acting_as(actor):
        (row,) = evaluate.outbox_rows(
            None,
            "test",
            None,
            None,
            now,
            channels=[AlertChannel.objects.select_related("tenant").get(pk=channel.pk)],
            extra={"error": "this is a test alert", "job": "(test)"},
        )
        row.save()
        evaluate.announce()
        audit.record(channel, "test_alert", actor, alert_id=str(row.alert_id))
    return row
