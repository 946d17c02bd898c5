"""Why a queued run waits, in the user's language: the stored text and the API's
``wait_reason`` stay the same stable English in every language; the admin and the
API's ``wait_reason_display`` show it translated (zh-hans)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone, translation

from scheduler_app.backends.load import judge
from scheduler_app.backends.runstore import DjangoRunStore
from scheduler_app.engine import waits
from scheduler_app.engine.interfaces import Capacity
from scheduler_app.models import JobGroup, JobRun, Membership, RunReason, RunState
from scheduler_app.monitoring import waiting
from tests.integration.api_support import client_for, key_for

pytestmark = pytest.mark.django_db

ROOM = Capacity(per_executor={"thread": 50}, total=50)


@pytest.fixture(autouse=True)
def language_back():
    """Requests in zh-hans leave it active in this thread: later tests expect English."""
    yield
    translation.activate("en")


def queue(job, count, now):
    for i in range(count):
        when = now - timedelta(seconds=5) + timedelta(microseconds=i)
        JobRun.objects.create(
            job=job, scheduled_for=when, reason=RunReason.SCHEDULE, not_before=when, executor=job.executor
        )


@pytest.fixture
def held(make_job, tenant):
    """One run waiting for a concurrency key, one for a group's rate limit."""
    now = timezone.now()
    keyed = make_job("erp", concurrency_key="erp", max_instances=10, overlap_policy="queue")
    group = JobGroup.objects.create(tenant=tenant, name="billing", rate_limit="1/h")
    rated = make_job("invoices", group=group, max_instances=10, overlap_policy="queue")
    queue(keyed, 2, now)
    queue(rated, 2, now)
    DjangoRunStore().claim("n1", ROOM, now)
    return {
        "key": JobRun.objects.get(job=keyed, state=RunState.QUEUED),
        "rate": JobRun.objects.get(job=rated, state=RunState.QUEUED),
    }


KEY_EN = "waiting: concurrency key erp (1 of 1 running)"
RATE_EN = "waiting: rate limit 1/h of group acme/billing reached"
KEY_ZH = "等待中：并发键 erp（1 个中已有 1 个在运行）"
RATE_ZH = "等待中：已达到组 acme/billing 的速率限制 1/h"


def test_stored_text_is_stable_and_parses_back(held):
    assert held["key"].wait_reason == KEY_EN
    assert held["rate"].wait_reason == RATE_EN
    assert waits.parse(KEY_EN) == waits.Wait("key", {"key": "erp", "running": "1", "limit": "1"})
    assert waits.parse(RATE_EN) == waits.Wait(
        "rate", {"rate": "1/h", "scope": "group", "name": "acme/billing"}
    )
    with translation.override("zh-hans"):
        assert waiting.wait_reason(held["key"]) == KEY_EN  # stored / API value: the same in every language
        assert waiting.wait_reason_display(held["key"]) == KEY_ZH
        assert waiting.wait_reason_display(held["rate"]) == RATE_ZH
        assert waiting.translate("something else") == "something else"  # unknown: as it is


def test_load_and_tag_reasons_are_known_forms(make_job, tenant):
    from scheduler_app.models import Node

    now = timezone.now()
    Node.objects.create(
        name="n1",
        host="h",
        pid=1,
        state="active",
        overloaded=True,
        heartbeat_at=now,
        started_at=now,
        tags=["eu"],
    )
    state = judge(now)
    assert state.overloaded
    stored = f"deferred: the cluster is overloaded ({state.why})"  # as the claim writes it
    assert waits.parse(stored) == waits.Wait("load_nodes", {"nodes": "1"})
    with translation.override("zh-hans"):
        assert waiting.translate(stored) == "已推迟：集群过载（所有 1 个存活节点都超过了负载或内存限制）"
    assert waits.parse(waits.text("load_queue", bound=8, slots=2)).code == "load_queue"
    job = make_job("gpu", routing="tags", routing_tags=["gpu"])
    run = JobRun.objects.create(job=job, scheduled_for=now)
    waiting.forget()
    with translation.override("zh-hans"):
        assert waiting.wait_reason(run) == "waiting for a node with tags gpu"
        assert waiting.wait_reason_display(run) == "正在等待具有标签 gpu 的节点"


def test_admin_shows_the_reason_in_chinese(admin_client, held):
    from tests.integration.test_admin import url

    admin_client.cookies["django_language"] = "zh-hans"
    page = admin_client.get(url("jobrun", "changelist")).content.decode()
    assert KEY_ZH in page and RATE_ZH in page
    assert KEY_EN not in page
    detail = admin_client.get(url("jobrun", "change", held["rate"].pk)).content.decode()
    assert RATE_ZH in detail


def test_api_keeps_wait_reason_stable_and_adds_the_display_text(held, tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    api = client_for(key_for(user))
    for language, key_display in (("en", KEY_EN), ("zh-hans", KEY_ZH)):
        body = api.get(f"/api/runs/{held['key'].pk}/", HTTP_ACCEPT_LANGUAGE=language).json()
        assert body["wait_reason"] == KEY_EN, language
        assert body["wait_reason_display"] == key_display, language
    listed = api.get("/api/runs/?state=queued", HTTP_ACCEPT_LANGUAGE="zh-hans").json()["results"]
    assert sorted(r["wait_reason_display"] for r in listed) == sorted([KEY_ZH, RATE_ZH])
