"""One "Versions" page (history and diff), a diff that names a changed key inside
kwargs, audit entries with names instead of ids and without reverse relations, and the
admin index without django-apscheduler's tables unless its job store is used."""

import re

import pytest
from django.urls import reverse

from scheduler_app import services
from scheduler_app.models import JobGroup

pytestmark = pytest.mark.django_db


def page(admin_client, view, job):
    response = admin_client.get(reverse(f"admin:scheduler_app_job_{view}", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def job(make_job, tenant):
    job = make_job("nightly", task="demo.echo", kwargs={})
    job.kwargs = {"limit": 5}
    services.save_job(job, summary="limit")
    job.kwargs = {"limit": 7}
    job.group = JobGroup.objects.create(tenant=tenant, name="billing")
    services.save_job(job, summary="more")
    return job


def test_versions_is_the_one_history_page(admin_client, job):
    change = page(admin_client, "change", job)
    assert ">Versions</a>" in change
    assert ">History</a>" not in change  # Django's own history button is not offered
    response = admin_client.get(reverse("admin:scheduler_app_job_history", args=[job.pk]))
    html = response.content.decode()
    assert "Versions of nightly" in html and "History of" not in html
    # the admin's own history address is this page
    assert reverse("admin:scheduler_app_job_history", args=[job.pk]).endswith(f"/job/{job.pk}/history/")


def test_diff_shows_a_key_inside_kwargs(admin_client, job):
    url = reverse("admin:scheduler_app_job_history", args=[job.pk])
    html = admin_client.get(url, {"a": 1, "b": 2}).content.decode()
    rows = re.findall(
        r'<th scope="row"><code>([^<]+)</code></th><td class="old">([^<]*)</td><td class="new">([^<]*)</td>',
        html,
    )
    assert ("kwargs.limit", "—", "5") in rows
    assert not [r for r in rows if r[0] == "kwargs"]  # not "kwargs {} → —"
    html = admin_client.get(url, {"a": 2, "b": 3}).content.decode()
    rows = re.findall(
        r'<th scope="row"><code>([^<]+)</code></th><td class="old">([^<]*)</td><td class="new">([^<]*)</td>',
        html,
    )
    assert ("kwargs.limit", "5", "7") in rows
    assert 'style="background' not in html  # themed by CSS variables, not fixed colours
    assert "scheduler_app/scheduler.css" in html


def test_audit_shows_names_not_ids_and_no_reverse_relations(admin_client, job):
    html = page(admin_client, "audit", job)
    group = JobGroup.objects.get(name="billing")
    assert "<code>group</code>: — → billing<" in html
    assert f"<code>group</code>: — → {group.pk}<" not in html
    assert "<code>ID</code>" not in html
    assert "JobRun.None" not in html and "runs:" not in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", html)  # times with an offset


@pytest.mark.parametrize(("store", "listed"), [("memory", False), ("django", True)])
def test_django_apscheduler_models_only_with_the_django_store(admin_client, settings, store, listed):
    settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "JOB_STORE": store}
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert ("/admin/django_apscheduler/" in html) is listed
    assert "/admin/scheduler_app/job/" in html
