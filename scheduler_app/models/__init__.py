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
from scheduler_app.models.counters import AlertCounter, RunCounter
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
)
from scheduler_app.models.nodes import Lease, Node, NodeState
from scheduler_app.models.runs import ConfigVersion, JobRun, JobRunLog, RunReason, RunState
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
    "AlertCounter",
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
    "LoadPolicy",
    "RunReason",
    "RunState",
    "Tenant",
]
