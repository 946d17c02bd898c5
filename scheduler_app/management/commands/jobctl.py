import json
import sys
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.utils.translation import gettext as _

from scheduler_app import display, services
from scheduler_app.documents import limits
from scheduler_app.documents import throttle as throttle_document
from scheduler_app.models import Job, JobGroup, JobRun, Node, Tenant

#: what ``jobctl list --state`` filters on: the job's own switches.
JOB_STATES = ["enabled", "paused", "disabled"]

JOB_ACTIONS = {
    "run": gettext_lazy("Queue a run now (or --at a time), optionally with --kwargs overrides."),
    "pause": gettext_lazy("Stop the trigger firing (run now still works)."),
    "resume": gettext_lazy("Let the trigger fire again; missed fire times follow the misfire policy."),
    "enable": gettext_lazy("Enable jobs."),
    "disable": gettext_lazy("Disable jobs (no trigger, no run now)."),
}
NODE_ACTIONS = {
    "drain": "finish what it runs, claim nothing new, give up the leader lease",
    "resume": "claim again",
}
RUN_ACTIONS = {
    "cancel": gettext_lazy("Cancel queued runs (by run id)."),
    "stop": gettext_lazy("Stop running runs (by run id) or cancel queued ones."),
}
SCOPE_ACTIONS = {
    "group": gettext_lazy("Pause, resume, enable, disable or run every job of a group (TENANT/GROUP)."),
    "tenant": gettext_lazy("The same for every job of a tenant (TENANT)."),
}
BACKFILL_HELP = gettext_lazy(
    "Queue a run per fire time of the job's trigger from --from to --to (asks for confirmation unless --yes)."
)


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

    # call_command(..., stdin=...) answers the backfill confirmation (tests, scripts)
    stealth_options = ("stdin",)

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
        for scope, text in SCOPE_ACTIONS.items():
            p = sub.add_parser(scope, help=str(text), description=str(text))
            p.add_argument("operation", choices=list(services.GROUP_OPERATIONS), help=gettext("What to do."))
            p.add_argument(
                "targets",
                nargs="+",
                metavar="TENANT/GROUP" if scope == "group" else "TENANT",
                help=gettext("Groups (TENANT/GROUP) to act on.")
                if scope == "group"
                else gettext("Tenants (slugs)."),
            )
        p = sub.add_parser("backfill", help=str(BACKFILL_HELP), description=str(BACKFILL_HELP))
        p.add_argument("targets", nargs=1, metavar="TENANT/NAME", help=gettext("The job."))
        p.add_argument("--from", dest="start", help=gettext("First time (ISO 8601 with offset)."))
        p.add_argument("--to", dest="end", help=gettext("Last time (ISO 8601 with offset)."))
        p.add_argument("--dry-run", action="store_true", help=gettext("Count and list, queue nothing."))
        p.add_argument("--yes", action="store_true", help=gettext("Do not ask for confirmation."))
        p.add_argument("--priority", type=int, help=gettext("Priority of the runs (default: the job's)."))
        text = gettext_lazy("Drain nodes (finish what they run, claim nothing new) or resume them.")
        p = sub.add_parser("node", help=str(text), description=str(text))
        p.add_argument(
            "verb",
            choices=list(NODE_ACTIONS),
            help=gettext(
                "drain: finish what it runs, claim nothing new, give up the leader lease; resume: claim again."
            ),
        )
        p.add_argument("names", nargs="+", metavar="NAME", help=gettext("Node names."))
        self._add_list_parser(sub)
        self._add_status_parser(sub)

    def handle(self, *args, action, targets=(), kwargs=None, at=None, **opts):
        if action == "list":
            return self.handle_list(tenant=opts.get("tenant"), states=opts.get("state") or [])
        if action == "status":
            return self.handle_status(opts["job"])
        if action == "node":
            return self._nodes([opts["verb"], *opts["names"]])
        if action == "backfill":
            self._backfill(targets, **opts)
            return
        if action in SCOPE_ACTIONS:
            self._scope(action, [opts["operation"], *targets])
            return
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
                _("run %(id)s of %(job)s") % {"id": obj.pk, "job": f"{obj.job.tenant.slug}/{obj.job.name}"}
                if isinstance(obj, JobRun)
                else f"{obj.tenant.slug}/{obj.name}"
            )
            self.stdout.write(f"{action}: {label}")
        for obj, reason in result.refused:
            self.stderr.write(_("refused %(object)s: %(reason)s") % {"object": obj, "reason": reason})
        if result.refused:
            raise CommandError(
                _("%(refused)d of %(total)d refused")
                % {"refused": len(result.refused), "total": len(targets)}
            )

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
        limits = throttle_document.describe_job(job)
        if limits:
            lines.append((_("limits"), limits))
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
                f"{display.seconds(run.duration)}  {(run.error or run.wait_reason).splitlines()[0][:80] if run.error or run.wait_reason else ''}".rstrip()
            )

    def _scope(self, scope, targets):
        """``group OPERATION TENANT/GROUP...`` and ``tenant OPERATION TENANT...``."""
        operations = ", ".join(services.GROUP_OPERATIONS)
        if len(targets) < 2 or targets[0] not in services.GROUP_OPERATIONS:
            raise CommandError(
                _("%(scope)s: give an operation (%(operations)s) and at least one %(scope)s")
                % {"scope": scope, "operations": operations}
            )
        operation, names = targets[0], targets[1:]
        objects = [self._group(name) if scope == "group" else self._tenant(name) for name in names]
        refused = 0
        for name, obj in zip(names, objects, strict=True):
            if scope == "group":
                result = services.operate_on_group(obj, operation)
            else:
                result = services.operate_on_tenant(obj, operation)
            for done in result.done:
                job = done.job if isinstance(done, JobRun) else done
                self.stdout.write(f"{operation}: {job.tenant.slug}/{job.name}")
            for job, reason in result.refused:
                self.stderr.write(
                    _("refused %(object)s: %(reason)s")
                    % {"object": f"{job.tenant.slug}/{job.name}", "reason": reason}
                )
            self.stdout.write(
                _("%(scope)s %(name)s: %(operation)s %(done)d job(s), %(refused)d refused")
                % {
                    "scope": scope,
                    "name": name,
                    "operation": operation,
                    "done": len(result.done),
                    "refused": len(result.refused),
                }
            )
            refused += len(result.refused)
        if refused:
            raise CommandError(_("%(refused)d job(s) refused") % {"refused": refused})

    def _backfill(
        self, targets, *, start=None, end=None, dry_run=False, yes=False, priority=None, stdin=None, **opts
    ):
        """``backfill TENANT/NAME --from ISO --to ISO``: count, confirm, queue with progress."""
        if len(targets) != 1:
            raise CommandError(_("backfill: give one job, TENANT/NAME"))
        (job,) = self._jobs(targets)
        if not start or not end:
            raise CommandError(_("backfill: give --from and --to (ISO 8601 times with a UTC offset)"))
        first, last = self._time("--from", start), self._time("--to", end)
        try:
            plan = services.plan_backfill(job, first, last)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        label = f"{job.tenant.slug}/{job.name}"
        self.stdout.write(
            _(
                "backfill %(job)s: %(count)d run(s) to queue from %(first)s to %(last)s; "
                "%(existing)d fire time(s) already have a run"
            )
            % {
                "job": label,
                "count": len(plan.to_queue),
                "first": first.isoformat(),
                "last": last.isoformat(),
                "existing": len(plan.existing),
            }
        )
        if dry_run or not plan.to_queue:
            for moment in plan.to_queue:
                self.stdout.write(
                    "  " + _("would queue %(time)s") % {"time": moment.astimezone(job_zone(job)).isoformat()}
                )
            return
        if not yes:
            stdin = stdin or sys.stdin
            if not stdin.isatty():
                raise CommandError(_("backfill: no terminal to confirm on; add --yes to queue the runs"))
            self.stdout.write(_("Queue %(count)d run(s)? [y/N] ") % {"count": len(plan.to_queue)}, ending="")
            self.stdout.flush()
            if stdin.readline().strip().lower() not in ("y", "yes"):
                raise CommandError(_("backfill: not confirmed, nothing queued"))
        step = max(1, len(plan.to_queue) // 10)

        def progress(done, total):
            if done % step == 0 or done == total:
                self.stdout.write("  " + _("queued %(done)d/%(total)d") % {"done": done, "total": total})

        try:
            result = services.backfill_job(job, first, last, priority=priority, progress=progress)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        self.stdout.write(
            _("backfill %(job)s: queued %(queued)d run(s), skipped %(skipped)d")
            % {"job": label, "queued": len(result.queued), "skipped": len(result.existing)}
        )

    @staticmethod
    def _time(flag, text):
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(
                _("%(flag)s: %(text)r is not an ISO 8601 time") % {"flag": flag, "text": text}
            ) from None
        if value.tzinfo is None:
            raise CommandError(
                _("%(flag)s: add a UTC offset, e.g. 2026-12-01T09:00:00+01:00") % {"flag": flag}
            )
        return value

    @staticmethod
    def _group(target):
        tenant, sep, name = target.partition("/")
        if not sep or not tenant or not name:
            raise CommandError(_("%(target)r: name groups as TENANT/GROUP") % {"target": target})
        group = JobGroup.objects.filter(tenant__slug=tenant, name=name).first()
        if group is None:
            raise CommandError(_("%(target)r: no such group") % {"target": target})
        return group

    @staticmethod
    def _tenant(target):
        tenant = Tenant.objects.filter(slug=target).first()
        if tenant is None:
            raise CommandError(_("%(target)r: no such tenant") % {"target": target})
        return tenant

    def _nodes(self, targets):
        verb, names = targets[0], targets[1:]
        if verb not in NODE_ACTIONS:
            raise CommandError(
                _("node %(verb)r: use one of %(verbs)s (jobctl node drain NAME)")
                % {"verb": verb, "verbs": ", ".join(NODE_ACTIONS)}
            )
        if not names:
            raise CommandError(_("node %(verb)s: name at least one node") % {"verb": verb})
        nodes = []
        for name in names:
            node = Node.objects.filter(name=name).first()
            if node is None:
                known = ", ".join(Node.objects.values_list("name", flat=True)[:20]) or _("none registered")
                raise CommandError(
                    _("node %(name)r: no such node (known: %(known)s)") % {"name": name, "known": known}
                )
            nodes.append(node)
        result = getattr(services, f"{verb}_nodes")(nodes)
        for node in result.done:
            self.stdout.write(_("%(verb)s: node %(name)s") % {"verb": verb, "name": node.name})
        for warning in result.warnings:
            self.stderr.write(_("warning: %(warning)s") % {"warning": warning})
        for node, reason in result.refused:
            self.stderr.write(_("refused node %(name)s: %(reason)s") % {"name": node.name, "reason": reason})
        if result.refused:
            raise CommandError(
                _("%(refused)d of %(total)d refused") % {"refused": len(result.refused), "total": len(names)}
            )

    def _jobs(self, targets):
        jobs = []
        for target in targets:
            tenant, sep, name = target.partition("/")
            if not sep:
                raise CommandError(_("%(target)r: name jobs as TENANT/NAME") % {"target": target})
            job = Job.objects.filter(tenant__slug=tenant, name=name).select_related("tenant").first()
            if job is None:
                raise CommandError(_("%(target)r: no such job") % {"target": target})
            jobs.append(job)
        return jobs

    def _runs(self, action, targets):
        ids = []
        for target in targets:
            if not target.isdigit():
                raise CommandError(
                    _("%(target)r: %(action)s takes run ids") % {"target": target, "action": action}
                )
            ids.append(int(target))
        runs = list(JobRun.objects.filter(pk__in=ids).select_related("job__tenant"))
        missing = sorted(set(ids) - {r.pk for r in runs})
        if missing:
            raise CommandError(_("no run with id %(id)s") % {"id": missing[0]})
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
            raise CommandError(_("--kwargs: not valid JSON (%(error)s)") % {"error": exc.msg}) from None
        if not isinstance(value, dict):
            raise CommandError(_("--kwargs: must be a JSON object"))
        return value

    @staticmethod
    def _at(text):
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(
                _("%(flag)s: %(text)r is not an ISO 8601 time") % {"flag": "--at", "text": text}
            ) from None
        if value.tzinfo is None:
            raise CommandError(
                _("%(flag)s: add a UTC offset, e.g. 2026-12-01T09:00:00+01:00") % {"flag": "--at"}
            )
        return value
