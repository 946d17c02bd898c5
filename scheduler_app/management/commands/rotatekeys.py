from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from scheduler_app import audit, crypto
from scheduler_app.conf import app_settings
from scheduler_app.models import Job


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Re-encrypt every job's secret kwargs with the newest key (the first of "
            "SCHEDULER_APP['ENCRYPTION_KEYS'] or SCHEDULER_APP_ENCRYPTION_KEYS), in batches. "
            "Safe to interrupt and re-run: each batch commits on its own and secrets already "
            "under the newest key are skipped. Keep the old keys configured (after the new one) "
            "until this has finished."
        )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, help=_("Jobs per transaction (default: ROTATE_BATCH_SIZE).")
        )

    def handle(self, *args, batch_size=None, **opts):
        problems = crypto.key_problems()
        if problems:
            raise CommandError(f"{problems[0]}. {crypto.GENERATE_HINT}")
        size = batch_size or app_settings.ROTATE_BATCH_SIZE
        if size < 1:
            raise CommandError("--batch-size must be at least 1")
        ids = list(Job.objects.exclude(secrets_token="").order_by("pk").values_list("pk", flat=True))
        rotated = current = 0
        per_tenant: dict = {}
        failed: list[str] = []
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            with transaction.atomic():
                for job in Job.objects.select_for_update().filter(pk__in=chunk).select_related("tenant"):
                    if crypto.is_current(job.secrets_token):
                        current += 1
                        continue
                    try:
                        token = crypto.rotate(job.secrets_token)
                    except crypto.SecretsError as exc:
                        failed.append(f"{job.tenant.slug}/{job.name}: {exc}")
                        continue
                    Job.objects.filter(pk=job.pk).update(secrets_token=token)
                    rotated += 1
                    per_tenant[job.tenant] = per_tenant.get(job.tenant, 0) + 1
            done = min(start + size, len(ids))
            self.stderr.write(f"  {done}/{len(ids)} jobs with secrets checked")
        summary = f"Re-encrypted {rotated} job(s); {current} already used the newest key."
        with transaction.atomic():
            for tenant, count in per_tenant.items():
                audit.record(tenant, "rotate_keys", None, rotated=count)
        if failed:
            raise CommandError(
                summary + f" {len(failed)} could not be decrypted with any configured key "
                "(nothing was changed for them):\n  " + "\n  ".join(failed)
            )
        self.stdout.write(self.style.SUCCESS(summary))
