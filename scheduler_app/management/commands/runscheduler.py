import logging
import os
import signal
import sys
import threading

from django.core import checks
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils.translation import gettext as _

from scheduler_app import logutils
from scheduler_app.backends.runstore import default_node_name
from scheduler_app.conf import app_settings
from scheduler_app.engine.outputguard import OutputGuard

logger = logging.getLogger("scheduler_app.runscheduler")

EXIT_UNHEALTHY = 3


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Run the scheduler on this machine until SIGTERM or SIGINT: fires triggers, queues "
            "runs and executes them. Logs one key=value line per event on standard output. On "
            "SIGTERM it stops firing, lets running runs finish for the shutdown grace, then "
            "marks the rest interrupted (re-queued on the next start). Exits with status 3 if "
            "a scheduler loop dies or stalls, so a supervisor can restart it."
        )

    requires_system_checks = []  # run below, with a clearer message

    def add_arguments(self, parser):
        parser.add_argument("--node", help=_("Node name (default: host name and process id)."))
        parser.add_argument(
            "--tags",
            metavar="TAG,TAG",
            help=_(
                "This node's tags, comma-separated (added to SCHEDULER_APP['NODE_TAGS']); jobs "
                "routed by tags run only on nodes having all of them."
            ),
        )
        parser.add_argument(
            "--job-store",
            choices=["memory", "django", "sqlalchemy", "redis"],
            help=_("APScheduler job store (default: SCHEDULER_APP['JOB_STORE'])."),
        )
        parser.add_argument("--log-level", default="INFO", help=_("Log level (default INFO)."))
        parser.add_argument(
            "--health-port",
            type=int,
            metavar="PORT",
            help=_("Serve GET /live and /ready of this process on PORT (for container probes)."),
        )

    def _sync_code_jobs(self):
        """Jobs declared in code are made real before the scheduler loads jobs; a clash
        (two declarations of one name, a hand-made job of that name) refuses to start."""
        from scheduler_app.services import codejobs

        try:
            report = codejobs.sync_code_jobs()
        except codejobs.CodeJobError as exc:
            raise CommandError(_("refusing to start: %(error)s") % {"error": exc}) from None
        for line in report.lines():
            self.stdout.write(_("code jobs: %(change)s") % {"change": line})

    def handle(self, *args, node=None, tags=None, job_store=None, log_level="INFO", health_port=None, **opts):
        errors = [e for e in checks.run_checks(include_deployment_checks=False) if e.level >= checks.ERROR]
        if errors:
            lines = "\n".join(f"  {e.id}: {e.msg}" + (f" ({e.hint})" if e.hint else "") for e in errors)
            raise CommandError(
                _("refusing to start; fix the configuration first:\n%(errors)s") % {"errors": lines}
            )
        from scheduler_app.backends import cluster as cluster_backend
        from scheduler_app.engine.cluster import ClusterError, NodeNameTaken

        try:
            node_tags = cluster_backend.node_tags(tags)
            cluster_backend.timings()
        except ClusterError as exc:
            raise CommandError(str(exc)) from None
        if node is not None and not node.strip():
            raise CommandError(_("--node: the node name must not be empty"))
        from scheduler_app.backends.service import harden_connections

        node = node or default_node_name()
        harden_connections(node)
        self._check_database()
        self._sync_code_jobs()
        # Before any executor starts: what tasks print or log, in this process and in
        # the process executor's workers, passes through it with secrets masked.
        guard = OutputGuard()
        guard.install()
        logutils.configure(log_level.upper())
        from scheduler_app.backends.service import SchedulerService

        stop = threading.Event()
        received = []

        def on_signal(signum, frame):
            received.append(signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        service = SchedulerService(node, job_store=job_store, tags=node_tags)
        if health_port is not None:  # bound before anything starts: a taken port stops here
            from scheduler_app.monitoring.probe import HealthProbe

            try:
                HealthProbe(service, health_port).start()
            except (OSError, OverflowError) as exc:
                raise CommandError(
                    _("--health-port %(port)s: cannot listen: %(error)s")
                    % {"port": health_port, "error": exc}
                ) from None
        try:
            service.start()
        except NodeNameTaken as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:
            logger.exception("scheduler failed to start")
            raise CommandError(_("the scheduler could not start: %(error)s") % {"error": exc}) from exc
        status = 0
        while not stop.wait(1.0):
            problems = service.problems()
            if problems:
                logger.critical(
                    "scheduler unhealthy; exiting so a supervisor restarts it",
                    extra={"problems": "; ".join(problems)},
                )
                status = EXIT_UNHEALTHY
                break
        reason = f"scheduler shut down ({received[0]})" if received else "scheduler shut down (unhealthy)"
        service.shutdown(app_settings.SHUTDOWN_GRACE if status == 0 else 5.0, reason)
        sys.stdout.flush()
        sys.stderr.flush()
        guard.close()
        # Threads running tasks that ignore stops (a thread cannot be killed) must not
        # keep the process alive: everything is recorded by now.
        os._exit(status)

    def _check_database(self):
        from django.db.migrations.executor import MigrationExecutor

        try:
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            raise CommandError(_("cannot reach the database: %(error)s") % {"error": exc}) from exc
        if pending:
            raise CommandError(
                _("the database has %(count)d unapplied migration(s); run 'manage.py migrate' first")
                % {"count": len(pending)}
            )
