"""A run's claim has a time of its own (``JobRun.claimed_at``, set by the real claim):
the run page's timeline shows it with the durations before and after it, and a run
released back to the queue forgets it."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Capacity, Outcome
from scheduler_app.models import JobRun

pytestmark = pytest.mark.django_db

ROOM = Capacity(per_executor={"thread": 5}, total=5)


def timeline_rows(html):
    table = html[html.index('<table class="sa-timeline">') :]
    table = table[: table.index("</table>")]
    return {
        label: (time, delta, note)
        for label, time, delta, note in re.findall(
            r'<tr><th scope="row">([^<]*)</th><td class="sa-time">([^<]*)</td>'
            r'<td class="sa-delta">([^<]*)</td><td>([^<]*)</td></tr>',
            table,
        )
    }


def test_the_claim_time_is_stored_and_shown_between_not_before_and_the_start(admin_client, make_job):
    job = make_job("billing")
    due = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)
    run = services.enqueue_run(job, scheduled_for=due)
    claimed_at = due + dt.timedelta(seconds=2)
    (claimed,) = DjangoRunStore().claim("n1", ROOM, claimed_at).runs
    stored = JobRun.objects.get(pk=run.pk)
    assert stored.claimed_at == claimed_at and stored.started_at == claimed_at

    running = timeline_rows(
        admin_client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk])).text
    )
    assert running["claimed"][0] == "2026-12-01 09:00:02 +00:00"
    assert running["claimed"][1] == "+2.00 s"  # after "not before" (the scheduled time)
    assert running["claimed"][2].startswith("by n1 (claim ")
    assert running["started"][2] == "the claim&#x27;s time until the run reports when it started"

    started = claimed_at + dt.timedelta(seconds=1.5)
    DjangoRunStore().record(
        [
            Outcome(
                run_id=run.pk,
                state="succeeded",
                started_at=started,
                finished_at=started + dt.timedelta(seconds=3),
                claim_token=claimed.claim_token,
            )
        ]
    )
    done = timeline_rows(admin_client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk])).text)
    assert done["claimed"][0] == "2026-12-01 09:00:02 +00:00"
    assert done["started"] == ("2026-12-01 09:00:03 +00:00", "+1.50 s", "")
    assert done["finished"][1] == "+3.00 s"
    assert JobRun.objects.get(pk=run.pk).claimed_at == claimed_at


def test_a_run_claimed_before_claim_times_were_recorded_says_so(admin_client, make_job):
    job = make_job("billing")
    due = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)
    run = services.enqueue_run(job, scheduled_for=due)
    JobRun.objects.filter(pk=run.pk).update(state="running", node="n1", started_at=due, claim_token="x:1")
    rows = timeline_rows(admin_client.get(reverse("admin:scheduler_app_jobrun_change", args=[run.pk])).text)
    assert rows["claimed"][0] == "—"
    assert "the claim is recorded as the start" in rows["claimed"][2]


def test_a_released_run_forgets_its_claim(make_job):
    job = make_job("billing")
    due = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)
    run = services.enqueue_run(job, scheduled_for=due)
    (claimed,) = DjangoRunStore().claim("n1", ROOM, due).runs
    DjangoRunStore().record(
        [
            Outcome(
                run_id=run.pk,
                state="released",
                started_at=due,
                finished_at=due,
                claim_token=claimed.claim_token,
            )
        ]
    )
    stored = JobRun.objects.get(pk=run.pk)
    assert stored.state == "queued" and stored.claimed_at is None and stored.started_at is None
