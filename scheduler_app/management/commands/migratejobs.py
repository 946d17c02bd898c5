from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from scheduler_app.backends import storemigration


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Move APScheduler's job state (the job-<pk> entries: trigger, next run time, paused "
            "state) from one persistent job store to another (django, sqlalchemy, redis): copy, "
            "verify, then remove from the source. Stop every runscheduler first; a scheduler "
            "with running runs (fresh heartbeats) is detected and refused unless --force."
        )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from",
            dest="source",
            required=True,
            metavar="STORE",
            help=_("The store the scheduler used: django, sqlalchemy or redis."),
        )
        parser.add_argument(
            "--to",
            dest="destination",
            required=True,
            metavar="STORE",
            help=_("The store it will use: django, sqlalchemy or redis."),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Print what would move; change nothing.")
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=_(
                "Move even though runs with fresh heartbeats suggest a "
                "running scheduler (its node is known to be gone)."
            ),
        )

    def handle(self, *args, source, destination, dry_run=False, force=False, **opts):
        try:
            report = storemigration.migrate(
                source,
                destination,
                dry_run=dry_run,
                force=force,
                progress=lambda text: self.stderr.write(text),
            )
        except storemigration.StoreMigrationError as exc:
            raise CommandError(str(exc)) from None
        for line in report.lines():
            self.stdout.write(line)
        summary = report.summary()
        self.stdout.write(summary if dry_run else self.style.SUCCESS(summary))
