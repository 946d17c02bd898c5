import json
import sys
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from scheduler_app import services
from scheduler_app.models import Job, JobGroup, JobRun, Tenant

JOB_ACTIONS = {
    "run": "queue a run now (or --at a time), optionally with --kwargs overrides",
    "pause": "stop the trigger firing (run now still works)",
    "resume": "let the trigger fire again; missed fire times follow the misfire policy",
    "enable": "enable",
    "disable": "disable (no trigger, no run now)",
}
RUN_ACTIONS = {
    "cancel": "cancel queued runs (by run id)",
    "stop": "stop running runs (by run id) or cancel queued ones",
}
SCOPE_ACTIONS = {
    "group": "OPERATION TENANT/GROUP: pause, resume, enable, disable or run every job of a group",
    "tenant": "OPERATION TENANT: the same for every job of a tenant",
    "backfill": "TENANT/NAME --from ISO --to ISO: queue a run per fire time in the range "
    "(--dry-run, --yes, --priority N)",
}


class Command(BaseCommand):
    help = (
        "Control jobs and runs from the shell, through the same services as the admin. "
        "Jobs are named TENANT/NAME. Actions: "
        + "; ".join(f"{k}: {v}" for k, v in {**JOB_ACTIONS, **RUN_ACTIONS, **SCOPE_ACTIONS}.items())
        + "."
    )

    # call_command(..., stdin=...) answers the backfill confirmation (tests, scripts)
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("action", choices=[*JOB_ACTIONS, *RUN_ACTIONS, *SCOPE_ACTIONS])
        parser.add_argument("targets", nargs="+", help="TENANT/NAME of jobs, or run ids for cancel/stop.")
        parser.add_argument("--kwargs", help='JSON object of kwargs overrides for "run".')
        parser.add_argument("--at", help='ISO 8601 time with offset for "run" (default: now).')
        parser.add_argument("--from", dest="start", help="backfill: first time (ISO 8601 with offset).")
        parser.add_argument("--to", dest="end", help="backfill: last time (ISO 8601 with offset).")
        parser.add_argument("--dry-run", action="store_true", help="backfill: count, queue nothing.")
        parser.add_argument("--yes", action="store_true", help="backfill: do not ask for confirmation.")
        parser.add_argument(
            "--priority", type=int, help="backfill: priority of the runs (default: the job's)."
        )

    def handle(self, *args, action, targets, kwargs=None, at=None, **opts):
        if action == "backfill":
            self._backfill(targets, **opts)
            return
        if action in SCOPE_ACTIONS:
            self._scope(action, targets)
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
                f"run {obj.pk} of {obj.job.tenant.slug}/{obj.job.name}"
                if isinstance(obj, JobRun)
                else f"{obj.tenant.slug}/{obj.name}"
            )
            self.stdout.write(f"{action}: {label}")
        for obj, reason in result.refused:
            self.stderr.write(f"refused {obj}: {reason}")
        if result.refused:
            raise CommandError(f"{len(result.refused)} of {len(targets)} refused")

    def _scope(self, scope, targets):
        """``group OPERATION TENANT/GROUP...`` and ``tenant OPERATION TENANT...``."""
        operations = ", ".join(services.GROUP_OPERATIONS)
        if len(targets) < 2 or targets[0] not in services.GROUP_OPERATIONS:
            raise CommandError(f"{scope}: give an operation ({operations}) and at least one {scope}")
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
                self.stderr.write(f"refused {job.tenant.slug}/{job.name}: {reason}")
            self.stdout.write(
                f"{scope} {name}: {operation} {len(result.done)} job(s), {len(result.refused)} refused"
            )
            refused += len(result.refused)
        if refused:
            raise CommandError(f"{refused} job(s) refused")

    def _backfill(
        self, targets, *, start=None, end=None, dry_run=False, yes=False, priority=None, stdin=None, **opts
    ):
        """``backfill TENANT/NAME --from ISO --to ISO``: count, confirm, queue with progress."""
        if len(targets) != 1:
            raise CommandError("backfill: give one job, TENANT/NAME")
        (job,) = self._jobs(targets)
        if not start or not end:
            raise CommandError("backfill: give --from and --to (ISO 8601 times with a UTC offset)")
        first, last = self._time("--from", start), self._time("--to", end)
        try:
            plan = services.plan_backfill(job, first, last)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        label = f"{job.tenant.slug}/{job.name}"
        self.stdout.write(
            f"backfill {label}: {len(plan.to_queue)} run(s) to queue from {first.isoformat()} "
            f"to {last.isoformat()}; {len(plan.existing)} fire time(s) already have a run"
        )
        if dry_run or not plan.to_queue:
            for moment in plan.to_queue:
                self.stdout.write(f"  would queue {moment.isoformat()}")
            return
        if not yes:
            stdin = stdin or sys.stdin
            if not stdin.isatty():
                raise CommandError("backfill: no terminal to confirm on; add --yes to queue the runs")
            self.stdout.write(f"Queue {len(plan.to_queue)} run(s)? [y/N] ", ending="")
            self.stdout.flush()
            if stdin.readline().strip().lower() not in ("y", "yes"):
                raise CommandError("backfill: not confirmed, nothing queued")
        step = max(1, len(plan.to_queue) // 10)

        def progress(done, total):
            if done % step == 0 or done == total:
                self.stdout.write(f"  queued {done}/{total}")

        try:
            result = services.backfill_job(job, first, last, priority=priority, progress=progress)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {'; '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        self.stdout.write(
            f"backfill {label}: queued {len(result.queued)} run(s), skipped {len(result.existing)}"
        )

    @staticmethod
    def _time(flag, text):
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(f"{flag}: {text!r} is not an ISO 8601 time") from None
        if value.tzinfo is None:
            raise CommandError(f"{flag}: add a UTC offset, e.g. 2026-12-01T09:00:00+01:00")
        return value

    @staticmethod
    def _group(target):
        tenant, sep, name = target.partition("/")
        if not sep or not tenant or not name:
            raise CommandError(f"{target!r}: name groups as TENANT/GROUP")
        group = JobGroup.objects.filter(tenant__slug=tenant, name=name).first()
        if group is None:
            raise CommandError(f"{target!r}: no such group")
        return group

    @staticmethod
    def _tenant(target):
        tenant = Tenant.objects.filter(slug=target).first()
        if tenant is None:
            raise CommandError(f"{target!r}: no such tenant")
        return tenant

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
            value = json.loads(text)
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
