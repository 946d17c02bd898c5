"""The 400 handler (scheduler_app.admin.errorpages) answers the API's JSON error body to
a request for the API wherever the host project mounts it (it resolves the path in the
URLconf, it does not look for an "/api/" prefix), to a JSON body and to a client that
asks for JSON; the admin's page to everyone else. Before, it answered JSON only under a
hard-coded /api/: an API mounted at /ops/v2/ got the admin's HTML page, and an admin
mounted at /api/admin/ got JSON."""

import warnings

import pytest
from django.core.exceptions import SuspiciousOperation, TooManyFieldsSent
from django.test import RequestFactory

from scheduler_app.admin import errorpages
from scheduler_app.models import Job
from tests.integration.api_support import client_for, key_for

pytestmark = pytest.mark.django_db

TOO_MANY = TooManyFieldsSent("too many")


@pytest.fixture
def elsewhere(settings):
    settings.ROOT_URLCONF = "tests.integration.elsewhere_urls"


def fields(count):
    return {f"f{i}": "x" for i in range(count)}


def is_json_error(response):
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json", response.content[:300]
    ((error,),) = [response.json()["errors"]]
    assert error["field"] is None and "DATA_UPLOAD_MAX_NUMBER_FIELDS" in error["message"]
    return True


def is_admin_page(response):
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html"), response.content[:300]
    html = response.content.decode()
    assert 'class="errornote"' in html and "DATA_UPLOAD_MAX_NUMBER_FIELDS" in html
    return True


@pytest.fixture
def reads_the_form(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.integration.elsewhere_urls.ReadsTheForm"]


def test_the_api_mounted_elsewhere_gets_json_end_to_end(elsewhere, reads_the_form, admin_user):
    response = client_for(key_for(admin_user)).post("/ops/v2/jobs/", fields(2000))
    assert is_json_error(response)
    assert not Job.objects.exists()


def test_a_path_under_api_that_is_not_the_api_gets_the_page(elsewhere, admin_client):
    response = admin_client.post("/api/admin/scheduler_app/job/add/", fields(2000))
    assert is_admin_page(response)


def test_the_demo_mount_still_gets_json(reads_the_form, admin_user):
    response = client_for(key_for(admin_user)).post("/api/jobs/", fields(2000))
    assert is_json_error(response)


@pytest.mark.parametrize(
    ("path", "headers", "json"),
    [
        ("/ops/v2/jobs/", {}, True),
        ("/ops/v2/jobs/12/run/", {}, True),
        ("/ops/v2/no-such-thing/", {}, False),  # not the API's
        ("/api/admin/", {}, False),
        ("/api/admin/", {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}, False),
        ("/api/admin/", {"HTTP_ACCEPT": "application/json"}, True),
        ("/somewhere/", {"CONTENT_TYPE": "application/json"}, True),
        ("/somewhere/", {"HTTP_ACCEPT": "*/*"}, False),
    ],
)
def test_json_or_page(elsewhere, path, headers, json):
    request = RequestFactory().post(path, **({"CONTENT_TYPE": "text/plain"} | headers))
    assert errorpages.wants_json(request) is json
    response = errorpages.bad_request(request, TOO_MANY)
    assert response["Content-Type"].startswith("application/json" if json else "text/html")


def test_other_bad_requests_keep_djangos_page(elsewhere):
    response = errorpages.bad_request(RequestFactory().get("/ops/v2/jobs/"), SuspiciousOperation("x"))
    assert response.status_code == 400 and b"Bad Request (400)" in response.content


def test_the_old_dotted_path_still_works_and_warns():
    from django.urls import get_callable

    import scheduler_app.errorpages as old

    with pytest.warns(DeprecationWarning, match="scheduler_app.admin.errorpages.bad_request"):
        handler = old.bad_request
    assert handler is errorpages.bad_request
    get_callable.cache_clear()
    with pytest.warns(DeprecationWarning):
        assert get_callable("scheduler_app.errorpages.bad_request") is errorpages.bad_request
    with warnings.catch_warnings(), pytest.raises(AttributeError):
        warnings.simplefilter("error")
        old.no_such_name  # noqa: B018
