"""Change summaries of job versions and the failure-pause reason are stored in English
and shown in the viewer's language: the versions page, the job page and list, and the
API's versions (Accept-Language). Texts of no known form are shown as stored."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import translation

from scheduler_app import services
from scheduler_app.models import Job, JobGroup, JobVersion, Membership
from scheduler_app.services import summaries
from tests.integration.api_support import client_for, key_for
from tests.integration.test_pause_on_failure import finish

pytestmark = pytest.mark.django_db
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture
def history(make_job, tenant):
    """A job with versions written by the real services, newest first."""
    job = make_job("nightly", task="demo.echo", kwargs={"n": 1})
    job.kwargs = {"n": 2}
    services.save_job(job)
    group = JobGroup.objects.create(tenant=tenant, name="ops")
    services.move_jobs_to_group([job], group)
    services.move_jobs_to_group([Job.objects.get(pk=job.pk)], None)
    services.pause_jobs([Job.objects.get(pk=job.pk)])
    services.rollback_job(Job.objects.get(pk=job.pk), 1)
    JobVersion.objects.filter(job=job, number=1).update(summary="hand-written note")
    return job


ENGLISH = [
    "rollback to version 1",
    "paused",
    "removed from its group",
    "moved to group ops",
    "changed kwargs.n",
    "hand-written note",  # was "created"
]
CHINESE = ["回滚到版本 1", "已暂停", "移出作业组", "移至作业组 ops", "已更改 kwargs.n", "hand-written note"]


def test_versions_are_stored_in_english(history):
    stored = list(history.versions.order_by("-number").values_list("summary", flat=True))
    assert stored == ENGLISH


def test_api_versions_in_the_readers_language(history, tenant):
    user = get_user_model().objects.create_user("viewer-sum")
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    api = client_for(key_for(user))
    url = f"/api/jobs/{history.pk}/versions/"
    assert [v["summary"] for v in api.get(url).json()["results"]] == ENGLISH
    assert [v["summary"] for v in api.get(url, **ZH).json()["results"]] == CHINESE


def test_versions_page_in_chinese(history, admin_client):
    html = admin_client.get(
        reverse("admin:scheduler_app_job_history", args=[history.pk]), **ZH
    ).content.decode()
    for text in CHINESE:
        assert f"<td>{text}</td>" in html
    assert "<td>moved to group ops</td>" not in html


def test_pause_reason_in_chinese_on_the_job_page_and_list(make_job, admin_client):
    job = make_job("flaky", pause_after_failures=2)
    finish(job, "failed")
    last = finish(job, "timed_out", error="ERP refused the login")
    job = Job.objects.get(pk=job.pk)
    detail = "ERP refused the login (final: no retries configured)"
    assert (
        job.paused_reason == f"paused after 2 consecutive failures; last: run {last.pk} timed_out: {detail}"
    )
    chinese = f"连续失败 2 次后已暂停；最后一次：运行 {last.pk} 超时：{detail}"
    page = admin_client.get(reverse("admin:scheduler_app_job_change", args=[job.pk]), **ZH).content.decode()
    assert chinese in page
    listing = admin_client.get(reverse("admin:scheduler_app_job_changelist"), **ZH).content.decode()
    assert chinese in listing
    english = admin_client.get(reverse("admin:scheduler_app_job_change", args=[job.pk])).content.decode()
    assert job.paused_reason.replace("timed_out", "timed out") in english  # the state's label
    (version,) = job.versions.filter(summary__startswith="paused after")
    assert summaries.translate(version.summary) == "paused after 2 consecutive failures"


#: Numbers and states (what a writer puts there); the other parameters are names.
NUMBERS = {"n": 3, "run": 7, "number": 2, "state": "failed"}


@pytest.mark.parametrize("form", summaries.FORMS, ids=lambda f: summaries.english(f)[:40])
def test_every_form_reads_back_in_chinese(form):
    """What a writer stores is recognised again, with its parameters, when shown."""
    names = re.findall(r"%\((\w+)\)s", summaries.english(form))
    params = {name: NUMBERS.get(name, f"<{name}>") for name in names}
    text = summaries.english(form, **params)
    assert summaries.translate(text) == text  # no language active: as stored
    with translation.override("zh-hans"):
        shown = summaries.translate(text)
        expected = {**params, "state": "失败"} if "state" in params else params
        assert shown == str(form) % expected if params else shown == str(form)
    assert shown != text


NAMES = ["no group", "removed from its group", "group ops", "a jobs file", "deleted", "x changed"]


@pytest.mark.parametrize("name", NAMES)
def test_a_group_named_like_a_form_reads_back_as_the_move_into_it(make_job, tenant, name):
    job = make_job("nightly")
    services.move_jobs_to_group([job], JobGroup.objects.create(tenant=tenant, name=name))
    services.move_jobs_to_group([Job.objects.get(pk=job.pk)], None)
    into, out = job.versions.order_by("-number").values_list("summary", flat=True)[:2][::-1]
    with translation.override("zh-hans"):
        assert summaries.translate(into) == f"移至作业组 {name}"
        assert summaries.translate(out) == "移出作业组"


FREE = {"group", "job", "calendar", "source", "detail", "fields", "tenant", "module"}


@pytest.mark.parametrize("form", summaries.FORMS, ids=lambda f: summaries.english(f)[:40])
def test_no_form_is_another_with_a_name_put_in(form):
    """Every form reads back as itself whatever its names are, even the text of
    another form: a name never turns one form into another."""
    names = re.findall(r"%\((\w+)\)s", summaries.english(form))
    values = [
        summaries.english(f, **{k: f"<{k}>" for k in re.findall(r"%\((\w+)\)s", summaries.english(f))})
        for f in summaries.FORMS
    ]
    for value in values if FREE & set(names) else [""]:
        params = {k: (NUMBERS[k] if k in NUMBERS else value) for k in names}
        text = summaries.english(form, **params)
        with translation.override("zh-hans"):
            expected = str(form) % {**params, "state": "失败"} if params else str(form)
            assert summaries.translate(text) == expected, text


@pytest.mark.parametrize(
    "stored, chinese",
    [
        ("moved to no group", "移出作业组"),
        ("moved to ops", "移至作业组 ops"),
        ("imported from django-celery-beat", "从 django-celery-beat 的计划导入"),
    ],
)
def test_texts_older_releases_stored_still_read(stored, chinese):
    with translation.override("zh-hans"):
        assert summaries.translate(stored) == chinese


def test_imports_are_stored_as_forms(tenant):
    from scheduler_app.interchange import jobsfile

    jobsfile.import_document({"version": 1, "jobs": [{"tenant": "acme", "name": "x", "task": "demo.noop"}]})
    (stored,) = Job.objects.get(name="x").versions.values_list("summary", flat=True)
    assert stored == "imported from a jobs file"
    with translation.override("zh-hans"):
        assert summaries.translate(stored) == "从作业文件导入"
        assert summaries.translate("imported from the schedules of django-apscheduler") == (
            "从 django-apscheduler 的计划导入"
        )
