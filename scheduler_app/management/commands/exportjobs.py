from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from scheduler_app.interchange import jobsfile


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Write the job configuration (tenants, groups, calendars, jobs, dependencies) as a "
            "jobs file. JSON by default; YAML when the output file ends in .yaml/.yml or with "
            "--format yaml. Secret kwargs are left out unless --include-secrets is given."
        )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help=_("Export only this tenant."))
        parser.add_argument(
            "-o", "--output", metavar="FILE", help=_("Write to FILE instead of standard output.")
        )
        parser.add_argument("--format", choices=["json", "yaml"], help=_("Output format."))
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help=_("Include secret kwargs (handle the file as a secret)."),
        )

    def handle(self, *args, tenant=None, output=None, format=None, include_secrets=False, **opts):
        fmt = format or ("yaml" if output and Path(output).suffix.lower() in (".yaml", ".yml") else "json")
        try:
            skipped: list[str] = []
            doc = jobsfile.export_document(tenant=tenant, include_secrets=include_secrets, skipped=skipped)
        except jobsfile.JobsFileError as exc:
            raise CommandError(str(exc)) from None
        for line in skipped:
            self.stderr.write(f"warning: {line}")
        text = jobsfile.dump_document(doc, fmt)
        if output:
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
            self.stderr.write(f"Exported {len(doc['jobs'])} job(s) to {output}.")
        else:
            self.stdout.write(text, ending="")
