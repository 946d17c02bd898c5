from scheduler_app.models.calendars import Calendar, CalendarDate
from scheduler_app.models.jobs import (
    Executor,
    Job,
    JobDependency,
    JobGroup,
    MisfirePolicy,
    OverlapPolicy,
    Routing,
)
from scheduler_app.models.runs import ConfigVersion, JobRun, RunReason, RunState
from scheduler_app.models.tenants import Tenant

__all__ = [
    "Calendar",
    "ConfigVersion",
    "CalendarDate",
    "Executor",
    "Job",
    "JobDependency",
    "JobGroup",
    "JobRun",
    "MisfirePolicy",
    "OverlapPolicy",
    "Routing",
    "RunReason",
    "RunState",
    "Tenant",
]
