"""The claim's job filters (runs of jobs routed to tags this node lacks, runs of jobs
whose concurrency key is full) read the job rows once per configuration version, not at
every claim: counted with Django's CaptureQueriesContext; and a change made through the
services (which bumps the version) is seen by the next claim."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine.interfaces import Capacity
from scheduler_app.models import ConfigVersion, Job, JobRun, RunReason

pytestmark = pytest.mark.django_db

ROOM = Capacity(per_executor={"thread": 8}, total=8)


def due_run(job, seconds_ago=1.0):
    when = timezone.now() - timedelta(seconds=seconds_ago)
    return JobRun.objects.create(
        job=job,
        tenant_id=job.tenant_id,
        scheduled_for=when,
        not_before=when,
        reason=RunReason.MANUAL,
        executor="thread",
    )


def reads_job_configuration(sql: str) -> bool:
    """A query of the job table itself (not of runs joined to jobs) selecting by routing
    or concurrency key: what the filters used to run at every claim."""
    head, _, where = sql.partition(" WHERE ")
    return (
        'FROM "scheduler_app_job"' in head
        and 'FROM "scheduler_app_jobrun"' not in head
        and ("routing" in where or "concurrency_key" in where)
    )


def claim(store, node="n1"):
    with CaptureQueriesContext(connection) as ctx:
        result = store.claim(node, ROOM, timezone.now())
    return result, [q["sql"] for q in ctx.captured_queries]


def routed_and_keyed(make_job, start, count):
    for i in range(start, start + count):
        make_job(f"gpu-{i}", routing="tags", routing_tags=["gpu"])
        make_job(f"keyed-{i}", concurrency_key=f"k{i}", concurrency_limit=2)


def test_a_claim_reads_no_job_configuration_when_nothing_changed(make_job):
    plain = make_job("plain", max_instances=50)
    routed_and_keyed(make_job, 0, 5)
    store = DjangoRunStore()
    due_run(plain)
    _, cold = claim(store)
    assert sum(map(reads_job_configuration, cold)) == 1  # read once, for both filters

    due_run(plain)
    result, warm = claim(store)
    assert len(result.runs) == 1
    assert not [sql for sql in warm if reads_job_configuration(sql)]

    # Does not grow with the number of tag-routed and keyed jobs.
    routed_and_keyed(make_job, 5, 45)
    due_run(plain)
    claim(store)  # the version moved: read again
    due_run(plain)
    result, warm_many = claim(store)
    assert len(result.runs) == 1
    assert len(warm_many) == len(warm), "\n".join(warm_many)
    assert not [sql for sql in warm_many if reads_job_configuration(sql)]


def test_with_the_version_the_service_last_read_a_claim_reads_neither(make_job):
    """As in a running node: the service hands the store the version its definition
    sync reads anyway, so a claim makes no query for the filters at all."""
    plain = make_job("plain", max_instances=50)
    routed_and_keyed(make_job, 0, 5)
    store = DjangoRunStore()
    seen = ConfigVersion.current()
    store.config_version = lambda: seen
    due_run(plain)
    claim(store)
    due_run(plain)
    _, warm = claim(store)
    version_table = ConfigVersion._meta.db_table
    assert not [sql for sql in warm if reads_job_configuration(sql) or version_table in sql]


def test_a_change_through_the_services_is_seen_by_the_next_claim(make_job):
    job = make_job("job", max_instances=50)
    store = DjangoRunStore()  # a node without tags
    due_run(job)
    assert len(claim(store)[0].runs) == 1

    job.routing, job.routing_tags = "tags", ["gpu"]
    services.save_job(job)
    waiting = due_run(job)
    assert claim(store)[0].runs == ()  # waits for a node with gpu
    gpu = DjangoRunStore()
    gpu.tags = ("gpu",)
    assert [r.run_id for r in claim(gpu, "gpu-node")[0].runs] == [waiting.pk]

    job.routing, job.routing_tags = "any", []
    job.concurrency_key, job.concurrency_limit = "db", 1
    services.save_job(job)
    held = due_run(job)
    result, _ = claim(store)  # the key is full: a run of the job is running (on gpu-node)
    assert result.runs == ()
    assert JobRun.objects.get(pk=held.pk).wait_reason.startswith("waiting: concurrency key db")


def test_a_change_beside_the_services_is_seen_within_the_reconcile_interval(make_job, settings):
    job = make_job("job", max_instances=50)
    store = DjangoRunStore()
    due_run(job)
    assert len(claim(store)[0].runs) == 1
    Job.objects.filter(pk=job.pk).update(routing="tags", routing_tags=["gpu"])  # no version bump
    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "RECONCILE_INTERVAL": 0.0}
    due_run(job)
    assert claim(store)[0].runs == ()


@pytest.mark.django_db(transaction=True)
def test_the_service_hands_the_store_the_version_its_sync_reads(make_job):
    from scheduler_app.backends.service import SchedulerService

    service = SchedulerService("n1")
    before = service.store.config_version()

    def follower_sync() -> None:
        try:
            service._sync_loop()  # with no trigger side: a follower's loop
        finally:
            connection.close()

    loop = threading.Thread(target=follower_sync, daemon=True)
    loop.start()
    try:
        make_job("new")  # bumps the version
        deadline = time.monotonic() + 5
        while service.store.config_version() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.store.config_version() == ConfigVersion.current() > before
    finally:
        service._stop_sync.set()
        loop.join(5)


def test_a_job_rerouted_a_moment_ago_is_not_claimed_by_a_node_without_its_tags(make_job):
    """The cached filter may be up to a sync poll old; the locked job row decides (found
    by review: a "run now" right after re-routing to gpu ran on a node without it)."""
    from django.db import transaction

    plain, gpu = make_job("plain"), make_job("gpu")  # gpu: routing any for now
    store = DjangoRunStore()  # a node without tags
    seen = {"v": ConfigVersion.current()}
    store.config_version = lambda: seen["v"]  # the version the sync thread last read
    due_run(plain)
    assert [r.job_name for r in claim(store)[0].runs] == ["plain"]  # filters cached
    with transaction.atomic():  # a change through the services bumps the version with it
        Job.objects.filter(pk=gpu.pk).update(routing="tags", routing_tags=["gpu"])
        ConfigVersion.bump()
    run = due_run(gpu)
    assert not claim(store)[0].runs  # the sync has not seen the new version yet
    assert JobRun.objects.get(pk=run.pk).state == "queued"
    tagged = DjangoRunStore()
    tagged.tags = ("gpu",)
    assert [r.job_name for r in claim(tagged, node="n2")[0].runs] == ["gpu"]


def test_a_claim_outside_a_node_reads_the_configuration_version_once(make_job):
    """Without a node's service handing it the version, a claim reads it itself: once,
    for both filters (it read it once per filter)."""
    job = make_job("plain", max_instances=50)
    store = DjangoRunStore()
    due_run(job)
    claim(store)
    due_run(job)
    result, warm = claim(store)
    assert len(result.runs) == 1
    version_table = ConfigVersion._meta.db_table
    assert sum(version_table in sql for sql in warm) == 1, warm


def test_a_claim_reads_its_runs_and_their_jobs_in_one_statement(make_job):
    """A warm claim of runs of several jobs: one statement for the candidates and their
    job rows (locked, on PostgreSQL, after the runs), one for the running counts (after
    the locks), one marking the runs claimed; nothing per run or per job."""
    jobs = [make_job(f"j{i}", max_instances=5) for i in range(3)]
    store = DjangoRunStore()
    seen = ConfigVersion.current()
    store.config_version = lambda: seen
    due_run(jobs[0])
    claim(store)
    for job in jobs:
        due_run(job)
        due_run(job, seconds_ago=2.0)
    result, sql = claim(store)
    assert len(result.runs) == 6
    statements = [s for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(statements) == 3, "\n".join(statements)
    assert 'FROM "scheduler_app_jobrun"' in statements[0] and 'JOIN "scheduler_app_job"' in statements[0]
    if connection.vendor == "postgresql":
        assert statements[0].endswith("FOR NO KEY UPDATE OF j") and "SKIP LOCKED" in statements[0]
    assert statements[2].startswith('UPDATE "scheduler_app_jobrun"')
