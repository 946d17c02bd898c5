import json
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from scheduler_app import services
from scheduler_app.models import Job, JobRun, Node

JOB_ACTIONS = {
    "run": "queue a run now (or --at a time), optionally with --kwargs overrides",
    "pause": "stop the trigger firing (run now still works)",
    "resume": "let the trigger fire again; missed fire times follow the misfire policy",
    "enable": "enable",
    "disable": "disable (no trigger, no run now)",
}
NODE_ACTIONS = {
    "drain": "finish what it runs, claim nothing new, give up the leader lease",
    "resume": "claim again",
}
RUN_ACTIONS = {
    "cancel": "cancel queued runs (by run id)",
    "stop": "stop running runs (by run id) or cancel queued ones",
}


class Command(BaseCommand):
    help = (
        "Control jobs and runs from the shell, through the same services as the admin. "
        "Jobs are named TENANT/NAME. Actions: "
        + "; ".join(f"{k}: {v}" for k, v in {**JOB_ACTIONS, **RUN_ACTIONS}.items())
        + ". Nodes: jobctl node drain|resume NAME..."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=[*JOB_ACTIONS, *RUN_ACTIONS, "node"])
        parser.add_argument("targets", nargs="+", help="TENANT/NAME of jobs, or run ids for cancel/stop.")
        parser.add_argument("--kwargs", help='JSON object of kwargs overrides for "run".')
        parser.add_argument("--at", help='ISO 8601 time with offset for "run" (default: now).')

    def handle(self, *args, action, targets, kwargs=None, at=None, **opts):
        if action == "node":
            return self._nodes(targets)
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

    def _nodes(self, targets):
        verb, names = targets[0], targets[1:]
        if verb not in NODE_ACTIONS:
            raise CommandError(
                f"node {verb!r}: use one of {', '.join(NODE_ACTIONS)} (jobctl node drain NAME)"
            )
        if not names:
            raise CommandError(f"node {verb}: name at least one node")
        nodes = []
        for name in names:
            node = Node.objects.filter(name=name).first()
            if node is None:
                known = ", ".join(Node.objects.values_list("name", flat=True)[:20]) or "none registered"
                raise CommandError(f"node {name!r}: no such node (known: {known})")
            nodes.append(node)
        result = getattr(services, f"{verb}_nodes")(nodes)
        for node in result.done:
            self.stdout.write(f"{verb}: node {node.name}")
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        for node, reason in result.refused:
            self.stderr.write(f"refused node {node.name}: {reason}")
        if result.refused:
            raise CommandError(f"{len(result.refused)} of {len(names)} refused")

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
