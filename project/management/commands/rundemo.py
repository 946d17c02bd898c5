import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from project.demo_processes import (
    Address,
    DemoError,
    SchedulerLock,
    check_address,
    describe,
    lock_path,
    port_number,
    supervise,
)
from scheduler_app.conf import app_settings

SAMPLE_JOBS = Path(__file__).resolve().parents[2] / "sample_jobs.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Beyond the scheduler's own shutdown grace, before it is killed.
STOP_MARGIN = 15.0


class Command(BaseCommand):
    help = (
        "Set up and run the demo: migrate, create the demo admin account, load the sample "
        "jobs, collect the static files, then serve the admin on http://127.0.0.1:8000/admin/ "
        "(or --port / --addrport) with the scheduler running beside it. Both stop together: "
        "on Ctrl-C or SIGTERM, and when either of them exits (the demo then exits with "
        "status 1 and says which). Only one demo scheduler runs per database."
    )

    def add_arguments(self, parser):
        where = parser.add_mutually_exclusive_group()
        where.add_argument(
            "--port", type=port_number, help=f"Port on {DEFAULT_HOST} to serve on (default {DEFAULT_PORT})."
        )
        where.add_argument(
            "--addrport",
            type=Address.parse,
            metavar="HOST:PORT",
            help="Address and port to serve on, e.g. 0.0.0.0:9000 (add the host name you browse "
            "to to DJANGO_ALLOWED_HOSTS).",
        )
        parser.add_argument(
            "--setup-only", action="store_true", help="Prepare the database and static files, then exit."
        )

    def handle(self, *args, port, addrport, setup_only, **opts):
        address = addrport or Address(DEFAULT_HOST, port or DEFAULT_PORT)
        try:
            if setup_only:
                self._setup(address)
                return
            path, label = lock_path(connection.settings_dict, Path(settings.VAR_DIR))
            lock = SchedulerLock(path, label)
            lock.acquire()  # before the database is touched
            check_address(address, DEFAULT_HOST)
            self._setup(address)
            connection.close()  # the children have their own; this one would only idle
            self._run(address, lock)
        except DemoError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            raise CommandError("interrupted before the demo started; nothing is running") from None

    def _setup(self, address):
        self.stdout.write("[1/5] Migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("[2/5] Demo admin account…")
        username, password = self._admin()
        self.stdout.write("[3/5] Loading sample jobs…")
        call_command("importjobs", str(SAMPLE_JOBS), stdout=self.stdout)
        self.stdout.write("[4/5] Collecting static files…")
        call_command("collectstatic", interactive=False, verbosity=1, stdout=self.stdout)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo admin: {address.url}\n  username: {username}\n  password: {password}\n"
            )
        )

    def _run(self, address, lock):
        self.stdout.write("[5/5] Starting the scheduler and the web server (Ctrl-C stops both)…")
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        # The children read the same settings as this process, however it was given them.
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE, "PYTHONUNBUFFERED": "1"}
        grace = app_settings.SHUTDOWN_GRACE

        def on_stopping(signal_name):
            why = f" ({signal_name})" if signal_name else ""
            self.stdout.write(
                f"Stopping the web server and the scheduler{why}; running jobs get up to {grace:g} s…"
            )
            sys.stdout.flush()

        outcome = supervise(
            [*manage, "runserver", address.addrport, "--noreload", "--skip-checks"],
            [*manage, "runscheduler", "--node", "demo"],
            cwd=Path(settings.BASE_DIR),
            env=env,
            lock=lock,
            scheduler_stop_timeout=grace + STOP_MARGIN,
            on_stopping=on_stopping,
        )
        if outcome.web_server is not None:
            raise CommandError(
                f"the web server exited ({describe(outcome.web_server)}); stopped the scheduler"
            )
        if outcome.scheduler is not None:
            raise CommandError(
                f"the scheduler exited ({describe(outcome.scheduler)}); stopped the web server "
                "(its log is above)"
            )
        self.stdout.write(f"Demo stopped ({outcome.signal}).")

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
