"""The OpenAPI schema against the real API: schemathesis generates requests for every
operation from /api/schema/ and sends them to a live server with a real API key (a
tenant admin's, not a superuser's). No answer may be a 5xx or break the schema."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from scheduler_app.models import Membership
from tests.integration.api_support import key_for
from tests.integration.test_isolation import build_world

# The SQLite pass leaves this module out: fuzzing finds faults of the API's own code; NUL, depth and
# range limits are tested on both databases (test_limits_*, test_api_*).
DB_INDEPENDENT = True
pytestmark = [pytest.mark.slow]


def test_the_schema_is_served_as_json_and_yaml_and_docs_render(client, db):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/jobs/", "/api/jobs/{id}/run/", "/api/runs/", "/api/health/ready", "/api/cron/preview"):
        assert path in paths
    assert "/admin/" not in " ".join(paths)
    assert schema.json()["components"]["schemas"]["Trigger"]["oneOf"]
    assert client.get("/api/schema/").status_code == 200  # YAML
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui-bundle.js" in docs.content and b"//cdn" not in docs.content


@pytest.fixture
def api_schema(live_server, transactional_db, tenant, other_tenant):
    world = build_world(tenant, other_tenant)
    admin = world["users"]["admin"]
    Membership.objects.create(tenant=other_tenant, user=admin, role="viewer")
    token = key_for(admin)
    from django.utils import timezone

    from scheduler_app import services
    from scheduler_app.models import AlertChannel, AlertRule, Node

    channel = services.save_channel(
        AlertChannel(tenant=tenant, name="mail", type="email", config={"to": ["ops@example.com"]})
    )
    services.save_rule(AlertRule(tenant=tenant, name="failures", events=["failed"]), channels=[channel])
    now = timezone.now()
    Node.objects.create(name="n1", incarnation="i", started_at=now, heartbeat_at=now)
    loaded = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    loaded.config.update(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"})
    return loaded


def test_no_server_error_and_every_answer_fits_the_schema(api_schema):
    """Every operation, positive and negative inputs, a bounded number of examples
    each (about a minute in all); failures are collected so one run shows them all."""
    from hypothesis import given
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable

    from scheduler_app.models import (
        AlertChannel,
        AlertRule,
        Calendar,
        Job,
        JobDependency,
        JobGroup,
        JobRun,
        Node,
        Tenant,
    )

    real_ids = {
        name: list(model.objects.order_by("pk").values_list("pk", flat=True))
        for name, model in {
            "tenants": Tenant,
            "groups": JobGroup,
            "calendars": Calendar,
            "jobs": Job,
            "dependencies": JobDependency,
            "runs": JobRun,
            "nodes": Node,
            "alert-channels": AlertChannel,
            "alert-rules": AlertRule,
        }.items()
    }
    failures = []
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    only = os.environ.get("API_SCHEMA_PATHS")  # e.g. "/api/nodes,/api/alert-" to probe a few
    if only:
        operations = [o for o in operations if o.path.startswith(tuple(only.split(",")))]
    assert only or len(operations) > 40
    # CI: 10 examples per operation and mode, the same ones every run. To hunt further:
    # API_SCHEMA_EXAMPLES=50 API_SCHEMA_RANDOM=1 (new examples each run).
    examples = int(os.environ.get("API_SCHEMA_EXAMPLES", "10"))
    derandomize = os.environ.get("API_SCHEMA_RANDOM") != "1"
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 9))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=derandomize,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def probe(case, pick):
                # Mostly ids of real objects (random ids are nearly always 404s).
                resource = case.operation.path.split("/")[2]
                if "id" in (case.path_parameters or {}) and pick < 8 and real_ids.get(resource):
                    case.path_parameters["id"] = real_ids[resource][pick % len(real_ids[resource])]
                if "number" in (case.path_parameters or {}) and pick < 8:
                    case.path_parameters["number"] = 1 + pick % 2
                response = case.call()
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                # A documented 503 of a health check is its answer, not a server error.
                intended = response.status_code == 503 and "/health/" in case.operation.path
                assert intended or response.status_code < 500, (
                    f"{response.status_code}: {response.text[:500]}"
                )
                case.validate_response(response, checks=[response_schema_conformance])

            try:
                probe()
            except Unsatisfiable:
                continue  # no negative input exists for this operation (e.g. no parameters)
            except Exception as exc:  # collect, report all at the end
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    print("answers by status:", dict(sorted(statuses.items())))
    assert not failures, "\n\n".join(failures)
    # the key works: most answers are not 401 (which would make the run worthless)
    assert statuses.get(200, 0) > (10 if only else 100) and statuses.get(401, 0) < sum(statuses.values()) / 10
