"""importjobs --from celery-beat / --from django-apscheduler, against the peers' real
tables (rows made with their own models and job store), with the fire times of the
imported jobs checked against the peers' own schedule logic."""

import datetime as dt
import io
import json
import os
import pickle
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job as APSJob
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import AndTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from celery.schedules import crontab as celery_crontab
from django.core.management import CommandError, call_command
from django_apscheduler.jobstores import DjangoJobStore
from django_apscheduler.models import DjangoJob
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from project import scheduler_tasks
from scheduler_app.interchange import apspickle
from scheduler_app.models import Job

pytestmark = pytest.mark.django_db
START = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def run(*args):
    out = io.StringIO()
    call_command("importjobs", *args, stdout=out)
    return out.getvalue()


def mapping(tmp_path, data, name="map.yaml"):
    path = tmp_path / name
    path.write_text(
        json.dumps(data) if name.endswith(".json") else "\n".join(f"{k}: {v}" for k, v in data.items())
    )
    return str(path)


def fires(job, count, after=START):
    return Job.objects.get(pk=job.pk).upcoming_fire_times(after, count)


# -- celery-beat -------------------------------------------------------------------------


def celery_oracle(fields, tz, count, after=START):
    """Fire times by celery's own parsed crontab sets, every field ANDed, minute by minute
    in the crontab's zone (as celery documents its crontab)."""
    c = celery_crontab(**fields)
    zone = ZoneInfo(tz)
    t = after.astimezone(zone).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    out = []
    while len(out) < count:
        if (
            t.month in c.month_of_year
            and t.day in c.day_of_month
            and t.isoweekday() % 7 in c.day_of_week
            and t.hour in c.hour
            and t.minute in c.minute
        ):
            out.append(t)
        t += dt.timedelta(minutes=1)
    return out


CELERY_CASES = [
    pytest.param(
        {"minute": "30", "hour": "3", "day_of_month": "1-7", "day_of_week": "mon"},
        "Europe/Berlin",
        id="first-monday-AND-not-cron-OR",
    ),
    pytest.param(
        {"minute": "*/20", "hour": "9-11", "day_of_month": "*", "day_of_week": "fri-mon"},
        "UTC",
        id="weekday-range-wrapping",
    ),
    pytest.param(
        {"minute": "0", "hour": "6", "day_of_month": "*", "day_of_week": "0"},
        "America/New_York",
        id="day-of-week-0-is-sunday",
    ),
    pytest.param(
        {
            "minute": "15",
            "hour": "*/6",
            "day_of_month": "*/10",
            "day_of_week": "sat,sun",
            "month_of_year": "1-6",
        },
        "UTC",
        id="stepped-days-AND-weekend",
    ),
]


@pytest.mark.parametrize("fields,tz", CELERY_CASES)
def test_celery_crontab_meaning_is_preserved(tenant, tmp_path, fields, tz):
    schedule = CrontabSchedule.objects.create(timezone=ZoneInfo(tz), **{"month_of_year": "*", **fields})
    PeriodicTask.objects.create(name="report", task="proj.tasks.report", crontab=schedule)
    run(
        "--from",
        "celery-beat",
        "--tenant",
        "acme",
        "--map",
        mapping(tmp_path, {"proj.tasks.report": "demo.noop"}),
    )
    job = Job.objects.get(tenant=tenant, name="report")
    assert job.task == "demo.noop"
    ours = [t.astimezone(ZoneInfo(tz)) for t in fires(job, 12)]
    assert ours == celery_oracle({"month_of_year": "*", **fields}, tz, 12)


