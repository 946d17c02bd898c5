"""The run list's date drill-down lists exactly the periods Django's own query lists
(years, months, days with runs, in the admin's time zone, filtered like the list), in
two queries on PostgreSQL instead of a DISTINCT over every run of the level."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler_app.admin import datehierarchy
from scheduler_app.models import JobRun

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def run(job, at, state="succeeded"):
    return JobRun.objects.create(job=job, scheduled_for=at, state=state, is_final=True)


@pytest.fixture
def runs(make_job):
    job = make_job("j")
    moments = [
        dt.datetime(2024, 12, 31, 23, 30, tzinfo=UTC),  # 2025-01-01 07:30 in Shanghai
        dt.datetime(2025, 1, 1, 0, 30, tzinfo=UTC),
        dt.datetime(2025, 3, 10, 15, 59, tzinfo=UTC),  # 23:59 in Shanghai
        dt.datetime(2025, 3, 10, 16, 0, tzinfo=UTC),  # the 11th in Shanghai
        dt.datetime(2025, 3, 28, 12, 0, tzinfo=UTC),
        dt.datetime(2026, 7, 1, 0, 0, tzinfo=UTC),
    ]
    for at in moments:
        run(job, at)
    run(job, dt.datetime(2025, 3, 20, 12, 0, tzinfo=UTC), state="failed")
    return job


CASES = [
    ({}, "year"),
    ({"scheduled_for__year": 2025}, "month"),
    ({"scheduled_for__year": 2025, "scheduled_for__month": 3}, "day"),
    ({"scheduled_for__year": 2025, "scheduled_for__month": 3, "state": "failed"}, "day"),
    ({"scheduled_for__year": 2025, "state": "failed"}, "month"),
    ({"scheduled_for__year": 2030}, "month"),  # nothing
]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
@pytest.mark.parametrize(("filters", "kind"), CASES)
def test_the_same_periods_as_djangos_query(runs, zone, filters, kind):
    with timezone.override(ZoneInfo(zone)):
        plain = JobRun.objects.filter(**filters).order_by("-scheduled_for")
        expected = list(plain.datetimes("scheduled_for", kind))
        got = list(datehierarchy.bounded(plain).datetimes("scheduled_for", kind))
        assert got == expected
        assert [g.utcoffset() for g in got] == [e.utcoffset() for e in expected]
        desc = list(datehierarchy.bounded(plain).datetimes("scheduled_for", kind, order="DESC"))
        assert desc == expected[::-1]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="probes need LIMIT inside UNION")
def test_two_queries_and_no_distinct_over_the_runs(runs):
    queryset = datehierarchy.bounded(JobRun.objects.filter(scheduled_for__year=2025))
    with CaptureQueriesContext(connection) as captured:
        days = list(queryset.datetimes("scheduled_for", "month"))
    assert [d.month for d in days] == [1, 3]
    assert len(captured) == 2
    assert not any("DISTINCT" in q["sql"] for q in captured)


def test_too_many_periods_fall_back_to_djangos_query(make_job):
    job = make_job("old")
    run(job, dt.datetime(1900, 1, 1, tzinfo=UTC))
    run(job, dt.datetime(2025, 1, 1, tzinfo=UTC))
    queryset = datehierarchy.bounded(JobRun.objects.all())
    assert [d.year for d in queryset.datetimes("scheduled_for", "year")] == [1900, 2025]


def test_the_run_list_drill_down_shows_the_days(admin_client, runs, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    html = admin_client.get(
        "/admin/scheduler_app/jobrun/?scheduled_for__year=2025&scheduled_for__month=3"
    ).content.decode()
    assert "scheduled_for__day=11&amp;scheduled_for__month=3" in html
    assert "scheduled_for__day=10&amp;scheduled_for__month=3" in html
    assert "scheduled_for__day=20&amp;scheduled_for__month=3" in html
    assert "scheduled_for__day=12&amp;scheduled_for__month=3" not in html
