from django.core.management.base import BaseCommand, CommandError

from scheduler_app.interchange import jobsfile


class Command(BaseCommand):
    help = (
        "Create or update jobs from a jobs file (JSON, or YAML for .yaml/.yml), keyed by "
        "(tenant slug, job name). All or nothing: on any error nothing changes and the "
        "message names the job and the field. Importing the same file twice changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the jobs file.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; change nothing.")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Delete jobs of the file's tenants that the file does not list.",
        )

    def handle(self, *args, file, dry_run=False, prune=False, **opts):
        try:
            doc = jobsfile.load_document(file)
            report = jobsfile.import_document(doc, dry_run=dry_run, prune=prune, source=str(file))
        except jobsfile.JobsFileError as exc:
            raise CommandError(f"{file}: {exc}; nothing was changed") from None
        prefix = "would " if dry_run else ""
        for line in report.lines():
            self.stdout.write(prefix + line)
        summary = summarize(report)
        if dry_run:
            self.stdout.write(f"Dry run: {summary}; nothing was changed.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {file}: {summary}."))


PLURALS = {"tenant": "tenants", "group": "groups", "calendar": "calendars", "job": "jobs"}


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
