"""The node registry, leases, drain/resume (service, jobctl, admin) and the cluster
rules the run store keeps (routing, fencing), on the test database."""

import datetime as dt
import os
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from scheduler_app import services
from scheduler_app.backends import cluster as cluster_backend
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine import cluster
from scheduler_app.engine.interfaces import Capacity, Outcome
from scheduler_app.models import Job, JobRun, Lease, Node


@pytest.fixture
def registry(db):
    return cluster_backend.DjangoRegistry(dead_after=15)


def register(registry, name, **info):
    return registry.register({"name": name, **info})


def test_a_live_name_is_refused_naming_the_live_node(registry):
    first = register(registry, "n1", host="h1", pid=7)
    with pytest.raises(
        cluster.NodeNameTaken, match=r"a live node is already called 'n1' \(host h1, pid 7, last heartbeat"
    ):
        register(registry, "n1", host="h2", pid=8)
    # once it is dead (heartbeat older than NODE_DEAD_AFTER by the database's clock), the name is free
    Node.objects.update(heartbeat_at=timezone.now() - dt.timedelta(seconds=60))
    assert registry.judge_dead(15) == ["n1"]
    assert registry.beat(first, {}).state is None  # the old incarnation is fenced
    second = register(registry, "n1", host="h2", pid=8)
    assert second != first and registry.beat(second, {"used": {"thread": 2}}).state == "active"
    assert Node.objects.get(name="n1").running == 2


def test_a_name_held_by_a_gone_process_of_this_host_is_taken_over(registry):
    """A node restarted after kill -9 (heartbeat still fresh) gets its name back; a
    live process of this host, or any process of another host, keeps it."""
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(gone.stdout)
    first = register(registry, "n1", host=host, pid=dead_pid)
    second = register(registry, "n1", host=host, pid=os.getpid())
    assert second != first and Node.objects.get(name="n1").incarnation == second
    assert registry.beat(first, {}).state is None  # the crashed incarnation is fenced
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        Node.objects.filter(name="n1").update(pid=alive.pid)
        with pytest.raises(cluster.NodeNameTaken):
            register(registry, "n1", host=host, pid=12345)
    finally:
        alive.kill()
        alive.wait()
    Node.objects.filter(name="n1").update(pid=dead_pid, host="elsewhere")
    with pytest.raises(cluster.NodeNameTaken):  # another machine's pid says nothing here
        register(registry, "n1", host=host, pid=12345)


def test_one_lease_holder_until_it_expires(registry):
    a, b = register(registry, "a"), register(registry, "b")
    assert registry.hold_lease("triggers/0", a, 10)
    assert not registry.hold_lease("triggers/0", b, 10)
    assert registry.hold_lease("triggers/0", a, 10)  # renewal
    assert cluster_backend.holds_lease("triggers/0", a) and not cluster_backend.holds_lease("triggers/0", b)
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert not cluster_backend.holds_lease("triggers/0", a)
    assert registry.hold_lease("triggers/0", b, 10)
    assert Lease.objects.get().holder == "b" and Lease.objects.get().term == 2
    assert not registry.hold_lease("triggers/0", a, 10)


def test_a_follower_learns_when_the_lease_expires_by_the_databases_clock(registry):
    a = register(registry, "a")
    assert registry.lease_expires_in("triggers/0") is None  # nobody has led yet
    assert registry.hold_lease("triggers/0", a, 10)
    left = registry.lease_expires_in("triggers/0")
    assert 9 < left <= 10
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=3))
    assert -4 < registry.lease_expires_in("triggers/0") < -2.9  # SQLite's clock has milliseconds


def test_a_leader_took_over_when_someone_held_the_lease_before(registry):
    """The first leader of an installation did not take over (its never-fired jobs start
    from now); any later term did (they catch up, see bridge.JobSync.catch_up)."""
    a, b = register(registry, "a"), register(registry, "b")
    assert registry.hold_lease("triggers/0", a, 10)
    assert not cluster_backend.took_over("triggers/0", a)
    assert registry.hold_lease("triggers/0", a, 10)  # renewed: the same term
    assert not cluster_backend.took_over("triggers/0", a)
    registry.release_lease("triggers/0", a)
    assert registry.hold_lease("triggers/0", b, 10)
    assert cluster_backend.took_over("triggers/0", b) and not cluster_backend.took_over("triggers/0", a)


def test_runscheduler_refuses_bad_tags_before_starting(db):
    with pytest.raises(CommandError, match=r"--tags: 'g pu' is not a valid tag"):
        call_command("runscheduler", "--node", "x", "--tags", "gpu,g pu")


def test_system_checks_name_bad_tags_and_timings(settings):
    from django.test import override_settings

    from scheduler_app.checks import check_cluster

    with override_settings(SCHEDULER_APP={**settings.SCHEDULER_APP, "NODE_TAGS": ["ok", "bad tag"]}):
        [error] = check_cluster()
        assert error.id == "scheduler_app.E050" and "'bad tag' is not a valid tag" in error.msg
    with override_settings(
        SCHEDULER_APP={**settings.SCHEDULER_APP, "SELF_FENCE_AFTER": 60, "NODE_DEAD_AFTER": 30}
    ):
        [error] = check_cluster()
        assert error.id == "scheduler_app.E051" and "SELF_FENCE_AFTER < NODE_DEAD_AFTER" in error.msg


def test_tags_are_validated():
    assert cluster.parse_tags("gpu, eu,gpu") == ("eu", "gpu")
    with pytest.raises(cluster.ClusterError, match=r"--tags: 'g pu' is not a valid tag"):
        cluster.parse_tags("g pu", "--tags")
    with pytest.raises(cluster.ClusterError, match="SELF_FENCE_AFTER < NODE_DEAD_AFTER"):
        cluster.Timings(heartbeat_interval=1, self_fence_after=20, node_dead_after=15)


