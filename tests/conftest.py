import pytest


@pytest.fixture
def tenant(db):
    from scheduler_app.models import Tenant

    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db):
    from scheduler_app.models import Tenant

    return Tenant.objects.create(slug="globex", name="Globex")


@pytest.fixture
def make_job(tenant):
    from scheduler_app import services
    from scheduler_app.models import Job

    def make(name="job", **fields):
        fields.setdefault("tenant", tenant)
        fields.setdefault("task", "demo.noop")
        fields.setdefault("trigger", {"type": "interval", "seconds": 60})
        return services.save_job(Job(name=name, **fields))

    return make