def test_celery_fields_interval_clocked_and_flags(tenant):
    every = IntervalSchedule.objects.create(every=90, period=IntervalSchedule.MINUTES)
    start = dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC)
    PeriodicTask.objects.create(
        name="sync",
        task="demo.echo",
        interval=every,
        start_time=start,
        kwargs='{"n": 1}',
        priority=7,
        enabled=False,
        queue="fast",
        description="sync the ERP",
    )
    clocked = ClockedSchedule.objects.create(clocked_time=dt.datetime(2027, 1, 5, 8, 0, tzinfo=dt.UTC))
    PeriodicTask.objects.create(name="once", task="demo.sleep", clocked=clocked, one_off=True, args="[2.5]")
    out = run("--from", "celery-beat", "--tenant", "acme")
    sync = Job.objects.get(name="sync")
    assert sync.trigger == {"type": "interval", "seconds": 5400, "start": start.isoformat()}
    assert (sync.kwargs, sync.priority, sync.enabled, sync.description) == (
        {"n": 1},
        7,
        False,
        "sync the ERP",
    )
    assert "note periodic task 'sync': queue='fast' not carried over" in out
    once = Job.objects.get(name="once")
    assert once.trigger["type"] == "date" and once.args == [2.5]
    assert fires(once, 2) == [clocked.clocked_time]
    assert "2 created" in out
    # idempotent
    assert "jobs 0 created, 0 changed, 2 unchanged, 0 deleted" in run(
        "--from", "celery-beat", "--tenant", "acme"
    )
    versions = sync.versions.all()
    assert (
        versions.count() == 1 and versions[0].summary == "imported from the schedules of django-celery-beat"
    )


def test_celery_unmapped_and_bad_rows_change_nothing(tenant, tmp_path):
    cron = CrontabSchedule.objects.create(minute="0", hour="1")
    PeriodicTask.objects.create(name="good", task="demo.noop", crontab=cron)
    PeriodicTask.objects.create(name="orphan", task="proj.tasks.gone", crontab=cron)
    PeriodicTask.objects.create(name="cleanup", task="celery.backend_cleanup", crontab=cron)
    with pytest.raises(CommandError) as info:
        run("--from", "celery-beat", "--tenant", "acme")
    message = str(info.value)
    assert message.startswith("--from celery-beat: 2 task(s) map to no registered task: ")
    assert "periodic task 'orphan': task 'proj.tasks.gone'" in message
    assert "periodic task 'cleanup': task 'celery.backend_cleanup'" in message
    assert message.endswith("; nothing was changed")
    assert not Job.objects.exists()
    # mapped to null: left out on purpose; --skip-unmapped imports the rest and lists them
    out = run(
        "--from", "celery-beat", "--tenant", "acme", "--skip-unmapped",
        "--map", mapping(tmp_path, {"celery.backend_cleanup": "null"}),
    )  # fmt: skip
    assert "skip periodic task 'cleanup': task 'celery.backend_cleanup' is mapped to null" in out
    assert "skip periodic task 'orphan': task 'proj.tasks.gone' maps to no registered task" in out
    assert list(Job.objects.values_list("name", flat=True)) == ["good"]


