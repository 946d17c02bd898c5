from django.core.management.base import BaseCommand, CommandError

from scheduler_app.services import codejobs


class Command(BaseCommand):
    help = (
        "Create, update and delete the jobs declared in code (@scheduler_app.task(schedule=...) "
        "and SCHEDULER_APP['JOBS']), as runscheduler does at start. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; change nothing.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; exit 1 if the database differs from the code (for CI).",
        )

    def handle(self, *args, dry_run=False, check=False, **opts):
        try:
            report = codejobs.sync_code_jobs(dry_run=dry_run or check)
        except codejobs.CodeJobError as exc:
            raise CommandError(f"{exc}; nothing was changed") from None
        prefix = "would " if (dry_run or check) else ""
        for line in report.lines():
            self.stdout.write(prefix + line)
        summary = (
            f"{len(report.created)} created, {len(report.changed)} changed, "
            f"{len(report.deleted)} deleted, {len(report.unchanged)} unchanged"
        )
        if check:
            if report.has_changes:
                raise CommandError(
                    f"the database has drifted from the code: {summary}; run manage.py syncjobs"
                )
            self.stdout.write(f"Code jobs are in sync: {summary}.")
        elif dry_run:
            self.stdout.write(f"Dry run: {summary}; nothing was changed.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Synced code jobs: {summary}."))
