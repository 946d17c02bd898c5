"""The OpenAPI description of the API's bodies, written as JSON Schema components (the
views build their bodies from the job document and the models, not from serializers,
so the schema is stated here once and checked against real responses by schemathesis).

Also the hooks drf-spectacular calls: only this API's endpoints go into the schema, and
every operation lists the error bodies it can answer with."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from drf_spectacular.utils import OpenApiParameter

from scheduler_app.models import (
    AlertEvent,
    ChannelType,
    Executor,
    LoadPolicy,
    MisfirePolicy,
    NodeState,
    OverlapPolicy,
    Role,
    Routing,
    RunReason,
    RunState,
    ThrottlePolicy,
)
from scheduler_app.models.jobs import DependencyCondition, TriggerRule
from scheduler_app.monitoring import stats
from scheduler_app.services import bulk


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}


def obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


TRIGGERS = {
    "CronTrigger": obj(
        {
            "type": {"type": "string", "enum": ["cron"]},
            "expression": {**STR, "example": "0 2 L * *"},
            "dialect": {"type": "string", "enum": ["crontab", "quartz"]},
            "timezone": {**STR, "example": "Europe/Berlin"},
        },
        ["type", "expression"],
        additionalProperties=False,
    ),
    "DateTrigger": obj(
        {
            "type": {"type": "string", "enum": ["date"]},
            "run_at": {**STR, "example": "2026-12-01T09:00:00+01:00"},
            "timezone": STR,
        },
        ["type", "run_at"],
        additionalProperties=False,
    ),
    "IntervalTrigger": obj(
        {
            "type": {"type": "string", "enum": ["interval"]},
            "seconds": {**INT, "minimum": 1},
            "start": nullable(STR),
            "end": nullable(STR),
            "jitter": nullable({**INT, "minimum": 0}),
            "timezone": nullable(STR),
        },
        ["type", "seconds"],
        additionalProperties=False,
    ),
    "ManualTrigger": obj(
        {"type": {"type": "string", "enum": ["manual"]}}, ["type"], additionalProperties=False
    ),
    "CombinedTrigger": obj(
        {
            "type": {"type": "string", "enum": ["all", "any"]},
            "triggers": {
                "type": "array",
                "minItems": 2,
                "items": {**ANY_OBJECT, "description": "A cron, date, interval or combined trigger."},
            },
        },
        ["type", "triggers"],
        additionalProperties=False,
    ),
}

TRIGGER = {
    "oneOf": [ref(name) for name in TRIGGERS],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "cron": "#/components/schemas/CronTrigger",
            "date": "#/components/schemas/DateTrigger",
            "interval": "#/components/schemas/IntervalTrigger",
            "manual": "#/components/schemas/ManualTrigger",
            "all": "#/components/schemas/CombinedTrigger",
            "any": "#/components/schemas/CombinedTrigger",
        },
    },
}


def _document(required: list[str]) -> dict[str, Any]:
    """The job document (the ``jobs`` entries of a jobs file)."""
    return obj(
        {
            "tenant": {**STR, "description": "Tenant slug."},
            "name": {**STR, "maxLength": 200},
            "description": STR,
            "group": nullable({**STR, "description": "Group name in the tenant; null: no group."}),
            "task": {**STR, "description": "A registered task name.", "example": "demo.echo"},
            "args": {"type": "array", "items": {}},
            "kwargs": ANY_OBJECT,
            "trigger": ref("Trigger"),
            "calendars": {"type": "array", "items": STR, "description": "Calendar names in the tenant."},
            "enabled": BOOL,
            "paused": BOOL,
            "priority": {**INT, "description": "Higher runs first."},
            "executor": {"type": "string", "enum": list(Executor.values)},
            "max_instances": {**INT, "minimum": 1},
            "overlap_policy": {"type": "string", "enum": list(OverlapPolicy.values)},
            "misfire": obj(
                {
                    "policy": {"type": "string", "enum": list(MisfirePolicy.values)},
                    "grace_seconds": {**INT, "minimum": 0},
                },
                additionalProperties=False,
            ),
            "retry": obj(
                {
                    "max_attempts": {**INT, "minimum": 1},
                    "backoff_seconds": {**NUM, "minimum": 0},
                    "backoff_factor": {**NUM, "minimum": 1},
                    "max_backoff_seconds": {**NUM, "minimum": 0},
                },
                additionalProperties=False,
            ),
            "timeout_seconds": nullable({**NUM, "exclusiveMinimum": True, "minimum": 0}),
            "limits": obj(
                {
                    "cpu_seconds": nullable({**NUM, "exclusiveMinimum": True, "minimum": 0}),
                    "memory_mb": nullable({**INT, "minimum": 1}),
                },
                additionalProperties=False,
            ),
            "routing": obj(
                {
                    "mode": {"type": "string", "enum": list(Routing.values)},
                    "tags": {"type": "array", "items": STR},
                },
                additionalProperties=False,
            ),
            "pause_after_failures": nullable(
                {
                    **INT,
                    "minimum": 1,
                    "description": "Pause the job after this many consecutive final failures (null: never).",
                }
            ),
            "rate_limit": {
                **STR,
                "description": 'At most N runs started per period: "10/m", "1000/h" (s, m, h, d); "": none.',
                "example": "10/m",
            },
            "concurrency_key": {
                **STR,
                "maxLength": 100,
                "description": "Jobs of the tenant with the same key share the concurrency limit.",
            },
            "concurrency_limit": nullable(
                {**INT, "minimum": 1, "description": "Runs holding the key at once; null: 1."}
            ),
            "throttle_policy": {
                "type": "string",
                "enum": list(ThrottlePolicy.values),
                "description": "What a run due over a limit does: wait for a slot, or is skipped.",
            },
            "load": obj(
                {
                    "policy": {
                        "type": "string",
                        "enum": list(LoadPolicy.values),
                        "description": "Scheduled runs while the cluster is overloaded: run, defer or shed.",
                    },
                    "max_delay_seconds": {**INT, "minimum": 1, "maximum": 7 * 24 * 3600},
                },
                additionalProperties=False,
            ),
            "trigger_rule": {
                "type": "string",
                "enum": list(TriggerRule.values),
                "description": (
                    "When the job runs after its upstream jobs: all_success (every dependency's "
                    "condition met; the default), all_done, none_failed, one_success, one_failed. "
                    "Rules other than all_success need the condition success on every dependency."
                ),
            },
            "upstream_param": {
                **STR,
                "maxLength": 100,
                "description": (
                    "Keyword argument of the task that receives the results of the upstream runs "
                    "that triggered the run (object: job name -> result; null for a failed "
                    'upstream); "": not passed. Capped by UPSTREAM_RESULTS_MAX_BYTES.'
                ),
                "example": "upstream",
            },
            "depends_on": {
                "type": "array",
                "description": "The job's complete list of upstream jobs (by name, same tenant).",
                "items": obj(
                    {"job": STR, "condition": {"type": "string", "enum": list(DependencyCondition.values)}},
                    ["job"],
                    additionalProperties=False,
                ),
            },
        },
        required,
    )


_READ = _document([])
LAST_RUN = nullable(
    obj(
        {
            "id": INT,
            "state": {"type": "string", "enum": list(RunState.values)},
            "scheduled_for": TIME,
            "finished_at": nullable(TIME),
        },
        ["id", "state", "scheduled_for", "finished_at"],
    )
)
JOB_REQUIRED = [
    "id",
    "tenant",
    "name",
    "description",
    "group",
    "task",
    "args",
    "kwargs",
    "trigger",
    "calendars",
    "enabled",
    "paused",
    "priority",
    "executor",
    "max_instances",
    "overlap_policy",
    "misfire",
    "retry",
    "timeout_seconds",
    "limits",
    "routing",
    "depends_on",
    "secret_kwarg_names",
    "version",
    "next_fire_time",
    "last_run",
]
_WRITE_EXTRA = {
    "secret_kwargs": {**ANY_OBJECT, "writeOnly": True, "description": "Stored encrypted; never shown."},
    "secret_kwargs_encrypted": {
        **STR,
        "writeOnly": True,
        "description": "Ciphertext from exportjobs --include-secrets.",
    },
    "id": {**INT, "description": "Ignored (read-only); must be this job's id if given."},
    "version": {**INT, "description": "If given: 409 unless it is the job's current version."},
    "next_fire_time": {"description": "Ignored (read-only)."},
    "last_run": {"description": "Ignored (read-only)."},
    "secret_kwarg_names": {"description": "Ignored (read-only)."},
}


def _with(schema: dict[str, Any], properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {**schema, "properties": {**schema["properties"], **properties}, "required": required}


GROUP_RATE = {
    **STR,
    "description": 'At most N runs of the group\'s jobs started per period, together: "10/m"; "": none.',
}
RUN_PROPERTIES = {
    "id": INT,
    "job": INT,
    "job_name": STR,
    "tenant": STR,
    "group": nullable(STR),
    "scheduled_for": TIME,
    "attempt": INT,
    "state": {"type": "string", "enum": list(RunState.values)},
    "reason": {"type": "string", "enum": list(RunReason.values)},
    "priority": INT,
    "not_before": TIME,
    "node": STR,
    "executor": STR,
    "queued_at": TIME,
    "claimed_at": {
        **nullable(TIME),
        "description": "When a scheduler node claimed the run (null until claimed).",
    },
    "started_at": nullable(TIME),
    "finished_at": nullable(TIME),
    "heartbeat_at": nullable(TIME),
    "duration": nullable(NUM),
    "error_type": STR,
    "error": STR,
    "wait_reason": {
        **STR,
        "description": "Why a queued run has not started (a rate limit, a concurrency key, load, "
        "routing tags); empty otherwise. Stable English text, the same in every language: "
        "'waiting: concurrency key KEY (N of LIMIT running)', 'waiting: rate limit RATE of "
        "job|group|tenant NAME reached', 'deferred: the cluster is overloaded (...)', "
        "'waiting for a node with tags A, B'.",
    },
    "wait_reason_display": {
        **STR,
        "description": "wait_reason in the request's language (Accept-Language), for people.",
    },
    "stop_requested": BOOL,
    "is_final": BOOL,
    "triggered_by": nullable(INT),
    "kwargs_override": {**ANY_OBJECT, "description": "Values of secret names are masked."},
}
RUN_DETAIL_PROPERTIES = {
    "cpu_seconds": nullable(NUM),
    "peak_memory_mb": nullable(NUM),
    "result": {"nullable": True, "description": "What the task returned (JSON; secrets masked)."},
    "traceback": STR,
    "upstream_runs": {
        "type": "array",
        "items": INT,
        "description": "The upstream runs whose ends queued this dependency run (their results "
        "are what the job's upstream_param receives); empty for other runs. Only runs of this "
        "run's tenant and of its job's upstream jobs (or deleted ones) are listed.",
    },
    "upstream": {
        "type": "array",
        "items": obj(
            {
                "id": INT,
                "job": nullable(INT),
                "job_name": nullable(STR),
                "state": nullable({"type": "string", "enum": list(RunState.values)}),
                "finished_at": nullable(TIME),
                "passed": {
                    "nullable": True,
                    "description": "What this run passed in the job's upstream_param, masked and "
                    "capped as the run received it (null: the upstream failed or was skipped, the "
                    "job has no upstream_param, or the run was deleted).",
                },
            },
            ["id", "job", "job_name", "state", "finished_at", "passed"],
        ),
        "description": "upstream_runs with their job, state and what each passed; job, state and "
        "finished_at are null for a run that retention deleted.",
    },
    "log": {
        **STR,
        "description": "What the task logged (and printed, on the process and isolated executors) "
        "while it ran, secrets masked: lines 'HH:MM:SS.mmm LEVEL logger: message' (UTC), "
        "written while it runs. Oldest lines beyond MAX_RUN_LOG_BYTES are dropped, and the "
        "line '… N earlier lines dropped …' comes first (not with ?log_offset=).",
    },
    "log_offset": {**INT, "description": "The number of the first line in log."},
    "log_next_offset": {
        **INT,
        "description": "Lines written so far: pass it as ?log_offset= to get only newer lines.",
    },
    "log_lines_dropped": {**INT, "description": "How many of the oldest lines were dropped."},
}

VERSION_PROPERTIES = {"number": INT, "created_at": TIME, "author": nullable(STR), "summary": STR}
ERROR = obj(
    {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": obj(
                {
                    "field": nullable(
                        {**STR, "description": "Path in the request (trigger.expression), or null."}
                    ),
                    "message": STR,
                },
                ["field", "message"],
            ),
        }
    },
    ["errors"],
)

NODE_KEYS = (
    "id",
    "name",
    "host",
    "pid",
    "version",
    "state",
    "tags",
    "capacity",
    "used",
    "running",
    "load",
    "free_memory_mb",
    "overloaded",
    "clock_offset",
    "started_at",
    "heartbeat_at",
    "stopped_at",
)
DASHBOARD_TOTALS = (
    "running",
    "queued_due",
    "queued_delayed",
    "late",
    "failed_24h",
    "succeeded_24h",
    "failure_rate_24h",
    "jobs",
    "jobs_paused",
    "jobs_disabled",
    "nodes_alive",
    "held_back",
)
DASHBOARD_KEYS = (
    "generated_at",
    "window",
    "totals",
    "held_back",
    "series",
    "lateness",
    "lateness_series",
    "slowest_jobs",
    "failing_jobs",
    "running",
    "recent_failures",
    "upcoming",
    "nodes",
)
CHANNEL_TYPE = {
    "type": "string",
    "maxLength": 16,
    "description": f"{', '.join(ChannelType.values)}, or an alert channel type registered by a plugin.",
}
CHANNEL_KEYS = (
    "id",
    "tenant",
    "name",
    "type",
    "config",
    "has_secret",
    "secret_fingerprint",
    "language",
    "subject_template",
    "body_template",
    "enabled",
    "updated_at",
)
CHANNEL_WRITE = {
    "tenant": STR,
    "name": {**STR, "maxLength": 200},
    "type": CHANNEL_TYPE,
    "config": {
        **ANY_OBJECT,
        "description": "email: {to: [addresses]}; webhook: {url, timeout}; a plugin type: its "
        "settings (its secret fields given here are stored encrypted and never shown).",
    },
    "secret": {
        "oneOf": [
            {
                **STR,
                "description": "webhook HMAC secret, apprise URL, or the one secret field of a "
                "plugin type; '' removes it.",
            },
            {**ANY_OBJECT, "description": "a plugin type's secret fields by name."},
        ],
        "nullable": True,
        "writeOnly": True,
    },
    "language": {**STR, "maxLength": 16},
    "subject_template": STR,
    "body_template": STR,
    "enabled": BOOL,
}
RULE_KEYS = (
    "id",
    "tenant",
    "name",
    "job",
    "group",
    "events",
    "channels",
    "missed_after_seconds",
    "late_after_seconds",
    "slow_after_seconds",
    "throttle_seconds",
    "digest",
    "muted_until",
    "enabled",
    "updated_at",
)
RULE_WRITE = {
    "tenant": STR,
    "name": {**STR, "maxLength": 200},
    "job": nullable({**INT, "description": "Scope: one job (id)."}),
    "group": nullable({**INT, "description": "Scope: one group (id)."}),
    "events": {
        "type": "array",
        "items": {"type": "string", "enum": [e for e in AlertEvent.values if e != "test"]},
    },
    "channels": {"type": "array", "items": INT},
    "missed_after_seconds": nullable({**INT, "minimum": 1}),
    "late_after_seconds": nullable({**INT, "minimum": 1}),
    "slow_after_seconds": nullable({**NUM, "minimum": 0.001}),
    "throttle_seconds": {**INT, "minimum": 0},
    "digest": BOOL,
    "muted_until": nullable(TIME),
    "enabled": BOOL,
}

COMPONENTS: dict[str, Any] = {
    **TRIGGERS,
    "Trigger": TRIGGER,
    "Job": _with(
        _READ,
        {
            "id": INT,
            "secret_kwarg_names": {"type": "array", "items": STR},
            "version": INT,
            "next_fire_time": nullable(TIME),
            "last_run": LAST_RUN,
        },
        JOB_REQUIRED,
    ),
    "JobWrite": _with(_document(["tenant", "name", "task"]), _WRITE_EXTRA, ["tenant", "name", "task"]),
    "JobPatch": _with(_document([]), _WRITE_EXTRA, []),
    "Run": obj(RUN_PROPERTIES, list(RUN_PROPERTIES)),
    "RunDetail": obj({**RUN_PROPERTIES, **RUN_DETAIL_PROPERTIES}, [*RUN_PROPERTIES, *RUN_DETAIL_PROPERTIES]),
    "RunRequest": obj(
        {
            "kwargs": {**ANY_OBJECT, "description": "Merged over the job's kwargs for this run."},
            "at": {
                **STR,
                "description": "ISO 8601 time with a UTC offset, not in the past.",
                "example": "2030-01-01T09:00:00+01:00",
            },
            "idempotency_key": {
                **STR,
                "minLength": 1,
                "maxLength": 200,
                "description": "A retried request with the same key returns the same run.",
            },
        },
        additionalProperties=False,
    ),
    "BackfillRequest": obj(
        {
            "from": {**TIME, "description": "First time (inclusive), ISO 8601 with a UTC offset."},
            "to": {**TIME, "description": "Last time (inclusive), ISO 8601 with a UTC offset."},
            "priority": {**INT, "description": "Priority of the runs (default: the job's)."},
            "dry_run": {**BOOL, "description": "Only count; queue nothing."},
        },
        ["from", "to"],
        additionalProperties=False,
    ),
    "Backfill": obj(
        {
            "job": INT,
            "from": TIME,
            "to": TIME,
            "dry_run": BOOL,
            "queued": {"type": "array", "items": TIME, "description": "Fire times queued (or to queue)."},
            "existing": {
                "type": "array",
                "items": TIME,
                "description": "Fire times that already have a run.",
            },
            "runs": {"type": "array", "items": INT, "description": "The queued runs."},
        },
        ["job", "from", "to", "dry_run", "queued", "existing", "runs"],
    ),
    "BulkRequest": obj(
        {"ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {**INT, "minimum": 1}}},
        ["ids"],
        additionalProperties=False,
    ),
    "BulkResponse": obj(
        {
            "results": {
                "type": "array",
                "items": obj(
                    {
                        "id": INT,
                        "status": {"type": "string", "enum": ["done", "refused", "not found"]},
                        "reason": {**STR, "description": "Why it was refused (for people)."},
                        "kind": {
                            "type": "string",
                            "enum": list(bulk.KINDS),
                            "description": "What kind of refusal (for programs): `forbidden`, `invalid`, "
                            "`conflict` (the object's state) or `not_found`.",
                        },
                        "run": {**INT, "description": "The queued run (bulk run)."},
                    },
                    ["id", "status"],
                ),
            }
        },
        ["results"],
    ),
    "Version": obj(VERSION_PROPERTIES, list(VERSION_PROPERTIES)),
    "VersionDetail": obj({**VERSION_PROPERTIES, "snapshot": ANY_OBJECT}, [*VERSION_PROPERTIES, "snapshot"]),
    "VersionDiff": obj(
        {
            "from": INT,
            "to": INT,
            "changes": {
                "type": "array",
                "items": obj(
                    {"path": STR, "old": {"nullable": True}, "new": {"nullable": True}},
                    ["path", "old", "new"],
                ),
            },
        },
        ["from", "to", "changes"],
    ),
    "AuditEntry": obj(
        {
            "id": INT,
            "time": TIME,
            "actor": nullable(STR),
            "action": {"type": "string", "enum": ["create", "update", "delete", "access"]},
            "object": STR,
            "operation": STR,
            "changes": {"type": "object", "additionalProperties": {"type": "array", "items": STR}},
            "details": ANY_OBJECT,
            "remote_addr": nullable(STR),
        },
        ["id", "time", "actor", "action", "object", "operation", "changes", "details", "remote_addr"],
    ),
    "Tenant": obj(
        {
            "id": INT,
            "slug": STR,
            "name": STR,
            "created_at": TIME,
            "role": nullable({"type": "string", "enum": list(Role.values)}),
        },
        ["id", "slug", "name", "created_at", "role"],
    ),
    "Member": obj(
        {"user": STR, "user_id": INT, "role": {"type": "string", "enum": list(Role.values)}},
        ["user", "user_id", "role"],
    ),
    "MemberWrite": obj(
        {"user": {**STR, "description": "User name."}, "role": {"type": "string", "enum": list(Role.values)}},
        ["user", "role"],
        additionalProperties=False,
    ),
    "Group": obj(
        {"id": INT, "tenant": STR, "name": STR, "description": STR, "rate_limit": GROUP_RATE},
        ["id", "tenant", "name", "description", "rate_limit"],
    ),
    "GroupWrite": obj(
        {"tenant": STR, "name": {**STR, "maxLength": 200}, "description": STR, "rate_limit": GROUP_RATE},
        ["tenant", "name"],
    ),
    "GroupPatch": obj(
        {"tenant": STR, "name": {**STR, "maxLength": 200}, "description": STR, "rate_limit": GROUP_RATE}
    ),
    "CalendarDate": obj({"date": {"type": "string", "format": "date"}, "label": STR}, ["date", "label"]),
    "Calendar": obj(
        {
            "id": INT,
            "tenant": STR,
            "name": STR,
            "description": STR,
            "dates": {"type": "array", "items": ref("CalendarDate")},
        },
        ["id", "tenant", "name", "description", "dates"],
    ),
    "CalendarWrite": obj(
        {
            "tenant": STR,
            "name": {**STR, "maxLength": 200},
            "description": STR,
            "dates": {
                "type": "array",
                "items": obj({"date": {"type": "string", "format": "date"}, "label": STR}, ["date"]),
            },
        },
        ["tenant", "name"],
    ),
    "CalendarPatch": obj(
        {
            "tenant": STR,
            "name": {**STR, "maxLength": 200},
            "description": STR,
            "dates": {
                "type": "array",
                "items": obj({"date": {"type": "string", "format": "date"}, "label": STR}, ["date"]),
            },
        }
    ),
    "Dependency": obj(
        {
            "id": INT,
            "tenant": STR,
            "upstream": INT,
            "upstream_name": STR,
            "downstream": INT,
            "downstream_name": STR,
            "condition": {"type": "string", "enum": list(DependencyCondition.values)},
        },
        ["id", "tenant", "upstream", "upstream_name", "downstream", "downstream_name", "condition"],
    ),
    "DependencyWrite": obj(
        {
            "upstream": INT,
            "downstream": INT,
            "condition": {"type": "string", "enum": list(DependencyCondition.values)},
        },
        ["upstream", "downstream"],
        additionalProperties=False,
    ),
    "Dashboard": obj(
        {
            "generated_at": TIME,
            "window": {"type": "string", "enum": list(stats.WINDOWS)},
            "totals": obj(
                {
                    "running": INT,
                    "queued_due": INT,
                    "queued_delayed": INT,
                    "late": INT,
                    "failed_24h": INT,
                    "succeeded_24h": INT,
                    "failure_rate_24h": nullable(NUM),
                    "jobs": INT,
                    "jobs_paused": INT,
                    "jobs_disabled": INT,
                    "nodes_alive": INT,
                    "held_back": {**INT, "description": "Queued runs held back, all reasons together."},
                },
                list(DASHBOARD_TOTALS),
            ),
            "held_back": {
                **obj({code: INT for code in stats.HELD_BACK_REASONS}, list(stats.HELD_BACK_REASONS)),
                "description": "Queued runs held back by reason: a concurrency key, a rate limit, the "
                "cluster's load (nodes or queue), no live node with the run's tags, other.",
            },
            "series": obj(
                {
                    "start": TIME,
                    "bucket_seconds": INT,
                    "buckets": {"type": "array", "items": TIME},
                    "counts": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": INT},
                        "description": "Finished runs per bucket, by state.",
                    },
                    "failures": {"type": "array", "items": INT},
                    "failure_rate": {"type": "array", "items": nullable(NUM)},
                },
                ["start", "bucket_seconds", "buckets", "counts", "failures", "failure_rate"],
            ),
            "lateness": {
                **obj({"p50": nullable(NUM), "p95": nullable(NUM)}, ["p50", "p95"]),
                "description": "Start lateness (started - scheduled) in seconds over the window.",
            },
            "lateness_series": {
                **obj(
                    {
                        "p50": {"type": "array", "items": nullable(NUM)},
                        "p95": {"type": "array", "items": nullable(NUM)},
                    },
                    ["p50", "p95"],
                ),
                "description": "Start lateness p50/p95 in seconds per bucket of `series` (null: no run).",
            },
            "slowest_jobs": {
                "type": "array",
                "items": obj(
                    {"job_id": INT, "job": STR, "runs": INT, "p50": nullable(NUM), "p95": nullable(NUM)},
                    ["job_id", "job", "runs", "p50", "p95"],
                ),
            },
            "failing_jobs": {
                "type": "array",
                "items": obj(
                    {"job_id": INT, "job": STR, "failures": INT, "runs": INT},
                    ["job_id", "job", "failures", "runs"],
                ),
            },
            "running": {
                "type": "array",
                "items": obj(
                    {
                        "run_id": INT,
                        "job_id": INT,
                        "job": STR,
                        "tenant": STR,
                        "node": STR,
                        "started_at": nullable(TIME),
                        "seconds": nullable(NUM),
                    },
                    ["run_id", "job_id", "job", "tenant", "node", "started_at", "seconds"],
                ),
            },
            "recent_failures": {
                "type": "array",
                "items": obj(
                    {
                        "run_id": INT,
                        "job_id": INT,
                        "job": STR,
                        "tenant": STR,
                        "state": {"type": "string", "enum": list(RunState.values)},
                        "finished_at": nullable(TIME),
                        "error": STR,
                    },
                    ["run_id", "job_id", "job", "tenant", "state", "finished_at", "error"],
                ),
            },
            "upcoming": {
                "type": "array",
                "items": obj(
                    {"job_id": INT, "job": STR, "tenant": STR, "at": TIME, "timezone": STR},
                    ["job_id", "job", "tenant", "at", "timezone"],
                ),
            },
            "nodes": {
                "type": "array",
                "items": obj(
                    {
                        "name": STR,
                        "state": STR,
                        "alive": BOOL,
                        "leader": BOOL,
                        "running": INT,
                        "capacity": nullable(INT),
                        "heartbeat_at": nullable(TIME),
                    },
                    ["name", "state", "alive", "leader", "running", "capacity", "heartbeat_at"],
                ),
            },
        },
        list(DASHBOARD_KEYS),
    ),
    "CronPreview": obj(
        {
            "expression": STR,
            "dialect": STR,
            "timezone": STR,
            "description": STR,
            "next": {"type": "array", "items": TIME},
        },
        ["expression", "dialect", "timezone", "description", "next"],
    ),
    "Node": obj(
        {
            "id": INT,
            "name": STR,
            "host": STR,
            "pid": nullable(INT),
            "version": STR,
            "state": {"type": "string", "enum": list(NodeState.values)},
            "tags": {"type": "array", "items": {}},
            "capacity": ANY_OBJECT,
            "used": ANY_OBJECT,
            "running": INT,
            "load": nullable(NUM),
            "free_memory_mb": nullable(NUM),
            "overloaded": BOOL,
            "clock_offset": nullable(NUM),
            "started_at": TIME,
            "heartbeat_at": TIME,
            "stopped_at": nullable(TIME),
        },
        list(NODE_KEYS),
    ),
    "NodeAction": obj(
        {"node": ref("Node"), "warnings": {"type": "array", "items": STR}}, ["node", "warnings"]
    ),
    "AlertChannel": obj(
        {
            "id": INT,
            "tenant": STR,
            "name": STR,
            "type": CHANNEL_TYPE,
            "config": ANY_OBJECT,
            "has_secret": {**BOOL, "description": "Whether a secret is stored (it is never shown)."},
            "secret_fingerprint": STR,
            "language": STR,
            "subject_template": STR,
            "body_template": STR,
            "enabled": BOOL,
            "updated_at": TIME,
        },
        list(CHANNEL_KEYS),
    ),
    "AlertChannelWrite": obj(CHANNEL_WRITE, ["tenant", "name", "type"]),
    "AlertChannelPatch": obj(CHANNEL_WRITE),
    "AlertTest": obj({"alert_id": {"type": "string", "format": "uuid"}}, ["alert_id"]),
    "AlertRule": obj(
        {
            "id": INT,
            "tenant": STR,
            "name": STR,
            "job": nullable(INT),
            "group": nullable(INT),
            "events": {"type": "array", "items": STR},
            "channels": {"type": "array", "items": INT},
            "missed_after_seconds": nullable(INT),
            "late_after_seconds": nullable(INT),
            "slow_after_seconds": nullable(NUM),
            "throttle_seconds": INT,
            "digest": BOOL,
            "muted_until": nullable(TIME),
            "enabled": BOOL,
            "updated_at": TIME,
        },
        list(RULE_KEYS),
    ),
    "AlertRuleWrite": obj(RULE_WRITE, ["tenant", "name", "events", "channels"]),
    "AlertRulePatch": obj(RULE_WRITE),
    "Error": ERROR,
}

Job = ref("Job")
JobWrite = {"application/json": ref("JobWrite")}  # a request body
JobPatch = {"application/json": ref("JobPatch")}  # a request body
Run = ref("Run")
RunDetail = ref("RunDetail")
RunRequest = {"application/json": ref("RunRequest")}  # a request body
BulkRequest = {"application/json": ref("BulkRequest")}  # a request body
BulkResponse = ref("BulkResponse")
Backfill = ref("Backfill")
BackfillRequest = {"application/json": ref("BackfillRequest")}  # a request body
Version = ref("Version")
VersionDetail = ref("VersionDetail")
VersionDiff = ref("VersionDiff")
AuditEntry = ref("AuditEntry")
Tenant = ref("Tenant")
Member = ref("Member")
MemberWrite = {"application/json": ref("MemberWrite")}  # a request body
Group = ref("Group")
GroupWrite = {"application/json": ref("GroupWrite")}  # a request body
GroupPatch = {"application/json": ref("GroupPatch")}  # a request body
Calendar = ref("Calendar")
CalendarWrite = {"application/json": ref("CalendarWrite")}  # a request body
CalendarPatch = {"application/json": ref("CalendarPatch")}  # a request body
Dependency = ref("Dependency")
DependencyWrite = {"application/json": ref("DependencyWrite")}  # a request body
CronPreview = ref("CronPreview")
Dashboard = ref("Dashboard")
Node = ref("Node")
NodeAction = ref("NodeAction")
AlertChannel = ref("AlertChannel")
AlertChannelWrite = {"application/json": ref("AlertChannelWrite")}  # a request body
AlertChannelPatch = {"application/json": ref("AlertChannelPatch")}  # a request body
AlertTest = ref("AlertTest")
AlertRule = ref("AlertRule")
AlertRuleWrite = {"application/json": ref("AlertRuleWrite")}  # a request body
AlertRulePatch = {"application/json": ref("AlertRulePatch")}  # a request body

IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    description='The version (ETag) you read, e.g. "3": 409 if the job has changed since.',
)


def paged(item: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {
        200: obj(
            {
                "count": INT,
                "next": nullable({"type": "string", "format": "uri"}),
                "previous": nullable({"type": "string", "format": "uri"}),
                "results": {"type": "array", "items": item},
            },
            ["count", "next", "previous", "results"],
        )
    }


def cursor_paged(item: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {
        200: obj(
            {
                "next": nullable({"type": "string", "format": "uri"}),
                "previous": nullable({"type": "string", "format": "uri"}),
                "results": {"type": "array", "items": item},
            },
            ["next", "previous", "results"],
        )
    }


def ok(schema: dict[str, Any], code: int = 200) -> dict[int, dict[str, Any]]:
    return {code: schema}


# -- drf-spectacular hooks --------------------------------------------------------------


def only_this_api(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Keep the endpoints of scheduler_app's API and monitoring (not the host's)."""
    out = []
    for path, path_regex, method, callback in endpoints:
        cls = getattr(callback, "cls", None)
        if cls is not None and cls.__module__.startswith(("scheduler_app.api.", "scheduler_app.monitoring.")):
            if cls.__name__ in ("SchemaView", "DocsView"):
                continue
            out.append((path, path_regex, method, callback))
    return out


