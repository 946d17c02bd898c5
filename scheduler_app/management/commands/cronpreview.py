from datetime import UTC, datetime

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from scheduler_app import i18n
from scheduler_app.engine.cron import CronExpression, CronSyntaxError


class Command(BaseCommand):
    @property
    def help(self) -> str:  # translated in the language active when asked
        return _(
            "Describe a cron expression and print its next fire times, one ISO-8601 time per "
            "line, in the expression's time zone. Exit status 2 on a bad expression."
        )

    def add_arguments(self, parser):
        parser.add_argument("expression", help=_('The expression, quoted, e.g. "0 2 L * *".'))
        parser.add_argument(
            "--dialect",
            choices=["crontab", "quartz"],
            default="crontab",
            help=_(
                "crontab (default): 5 fields, minute hour day-of-month month day-of-week, "
                "Sunday is 0 or 7. quartz: 6 or 7 fields, second minute hour day-of-month "
                "month day-of-week [year], Sunday is 1, and one of the day fields must be '?'."
            ),
        )
        parser.add_argument("--timezone", default="UTC", help=_("IANA time zone (default UTC)."))
        parser.add_argument(
            "--after", help=_("Start after this ISO-8601 time (default: now); naive means the zone.")
        )
        parser.add_argument("--count", type=int, default=10, help=_("How many times (default 10)."))
        parser.add_argument("--hash-key", help=_("Identity used for H values (e.g. tenant/job)."))

    def handle(self, *args, expression, dialect, timezone: str, after, count, hash_key, **opts):
        try:
            expr = CronExpression.parse(expression, dialect=dialect, timezone=timezone, hash_key=hash_key)
        except CronSyntaxError as exc:
            self.stderr.write(_("error: %(error)s") % {"error": i18n.cron_error(exc)})
            raise SystemExit(2) from None
        if count < 1:
            self.stderr.write(_("error: --count must be at least 1"))
            raise SystemExit(2)
        try:
            start = self._after(after, expr)
        except ValueError as exc:
            self.stderr.write(_("error: --after: %(error)s") % {"error": exc})
            raise SystemExit(2) from None
        self.stdout.write(i18n.describe_cron(expr))
        for moment in expr.fire_times(start, count):
            self.stdout.write(moment.isoformat())

    @staticmethod
    def _after(text, expr):
        if not text:
            return datetime.now(UTC)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(_("%(text)r is not an ISO 8601 date-time") % {"text": text}) from None
        if value.tzinfo is None:
            from zoneinfo import ZoneInfo

            value = value.replace(tzinfo=ZoneInfo(expr.timezone))
        return value
