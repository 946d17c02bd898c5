"""The field errors of alert channels and rules, and of code jobs, are in the reader's
language (they were English f-strings): through the services, and through the API
with ``Accept-Language: zh-hans``."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import translation

from scheduler_app import services
from scheduler_app.documents import limits
from scheduler_app.models import AlertChannel, AlertRule, Job, Membership
from scheduler_app.services.alerts import RULE_EVENTS
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture
def api(tenant):
    user = get_user_model().objects.create_user("ed-i18n-alerts")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    return client_for(key_for(user))


def channel_errors(language, **fields):
    with translation.override(language), pytest.raises(ValidationError) as caught:
        services.save_channel(AlertChannel(**fields))
    return caught.value.message_dict


def test_channel_field_errors_in_chinese(tenant):
    assert channel_errors("zh-hans", tenant=tenant, name="h", type="webhook", config={"url": "ftp://x"}) == {
        "url": ["'ftp://x' 不是 http(s) URL"]
    }
    assert channel_errors("en", tenant=tenant, name="h", type="webhook", config={"url": "ftp://x"}) == {
        "url": ["'ftp://x' is not an http(s) URL"]
    }
    assert channel_errors("zh-hans", tenant=tenant, name="m", type="email", config={"to": ["nope"]}) == {
        "to": ["to[0]：'nope' 不是电子邮件地址"]
    }
    assert channel_errors("zh-hans", tenant=tenant, name="m", type="email", config={"to": []}) == {
        "to": ["请至少列出一个电子邮件地址"]
    }
    unknown = channel_errors("zh-hans", tenant=tenant, name="x", type="pigeon", config={})
    assert unknown["type"][0].startswith("未知的通道类型 'pigeon'；请使用 email, webhook")


def test_rule_field_errors_in_chinese(tenant, other_tenant):
    theirs = services.save_channel(
        AlertChannel(tenant=other_tenant, name="mail", type="email", config={"to": ["a@b.example"]})
    )
    rule = AlertRule(tenant=tenant, name="r", events=["late", "teleported"], slow_factor=0.5)
    with translation.override("zh-hans"), pytest.raises(ValidationError) as caught:
        services.save_rule(rule, channels=[theirs])
    errors = caught.value.message_dict
    assert errors["events"] == [f"未知的事件 'teleported'；已知事件：{', '.join(RULE_EVENTS)}"]
    assert errors["slow_factor"] == ["必须是至少为 1 的数（作业 p95 的倍数），而不是 0.5"]
    assert errors["late_after_seconds"] == ["'late' 事件需要此项"]
    assert errors["channels"] == ["通道 'mail' 不在该规则的租户中"]


def test_api_alert_errors_follow_accept_language(api, tenant):
    bad = api.post(
        "/api/alert-channels/",
        {"tenant": "acme", "name": "hook", "type": "webhook", "config": {"url": "ftp://x"}},
        format="json",
        **ZH,
    )
    assert bad.status_code == 400
    assert errors_of(bad) == [("url", "'ftp://x' 不是 http(s) URL")]
    chan = services.save_channel(
        AlertChannel(tenant=tenant, name="mail", type="email", config={"to": ["a@b.example"]})
    )
    rule = api.post(
        "/api/alert-rules/",
        {"tenant": "acme", "name": "r", "events": ["missed"], "channels": [chan.pk]},
        format="json",
        **ZH,
    )
    assert rule.status_code == 400
    assert errors_of(rule) == [("missed_after_seconds", "'missed' 事件需要此项")]


def test_a_code_job_s_owned_fields_refusal_in_chinese(make_job):
    job = make_job("coded")
    Job.objects.filter(pk=job.pk).update(managed_by="jobs.py")
    job = Job.objects.get(pk=job.pk)
    job.priority = 5
    with translation.override("zh-hans"), pytest.raises(ValidationError) as caught:
        services.save_job(job)
    assert caught.value.messages == [
        "作业 coded 由 jobs.py 中的代码管理；请在那里修改 priority（操作员只能暂停和恢复它）"
    ]


@override_settings(SCHEDULER_APP={"BACKFILL_MAX_RUNS": 5})
def test_other_service_field_errors_in_chinese(make_job, tenant):
    job = make_job("fast", trigger={"type": "interval", "seconds": 1})
    start = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
    with translation.override("zh-hans"), pytest.raises(ValidationError) as caught:
        services.backfill_job(job, start, start.replace(year=2090))
    assert caught.value.message_dict == {
        "to": ['该范围内的触发时间超过上限 5 个（SCHEDULER_APP["BACKFILL_MAX_RUNS"] = 5）；请缩小范围']
    }
    with translation.override("zh-hans"), pytest.raises(ValidationError) as caught:
        services.operate_on_tenant(tenant, "explode")
    assert caught.value.message_dict["operation"][0].startswith("未知操作 'explode'；请从 ")
    with translation.override("zh-hans"):
        with pytest.raises(limits.LimitError) as too_deep:
            limits.check_value({"a": [1]}, "kwargs", depth=1)
        assert str(too_deep.value) == "kwargs: 嵌套超过 1 层"
        with pytest.raises(limits.LimitError) as too_big:
            limits.check_value("x" * 100, "kwargs", max_bytes=10)
        assert str(too_big.value) == "kwargs: 作为 JSON 为 102 字节；最多允许 10 字节"
