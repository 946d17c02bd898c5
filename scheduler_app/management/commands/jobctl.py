import json
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.utils.translation import gettext as _

from scheduler_app import display, services
from scheduler_app.documents import limits
from scheduler_app.models import Job, JobRun, Tenant

#: what ``jobctl list --state`` filters on: the job's own switches.
JOB_STATES = ["enabled", "paused", "disabled"]

JOB_ACTIONS = {
    "run": gettext_lazy("Queue a run now (or --at a time), optionally with --kwargs overrides."),
    "pause": gettext_lazy("Stop the trigger firing (run now still works)."),
    "resume": gettext_lazy("Let the trigger fire again; missed fire times follow the misfire policy."),
    "enable": gettext_lazy("Enable jobs."),
    "disable": gettext_lazy("Disable jobs (no trigger, no run now)."),
}
RUN_ACTIONS = {
    "cancel": gettext_lazy("Cancel queued runs (by run id)."),
    "stop": gettext_lazy("Stop running runs (by run id) or cancel queued ones."),
}


def job_state(job):
    if not job.enabled:
        return "disabled"
    return "paused" if job.paused else "enabled"


def job_zone(job):
    try:
        return display.zone(job.trigger_spec.timezone_name)
    except Exception:  # an invalid stored trigger still gets a line
        return display.zone("UTC")


def next_fire(job, now):
    if not job.is_schedulable:
        return display.EMPTY
    try:
        times = job.upcoming_fire_times(now, 1)
    except ValueError as exc:
        return _("invalid trigger: %(error)s") % {"error": exc}
    return display.when(times[0], job_zone(job)) if times else _("never")


def last_run(job, run):
    if run is None:
        return display.EMPTY
    return f"{run.state} {display.when(run.scheduled_for, job_zone(job))}"


