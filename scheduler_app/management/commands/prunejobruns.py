from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.conf import app_settings


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Delete finished runs older than --days (default: SCHEDULER_APP['RUN_RETENTION_DAYS']). "
            "Queued and running runs are never deleted."
        )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, help=_("Keep runs that finished within this many days."))

    def handle(self, *args, days=None, **opts):
        days = app_settings.RUN_RETENTION_DAYS if days is None else days
        if days is None:
            self.stdout.write("RUN_RETENTION_DAYS is None (keep forever); pass --days to prune.")
            return
        if days < 0:
            raise CommandError("--days must be 0 or more")
        deleted = DjangoRunStore().prune(datetime.now(UTC), days)
        self.stdout.write(f"Deleted {deleted} run(s) that finished more than {days:g} day(s) ago.")
