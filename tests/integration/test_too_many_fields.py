"""Bad input: a post Django refuses before any view (more fields than
DATA_UPLOAD_MAX_NUMBER_FIELDS, a body over DATA_UPLOAD_MAX_MEMORY_SIZE) gets a page that
says what happened and what to do, in the reader's language; nothing is saved."""

import pytest
from django.urls import reverse

from scheduler_app.models import Job
from tests.integration.test_admin import form_values

pytestmark = pytest.mark.django_db


def children(count):
    data = {"child-TOTAL_FORMS": str(count), "child-INITIAL_FORMS": "0"}
    for i in range(count):
        data[f"child-{i}-trigger_type"] = "cron"
        data[f"child-{i}-cron_expression"] = "0 * * * *"
    return data


@pytest.fixture
def add_form(admin_client, tenant):
    add = reverse("admin:scheduler_app_job_add")
    data = form_values(admin_client.get(add))
    data.update(tenant=str(tenant.pk), name="many", task="demo.noop", trigger_type="any")
    return add, data


def test_five_thousand_children_get_a_clear_page(admin_client, add_form):
    add, data = add_form
    data.update(children(5000))  # 10,000 fields
    response = admin_client.post(add, data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000" in html
    assert "at most 20 child triggers" in html and "nothing was saved" in html
    assert "Bad Request (400)" not in html
    assert 'class="errornote"' in html  # in the admin's look
    assert not Job.objects.filter(name="many").exists()


def test_in_chinese(admin_client, add_form):
    add, data = add_form
    data.update(children(5000))
    admin_client.cookies["django_language"] = "zh-hans"
    response = admin_client.post(add, data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000" in html and "未保存" in html


def test_a_body_over_the_memory_limit(admin_client, add_form, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    add, data = add_form
    data["kwargs"] = '{"blob": "' + "x" * 200_000 + '"}'
    response = admin_client.post(add, data)
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE = 100,000 bytes" in response.content.decode()
    assert not Job.objects.filter(name="many").exists()


def test_the_form_still_saves_the_most_children_it_allows(admin_client, add_form):
    """Twenty children with every field of every child posted (as a browser does) stay
    far below Django's limit."""
    add, data = add_form
    data.update(children(20))
    response = admin_client.post(add, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(Job.objects.get(name="many").trigger["triggers"]) == 20


def test_other_bad_requests_keep_djangos_page(client):
    from django.core.exceptions import SuspiciousOperation
    from django.test import RequestFactory

    from scheduler_app.admin.errorpages import bad_request

    response = bad_request(RequestFactory().get("/"), SuspiciousOperation("x"))
    assert response.status_code == 400 and b"Bad Request (400)" in response.content
