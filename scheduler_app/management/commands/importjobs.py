from django.core.management.base import BaseCommand, CommandError

from scheduler_app.interchange import jobsfile

PEERS = ("celery-beat", "django-apscheduler")


class Command(BaseCommand):
    help = (
        "Create or update jobs from a jobs file (JSON, or YAML for .yaml/.yml), keyed by "
        "(tenant slug, job name). All or nothing: on any error nothing changes and the "
        "message names the job and the field. Importing the same file twice changes nothing. "
        "With --from celery-beat or --from django-apscheduler, read that scheduler's "
        "tables instead (into --tenant), mapping task names with --map FILE."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="Path of the jobs file (not with --from).")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; change nothing.")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Delete jobs of the file's tenants that the file does not list.",
        )
        parser.add_argument(
            "--from",
            dest="peer",
            choices=PEERS,
            help="Import the schedules of django-celery-beat (PeriodicTask) or django-apscheduler (DjangoJob).",
        )
        parser.add_argument("--tenant", help="With --from: the tenant (slug) the jobs go into.")
        parser.add_argument(
            "--map",
            dest="map_file",
            help="With --from: a JSON/YAML object of peer task name -> registered task name (null: leave it out).",
        )
        parser.add_argument(
            "--skip-unmapped",
            action="store_true",
            help="With --from: import the rest when some tasks map to no registered task (they are listed).",
        )

    def handle(self, *args, file=None, dry_run=False, prune=False, peer=None, **opts):
        if peer is not None:
            return self._import_peer(peer, file=file, dry_run=dry_run, prune=prune, **opts)
        if file is None:
            raise CommandError("give a jobs file, or --from celery-beat / --from django-apscheduler")
        for option in ("tenant", "map_file", "skip_unmapped"):
            if opts.get(option):
                raise CommandError(f"--{option.replace('_file', '').replace('_', '-')} is only for --from")
        try:
            doc = jobsfile.load_document(file)
            report = jobsfile.import_document(doc, dry_run=dry_run, prune=prune, source=str(file))
        except jobsfile.JobsFileError as exc:
            raise CommandError(f"{file}: {exc}; nothing was changed") from None
        self._print(report, dry_run, f"Imported {file}")

    def _import_peer(
        self, peer, *, file, dry_run, prune, tenant=None, map_file=None, skip_unmapped=False, **_
    ):
        from scheduler_app.interchange import celerybeat, djangoapscheduler, peers

        if file is not None:
            raise CommandError(f"--from {peer} reads {peer}'s tables; do not give a file ({file})")
        if prune:
            raise CommandError("--prune is not available with --from")
        if not tenant:
            raise CommandError(f"--from {peer} needs --tenant SLUG: the tenant the jobs go into")
        module = celerybeat if peer == "celery-beat" else djangoapscheduler
        try:
            peers.target_tenant(tenant)
            mapping = peers.load_mapping(map_file)
            found = module.read(mapping, tenant=tenant)
            found = peers.import_jobs(
                found, source=module.SOURCE, skip_unmapped=skip_unmapped, dry_run=dry_run
            )
        except jobsfile.JobsFileError as exc:
            raise CommandError(f"--from {peer}: {exc}; nothing was changed") from None
        for line in found.lines():
            self.stdout.write(line)
        self._print(found.result, dry_run, f"Imported from {module.SOURCE}")

    def _print(self, report, dry_run, done):
        prefix = "would " if dry_run else ""
        for line in report.lines():
            self.stdout.write(prefix + line)
        summary = summarize(report)
        if dry_run:
            self.stdout.write(f"Dry run: {summary}; nothing was changed.")
        else:
            self.stdout.write(self.style.SUCCESS(f"{done}: {summary}."))


PLURALS = {
    "tenant": "tenants",
    "group": "groups",
    "calendar": "calendars",
    "job": "jobs",
    "alert channel": "alert channels",
    "alert rule": "alert rules",
}


def summarize(report: jobsfile.ImportReport) -> str:
    """``tenants 1 created, 0 changed, 0 unchanged, 0 deleted; groups ...``: every kind,
    every outcome, in the same order on every run (zeros included)."""
    parts = []
    for kind, n in report.counts().items():
        parts.append(
            f"{PLURALS[kind]} {n['created']} created, {n['changed']} changed, "
            f"{n['unchanged']} unchanged, {n['deleted']} deleted"
        )
    return "; ".join(parts)
