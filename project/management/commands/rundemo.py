import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

SAMPLE_JOBS = Path(__file__).resolve().parents[2] / "sample_jobs.json"


class Command(BaseCommand):
    help = (
        "Set up and run the demo: migrate, create the demo admin account, load the sample "
        "jobs, then serve the admin on http://127.0.0.1:8000/admin/ with the scheduler "
        "running beside it. Stop with Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--setup-only", action="store_true", help="Prepare the database, then exit.")

    def handle(self, *args, addrport, setup_only, **opts):
        self.stdout.write("[1/4] Migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("[2/4] Demo admin account…")
        username, password = self._admin()
        self.stdout.write("[3/4] Loading sample jobs…")
        call_command("importjobs", str(SAMPLE_JOBS), stdout=self.stdout)
        url = f"http://{addrport}/admin/"
        self.stdout.write(
            self.style.SUCCESS(f"\nDemo admin: {url}\n  username: {username}\n  password: {password}\n")
        )
        if setup_only:
            return
        self.stdout.write("[4/4] Starting the scheduler and the web server (Ctrl-C stops both)…")
        scheduler = self._start_scheduler()
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if scheduler is not None:
                scheduler.terminate()
                scheduler.wait(timeout=60)

    def _admin(self):
        User = get_user_model()
        path = Path(settings.VAR_DIR) / "demo_admin_password"
        if path.exists():
            password = path.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            path.write_text(password)
            path.chmod(0o600)
        user, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return "admin", password

    def _start_scheduler(self):
        from django.core.management import get_commands

        if "runscheduler" not in get_commands():
            return None
        return subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler", "--node", "demo"],
            cwd=settings.BASE_DIR,
            env=os.environ.copy(),
        )
