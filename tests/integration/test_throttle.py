"""Rate limits (job, group, tenant) and concurrency keys on the real database: the
claim starts what the limits allow and holds the rest back with a reason, a finished
run frees its slot, a held-back run is not judged a misfire, nodes claiming at the same
time never exceed a key's limit (PostgreSQL), and every face refuses bad values naming
the field."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection  # noqa: F401 - read by the skipif condition
from django.db.models import F
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore, advisory_key
from scheduler_app.engine.interfaces import Capacity, Outcome
from scheduler_app.models import Job, JobGroup, JobRun, Membership, RunReason, RunState, Tenant
from tests.integration.api_support import JOB, client_for, errors_of, key_for
from tests.integration.sessions import while_held

pytestmark = pytest.mark.django_db

ROOM = Capacity(per_executor={"thread": 50}, total=50)


@pytest.fixture
def limited_job(make_job):
    """A job whose own max_instances never holds its runs back: only the throttle does."""

    def make(name, **fields):
        fields.setdefault("max_instances", 100)
        fields.setdefault("overlap_policy", "queue")
        return make_job(name, **fields)

    return make


def queue(job, count, *, now, since=5):
    """``count`` due scheduled runs of ``job``, fire times ``since`` s ago and later."""
    rows = []
    for i in range(count):
        when = now - timedelta(seconds=since) + timedelta(microseconds=i)
        rows.append(
            JobRun(
                job=job,
                tenant_id=job.tenant_id,
                scheduled_for=when,
                reason=RunReason.SCHEDULE,
                not_before=when,
                priority=job.priority,
                executor=job.executor,
            )
        )
    JobRun.objects.bulk_create(rows)
    JobRun.objects.filter(job=job, state=RunState.QUEUED).update(queued_at=F("scheduled_for"))


def by_state(job):
    return {
        state: JobRun.objects.filter(job=job, state=state).count()
        for state in (RunState.QUEUED, RunState.RUNNING, RunState.SKIPPED)
    }


def finish(store, run_ids):
    """The runs succeed, having started when they were claimed."""
    store.record(
        [
            Outcome(
                run_id=run.pk, state=RunState.SUCCEEDED, started_at=run.started_at, finished_at=run.started_at
            )
            for run in JobRun.objects.filter(pk__in=run_ids)
        ]
    )


# -- rates ------------------------------------------------------------------------------


def test_a_rate_of_10_per_minute_starts_10_of_30_and_moves_the_rest_to_the_next_slot(limited_job):
    job = limited_job("invoices", rate_limit="10/m", misfire_grace_seconds=30)
    store = DjangoRunStore()
    now = timezone.now()
    queue(job, 30, now=now, since=20)
    result = store.claim("n1", ROOM, now)
    assert len(result.runs) == 10
    assert by_state(job) == {RunState.QUEUED: 20, RunState.RUNNING: 10, RunState.SKIPPED: 0}
    waiting = JobRun.objects.filter(job=job, state=RunState.QUEUED)
    assert {r.not_before for r in waiting} == {now + timedelta(minutes=1)}
    assert {r.wait_reason for r in waiting} == {"waiting: rate limit 10/m of job acme/invoices reached"}
    assert set(
        JobRun.objects.filter(job=job, state=RunState.RUNNING).values_list("wait_reason", flat=True)
    ) == {""}
    # Nothing more in that minute, even when the running runs have finished.
    finish(store, [r.run_id for r in result.runs])
    assert store.claim("n1", ROOM, now + timedelta(seconds=59)).runs == ()
    # At the slot the window has room for 10 again. The waiting runs are then 80 s past
    # their fire times (grace 30 s, coalesce): held back by the limit, not misfired.
    later = store.claim("n1", ROOM, now + timedelta(minutes=1))
    assert len(later.runs) == 10
    assert by_state(job) == {RunState.QUEUED: 10, RunState.RUNNING: 10, RunState.SKIPPED: 0}
    started = JobRun.objects.filter(pk__in=[r.run_id for r in later.runs])
    assert set(started.values_list("wait_reason", flat=True)) == {""}


def test_a_rate_is_a_sliding_window(limited_job):
    job = limited_job("feed", rate_limit="2/m")
    store = DjangoRunStore()
    now = timezone.now()
    queue(job, 1, now=now)
    assert len(store.claim("n1", ROOM, now).runs) == 1
    queue(job, 2, now=now + timedelta(seconds=30), since=1)
    # 30 s later: one start in the window, room for one more; the other waits until the
    # first start leaves the window (now + 60 s), not a full minute from now.
    t30 = now + timedelta(seconds=30)
    assert len(store.claim("n1", ROOM, t30).runs) == 1
    waiting = JobRun.objects.get(job=job, state=RunState.QUEUED)
    assert waiting.not_before == now + timedelta(minutes=1)


def test_a_group_rate_counts_the_runs_of_all_its_jobs(limited_job, tenant):
    group = JobGroup.objects.create(tenant=tenant, name="erp", rate_limit="3/h")
    a = limited_job("a", group=group)
    b = limited_job("b", group=group, priority=1)
    other = limited_job("other")  # not in the group: not limited
    store = DjangoRunStore()
    now = timezone.now()
    for job in (a, b, other):
        queue(job, 4, now=now)
    assert len(store.claim("n1", ROOM, now).runs) == 7
    assert by_state(b)[RunState.RUNNING] == 3  # higher priority first
    assert by_state(a)[RunState.RUNNING] == 0
    assert by_state(other)[RunState.RUNNING] == 4
    reasons = set(JobRun.objects.filter(state=RunState.QUEUED).values_list("wait_reason", flat=True))
    assert reasons == {"waiting: rate limit 3/h of group acme/erp reached"}


def test_a_tenant_rate_with_the_skip_policy_skips_and_says_why(limited_job, tenant, other_tenant):
    Tenant.objects.filter(pk=tenant.pk).update(rate_limit="2/d")
    job = limited_job("ping", throttle_policy="skip")
    foreign = services.save_job(Job(tenant=other_tenant, name="ping", task="demo.noop", max_instances=100))
    store = DjangoRunStore()
    now = timezone.now()
    queue(job, 5, now=now)
    queue(foreign, 5, now=now)
    assert len(store.claim("n1", ROOM, now).runs) == 7
    assert by_state(job) == {RunState.QUEUED: 0, RunState.RUNNING: 2, RunState.SKIPPED: 3}
    assert by_state(foreign)[RunState.RUNNING] == 5  # another tenant's rate is its own
    errors = set(JobRun.objects.filter(job=job, state=RunState.SKIPPED).values_list("error", flat=True))
    assert errors == {"waiting: rate limit 2/d of tenant acme reached (over a limit: skip)"}


def test_the_strictest_scope_decides_the_slot(limited_job, tenant):
    group = JobGroup.objects.create(tenant=tenant, name="g", rate_limit="1/h")
    job = limited_job("j", group=group, rate_limit="1/m")
    store = DjangoRunStore()
    now = timezone.now()
    queue(job, 2, now=now)
    assert len(store.claim("n1", ROOM, now).runs) == 1
    waiting = JobRun.objects.get(job=job, state=RunState.QUEUED)
    assert waiting.not_before == now + timedelta(hours=1)
    assert waiting.wait_reason == "waiting: rate limit 1/h of group acme/g reached"


# -- concurrency keys -------------------------------------------------------------------


def test_a_key_shared_by_two_jobs_with_limit_1_never_runs_two(limited_job):
    a = limited_job("erp-export", concurrency_key="erp", concurrency_limit=1)
    b = limited_job("erp-import", concurrency_key="erp", concurrency_limit=1, priority=5)
    store = DjangoRunStore()
    now = timezone.now()
    queue(a, 3, now=now)
    queue(b, 3, now=now)
    first = store.claim("n1", ROOM, now)
    assert [r.job_id for r in first.runs] == [b.pk]
    assert first.left_queued == 5
    queued = JobRun.objects.filter(state=RunState.QUEUED)
    assert set(queued.values_list("wait_reason", flat=True)) == {
        "waiting: concurrency key erp (1 of 1 running)"
    }
    assert {r.not_before for r in queued} <= {r.scheduled_for for r in queued}  # not moved
    # Another node sees the key held, across jobs.
    assert DjangoRunStore().claim("n2", ROOM, now + timedelta(seconds=1)).runs == ()
    # Much later than the misfire grace: still waiting, not misfired.
    late = now + timedelta(minutes=10)
    assert store.claim("n1", ROOM, late).runs == ()
    assert JobRun.objects.filter(state=RunState.SKIPPED).count() == 0
    # The run finishing frees the slot: exactly one more starts.
    finish(store, [first.runs[0].run_id])
    second = store.claim("n2", ROOM, late)
    assert len(second.runs) == 1
    assert JobRun.objects.filter(state=RunState.RUNNING).count() == 1
    assert JobRun.objects.get(pk=second.runs[0].run_id).wait_reason == ""


def test_runs_waiting_for_a_key_do_not_starve_the_runs_behind_them(limited_job):
    keyed = limited_job("erp", concurrency_key="erp", priority=10)
    other = limited_job("report", priority=0)
    store = DjangoRunStore()
    now = timezone.now()
    queue(keyed, 1, now=now)
    assert len(store.claim("n1", ROOM, now).runs) == 1  # the key is now full
    # More runs than one claim's batch (2 * 2 + 8), all ahead of the other job's run.
    queue(keyed, 30, now=now, since=4)
    queue(other, 1, now=now, since=3)
    small = Capacity(per_executor={"thread": 2}, total=2)
    result = store.claim("n1", small, now)
    assert [r.job_id for r in result.runs] == [other.pk]
    assert not result.more
    # The runs queued while the key was full say why they wait.
    reasons = JobRun.objects.filter(job=keyed, state=RunState.QUEUED).values_list("wait_reason", flat=True)
    assert set(reasons) == {"waiting: concurrency key erp (1 of 1 running)"}


def test_a_key_limit_of_2_runs_two_and_keys_are_per_tenant(limited_job, other_tenant):
    a = limited_job("a", concurrency_key="erp", concurrency_limit=2)
    b = limited_job("b", concurrency_key="erp", concurrency_limit=2)
    foreign = services.save_job(
        Job(
            tenant=other_tenant,
            name="a",
            task="demo.noop",
            concurrency_key="erp",
            concurrency_limit=1,
            max_instances=9,
        )
    )
    store = DjangoRunStore()
    now = timezone.now()
    for job in (a, b, foreign):
        queue(job, 3, now=now)
    result = store.claim("n1", ROOM, now)
    assert len(result.runs) == 3
    assert by_state(a)[RunState.RUNNING] + by_state(b)[RunState.RUNNING] == 2
    assert by_state(foreign)[RunState.RUNNING] == 1


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)
def test_two_nodes_claiming_at_once_never_exceed_the_key(tenant):
    """Node 1 claims a run of job A inside a transaction it keeps open; node 2, claiming
    job B (other run rows, another job row lock: node 1 has no room for B's executor),
    must wait for the key's advisory lock and then count node 1's run: B stays queued."""
    a = services.save_job(Job(tenant=tenant, name="a", task="demo.noop", concurrency_key="erp"))
    b = services.save_job(
        Job(tenant=tenant, name="b", task="demo.noop", concurrency_key="erp", executor="asyncio")
    )
    now = timezone.now()
    queue(a, 1, now=now)
    queue(b, 1, now=now)
    threads_only = Capacity(per_executor={"thread": 1}, total=1)
    asyncio_only = Capacity(per_executor={"asyncio": 1}, total=1)
    results = {}

    def node1():
        results["n1"] = DjangoRunStore().claim("n1", threads_only, now)

    results["n2"] = while_held(
        node1, lambda: DjangoRunStore().claim("n2", asyncio_only, now), what="the key's lock"
    )
    assert [r.job_id for r in results["n1"].runs] == [a.pk]
    assert results["n2"].runs == ()
    assert JobRun.objects.filter(state=RunState.RUNNING).count() == 1
    assert JobRun.objects.get(job=b).wait_reason == "waiting: concurrency key erp (1 of 1 running)"


def test_advisory_keys_are_stable_signed_64_bit():
    assert advisory_key("key:1:erp") == advisory_key("key:1:erp")
    assert advisory_key("key:1:erp") != advisory_key("key:2:erp")
    assert -(2**63) <= advisory_key("tenant:7") < 2**63


# -- faces: jobs files, API, admin ------------------------------------------------------


def write(tmp_path, doc):
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def importjobs(path):
    call_command("importjobs", str(path), stdout=io.StringIO(), stderr=io.StringIO(), no_color=True)


def exportjobs():
    out = io.StringIO()
    call_command("exportjobs", stdout=out, stderr=io.StringIO(), no_color=True)
    return json.loads(out.getvalue())


JOBS_FILE = {
    "version": 1,
    "tenants": [{"slug": "acme", "name": "Acme", "rate_limit": "1000/h"}],
    "groups": [{"tenant": "acme", "name": "erp", "description": "", "rate_limit": "10/m"}],
    "jobs": [
        {
            "tenant": "acme",
            "name": "export",
            "group": "erp",
            "task": "demo.noop",
            "trigger": {"type": "interval", "seconds": 60},
            "rate_limit": " 5 / m ",
            "concurrency_key": "erp",
            "concurrency_limit": 2,
        }
    ],
}


def test_jobs_file_round_trip(tmp_path):
    importjobs(write(tmp_path, JOBS_FILE))
    job = Job.objects.get(name="export")
    assert (job.rate_limit, job.concurrency_key, job.concurrency_limit, job.throttle_policy) == (
        "5/m",
        "erp",
        2,
        "wait",
    )
    assert job.group.rate_limit == "10/m" and job.tenant.rate_limit == "1000/h"
    exported = exportjobs()
    assert exported["tenants"] == [{"slug": "acme", "name": "Acme", "rate_limit": "1000/h"}]
    assert exported["groups"] == [{"tenant": "acme", "name": "erp", "description": "", "rate_limit": "10/m"}]
    entry = exported["jobs"][0]
    assert (entry["rate_limit"], entry["concurrency_key"], entry["concurrency_limit"]) == ("5/m", "erp", 2)
    assert entry["throttle_policy"] == "wait"
    # Into an empty database and out again: the same document.
    Job.objects.all().delete()
    JobGroup.objects.all().delete()
    Tenant.objects.all().delete()
    importjobs(write(tmp_path, exported))
    assert exportjobs() == exported


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"rate_limit": "10/x"},
            "jobs[0] (acme/export): rate_limit: '10/x': unknown unit 'x' (use one of s, m, h, d)",
            id="unit",
        ),
        pytest.param(
            {"rate_limit": "10/fortnight"},
            "rate_limit: '10/fortnight': unknown unit 'fortnight'",
            id="fortnight",
        ),
        pytest.param(
            {"concurrency_key": "erp", "concurrency_limit": 0},
            "concurrency_limit: Ensure this value is greater than or equal to 1.",
            id="limit-0",
        ),
        pytest.param(
            {"concurrency_key": "globex/erp"},
            "concurrency_key: 'globex/erp': keys are per tenant and cannot name another tenant",
            id="other-tenant-key",
        ),
        pytest.param(
            {"concurrency_key": "", "concurrency_limit": 2},
            "concurrency_limit: a concurrency limit needs a concurrency key",
            id="limit-without-key",
        ),
        pytest.param(
            {"throttle_policy": "drop"},
            "throttle_policy: Value 'drop' is not a valid choice.",
            id="policy",
        ),
    ],
)
def test_jobs_file_refuses_bad_values_naming_the_field(tmp_path, change, message):
    doc = json.loads(json.dumps(JOBS_FILE))
    doc["jobs"][0].update(change)
    with pytest.raises(CommandError) as info:
        importjobs(write(tmp_path, doc))
    assert message in str(info.value)
    assert not Job.objects.exists() and not Tenant.objects.exists()  # nothing half-applied


def test_jobs_file_refuses_a_bad_group_rate(tmp_path):
    doc = json.loads(json.dumps(JOBS_FILE))
    doc["groups"][0]["rate_limit"] = "ten/m"
    with pytest.raises(CommandError) as info:
        importjobs(write(tmp_path, doc))
    assert "groups[0] (acme/erp): rate_limit: 'ten/m': the count 'ten' is not a whole number" in str(
        info.value
    )
    assert not JobGroup.objects.exists()


@pytest.fixture
def api(tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return client_for(key_for(user))


def test_api_reads_writes_and_refuses_the_throttle_fields(api):
    response = api.post("/api/jobs/", {**JOB, "rate_limit": "100/h", "concurrency_key": "erp"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["rate_limit"], body["concurrency_key"], body["concurrency_limit"]) == ("100/h", "erp", None)
    assert body["throttle_policy"] == "wait"
    bad = api.patch(f"/api/jobs/{body['id']}/", {"rate_limit": "100/w"}, format="json")
    assert bad.status_code == 400
    assert errors_of(bad) == [("rate_limit", "'100/w': unknown unit 'w' (use one of s, m, h, d)")]
    assert Job.objects.get(pk=body["id"]).rate_limit == "100/h"


def test_api_runs_say_why_they_wait(api, limited_job):
    job = limited_job("erp", concurrency_key="erp")
    now = timezone.now()
    queue(job, 2, now=now)
    DjangoRunStore().claim("n1", ROOM, now)
    runs = api.get(f"/api/runs/?job={job.pk}").json()["results"]
    assert sorted(r["wait_reason"] for r in runs) == ["", "waiting: concurrency key erp (1 of 1 running)"]


def test_api_group_rate_limit(api, tenant):
    created = api.post("/api/groups/", {"tenant": "acme", "name": "erp", "rate_limit": "10/m"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["rate_limit"] == "10/m"
    bad = api.patch(f"/api/groups/{created.json()['id']}/", {"rate_limit": "10/x"}, format="json")
    assert bad.status_code == 400
    assert errors_of(bad) == [("rate_limit", "'10/x': unknown unit 'x' (use one of s, m, h, d)")]


def test_admin_job_form_shows_and_refuses_throttle_fields(admin_client, tenant):
    from tests.integration.test_admin import form_values, url

    page = admin_client.get(url("job", "add"))
    assert b"Rate and concurrency limits" in page.content
    data = form_values(page)
    data.update(
        tenant=[str(tenant.pk)],
        name=["payments"],
        task=["demo.noop"],
        cron_expression=["0 2 * * *"],
        trigger_timezone=["UTC"],
        rate_limit=["10/x"],
        concurrency_key=["acme/erp"],
        concurrency_limit=["0"],
    )
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["rate_limit"] == ["'10/x': unknown unit 'x' (use one of s, m, h, d)"]
    assert "keys are per tenant" in errors["concurrency_key"][0]
    assert errors["concurrency_limit"] == ["Ensure this value is greater than or equal to 1."]
    assert not Job.objects.exists()
    data.update(
        rate_limit=["10/m"], concurrency_key=["erp"], concurrency_limit=["2"], throttle_policy=["skip"]
    )
    response = admin_client.post(url("job", "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get(name="payments")
    assert (job.rate_limit, job.concurrency_key, job.concurrency_limit, job.throttle_policy) == (
        "10/m",
        "erp",
        2,
        "skip",
    )


def test_admin_run_list_shows_the_wait_reason(admin_client, limited_job):
    from tests.integration.test_admin import url

    job = limited_job("erp", concurrency_key="erp")
    now = timezone.now()
    queue(job, 2, now=now)
    DjangoRunStore().claim("n1", ROOM, now)
    page = admin_client.get(url("jobrun", "changelist"))
    assert b"waiting: concurrency key erp (1 of 1 running)" in page.content
    waiting = JobRun.objects.get(job=job, state=RunState.QUEUED)
    detail = admin_client.get(url("jobrun", "change", waiting.pk))
    assert b"waiting: concurrency key erp (1 of 1 running)" in detail.content


def test_errors_are_in_the_active_language(tenant):
    from django.core.exceptions import ValidationError
    from django.utils import translation

    job = Job(tenant=tenant, name="j", task="demo.noop", rate_limit="10/x", concurrency_key="a/b")
    with translation.override("zh-hans"), pytest.raises(ValidationError) as info:
        job.full_clean()
    assert info.value.message_dict["rate_limit"] == ["'10/x'：未知单位 'x'（请使用 s, m, h, d 之一）"]
    assert info.value.message_dict["concurrency_key"][0].startswith("'a/b'：并发键按租户划分")
    group = JobGroup(tenant=tenant, name="g", rate_limit="5/week")
    with pytest.raises(ValidationError) as info:
        group.full_clean()
    assert info.value.message_dict == {
        "rate_limit": ["'5/week': unknown unit 'week' (use one of s, m, h, d)"]
    }


def test_jobctl_status_shows_the_limits_and_why_runs_wait(limited_job, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(rate_limit="100/h")
    job = limited_job("erp", concurrency_key="erp", concurrency_limit=1, rate_limit="5/m")
    now = timezone.now()
    queue(job, 2, now=now)
    DjangoRunStore().claim("n1", ROOM, now)
    out = io.StringIO()
    call_command("jobctl", "status", "acme/erp", stdout=out, no_color=True)
    text = out.getvalue()
    assert "limits:     rate 5/m; tenant rate 100/h; key erp (at most 1 at once); over a limit: wait" in text
    assert "queued  —  waiting: concurrency key erp (1 of 1 running)" in text


def test_admin_group_page_refuses_a_bad_rate(admin_client, tenant):
    from tests.integration.test_admin import url

    data = {"tenant": str(tenant.pk), "name": "erp", "description": "", "rate_limit": "10/fortnight"}
    response = admin_client.post(url("jobgroup", "add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["rate_limit"] == [
        "'10/fortnight': unknown unit 'fortnight' (use one of s, m, h, d)"
    ]
    assert not JobGroup.objects.exists()
    response = admin_client.post(url("jobgroup", "add"), {**data, "rate_limit": " 10 / m"})
    assert response.status_code == 302
    assert JobGroup.objects.get(name="erp").rate_limit == "10/m"
