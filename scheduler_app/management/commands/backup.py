from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from scheduler_app.interchange import backup


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Write the whole scheduler_app configuration (tenants, users and Django groups they "
            "refer to, memberships, groups, calendars, jobs, dependencies, versions, object "
            "permissions, alert channels and rules; with --with-runs the run history too) as one JSON document, read in "
            "one consistent snapshot. Secrets stay encrypted; password hashes are not written. "
            "Restore it with 'restore'."
        )

    def add_arguments(self, parser):
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            required=True,
            help=_("Write the backup to FILE (replaced atomically, mode 0600)."),
        )
        parser.add_argument("--with-runs", action="store_true", help=_("Include the run history."))

    def handle(self, *args, output, with_runs=False, **opts):
        def progress(section, count):
            self.stderr.write(
                _("backup: %(section)s: %(count)s written") % {"section": section, "count": f"{count:,}"}
            )

        try:
            counts = backup.write_backup(output, with_runs=with_runs, progress=progress)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(
                _("cannot write %(file)s: %(error)s") % {"file": output, "error": exc.strerror or exc}
            ) from None
        listed = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        self.stdout.write(
            self.style.SUCCESS(_("Backed up %(counts)s to %(file)s.") % {"counts": listed, "file": output})
        )
