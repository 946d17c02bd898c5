from scheduler_app.models.alerts import (
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    AlertIncident,
    AlertOutbox,
    AlertRule,
    ChannelType,
    OutboxState,
)
from scheduler_app.models.apikeys import ApiKey, RunRequest
from scheduler_app.models.calendars import Calendar, CalendarDate
from scheduler_app.models.counters import RunCounter
from scheduler_app.models.jobs import (
    Executor,
    Job,
    JobDependency,
    JobGroup,
    LoadPolicy,
    MisfirePolicy,
    OverlapPolicy,
    Routing,
    ThrottlePolicy,
    TriggerRule,
)
from scheduler_app.models.nodes import Lease, Node, NodeState
from scheduler_app.models.runs import (
    FAILURE_STATES,
    ConfigVersion,
    JobJoin,
    JobRun,
    JobRunLog,
    RunReason,
    RunState,
    failure_q,
)
from scheduler_app.models.tenants import Membership, Role, Tenant
from scheduler_app.models.versions import JobVersion

__all__ = [
    "AlertChannel",
    "AlertDelivery",
    "AlertEvent",
    "AlertIncident",
    "AlertOutbox",
    "AlertRule",
    "ChannelType",
    "OutboxState",
    "ApiKey",
    "RunCounter",
    "RunRequest",
    "Calendar",
    "ConfigVersion",
    "CalendarDate",
    "Executor",
    "Job",
    "JobDependency",
    "JobGroup",
    "JobRun",
    "JobRunLog",
    "JobJoin",
    "JobVersion",
    "Lease",
    "Node",
    "NodeState",
    "Membership",
    "Role",
    "MisfirePolicy",
    "OverlapPolicy",
    "Routing",
    "ThrottlePolicy",
    "TriggerRule",
    "LoadPolicy",
    "RunReason",
    "RunState",
    "Tenant",
    "FAILURE_STATES",
    "failure_q",
]
