"""The one write path. Admin actions, API views, commands and the engine change jobs
and runs only through these functions, so validation, transactions, permission checks,
audit and versions happen in one place.

``actor`` is the user acting; ``None`` means the system (the engine, or a management
command run by an operator with shell access), which is not permission-checked. Functions
that act on many objects check each one and return a :class:`BulkResult` listing what was
done and what was refused with the reason, so a face can report both. Each refusal
(:class:`~scheduler_app.services.bulk.Refusal`) also names its kind (``forbidden``,
``invalid`` with the field, ``conflict``, ``not_found``): a face decides by the kind, never
by the reason's words (they are in the actor's language).

The package's rooms: :mod:`.jobs`, :mod:`.runs`, :mod:`.grants`, :mod:`.groups` (tenants,
groups, calendars, memberships), :mod:`.groupops` (operations on a group's or tenant's jobs),
:mod:`.backfill`, :mod:`.keys` (API keys); with
:mod:`.permissions` (who may do what) and :mod:`.versioning` (job versions). Every
public function is re-exported here, so ``services.save_job(...)`` is the way to call.
"""

from scheduler_app.services.alerts import (
    delete_alert_objects,
    mute_job_alerts,
    mute_jobs_alerts,
    mute_rule,
    mute_rules,
    save_channel,
    save_rule,
    send_test_alert,
)
from scheduler_app.services.backfill import BackfillPlan, backfill_job, plan_backfill
from scheduler_app.services.bulk import BulkResult
from scheduler_app.services.grants import GRANTABLE, set_object_permissions
from scheduler_app.services.groupops import OPERATIONS as GROUP_OPERATIONS
from scheduler_app.services.groupops import operate_on_group, operate_on_tenant
from scheduler_app.services.groups import (
    check_calendar_save,
    check_group_save,
    check_tenant_save,
    delete_calendars,
    delete_groups,
    delete_tenants,
    remove_membership,
    save_calendar,
    save_group,
    save_tenant,
    set_membership,
)
from scheduler_app.services.jobs import (
    FLAG_ACTIONS,
    add_dependency,
    check_dependency_save,
    check_job_save,
    delete_dependencies,
    delete_jobs,
    disable_jobs,
    drop_dependencies,
    enable_jobs,
    move_jobs_to_group,
    notify_job_changed,
    pause_jobs,
    put_dependencies,
    resume_jobs,
    rollback_job,
    save_dependency,
    save_job,
    set_job_edges,
)
from scheduler_app.services.keys import create_key, revoke_key
from scheduler_app.services.nodes import delete_nodes, drain_nodes, resume_nodes
from scheduler_app.services.runs import (
    cancel_runs,
    enqueue_run,
    rerun_runs,
    retry_runs,
    run_jobs_now,
    stop_runs,
)

__all__ = [
    "delete_alert_objects",
    "mute_job_alerts",
    "mute_jobs_alerts",
    "mute_rule",
    "mute_rules",
    "save_channel",
    "save_rule",
    "send_test_alert",
    "delete_nodes",
    "drain_nodes",
    "resume_nodes",
    "FLAG_ACTIONS",
    "GRANTABLE",
    "GROUP_OPERATIONS",
    "BackfillPlan",
    "BulkResult",
    "add_dependency",
    "backfill_job",
    "cancel_runs",
    "check_calendar_save",
    "check_dependency_save",
    "check_group_save",
    "check_job_save",
    "check_tenant_save",
    "create_key",
    "delete_calendars",
    "delete_groups",
    "delete_dependencies",
    "delete_jobs",
    "delete_tenants",
    "disable_jobs",
    "drop_dependencies",
    "enable_jobs",
    "enqueue_run",
    "move_jobs_to_group",
    "notify_job_changed",
    "operate_on_group",
    "operate_on_tenant",
    "pause_jobs",
    "plan_backfill",
    "put_dependencies",
    "remove_membership",
    "revoke_key",
    "rerun_runs",
    "resume_jobs",
    "retry_runs",
    "rollback_job",
    "run_jobs_now",
    "save_calendar",
    "save_group",
    "save_dependency",
    "save_job",
    "save_tenant",
    "set_job_edges",
    "set_membership",
    "set_object_permissions",
    "stop_runs",
]
