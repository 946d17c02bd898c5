"""The errors of the job and alert documents and of jobs files (DocumentError,
JobsFileError, the version header) are in the reader's language: importjobs' refusal
in the project's LANGUAGE_CODE, the API's 400 bodies by Accept-Language. The field
paths stay as written (the API splits the field from the message on them)."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from scheduler_app.models import Job, Membership
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db

#: name: (document, English refusal, Chinese refusal) - after "<file>: ", before "; nothing..."
FILES = {
    "unknown-group": (
        {"version": 1, "jobs": [{"tenant": "acme", "name": "x", "task": "demo.noop", "group": "marketing"}]},
        "jobs[0] (acme/x): group: unknown group 'marketing' in tenant acme",
        "jobs[0] (acme/x): group: 租户 acme 中没有作业组 'marketing'",
    ),
    "unknown-field": (
        {"version": 1, "jobs": [{"tenant": "acme", "name": "x", "task": "demo.noop", "bogus": 1}]},
        "jobs[0] (acme/x): bogus: unknown field",
        "jobs[0] (acme/x): bogus: 未知字段",
    ),
    "unknown-tenant": (
        {"version": 1, "jobs": [{"tenant": "initech", "name": "x", "task": "demo.noop"}]},
        "jobs[0] (initech/x): tenant: unknown tenant 'initech' (add it to 'tenants')",
        "jobs[0] (initech/x): tenant: 未知的租户 'initech'（请将其加入 'tenants'）",
    ),
    "rule-scope": (
        {"version": 1, "alert_rules": [{"tenant": "acme", "name": "r", "scope": {"job": "nope"}}]},
        "alert_rules[0] (acme/r): scope.job: no job 'nope' in tenant acme",
        "alert_rules[0] (acme/r): scope.job: 租户 acme 中没有作业 'nope'",
    ),
    "channel-field": (
        {"version": 1, "alert_channels": [{"tenant": "acme", "name": "c", "type": "email", "url": "x"}]},
        "alert_channels[0] (acme/c): url: not a field of email channels",
        "alert_channels[0] (acme/c): url: 不是 email 通道的字段",
    ),
    "newer-version": (
        {"version": 99},
        "version: the file is format version 99, newer than this release understands (1); "
        "upgrade scheduler_app to import it",
        "version: 该文件的格式版本为 99，比此版本能理解的（1）更新；请升级 scheduler_app 后再导入",
    ),
    "bad-dates": (
        {"version": 1, "calendars": [{"tenant": "acme", "name": "hol", "dates": ["2026-02-30"]}]},
        "calendars[0] (acme/hol): dates[0]: '2026-02-30' is not a YYYY-MM-DD date",
        "calendars[0] (acme/hol): dates[0]: '2026-02-30' 不是 YYYY-MM-DD 日期",
    ),
}


def refused(path, language):
    with override_settings(LANGUAGE_CODE=language), pytest.raises(CommandError) as info:
        call_command("importjobs", str(path), stdout=io.StringIO(), stderr=io.StringIO(), no_color=True)
    return str(info.value)


@pytest.mark.parametrize("case", list(FILES))
def test_importjobs_refusal_in_both_languages(tmp_path, tenant, case):
    doc, english, chinese = FILES[case]
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert refused(path, "en-us") == f"{path}: {english}; nothing was changed"
    assert refused(path, "zh-hans") == f"{path}：{chinese}；未做任何更改"
    assert not Job.objects.exists()


def test_unparsable_file_in_chinese(tmp_path, tenant):
    path = tmp_path / "jobs.json"
    path.write_text("{,", encoding="utf-8")
    assert refused(path, "zh-hans") == (
        f"{path}：{path} 不是有效的 JSON：第 1 行第 2 列："
        "Expecting property name enclosed in double quotes；未做任何更改"
    )
    path.write_bytes(b"\xff\xfe")
    assert refused(path, "zh-hans") == f"{path}：{path} 不是 UTF-8 文本；未做任何更改"


#: (what the job body adds, English (field, message), Chinese message)
API_CASES = [
    (
        {"group": "marketing"},
        ("group", "unknown group 'marketing' in tenant acme"),
        "租户 acme 中没有作业组 'marketing'",
    ),
    ({"calendars": ["hol"]}, ("calendars", "unknown calendar 'hol'"), "未知的日历 'hol'"),
    ({"depends_on": 3}, ("depends_on", "must be a list"), "必须是列表"),
    (
        {"depends_on": [{"job": "nope"}]},
        ("depends_on[0]", "job: unknown job 'nope' in tenant acme"),
        "job: 租户 acme 中没有作业 'nope'",
    ),
    (
        {"secret_kwargs_encrypted": "not-a-token"},
        (
            "secret_kwargs_encrypted",
            "the secret kwargs cannot be decrypted with any configured key "
            "(was the key that encrypted them removed?)",
        ),
        "任何已配置的密钥都无法解密这些密钥参数（加密它们的密钥是否已被移除？）",
    ),
]


@pytest.mark.parametrize(
    ("extra", "english", "chinese"), API_CASES, ids=["group", "calendar", "deps", "dep", "secret"]
)
def test_api_400_bodies_follow_accept_language(tenant, extra, english, chinese):
    user = get_user_model().objects.create_user("ed-i18n-docs")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    api = client_for(key_for(user))
    body = {"tenant": "acme", "name": "n", "task": "demo.noop", "trigger": {"type": "manual"}, **extra}
    for language, expected in (("en", english), ("zh-hans", (english[0], chinese))):
        response = api.post("/api/jobs/", body, format="json", HTTP_ACCEPT_LANGUAGE=language)
        assert response.status_code == 400
        assert errors_of(response) == [expected]
    assert not Job.objects.exists()
