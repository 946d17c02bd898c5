from datetime import UTC, datetime

from django.core.management.base import BaseCommand

from scheduler_app.engine.cron import CronExpression, CronSyntaxError


class Command(BaseCommand):
    help = (
        "Describe a cron expression and print its next fire times, one ISO-8601 time per "
        "line, in the expression's time zone. Exit status 2 on a bad expression."
    )

    def add_arguments(self, parser):
        parser.add_argument("expression", help='The expression, quoted, e.g. "0 2 L * *".')
        parser.add_argument(
            "--dialect",
            choices=["crontab", "quartz"],
            default="crontab",
            help=(
                "crontab (default): 5 fields, minute hour day-of-month month day-of-week, "
                "Sunday is 0 or 7. quartz: 6 or 7 fields, second minute hour day-of-month "
                "month day-of-week [year], Sunday is 1, and one of the day fields must be '?'."
            ),
        )
        parser.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC).")
        parser.add_argument(
            "--after", help="Start after this ISO-8601 time (default: now); naive means the zone."
        )
        parser.add_argument("--count", type=int, default=10, help="How many times (default 10).")
        parser.add_argument("--hash-key", help="Identity used for H values (e.g. tenant/job).")

    def handle(self, *args, expression, dialect, timezone: str, after, count, hash_key, **opts):
        try:
            expr = CronExpression.parse(expression, dialect=dialect, timezone=timezone, hash_key=hash_key)
        except CronSyntaxError as exc:
            self.stderr.write(f"error: {exc}")
            raise SystemExit(2) from None
        if count < 1:
            self.stderr.write("error: --count must be at least 1")
            raise SystemExit(2)
        try:
            start = self._after(after, expr)
        except ValueError as exc:
            self.stderr.write(f"error: --after: {exc}")
            raise SystemExit(2) from None
        self.stdout.write(expr.describe())
        for moment in expr.fire_times(start, count):
            self.stdout.write(moment.isoformat())

    @staticmethod
    def _after(text, expr):
        if not text:
            return datetime.now(UTC)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
        if value.tzinfo is None:
            from zoneinfo import ZoneInfo

            value = value.replace(tzinfo=ZoneInfo(expr.timezone))
        return value