def test_claims_honour_tags_and_stale_outcomes_are_refused(registry, tenant):
    job = services.save_job(
        Job(
            tenant=tenant,
            name="g",
            task="demo.noop",
            trigger={"type": "manual"},
            routing="tags",
            routing_tags=["gpu"],
        )
    )
    run = JobRun.objects.create(job=job, scheduled_for=timezone.now(), reason="manual", executor="thread")
    store = DjangoRunStore()
    cap = Capacity(per_executor={"thread": 5}, total=5)
    assert store.claim("plain", cap, timezone.now()).runs == ()
    store.tags = ("eu", "gpu")
    store.incarnation = lambda: "inc1"
    claimed = store.claim("gpu-node", cap, timezone.now()).runs
    assert [c.run_id for c in claimed] == [run.pk] and claimed[0].claim_token.startswith("inc1:")
    stale = Outcome(
        run_id=run.pk,
        state="succeeded",
        started_at=timezone.now(),
        finished_at=timezone.now(),
        claim_token="old:1",
    )
    store.record([stale])
    assert JobRun.objects.get(pk=run.pk).state == "running"  # refused: another claim's token
    store.record(
        [
            Outcome(
                run_id=run.pk,
                state="succeeded",
                started_at=timezone.now(),
                finished_at=timezone.now(),
                claim_token=claimed[0].claim_token,
            )
        ]
    )
    assert JobRun.objects.get(pk=run.pk).state == "succeeded"


def test_drain_and_resume_through_jobctl_and_the_admin(registry, client):
    register(registry, "n1")
    out, err = StringIO(), StringIO()
    call_command("jobctl", "node", "drain", "n1", stdout=out, stderr=err)
    assert "drain: node n1" in out.getvalue()
    assert "warning: no active node is left" in err.getvalue()  # allowed, but warned
    assert Node.objects.get(name="n1").state == "draining"
    call_command("jobctl", "node", "resume", "n1", stdout=out)
    assert Node.objects.get(name="n1").state == "active"
    with pytest.raises(CommandError, match=r"node 'nope': no such node \(known: n1\)"):
        call_command("jobctl", "node", "drain", "nope")
    with pytest.raises(CommandError, match="invalid choice: 'halt'"):
        call_command("jobctl", "node", "halt", "n1")
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    refused = services.drain_nodes(list(Node.objects.all()), actor=staff)
    assert refused.refused and not refused.done
    client.force_login(staff)
    page = client.get(reverse("admin:scheduler_app_node_changelist"))
    assert page.status_code == 200 and "n1" in page.text and "Drain the selected" not in page.text
    boss = get_user_model().objects.create_superuser("boss", password="pw")
    client.force_login(boss)
    page = client.get(reverse("admin:scheduler_app_node_changelist"))
    assert "Drain the selected" in page.text
    client.post(
        reverse("admin:scheduler_app_node_changelist"),
        {"action": "drain", "_selected_action": [Node.objects.get().pk]},
    )
    assert Node.objects.get().state == "draining"


def test_deleting_nodes_goes_through_the_service_audited_and_refuses_live_ones(registry, client):
    from auditlog.models import LogEntry

    for name in ("live", "drain", "gone", "crashed"):
        register(registry, name, host="h1")
    Node.objects.filter(name="drain").update(state="draining")
    Node.objects.filter(name="gone").update(state="stopped")
    Node.objects.filter(name="crashed").update(state="dead")
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    refused = services.delete_nodes(list(Node.objects.filter(name="gone")), actor=staff)
    assert refused.refused[0].kind == "forbidden" and Node.objects.filter(name="gone").exists()
    boss = get_user_model().objects.create_superuser("boss", password="pw")
    live = Node.objects.get(name="live")
    result = services.delete_nodes([live], actor=boss)
    assert not result.done and result.refused[0].kind == "conflict"
    assert "the node is active: only a stopped or dead node may be deleted" in result.refused[0].reason
    client.force_login(boss)
    # the node's own delete page: refused with the reason, the node kept
    page = client.post(
        reverse("admin:scheduler_app_node_delete", args=[live.pk]), {"post": "yes"}, follow=True
    )
    assert any(
        "the node is active: only a stopped or dead node may be deleted" in str(m)
        for m in page.context["messages"]
    )
    assert Node.objects.filter(name="live").exists()
    # a stopped node's delete page deletes it, audited with the actor
    gone = Node.objects.get(name="gone")
    client.post(reverse("admin:scheduler_app_node_delete", args=[gone.pk]), {"post": "yes"})
    assert not Node.objects.filter(name="gone").exists()
    entry = LogEntry.objects.filter(additional_data__operation="delete").get()
    assert (entry.actor, entry.object_pk, entry.additional_data["node"]) == (boss, str(gone.pk), "gone")
    assert entry.additional_data["state"] == "stopped"
    # the bulk action: the dead one deleted, the live ones refused and reported by name
    page = client.post(
        reverse("admin:scheduler_app_node_changelist"),
        {"action": "delete_nodes", "_selected_action": list(Node.objects.values_list("pk", flat=True))},
        follow=True,
    )
    assert sorted(Node.objects.values_list("name", flat=True)) == ["drain", "live"]
    shown = [str(m) for m in page.context["messages"]]
    assert "deleted: crashed" in shown
    assert any(m.startswith("drain: the node is draining: only a stopped or dead") for m in shown)
    assert LogEntry.objects.filter(additional_data__operation="delete", actor=boss).count() == 2