class Command(BaseCommand):
    @property
    def help(self):
        return gettext(
            "Control and inspect jobs and runs from the shell, through the same services as the "
            "admin. Jobs are named TENANT/NAME. `jobctl SUBCOMMAND --help` shows a subcommand's help."
        )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="SUBCOMMAND")
        for action, text in JOB_ACTIONS.items():
            p = sub.add_parser(action, help=str(text), description=str(text))
            p.add_argument("targets", nargs="+", metavar="TENANT/NAME", help=gettext("Jobs to act on."))
            if action == "run":
                p.add_argument("--kwargs", help=gettext("JSON object of kwargs overrides for this run."))
                p.add_argument("--at", help=gettext("ISO 8601 time with offset (default: now)."))
        for action, text in RUN_ACTIONS.items():
            p = sub.add_parser(action, help=str(text), description=str(text))
            p.add_argument("targets", nargs="+", metavar="RUN_ID", help=gettext("Run ids."))
        self._add_list_parser(sub)
        self._add_status_parser(sub)

    def handle(self, *args, action, targets=(), kwargs=None, at=None, **opts):
        if action == "list":
            return self.handle_list(tenant=opts.get("tenant"), states=opts.get("state") or [])
        if action == "status":
            return self.handle_status(opts["job"])
        if action in RUN_ACTIONS:
            result = self._runs(action, targets)
        else:
            jobs = self._jobs(targets)
            if action == "run":
                override = self._kwargs(kwargs)
                when = self._at(at)
                try:
                    result = services.run_jobs_now(jobs, kwargs_override=override, at=when)
                except ValidationError as exc:
                    raise CommandError("; ".join(exc.messages)) from None
            else:
                result = getattr(services, f"{action}_jobs")(jobs)
        for obj in result.done:
            label = (
                f"run {obj.pk} of {obj.job.tenant.slug}/{obj.job.name}"
                if isinstance(obj, JobRun)
                else f"{obj.tenant.slug}/{obj.name}"
            )
            self.stdout.write(f"{action}: {label}")
        for obj, reason in result.refused:
            self.stderr.write(f"refused {obj}: {reason}")
        if result.refused:
            raise CommandError(f"{len(result.refused)} of {len(targets)} refused")

    # -- list and status (read only) ---------------------------------------------------

    @staticmethod
    def _add_list_parser(sub):
        text = _("List jobs with their state, next fire time and last run.")
        p = sub.add_parser("list", help=str(text), description=str(text))
        p.add_argument("--tenant", metavar="SLUG", help=gettext("Only this tenant's jobs."))
        p.add_argument(
            "--state",
            action="append",
            choices=JOB_STATES,
            help=gettext("Only jobs in this state (repeat for several): %(states)s.")
            % {"states": ", ".join(JOB_STATES)},
        )

    @staticmethod
    def _add_status_parser(sub):
        text = _("Show one job: trigger, state, next fire times and recent runs.")
        p = sub.add_parser("status", help=str(text), description=str(text))
        p.add_argument("job", metavar="TENANT/NAME", help=gettext("The job."))

    def handle_list(self, *, tenant, states):
        jobs = Job.objects.select_related("tenant").order_by("tenant__slug", "name")
        if tenant:
            if not Tenant.objects.filter(slug=tenant).exists():
                raise CommandError(_("--tenant: no tenant with slug %(slug)r") % {"slug": tenant})
            jobs = jobs.filter(tenant__slug=tenant)
        now = timezone.now()
        rows = []
        for job in jobs:
            state = job_state(job)
            if states and state not in states:
                continue
            last = job.runs.order_by("-queued_at").first()
            rows.append(
                (
                    f"{job.tenant.slug}/{job.name}",
                    state,
                    next_fire(job, now),
                    last_run(job, last),
                )
            )
        header = (_("JOB"), _("STATE"), _("NEXT FIRE"), _("LAST RUN"))
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            self.stdout.write(
                "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3]
            )
        if not rows:
            self.stdout.write(_("(no jobs)"))

    def handle_status(self, target):
        (job,) = self._jobs([target])
        now = timezone.now()
        tz = job_zone(job)
        lines = [
            (_("job"), f"{job.tenant.slug}/{job.name}"),
            (_("task"), job.task),
            (_("trigger"), job.describe_trigger()),
            (_("state"), job_state(job)),
            (_("next fire"), next_fire(job, now)),
        ]
        for label, value in lines:
            self.stdout.write(f"{label + ':':<12}{value}")
        try:
            upcoming = job.upcoming_fire_times(now, 5) if job.is_schedulable else []
        except ValueError:
            upcoming = []
        for moment in upcoming[1:]:
            self.stdout.write(f"{'':<12}{display.when(moment, tz)}")
        runs = list(job.runs.order_by("-queued_at")[:5])
        self.stdout.write(_("recent runs:") if runs else _("recent runs: none"))
        for run in runs:
            self.stdout.write(
                f"  #{run.pk}  {display.when(run.scheduled_for, tz)}  {run.state}  "
                f"{display.seconds(run.duration)}  {(run.error or '').splitlines()[0][:80] if run.error else ''}".rstrip()
            )

    def _jobs(self, targets):
        jobs = []
        for target in targets:
            tenant, sep, name = target.partition("/")
            if not sep:
                raise CommandError(f"{target!r}: name jobs as TENANT/NAME")
            job = Job.objects.filter(tenant__slug=tenant, name=name).select_related("tenant").first()
            if job is None:
                raise CommandError(f"{target!r}: no such job")
            jobs.append(job)
        return jobs

    def _runs(self, action, targets):
        ids = []
        for target in targets:
            if not target.isdigit():
                raise CommandError(f"{target!r}: {action} takes run ids")
            ids.append(int(target))
        runs = list(JobRun.objects.filter(pk__in=ids).select_related("job__tenant"))
        missing = sorted(set(ids) - {r.pk for r in runs})
        if missing:
            raise CommandError(f"no run with id {missing[0]}")
        return services.cancel_runs(runs) if action == "cancel" else services.stop_runs(runs)

    @staticmethod
    def _kwargs(text):
        if not text:
            return None
        try:
            value = limits.loads_json(text, depth=limits.max_depth(), field="--kwargs")
            limits.check_value(value, "--kwargs")
        except limits.LimitError as exc:
            raise CommandError(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"--kwargs: not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise CommandError("--kwargs: must be a JSON object")
        return value

    @staticmethod
    def _at(text):
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(f"--at: {text!r} is not an ISO 8601 time") from None
        if value.tzinfo is None:
            raise CommandError("--at: add a UTC offset, e.g. 2026-12-01T09:00:00+01:00")
        return value
