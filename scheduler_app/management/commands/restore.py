from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from scheduler_app.backends import storemigration
from scheduler_app.interchange import backup


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Load a backup written by 'backup' into an empty scheduler_app database (--replace: "
            "delete the current scheduler_app configuration and run history first). All or "
            "nothing: on any error nothing changes and the message names the entry. Users that "
            "do not exist yet are created with an unusable password."
        )

    def add_arguments(self, parser):
        parser.add_argument("file", help=_("Path of the backup file."))
        parser.add_argument(
            "--replace",
            action="store_true",
            help=_(
                "Delete all scheduler_app configuration (tenants, jobs, runs, ...) before "
                "restoring. Users and Django groups are kept."
            ),
        )

    def handle(self, *args, file, replace=False, **opts):
        def progress(section, count):
            self.stderr.write(
                _("restore: %(section)s: %(count)s done") % {"section": section, "count": f"{count:,}"}
            )

        def warn(text):
            self.stderr.write(_("warning: %(warning)s") % {"warning": text})

        try:
            doc = backup.load_backup(file)
            problem = storemigration.live_scheduler_problem() if replace else None
            if problem:
                warn(
                    _(
                        "%(problem)s; it loads the restored configuration within a second, and the "
                        "runs it is executing now belong to the configuration --replace deletes "
                        "(stop the schedulers before restoring)"
                    )
                    % {"problem": problem}
                )
            counts = backup.restore_document(
                doc, replace=replace, source=str(file), progress=progress, warn=warn
            )
        except backup.BackupError as exc:
            raise CommandError(
                _("%(file)s: %(error)s; nothing was changed") % {"file": file, "error": exc}
            ) from None
        created = counts.pop("users_created", 0)
        groups_created = counts.pop("auth_groups_created", 0)
        listed = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "Restored %(file)s: %(counts)s (%(users)d user(s) and %(groups)d Django "
                    "group(s) created; new users have no usable password)."
                )
                % {"file": file, "counts": listed, "users": created, "groups": groups_created}
            )
        )
