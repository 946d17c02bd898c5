"""A run-now override may not carry a job's secret (it is stored with the run in clear);
a run that holds one from before is masked on its page and in backups. Found by review:
the override's value was in the row, on the admin run page and in `backup --with-runs`."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from scheduler_app.engine.redaction import MASK
from scheduler_app.models import JobRun, Membership
from scheduler_app.services.runs import enqueue_run
from tests.integration.api_support import client_for, errors_of, key_for

pytestmark = pytest.mark.django_db

SECRET = "Typed-in-Pässwörd-77"


@pytest.fixture
def job(make_job):
    return make_job("mailer", task="demo.echo", secret_kwargs={"password": "stored-one"})


@pytest.fixture
def older_run(job):
    """A run queued before overrides of secrets were refused."""
    return enqueue_run(job, scheduled_for=timezone.now(), kwargs_override={"password": SECRET, "to": "ops"})


def test_the_api_refuses_a_secret_in_the_runs_kwargs_naming_it(job, tenant):
    user = get_user_model().objects.create_user("ed")
    Membership.objects.create(tenant=tenant, user=user, role="editor")
    api = client_for(key_for(user))
    response = api.post(f"/api/jobs/{job.pk}/run/", {"kwargs": {"password": SECRET}}, format="json")
    assert response.status_code == 400, response.content
    ((field, message),) = errors_of(response)
    assert field == "kwargs" and message.startswith("password: a secret of this job")
    assert SECRET not in response.content.decode()
    assert not JobRun.objects.filter(job=job).exists()
    assert api.post(f"/api/jobs/{job.pk}/run/", {"kwargs": {"to": "ops"}}, format="json").status_code == 201


def test_the_run_page_masks_an_older_runs_secret_override(older_run, client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    html = client.get(reverse("admin:scheduler_app_jobrun_change", args=[older_run.pk])).content.decode()
    assert SECRET not in html
    assert MASK in html and "ops" in html


def test_a_backup_masks_an_older_runs_secret_override(older_run, tmp_path):
    path = tmp_path / "backup.json"
    call_command("backup", "-o", str(path), "--with-runs", stdout=io.StringIO())
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text
    (run,) = json.loads(text)["runs"]
    assert run["kwargs_override"] == {"password": MASK, "to": "ops"}


def test_the_status_code_does_not_depend_on_the_requests_language(job, tenant):
    """The API picks 400/403 from the services' refusal reason: in a zh-hans request that
    reason was translated, and a bad override or a refused permission became a 409."""
    from tests.integration.api_support import client_for as client

    editor = get_user_model().objects.create_user("ed-zh")
    Membership.objects.create(tenant=tenant, user=editor, role="editor")
    viewer = get_user_model().objects.create_user("viewer-zh")
    Membership.objects.create(tenant=tenant, user=viewer, role="viewer")
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
    response = client(key_for(editor)).post(
        f"/api/jobs/{job.pk}/run/", {"kwargs": {"password": SECRET}}, format="json", **zh
    )
    assert response.status_code == 400, response.content
    assert errors_of(response)[0][0] == "kwargs"
    refused = client(key_for(viewer)).post(f"/api/jobs/{job.pk}/run/", {}, format="json", **zh)
    assert refused.status_code == 403, refused.content
    run = enqueue_run(job, scheduled_for=timezone.now())
    refused = client(key_for(viewer)).post(f"/api/runs/{run.pk}/cancel/", {}, format="json", **zh)
    assert refused.status_code == 403, refused.content
