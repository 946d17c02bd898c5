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


# Tests whose outcome cannot depend on the database: the SQLite pass leaves them out
# (the PostgreSQL pass runs everything). A module can say so with DB_INDEPENDENT = True.
DB_INDEPENDENT_DIRS = ("unit", "browser")  # pages look the same on either database
DB_INDEPENDENT_MODULES = {"test_demo.py", "test_install.py"}  # the demo runs on its own SQLite


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path
        if (
            path.parent.name in DB_INDEPENDENT_DIRS
            or path.name in DB_INDEPENDENT_MODULES
            or getattr(item.module, "DB_INDEPENDENT", False)
        ):
            item.add_marker(pytest.mark.db_independent)


@pytest.fixture(autouse=True)
def _no_alert_rules_reused():
    """The alert evaluation reuses rules per configuration version; a rolled-back test
    leaves the version where it found it, so the next test's rules must be read again."""
    from scheduler_app.alerts import evaluate
    from scheduler_app.models import ConfigVersion

    evaluate.forget_rules()
    evaluate.config_version = ConfigVersion.current  # not a service's left running by a test
    yield
    evaluate.forget_rules()


@pytest.fixture(autouse=True)
def _no_dashboard_figures_reused():
    """The dashboard reuses its figures per tenant scope and configuration version for
    a few seconds; a rolled-back test leaves the version where it found it."""
    from scheduler_app.monitoring import dashboard

    dashboard.forget()
    yield
    dashboard.forget()


@pytest.fixture(autouse=True)
def _no_language_left_active():
    """A request in Chinese (LocaleMiddleware activates the language and never deactivates
    it) must not make the next test's commands answer in Chinese: each test starts and
    ends with no language activated (commands then speak LANGUAGE_CODE, as in a real
    process)."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()
