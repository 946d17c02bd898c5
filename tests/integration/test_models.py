"""Job, dependency and run models: validation names the field, and nothing is saved."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from scheduler_app import services
from scheduler_app.models import Job, JobDependency, JobGroup, JobRun

pytestmark = pytest.mark.django_db


def errors_of(job):
    with pytest.raises(ValidationError) as info:
        services.save_job(job)
    return info.value.message_dict


def test_valid_job_saves_with_canonical_trigger(tenant):
    job = services.save_job(
        Job(
            tenant=tenant,
            name="j",
            task="demo.sleep",
            kwargs={"seconds": 1},
            trigger={"type": "interval", "seconds": 30.0, "jitter": 0},
        )
    )
    job.refresh_from_db()
    assert job.trigger == {"type": "interval", "seconds": 30}
    assert job.describe_trigger() == "Every 30 seconds"


def test_unknown_task(tenant):
    errors = errors_of(Job(tenant=tenant, name="j", task="billing.nope"))
    assert "task 'billing.nope' is not registered" in errors["task"][0]
    assert "demo.noop" in errors["task"][0]  # lists what is registered
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"task": "demo.sleep"}, "kwargs", "missing required argument 'seconds'"),
        ({"task": "demo.sleep", "kwargs": {"seconds": 1, "x": 2}}, "kwargs", "has no argument 'x'"),
        ({"task": "demo.noop", "args": [1]}, "args", "takes 0 positional argument(s) but 1 were given"),
        (
            {"task": "demo.fail", "secret_kwargs": {"token": "s"}, "kwargs": {"message": "m"}},
            "secret_kwargs",
            "has no argument 'token'",
        ),
        (
            {"task": "demo.echo", "kwargs": {"a": 1}, "secret_kwargs": {"a": 2}},
            "secret_kwargs",
            "'a' is given in both kwargs and secret kwargs",
        ),
    ],
    ids=["missing", "unexpected", "too-many-args", "bad-secret", "secret-twice"],
)
def test_arguments_that_do_not_fit(tenant, fields, field, message):
    errors = errors_of(Job(tenant=tenant, name="j", **fields))
    assert message in errors[field][0]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"type": "interval", "seconds": 0}, "trigger.seconds: must be greater than 0"),
        (
            {"type": "interval", "seconds": 10, "timezone": "Mars/Olympus"},
            "trigger.timezone: unknown time zone 'Mars/Olympus'",
        ),
        ({"type": "date", "run_at": "tomorrow"}, "trigger.run_at: 'tomorrow' is not an ISO 8601"),
        ({"type": "date", "run_at": "2026-12-01T09:00:00"}, "has no UTC offset"),
        ({"type": "weekly"}, "trigger.type: 'weekly' is not a trigger type"),
        ({"type": "interval", "seconds": 5, "every": 3}, "trigger.every: unknown key"),
        (
            {"type": "any", "triggers": [{"type": "manual"}, {"type": "interval", "seconds": 1}]},
            "trigger.triggers[0].type: a manual trigger cannot be combined",
        ),
        ({"type": "all", "triggers": [{"type": "interval", "seconds": 1}]}, "at least 2 triggers"),
    ],
    ids=[
        "zero-interval",
        "bad-zone",
        "bad-date",
        "naive-date",
        "bad-type",
        "unknown-key",
        "manual-in-combo",
        "combo-too-small",
    ],
)
def test_bad_triggers(tenant, trigger, message):
    errors = errors_of(Job(tenant=tenant, name="j", task="demo.noop", trigger=trigger))
    assert message in errors["trigger"][0]
    assert not Job.objects.exists()


def test_date_trigger_with_zone_keeps_local_time(tenant):
    job = services.save_job(
        Job(
            tenant=tenant,
            name="j",
            task="demo.noop",
            trigger={"type": "date", "run_at": "2026-12-01T09:00:00", "timezone": "Europe/Berlin"},
        )
    )
    assert job.trigger["run_at"] == "2026-12-01T09:00:00+01:00"
    after = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert job.upcoming_fire_times(after, 3) == [dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)]


def test_interval_phase_is_anchored_on_creation(make_job):
    job = make_job(trigger={"type": "interval", "seconds": 60})
    after = job.created_at + dt.timedelta(seconds=90)
    first = job.upcoming_fire_times(after, 1)[0]
    assert (first - job.created_at).total_seconds() == pytest.approx(120, abs=0.001)


def test_duplicate_name_in_tenant(make_job, tenant):
    make_job("nightly")
    errors = errors_of(Job(tenant=tenant, name="nightly", task="demo.noop"))
    assert "already exists" in errors["__all__"][0]
    assert Job.objects.count() == 1


def test_same_name_in_other_tenant_is_fine(make_job, other_tenant):
    make_job("nightly")
    make_job("nightly", tenant=other_tenant)
    assert Job.objects.count() == 2


def test_group_of_other_tenant(make_job, other_tenant):
    group = JobGroup.objects.create(tenant=other_tenant, name="ops")
    with pytest.raises(ValidationError) as info:
        make_job(group=group)
    assert info.value.message_dict["group"] == ["The group belongs to another tenant."]


def test_routing_by_tags_needs_tags(make_job):
    with pytest.raises(ValidationError) as info:
        make_job(routing="tags", routing_tags=[])
    assert "at least one tag" in info.value.message_dict["routing_tags"][0]


class TestDependencies:
    def test_self_dependency(self, make_job):
        a = make_job("a")
        with pytest.raises(ValidationError, match="cannot depend on itself"):
            services.add_dependency(a, a)
        assert not JobDependency.objects.exists()

    def test_cross_tenant(self, make_job, other_tenant):
        a = make_job("a")
        b = make_job("b", tenant=other_tenant)
        with pytest.raises(ValidationError, match="cannot cross tenants"):
            services.add_dependency(a, b)
        assert not JobDependency.objects.exists()

    def test_cycle_is_named(self, make_job):
        a, b, c = make_job("a"), make_job("b"), make_job("c")
        services.add_dependency(a, b)
        services.add_dependency(b, c)
        with pytest.raises(ValidationError, match="would create a cycle: c → a → b → c"):
            services.add_dependency(c, a)
        assert JobDependency.objects.count() == 2

    def test_diamond_is_fine_and_tenant_is_set(self, make_job, tenant):
        a, b, c, d = (make_job(n) for n in "abcd")
        for up, down in [(a, b), (a, c), (b, d), (c, d)]:
            services.add_dependency(up, down)
        assert set(JobDependency.objects.values_list("tenant_id", flat=True)) == {tenant.pk}

    def test_self_edge_blocked_by_database_too(self, make_job):
        a = make_job("a")
        with pytest.raises(IntegrityError):
            JobDependency.objects.create(upstream=a, downstream=a, tenant=a.tenant)


class TestRuns:
    def test_enqueue_is_idempotent(self, make_job):
        job = make_job()
        when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        first = services.enqueue_run(job, scheduled_for=when)
        assert first is not None
        assert services.enqueue_run(job, scheduled_for=when) is None
        assert JobRun.objects.count() == 1
        assert services.enqueue_run(job, scheduled_for=when, attempt=2) is not None

    def test_due_order_priority_then_time(self, make_job):
        low, high = make_job("low", priority=0), make_job("high", priority=10)
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        services.enqueue_run(low, scheduled_for=t0)
        services.enqueue_run(high, scheduled_for=t0 + dt.timedelta(minutes=1))
        services.enqueue_run(
            low, scheduled_for=t0 + dt.timedelta(minutes=2), not_before=t0 + dt.timedelta(days=1)
        )
        due = list(JobRun.objects.due(t0 + dt.timedelta(minutes=5)))
        assert [(r.job.name, r.scheduled_for) for r in due] == [
            ("high", t0 + dt.timedelta(minutes=1)),
            ("low", t0),
        ]

    def test_run_now_checks_override_and_refuses_disabled(self, make_job):
        ok = make_job("ok", task="demo.echo")
        off = make_job("off", enabled=False)
        result = services.run_jobs_now([ok, off], kwargs_override={"x": 1})
        assert [r.job for r in result.done] == [ok]
        assert result.done[0].kwargs_override == {"x": 1}
        assert result.done[0].reason == "manual"
        assert result.refused == [(off, "job is disabled")]
        bad = services.run_jobs_now(
            [make_job("s", task="demo.sleep", kwargs={"seconds": 1})], kwargs_override={"nope": 1}
        )
        assert not bad.done and "has no argument 'nope'" in bad.refused[0][1]

    def test_cancel_only_queued(self, make_job):
        job = make_job()
        run = services.run_jobs_now([job]).done[0]
        done = services.cancel_runs([run])
        assert done.done == [run] and run.state == "cancelled"
        again = services.cancel_runs([run])
        assert again.refused == [(run, "run is cancelled, not queued")]
