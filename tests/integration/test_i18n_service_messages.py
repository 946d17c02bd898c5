"""Issue 8 point 6: what the services answer a person (refusal reasons, validation
errors shown next to a field) is in the reader's language, English by default."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from scheduler_app import services
from tests.integration.test_admin import scenario  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_refusal_reason_in_chinese(admin_client, scenario):  # noqa: F811
    admin_client.cookies["django_language"] = "zh-hans"
    answer = admin_client.post(
        reverse("admin:scheduler_app_job_changelist"),
        {"action": "run_selected_now", "_selected_action": [scenario["jobs"]["old"].pk]},
        follow=True,
    )
    assert [str(m) for m in answer.context["messages"]] == ["已拒绝 old：作业已停用。"]


def test_refusal_reason_in_english(admin_client, scenario):  # noqa: F811
    answer = admin_client.post(
        reverse("admin:scheduler_app_job_changelist"),
        {"action": "run_selected_now", "_selected_action": [scenario["jobs"]["old"].pk]},
        follow=True,
    )
    assert [str(m) for m in answer.context["messages"]] == ["Refused old: job is disabled."]


@pytest.mark.parametrize(
    ("language", "expected"), [("zh-hans", "时间需要带时区。"), ("en", "The time needs a time zone.")]
)
def test_validation_error_in_the_language(scenario, language, expected):  # noqa: F811
    with translation.override(language), pytest.raises(ValidationError) as caught:
        services.run_jobs_now([scenario["jobs"]["extract"]], at=dt.datetime(2030, 1, 1, 9, 0))
    assert caught.value.message_dict == {"at": [expected]}