ERROR_RESPONSES = {
    "400": "Invalid input: each error names the field and the reason.",
    "401": "No, an unknown, a revoked or an expired API key.",
    "403": "You may not do this.",
    "404": "No such object among your tenants' objects.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "409": "A conflict: the object changed since you read it, or is not in a state that allows this.",
    "413": "The request body (or its kwargs) is too large.",
    "415": "Unsupported media type (send application/json).",
    "429": "Too many requests for this API key; see Retry-After.",
}
PUBLIC = ("/health/live", "/health/ready")


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Every operation documents the uniform error body for each 4xx it can answer."""
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = ["400", "404", "405", "406", "429"]
            if not path.endswith(PUBLIC):
                codes += ["401", "403"]
            if method in ("post", "put", "patch"):
                codes += ["409", "413", "415"]
            for code in codes:
                operation["responses"].setdefault(
                    code,
                    {
                        "description": ERROR_RESPONSES[code],
                        "content": {"application/json": {"schema": ref("Error")}},
                    },
                )
    return result


def plugin_trigger_component(name: str, taken: Collection[str] = ()) -> str:
    """The component name of plugin trigger type ``name``: ``PluginTrigger_<name>``, a
    name OpenAPI tools accept (``[A-Za-z0-9_]``). A type name is a Python identifier and
    may have other letters (``café``, ``工作日``): those become ``_`` and the name gets
    the first 8 hex digits of the SHA-256 of the type name, so two names that read the
    same once sanitised (``café``, ``cafè``) get two components, and each keeps its
    component whichever other plugins are loaded. ``taken``: names already given (a
    longer digest in the astronomically unlikely case of a clash)."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if safe == name and f"PluginTrigger_{safe}" not in taken:
        return f"PluginTrigger_{safe}"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    for length in range(8, len(digest) + 1, 8):
        component = f"PluginTrigger_{safe}_{digest[:length]}"
        if component not in taken:
            return component
    raise ValueError(f"no free component name for trigger type {name!r}")  # pragma: no cover


