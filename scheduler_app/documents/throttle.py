"""Rate limits and concurrency keys on jobs, groups and tenants: validation with
messages in the active language, naming the field (the rules are
:mod:`scheduler_app.engine.throttle`'s)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from scheduler_app.engine import throttle

#: :data:`scheduler_app.engine.throttle.MESSAGES`, for the catalogs
MESSAGES = {
    "type": _("must be text like '10/m', not %(type)s"),
    "syntax": _("%(text)r: write N/unit, e.g. 10/m (units: %(units)s)"),
    "count": _("%(text)r: the count %(count)r is not a whole number"),
    "unit": _("%(text)r: unknown unit %(unit)r (use one of %(units)s)"),
    "range": _("%(text)r: the count %(count)s is outside 1-%(max)s"),
    "key_tenant": _(
        "%(key)r: keys are per tenant and cannot name another tenant (no '/'); "
        "jobs of one tenant share a key by using the same name"
    ),
    "key_chars": _(
        "%(key)r: use letters, digits and . _ : - (at most 100 characters, starting with a letter or digit)"
    ),
}


def message(exc: throttle.ThrottleError) -> str:
    """The error's message in the active language."""
    template = MESSAGES.get(exc.code)
    return str(template) % exc.params if template is not None else str(exc)


def normalised_rate(value: Any) -> str:
    """The canonical text of a rate (``""``: none); raises ThrottleError."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise throttle.RateError("type", type=type(value).__name__)
    return throttle.normalise_rate(value)


def clean_rate(obj: Any) -> None:
    """``obj.rate_limit`` (a job, group or tenant) normalised, or a field error."""
    try:
        obj.rate_limit = normalised_rate(obj.rate_limit)
    except throttle.ThrottleError as exc:
        raise ValidationError({"rate_limit": message(exc)}) from None


def job_errors(job: Any) -> dict[str, str]:
    """The job's throttle fields normalised in place; the errors by field."""
    errors: dict[str, str] = {}
    try:
        job.rate_limit = normalised_rate(job.rate_limit)
    except throttle.ThrottleError as exc:
        errors["rate_limit"] = message(exc)
    key = job.concurrency_key
    if key is None:
        key = job.concurrency_key = ""
    if not isinstance(key, str):
        errors["concurrency_key"] = gettext("must be text, not %(type)s") % {"type": type(key).__name__}
    else:
        try:
            job.concurrency_key = throttle.check_key(key)
        except throttle.ThrottleError as exc:
            errors["concurrency_key"] = message(exc)
    if job.concurrency_limit is not None and not job.concurrency_key and "concurrency_key" not in errors:
        errors["concurrency_limit"] = gettext("a concurrency limit needs a concurrency key")
    return errors


def describe_job(job: Any) -> str:
    """The limits that apply to a job's runs, in words (``""``: none)."""
    parts = []
    if job.rate_limit:
        parts.append(gettext("rate %(rate)s") % {"rate": job.rate_limit})
    if job.group_id and job.group.rate_limit:
        parts.append(gettext("group rate %(rate)s") % {"rate": job.group.rate_limit})
    if job.tenant.rate_limit:
        parts.append(gettext("tenant rate %(rate)s") % {"rate": job.tenant.rate_limit})
    if job.concurrency_key:
        parts.append(
            gettext("key %(key)s (at most %(limit)s at once)")
            % {"key": job.concurrency_key, "limit": job.concurrency_limit or 1}
        )
    if not parts:
        return ""
    policy = gettext("over a limit: skip") if job.throttle_policy == "skip" else gettext("over a limit: wait")
    return "; ".join([*parts, policy])
