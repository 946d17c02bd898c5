from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from scheduler_app.interchange import jobsfile

PEERS = ("celery-beat", "django-apscheduler")


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Create or update jobs from a jobs file (JSON, or YAML for .yaml/.yml), keyed by "
            "(tenant slug, job name). All or nothing: on any error nothing changes and the "
            "message names the job and the field. Importing the same file twice changes nothing. "
            "With --from celery-beat or --from django-apscheduler, read that scheduler's "
            "tables instead (into --tenant), mapping task names with --map FILE."
        )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help=_("Path of the jobs file (not with --from)."))
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Print what would change; change nothing.")
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help=_("Delete jobs of the file's tenants that the file does not list."),
        )
        parser.add_argument(
            "--from",
            dest="peer",
            choices=PEERS,
            help=_(
                "Import the schedules of django-celery-beat (PeriodicTask) or django-apscheduler (DjangoJob)."
            ),
        )
        parser.add_argument("--tenant", help=_("With --from: the tenant (slug) the jobs go into."))
        parser.add_argument(
            "--map",
            dest="map_file",
            help=_(
                "With --from: a JSON/YAML object of peer task name -> registered task name (null: leave it out)."
            ),
        )
        parser.add_argument(
            "--skip-unmapped",
            action="store_true",
            help=_(
                "With --from: import the rest when some tasks map to no registered task (they are listed)."
            ),
        )

    def handle(self, *args, file=None, dry_run=False, prune=False, peer=None, **opts):
        if peer is not None:
            return self._import_peer(peer, file=file, dry_run=dry_run, prune=prune, **opts)
        if file is None:
            raise CommandError(_("give a jobs file, or --from celery-beat / --from django-apscheduler"))
        for option in ("tenant", "map_file", "skip_unmapped"):
            if opts.get(option):
                raise CommandError(
                    _("--%(option)s is only for --from")
                    % {"option": option.replace("_file", "").replace("_", "-")}
                )
        try:
            doc = jobsfile.load_document(file)
            report = jobsfile.import_document(doc, dry_run=dry_run, prune=prune, source=str(file))
        except jobsfile.JobsFileError as exc:
            raise CommandError(
                _("%(file)s: %(error)s; nothing was changed") % {"file": file, "error": exc}
            ) from None
        self._print(report, dry_run, _("Imported %(file)s") % {"file": file})

    def _import_peer(
        self, peer, *, file, dry_run, prune, tenant=None, map_file=None, skip_unmapped=False, **opts
    ):
        from scheduler_app.interchange import celerybeat, djangoapscheduler, peers

        if file is not None:
            raise CommandError(
                _("--from %(peer)s reads %(peer)s's tables; do not give a file (%(file)s)")
                % {"peer": peer, "file": file}
            )
        if prune:
            raise CommandError(_("--prune is not available with --from"))
        if not tenant:
            raise CommandError(
                _("--from %(peer)s needs --tenant SLUG: the tenant the jobs go into") % {"peer": peer}
            )
        module = celerybeat if peer == "celery-beat" else djangoapscheduler
        try:
            peers.target_tenant(tenant)
            mapping = peers.load_mapping(map_file)
            found = module.read(mapping, tenant=tenant)
            found = peers.import_jobs(
                found, source=module.SOURCE, skip_unmapped=skip_unmapped, dry_run=dry_run
            )
        except jobsfile.JobsFileError as exc:
            raise CommandError(
                _("--from %(peer)s: %(error)s; nothing was changed") % {"peer": peer, "error": exc}
            ) from None
        for line in found.lines():
            self.stdout.write(line)
        self._print(found.result, dry_run, _("Imported from %(source)s") % {"source": module.SOURCE})

    def _print(self, report, dry_run, done):
        for line in report.lines():
            self.stdout.write(_("would %(change)s") % {"change": line} if dry_run else line)
        summary = summarize(report)
        if dry_run:
            self.stdout.write(_("Dry run: %(summary)s; nothing was changed.") % {"summary": summary})
        else:
            self.stdout.write(self.style.SUCCESS(f"{done}: {summary}."))


PLURALS = {
    "tenant": gettext_lazy("tenants"),
    "group": gettext_lazy("groups"),
    "calendar": gettext_lazy("calendars"),
    "job": gettext_lazy("jobs"),
    "alert channel": gettext_lazy("alert channels"),
    "alert rule": gettext_lazy("alert rules"),
}


def summarize(report: jobsfile.ImportReport) -> str:
    """``tenants 1 created, 0 changed, 0 unchanged, 0 deleted; groups ...``: every kind,
    every outcome, in the same order on every run (zeros included)."""
    parts = []
    for kind, n in report.counts().items():
        parts.append(
            _(
                "%(kind)s %(created)d created, %(changed)d changed, %(unchanged)d unchanged, %(deleted)d deleted"
            )
            % {"kind": PLURALS[kind], **n}
        )
    return _("; ").join(parts)