def components() -> dict[str, Any]:
    """:data:`COMPONENTS` (a copy, for one schema build) with a component per trigger type
    of the plugins loaded now (:func:`plugin_trigger_component`: ``type`` plus the
    plugin's schema), each one more choice of ``Trigger``'s ``oneOf`` and discriminator."""
    import copy

    from scheduler_app import plugins

    out = copy.deepcopy(COMPONENTS)
    trigger = out["Trigger"]
    # Plain names first: a name that needs no sanitising always keeps its plain component.
    types = sorted(
        plugins.registry.load().trigger_types.items(), key=lambda item: (not item[0].isascii(), item[0])
    )
    for name, kind in types:
        component = plugin_trigger_component(name, out)
        schema = copy.deepcopy(dict(kind.schema))
        properties = {k: v for k, v in (schema.get("properties") or {}).items() if k != "type"}
        out[component] = obj(
            {"type": {"type": "string", "enum": [name]}, **properties},
            ["type", *[r for r in schema.get("required") or [] if r != "type"]],
            additionalProperties=schema.get("additionalProperties", True) is not False,
            description=f"Trigger type {name!r} of the plugin {kind.plugin or '?'}.",
        )
        trigger["oneOf"].append(ref(component))
        trigger["discriminator"]["mapping"][name] = f"#/components/schemas/{component}"
    return out