@pytest.mark.parametrize(
    "row,message",
    [
        (
            {"solar": "solar", "task": "demo.noop"},
            "periodic task 'bad': solar: solar schedules (sunrise) are not supported; "
            "replace it with a crontab or leave the task out (map it to null)",
        ),
        (
            {"crontab": "cron", "task": "demo.noop", "kwargs": "{nope"},
            "periodic task 'bad': kwargs: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        ),
        (
            {"crontab": "cron", "task": "demo.noop", "args": '{"a": 1}'},
            "periodic task 'bad': args: must be a JSON list",
        ),
        (
            {"crontab": "cron", "task": "demo.noop", "one_off": True},
            "periodic task 'bad': one_off: only a clocked schedule can be one-off here; use a clocked schedule or clear one_off",
        ),
        (
            {"crontab": "cron", "task": "demo.sleep", "kwargs": '{"nap": 1}'},
            "jobs[1] (acme/bad): kwargs: task demo.sleep has no argument 'nap'",
        ),
    ],
    ids=["solar", "bad-json", "args-not-list", "one-off-cron", "arguments-do-not-fit"],
)
def test_celery_bad_rows_are_named_and_nothing_is_imported(tenant, row, message):
    cron = CrontabSchedule.objects.create(minute="0", hour="1")
    PeriodicTask.objects.create(name="a-fine-one", task="demo.noop", crontab=cron)
    schedules = {
        "cron": cron,
        "solar": SolarSchedule.objects.create(event="sunrise", latitude="52.5", longitude="13.4"),
    }
    fields = {k: schedules.get(v, v) if k in ("crontab", "solar") else v for k, v in row.items()}
    PeriodicTask.objects.create(name="bad", **fields)
    with pytest.raises(CommandError) as info:
        run("--from", "celery-beat", "--tenant", "acme")
    assert str(info.value) == f"--from celery-beat: {message}; nothing was changed"
    assert not Job.objects.exists()


def test_dry_run_and_bad_options(tenant, tmp_path):
    PeriodicTask.objects.create(
        name="r", task="demo.noop", crontab=CrontabSchedule.objects.create(minute="0", hour="1")
    )
    out = run("--from", "celery-beat", "--tenant", "acme", "--dry-run")
    assert "would create job acme/r" in out and "nothing was changed" in out
    assert not Job.objects.exists()
    with pytest.raises(CommandError, match="needs --tenant SLUG"):
        run("--from", "celery-beat")
    with pytest.raises(CommandError, match="--tenant: unknown tenant 'nope'"):
        run("--from", "celery-beat", "--tenant", "nope")
    bad = mapping(tmp_path, {"x": "no.such.task"}, name="m.json")
    with pytest.raises(CommandError, match=r"--map .*m.json: 'x': task 'no.such.task' is not registered"):
        run("--from", "celery-beat", "--tenant", "acme", "--map", bad)


# -- django-apscheduler -------------------------------------------------------------------


def store_job(job_id, trigger, func=scheduler_tasks.noop, paused=False, **options):
    """Write a DjangoJob row with django-apscheduler's own job store."""
    scheduler = BackgroundScheduler(timezone="UTC")
    options.setdefault("misfire_grace_time", 30)
    options.setdefault("coalesce", False)
    options.setdefault("max_instances", 2)
    job = APSJob(
        scheduler,
        id=job_id,
        func=func,
        trigger=trigger,
        executor="default",
        args=options.pop("args", ()),
        kwargs=options.pop("kwargs", {}),
        name=job_id,
        next_run_time=None if paused else trigger.get_next_fire_time(None, START),
        **options,
    )
    DjangoJobStore().add_job(job)
    return trigger


def aps_oracle(trigger, count, after=START):
    # Always from "no previous fire" at whole seconds: APScheduler 3's AndTrigger loops
    # forever when given its previous fire time, or a "now" with microseconds.
    out, now = [], after + dt.timedelta(seconds=1)
    while len(out) < count:
        nxt = trigger.get_next_fire_time(None, now)
        out.append(nxt)
        now = nxt + dt.timedelta(seconds=1)
    return out


APS_CASES = [
    pytest.param(
        lambda: CronTrigger.from_crontab("0 2 * * 0", timezone="UTC"), id="from_crontab-0-is-monday"
    ),
    pytest.param(
        lambda: CronTrigger(day="1-7", day_of_week="mon", hour=3, timezone="Europe/Berlin"),
        id="day-AND-weekday",
    ),
    pytest.param(lambda: CronTrigger(day="last", hour="8", minute="*/30", timezone="UTC"), id="last-day"),
    pytest.param(lambda: CronTrigger(day="last fri", hour="17", timezone="UTC"), id="last-friday"),
    pytest.param(
        lambda: CronTrigger(day="2nd tue", hour="9", month="jan-jun", timezone="UTC"), id="second-tuesday"
    ),
    pytest.param(
        lambda: CronTrigger(day_of_week="5-6", hour="10", second="15", timezone="UTC"), id="weekend-seconds"
    ),
    pytest.param(
        lambda: IntervalTrigger(minutes=45, start_date=dt.datetime(2026, 1, 1, 0, 7, tzinfo=dt.UTC)),
        id="interval",
    ),
    pytest.param(
        lambda: AndTrigger(
            [
                CronTrigger(hour="*/2", minute=0, timezone="UTC"),
                CronTrigger(hour="9-17", minute=0, timezone="UTC"),
            ]
        ),
        id="and",
    ),
]


@pytest.mark.parametrize("make", APS_CASES)
def test_apscheduler_trigger_meaning_is_preserved(tenant, make):
    trigger = store_job("nightly", make())
    out = run("--from", "django-apscheduler", "--tenant", "acme")
    assert "1 created" in out
    job = Job.objects.get(name="nightly")
    assert job.task == "demo.noop"  # found by its function's module:qualname
    assert (job.max_instances, job.misfire_policy, job.misfire_grace_seconds) == (2, "run_all", 30)
    assert fires(job, 10) == aps_oracle(trigger, 10)


def test_apscheduler_paused_args_and_mapping(tenant, tmp_path):
    store_job(
        "echo",
        IntervalTrigger(hours=1, start_date=START),
        func=scheduler_tasks.echo,
        kwargs={"n": 2},
        paused=True,
    )

    store_job("local", IntervalTrigger(hours=1, start_date=START), func=elsewhere)
    with pytest.raises(CommandError) as info:
        run("--from", "django-apscheduler", "--tenant", "acme")
    ref = f"{__name__}:elsewhere"
    assert f"DjangoJob 'local': task '{ref}'" in str(info.value)
    assert not Job.objects.exists()
    run(
        "--from",
        "django-apscheduler",
        "--tenant",
        "acme",
        "--map",
        mapping(tmp_path, {ref: "demo.noop"}, "m.json"),
    )
    echo = Job.objects.get(name="echo")
    assert (echo.task, echo.kwargs, echo.paused) == ("demo.echo", {"n": 2}, True)
    assert Job.objects.get(name="local").task == "demo.noop"


def elsewhere():
    """A function APScheduler can reference but that is no registered task."""


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("how", ["reduce-os-system", "getattr-chain", "unknown-class"])
def test_apscheduler_pickles_naming_other_classes_are_refused_unexecuted(tenant, tmp_path, how):
    marker = tmp_path / "executed"
    if how == "reduce-os-system":
        boom = Boom()
        boom.path = marker
        payload = {"trigger": boom, "func": "project.scheduler_tasks:noop"}
        data = pickle.dumps(payload)
        named = "posix.system"
    elif how == "getattr-chain":
        # getattr(datetime, "__reduce_ex__"): a step towards reaching other callables
        data = b"cbuiltins\ngetattr\n(cdatetime\ndatetime\nS'__reduce_ex__'\ntR."
        named = None
    else:
        data = pickle.dumps({"trigger": dt.datetime(2026, 1, 1), "func": "x:y", "extra": io.StringIO()})
        named = "_io.StringIO"
    DjangoJob.objects.create(id="evil", next_run_time=None, job_state=data)
    with pytest.raises(CommandError) as info:
        run("--from", "django-apscheduler", "--tenant", "acme")
    message = str(info.value)
    assert message.startswith("--from django-apscheduler: DjangoJob 'evil': job_state: ")
    assert "refused" in message and message.endswith("; nothing was changed")
    if named:
        assert f"the pickle names {named}," in message
    assert not marker.exists()
    assert not Job.objects.exists()


def test_restricted_unpickler_reads_what_the_job_store_writes(db):
    store_job(
        "x",
        AndTrigger(
            [CronTrigger.from_crontab("0 2 1-7 * mon", timezone="Europe/Berlin"), IntervalTrigger(hours=1)]
        ),
    )
    state = apspickle.load_job_state(DjangoJob.objects.get(id="x").job_state)
    assert state["func"] == "project.scheduler_tasks:noop"
    assert isinstance(state["trigger"], AndTrigger)
    assert str(state["trigger"].triggers[0].timezone) == "Europe/Berlin"
