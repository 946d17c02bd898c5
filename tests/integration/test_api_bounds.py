"""Numbers and times at the edges of what the database and the run store hold: no 500
on either database (SQLite's driver overflows past 64 bits), a 400 naming the parameter
or a 404 for an id that cannot exist; and the audit context of one request never leaks
into the next."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model

from scheduler_app import audit
from scheduler_app.models import Job, Membership
from tests.integration.api_support import JOB, client_for, errors_of, key_for

pytestmark = pytest.mark.django_db


def fields(response):
    return [field for field, _message in errors_of(response)]


HUGE = str(2**63)  # one past the largest 64-bit id
HUGER = "9" * 40


@pytest.fixture
def admin_user(tenant):
    user = get_user_model().objects.create_user("adm")
    Membership.objects.create(tenant=tenant, user=user, role="admin")
    return user


@pytest.fixture
def api(admin_user):
    return client_for(key_for(admin_user))


@pytest.fixture
def job(api):
    response = api.post("/api/jobs/", JOB, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.mark.parametrize("raw", [HUGE, HUGER, "²", "١٢"])
def test_ids_in_paths_that_cannot_exist_are_404(api, job, tenant, raw):
    for path in (
        f"/api/jobs/{raw}/",
        f"/api/runs/{raw}/",
        f"/api/dependencies/{raw}/",
        f"/api/jobs/{job['id']}/versions/{raw}/",
    ):
        assert api.get(path).status_code == 404, path
    assert api.post(f"/api/jobs/{job['id']}/versions/{raw}/rollback/").status_code == 404
    assert api.delete(f"/api/tenants/{tenant.pk}/members/{raw}/").status_code == 404


@pytest.mark.parametrize("raw", [HUGE, HUGER, "²", "-1", " 1"])
def test_ids_in_query_parameters_are_400_naming_the_parameter(api, job, raw):
    response = api.get("/api/dependencies/", {"job": raw})
    assert response.status_code == 400
    assert "job" in fields(response)
    response = api.get("/api/runs/", {"job": raw})
    assert response.status_code == 400
    assert "job" in fields(response)
    response = api.get(f"/api/jobs/{job['id']}/versions/diff/", {"from": raw, "to": "1"})
    assert response.status_code == 400
    assert "from" in fields(response)


@pytest.mark.parametrize("pk", [2**63, 2**64 + 5, 0, -3])
def test_bulk_ids_out_of_range_are_400_naming_the_item(api, job, pk):
    for path in ("/api/jobs/bulk/pause/", "/api/runs/bulk/cancel/"):
        response = api.post(path, {"ids": [job["id"], pk]}, format="json")
        assert response.status_code == 400, path
        assert "ids[1]" in fields(response)


def test_the_largest_64_bit_id_is_simply_not_found(api, job):
    response = api.post("/api/jobs/bulk/pause/", {"ids": [2**63 - 1]}, format="json")
    assert response.status_code == 200
    assert response.json()["results"] == [{"id": 2**63 - 1, "status": "not found"}]


@pytest.mark.parametrize(
    "raw", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59+00:00"]
)
def test_times_outside_1970_to_9000_are_400(api, job, raw):
    response = api.get("/api/runs/", {"scheduled_after": raw})
    assert response.status_code == 400
    assert "scheduled_after" in fields(response)
    response = api.post(f"/api/jobs/{job['id']}/run/", {"at": raw}, format="json")
    assert response.status_code == 400
    assert "at" in fields(response)


@pytest.mark.parametrize("raw", ["²", HUGER, "0", "101"])
def test_cron_preview_count_out_of_range_is_400(api, raw):
    response = api.get("/api/cron/preview", {"expression": "* * * * *", "count": raw})
    assert response.status_code == 400
    assert "count" in fields(response)


def test_an_if_match_too_large_for_a_version_is_400(api, job):
    response = api.patch(
        f"/api/jobs/{job['id']}/", {"description": "x"}, format="json", HTTP_IF_MATCH=HUGER + "x"
    )
    assert response.status_code == 400
    assert "If-Match" in fields(response)


def test_the_key_of_one_request_is_not_in_the_next_ones_audit_entries(api, admin_user, job):
    assert api.post(f"/api/jobs/{job['id']}/pause/").status_code == 200
    keyed = LogEntry.objects.order_by("-pk").first()
    assert keyed.additional_data.get("api_key")
    # The request is over: nothing it set is left in this thread's context.
    with audit.acting_as(admin_user):
        item = Job.objects.get(pk=job["id"])
        item.description = "changed outside any request"
        item.save()
    later = LogEntry.objects.order_by("-pk").first()
    assert later.pk != keyed.pk
    assert "api_key" not in (later.additional_data or {})


def test_add_extra_outside_a_block_is_an_error():
    with pytest.raises(RuntimeError):
        audit.add_extra(x=1)


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/api/calendars/", {"tenant": "ac\x00me", "name": "holidays"}, "tenant"),
        ("/api/groups/", {"tenant": "acme", "name": "etl\x00"}, "name"),
        ("/api/jobs/", {**JOB, "description": "x\x00y"}, "description"),
        ("/api/calendars/", {"tenant": "acme", "name": "h", "dates": ["2026-01-01\x00"]}, "dates"),
    ],
)
def test_nul_anywhere_in_a_body_is_400_naming_the_field(api, tenant, path, body, field):
    """A NUL reaching a PostgreSQL query is a DataError (found by the schema fuzzing: PUT
    /api/calendars/{id}/ with a NUL in the tenant slug answered 500)."""
    response = api.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert fields(response) == [field]
    assert "NUL" in errors_of(response)[0][1]


@pytest.mark.parametrize(
    "query,field",
    [
        ("/api/runs/?node=a%00b", "node"),
        ("/api/runs/?tenant=a%00", "tenant"),
        ("/api/jobs/?tenant=a%00", "tenant"),
        ("/api/groups/?tenant=%00", "tenant"),
        ("/api/calendars/?tenant=%00", "tenant"),
    ],
)
def test_nul_in_a_query_parameter_is_400_naming_it(api, query, field):
    response = api.get(query)
    assert response.status_code == 400, response.content
    assert fields(response) == [field]
