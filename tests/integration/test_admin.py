"""The Django admin, through the test client as a superuser: lists, filters, search,
the job form (errors on the field they concern), the change page and bulk actions."""

import calendar
import datetime as dt
import re
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from scheduler_app import display, services
from scheduler_app.models import (
    Calendar,
    CalendarDate,
    ConfigVersion,
    Job,
    JobDependency,
    JobGroup,
    JobRun,
    Tenant,
)

# The SQLite pass leaves this module out: admin pages and forms are Python above the ORM; what
# differs by database (NUL, limits, locks) has its own tests on both.
DB_INDEPENDENT = True
pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


# -- helpers ----------------------------------------------------------------------------


class _FormValues(HTMLParser):
    """The values a browser would submit for one <form>, read from the rendered page."""

    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.values = {}
        self._select = None
        self._textarea = None

    def _skip(self, name):
        return not name or "__prefix__" in name

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input":
            kind = a.get("type", "text")
            if self._skip(name) or kind in ("submit", "button", "image", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.values.setdefault(name, []).append(a.get("value") or "on")
                return
            self.values.setdefault(name, []).append(a.get("value") or "")
        elif tag == "select":
            self._select = None if self._skip(name) else name
            if self._select:
                self.values.setdefault(name, [])
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select].append(a.get("value", ""))
        elif tag == "textarea" and not self._skip(name):
            self._textarea = name
            self.values[name] = [""]

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            # Browsers drop the newline that follows <textarea>.
            self.values[self._textarea][0] = self.values[self._textarea][0].removeprefix("\n")
            self._textarea = None


def form_values(response, form_id="job_form"):
    parser = _FormValues(form_id)
    parser.feed(response.content.decode())
    assert parser.values, f"no form {form_id!r} on the page"
    return parser.values


def url(model, view="changelist", *args):
    return reverse(f"admin:scheduler_app_{model}_{view}", args=args)


def messages_of(response):
    """Messages shown on the page the response ended on (the action redirects)."""
    return [str(m) for m in response.context["messages"]]


def listed(response):
    """Names (str) of the objects on a changelist page, in order."""
    assert response.status_code == 200
    return [str(obj) for obj in response.context["cl"].result_list]


def next_last_days_of_month(count, after):
    """02:00 Europe/Berlin on the last day of each month, computed without the engine."""
    local = after.astimezone(BERLIN)
    year, month = local.year, local.month
    times = []
    while len(times) < count:
        last = calendar.monthrange(year, month)[1]
        moment = dt.datetime(year, month, last, 2, 0, tzinfo=BERLIN)
        moment = moment.astimezone(dt.UTC).astimezone(BERLIN)  # 02:00 in a DST gap: 03:00
        if moment > after:
            times.append(moment)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return times


# -- data -------------------------------------------------------------------------------


@pytest.fixture
def scenario(tenant, other_tenant):
    """acme: extract (etl, cron) → invoices (billing, month end, holidays), heartbeat
    (interval, paused), old (disabled, manual), report (date); globex: crunch (quartz)."""
    etl = JobGroup.objects.create(tenant=tenant, name="etl", description="Nightly pipeline")
    billing = JobGroup.objects.create(tenant=tenant, name="billing", description="Money")
    ops = JobGroup.objects.create(tenant=other_tenant, name="ops")
    holidays = Calendar.objects.create(tenant=tenant, name="holidays", description="Closed")
    CalendarDate.objects.create(calendar=holidays, date=dt.date(2030, 12, 25), label="Christmas")
    from django.contrib.auth import get_user_model

    from scheduler_app.models import Membership

    member = get_user_model().objects.create_user("member")
    Membership.objects.create(tenant=tenant, user=member, role="viewer")
    from scheduler_app.services import keys

    keys.create_key(member, name="ci")  # the API keys admin lists it
    from scheduler_app.models import Node

    Node.objects.create(  # the nodes admin lists it
        name="node-a", incarnation="i1", started_at=timezone.now(), heartbeat_at=timezone.now(), tags=["gpu"]
    )

    def save(name, t=tenant, calendars=None, **fields):
        fields.setdefault("task", "demo.noop")
        return services.save_job(Job(tenant=t, name=name, **fields), calendars=calendars)

    jobs = {
        "extract": save(
            "extract",
            group=etl,
            task="demo.sleep",
            kwargs={"seconds": 1},
            trigger={"type": "cron", "expression": "*/5 * * * *"},
        ),
        "invoices": save(
            "invoices",
            group=billing,
            task="demo.echo",
            kwargs={"n": 1},
            description="Month-end invoicing",
            calendars=[holidays],
            trigger={"type": "cron", "expression": "0 2 L * *", "timezone": "Europe/Berlin"},
        ),
        "heartbeat": save("heartbeat", trigger={"type": "interval", "seconds": 15}, paused=True),
        "old": save("old", enabled=False, trigger={"type": "manual"}),
        "report": save("report", trigger={"type": "date", "run_at": "2030-01-01T08:00:00+00:00"}),
        "crunch": save(
            "crunch",
            t=other_tenant,
            group=ops,
            task="demo.cpu_burn",
            kwargs={"seconds": 1},
            executor="process",
            trigger={
                "type": "cron",
                "expression": "0 0 12 ? * MON-FRI",
                "dialect": "quartz",
                "timezone": "America/New_York",
            },
        ),
    }
    services.add_dependency(jobs["extract"], jobs["invoices"])
    services.add_dependency(jobs["invoices"], jobs["report"], "completion")
    t0 = dt.datetime(2026, 3, 31, 0, 0, tzinfo=dt.UTC)
    runs = {
        "succeeded": services.enqueue_run(jobs["extract"], scheduled_for=t0),
        "failed": services.enqueue_run(jobs["invoices"], scheduled_for=t0 + dt.timedelta(hours=1)),
        "running": services.enqueue_run(jobs["crunch"], scheduled_for=t0 + dt.timedelta(hours=2)),
        "queued": services.enqueue_run(jobs["heartbeat"], scheduled_for=t0 + dt.timedelta(hours=3)),
    }
    JobRun.objects.filter(pk=runs["succeeded"].pk).update(
        state="succeeded", started_at=t0, finished_at=t0, duration=1.25, node="node-a"
    )
    JobRun.objects.filter(pk=runs["failed"].pk).update(
        state="failed",
        duration=0.5,
        error="RuntimeError: partner API answered 503",
        error_type="RuntimeError",
        triggered_by=runs["succeeded"],
        reason="dependency",
    )
    JobRun.objects.filter(pk=runs["running"].pk).update(state="running", node="node-b")
    for run in runs.values():
        run.refresh_from_db()
    from scheduler_app.models import JobJoin

    JobJoin.objects.create(  # an open round of a join: the join rounds admin lists it
        job=jobs["report"],
        opened_at=t0 + dt.timedelta(hours=1),
        ends={str(jobs["invoices"].pk): {"run": runs["failed"].pk, "ok": False, "end": "failed"}},
    )
    from scheduler_app.models import AlertChannel, AlertRule

    hook = services.save_channel(
        AlertChannel(tenant=tenant, name="ops-hook", type="webhook", config={"url": "http://127.0.0.1:9/x"}),
        secret="hook-secret",
    )
    services.save_rule(AlertRule(tenant=tenant, name="billing failures", events=["failed"]), channels=[hook])
    services.send_test_alert(hook)  # an outbox row
    return {
        "tenant": tenant,
        "other": other_tenant,
        "etl": etl,
        "billing": billing,
        "ops": ops,
        "holidays": holidays,
        "jobs": jobs,
        "runs": runs,
    }


# -- change lists -----------------------------------------------------------------------


from scheduler_app.models import AlertOutbox  # noqa: E402

EXPECTED_MODELS = {Tenant, JobGroup, Calendar, Job, JobDependency, JobRun}


def test_every_registered_model_has_a_working_changelist(admin_client, scenario):
    registered = {m for m in admin.site._registry if m._meta.app_label == "scheduler_app"}
    assert EXPECTED_MODELS <= registered
    for model in registered:
        response = admin_client.get(url(model._meta.model_name))
        assert response.status_code == 200, model
        cl = response.context["cl"]
        assert cl.result_count == model.objects.count() > 0, model


def test_every_registered_model_has_working_add_and_change_pages(admin_client, scenario):
    from scheduler_app.models import JobJoin, Node

    for model in (m for m in admin.site._registry if m._meta.app_label == "scheduler_app"):
        name = model._meta.model_name
        obj = model.objects.order_by("pk").first()
        assert admin_client.get(url(name, "change", obj.pk)).status_code == 200, model
        # Runs are made by the scheduler, alerts by rules, nodes register themselves,
        # join rounds by the joins.
        expected = 403 if model in (JobRun, AlertOutbox, Node, JobJoin) else 200
        assert admin_client.get(url(name, "add")).status_code == expected, model


def test_dependency_autocomplete_finds_jobs(admin_client, scenario):
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "scheduler_app",
            "model_name": "jobdependency",
            "field_name": "upstream",
            "term": "inv",
        },
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["invoices"]


def test_dependency_admin_refuses_a_cycle(admin_client, scenario):
    jobs = scenario["jobs"]
    response = admin_client.post(
        url("jobdependency", "add"),
        {
            "upstream": jobs["report"].pk,
            "downstream": jobs["extract"].pk,
            "condition": "success",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "downstream": ["This dependency would create a cycle: report → extract → invoices → report."]
    }
    assert JobDependency.objects.count() == 2
    response = admin_client.post(
        url("jobdependency", "add"),
        {
            "upstream": jobs["heartbeat"].pk,
            "downstream": jobs["old"].pk,
            "condition": "failure",
        },
    )
    assert response.status_code == 302
    edge = JobDependency.objects.get(upstream=jobs["heartbeat"])
    assert (edge.downstream, edge.condition, edge.tenant) == (jobs["old"], "failure", scenario["tenant"])


def test_job_changelist_columns(admin_client, scenario):
    response = admin_client.get(url("job"))
    html = response.content.decode()
    assert listed(response) == ["extract", "heartbeat", "invoices", "old", "report", "crunch"]
    assert "At 02:00 on the last day of the month (Europe/Berlin)" in html
    assert "Every 15 seconds" in html
    assert "Manual: runs only when started by hand or by an upstream job" in html
    assert "2026-03-31 03:00:00 +02:00 (Europe/Berlin)" in html  # invoices' last run, in its own zone
    assert ">failed</span>" in html


def test_jobrun_changelist_columns(admin_client, scenario):
    html = admin_client.get(url("jobrun")).content.decode()
    # One zone for the whole list (the admin's, UTC here), not each job's own.
    assert "2026-03-31 02:00:00 +00:00" in html  # crunch's run (a New York job), in UTC
    assert "America/New_York" not in html and "Europe/Berlin" not in html
    assert "1.25 s" in html
    assert ">running</span>" in html and ">succeeded</span>" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tenant__id__exact={other.pk}", ["crunch"]),
        ("group__id__exact={billing.pk}", ["invoices"]),
        ("enabled__exact=0", ["old"]),
        ("paused__exact=1", ["heartbeat"]),
        ("executor__exact=process", ["crunch"]),
        ("trigger_type=cron", ["extract", "invoices", "crunch"]),
        ("trigger_type=interval", ["heartbeat"]),
        ("trigger_type=date", ["report"]),
        ("trigger_type=manual", ["old"]),
        ("trigger_type=cron&tenant__id__exact={tenant.pk}", ["extract", "invoices"]),
        ("q=invoic", ["invoices"]),
        ("q=month-end", ["invoices"]),
        ("q=cpu_burn", ["crunch"]),
        ("q=globex", ["crunch"]),
        ("q=etl", ["extract"]),
        ("q=nothing-like-this", []),
    ],
)
def test_job_filters_and_search(admin_client, scenario, query, expected):
    response = admin_client.get(url("job") + "?" + query.format(**scenario))
    assert listed(response) == expected


def test_job_filter_sidebar_offers_the_filters(admin_client, scenario):
    response = admin_client.get(url("job"))
    titles = [spec.title for spec in response.context["cl"].filter_specs]
    assert [str(t) for t in titles] == ["tenant", "group", "enabled", "paused", "executor", "trigger"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state__exact=failed", ["invoices"]),
        ("state__exact=queued", ["heartbeat"]),
        ("state__exact=running", ["crunch"]),
        ("reason__exact=dependency", ["invoices"]),
        ("tenant__id__exact={other.pk}", ["crunch"]),
        ("job__group__id__exact={etl.pk}", ["extract"]),
        ("q=503", ["invoices"]),
        ("q=node-b", ["crunch"]),
        ("q=heartbeat", ["heartbeat"]),
    ],
)
def test_jobrun_filters_and_search(admin_client, scenario, query, expected):
    response = admin_client.get(url("jobrun") + "?" + query.format(**scenario))
    assert [run.job.name for run in response.context["cl"].result_list] == expected


@pytest.mark.parametrize(
    ("model", "query", "expected"),
    [
        ("jobgroup", "tenant__id__exact={tenant.pk}", ["billing", "etl"]),
        ("jobgroup", "q=pipeline", ["etl"]),
        ("calendar", "tenant__id__exact={other.pk}", []),
        ("calendar", "q=closed", ["holidays"]),
        ("tenant", "q=glob", ["Globex"]),
        ("jobdependency", "condition__exact=completion", ["invoices → report (completion)"]),
        ("jobdependency", "q=extract", ["extract → invoices (success)"]),
    ],
)
def test_other_filters_and_search(admin_client, scenario, model, query, expected):
    response = admin_client.get(url(model) + "?" + query.format(**scenario))
    assert listed(response) == expected


def test_tenant_and_group_job_counts(admin_client, scenario):
    response = admin_client.get(url("tenant"))
    counts = {t.slug: t._jobs for t in response.context["cl"].result_list}
    assert counts == {"acme": 5, "globex": 1}
    response = admin_client.get(url("jobgroup"))
    assert {g.name: g._jobs for g in response.context["cl"].result_list} == {"billing": 1, "etl": 1, "ops": 1}


# -- adding a job through the form ------------------------------------------------------


@pytest.fixture
def add_form(admin_client, scenario):
    """What the add page's form submits untouched, plus the required choices."""
    response = admin_client.get(url("job", "add"))
    assert response.status_code == 200
    data = form_values(response)
    assert data["trigger_type"] == ["cron"]
    assert data["upstream_edges-TOTAL_FORMS"] == ["0"]
    data.update(
        tenant=[str(scenario["tenant"].pk)],
        name=["payments"],
        task=["demo.sleep"],
        kwargs=['{"seconds": 2}'],
        cron_expression=["0 2 L * *"],
        trigger_timezone=["Europe/Berlin"],
    )
    return data


def post_add(admin_client, data):
    return admin_client.post(url("job", "add"), data)


def child_forms(*children, initial=0):
    """POST data of the job form's child triggers (formset prefix ``child``): one dict of
    field values per child, as a browser submits them."""
    data = {
        "child-TOTAL_FORMS": [str(len(children))],
        "child-INITIAL_FORMS": [str(initial)],
        "child-MIN_NUM_FORMS": ["0"],
        "child-MAX_NUM_FORMS": ["20"],
    }
    for index, child in enumerate(children):
        for name, value in child.items():
            data[f"child-{index}-{name}"] = [value]
    return data


def test_add_job_with_every_section(admin_client, scenario, add_form):
    jobs = scenario["jobs"]
    add_form.update(
        group=[str(scenario["billing"].pk)],
        description=["Collects payments"],
        args=["[]"],
        secret_kwargs=["{}"],
        cron_dialect=["crontab"],
        calendars=[str(scenario["holidays"].pk)],
        priority=["7"],
        executor=["process"],
        max_instances=["2"],
        overlap_policy=["queue"],
        misfire_policy=["run_all"],
        misfire_grace_seconds=["300"],
        timeout_seconds=["45.5"],
        cpu_limit_seconds=["10"],
        memory_limit_mb=["512"],
        routing=["tags"],
        routing_tags=['["eu", "gpu"]'],
        retry_max_attempts=["4"],
        retry_backoff_seconds=["5"],
        retry_backoff_factor=["3"],
        retry_max_backoff_seconds=["120"],
        paused=["on"],
        **{
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(jobs["extract"].pk)],
            "upstream_edges-0-condition": ["failure"],
            "downstream_edges-TOTAL_FORMS": ["1"],
            "downstream_edges-0-downstream": [str(jobs["old"].pk)],
            "downstream_edges-0-condition": ["completion"],
        },
    )
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert response["Location"] == url("job")
    job = Job.objects.get(name="payments")
    assert job.tenant == scenario["tenant"]
    assert job.group == scenario["billing"]
    assert job.description == "Collects payments"
    assert (job.task, job.args, job.kwargs, job.reveal_secret_kwargs()) == (
        "demo.sleep",
        [],
        {"seconds": 2},
        {},
    )
    assert job.trigger == {
        "type": "cron",
        "expression": "0 2 L * *",
        "dialect": "crontab",
        "timezone": "Europe/Berlin",
    }
    assert list(job.calendars.all()) == [scenario["holidays"]]
    assert (job.enabled, job.paused, job.priority, job.executor, job.max_instances) == (
        True,
        True,
        7,
        "process",
        2,
    )
    assert (job.overlap_policy, job.misfire_policy, job.misfire_grace_seconds) == ("queue", "run_all", 300)
    assert (job.timeout_seconds, job.cpu_limit_seconds, job.memory_limit_mb) == (45.5, 10, 512)
    assert (job.routing, job.routing_tags) == ("tags", ["eu", "gpu"])
    assert (
        job.retry_max_attempts,
        job.retry_backoff_seconds,
        job.retry_backoff_factor,
        job.retry_max_backoff_seconds,
    ) == (4, 5, 3, 120)
    up = job.upstream_edges.get()
    assert (up.upstream, up.condition, up.tenant) == (jobs["extract"], "failure", job.tenant)
    down = job.downstream_edges.get()
    assert (down.downstream, down.condition, down.tenant) == (jobs["old"], "completion", job.tenant)


@pytest.mark.parametrize(
    ("fields", "trigger"),
    [
        (
            {
                "trigger_type": ["interval"],
                "interval_seconds": ["90"],
                "interval_jitter": ["3"],
                "trigger_timezone": [""],
                "interval_start": ["2026-01-01T00:00:00+00:00"],
            },
            {"type": "interval", "seconds": 90, "jitter": 3, "start": "2026-01-01T00:00:00+00:00"},
        ),
        (
            {
                "trigger_type": ["date"],
                "run_at": ["2030-06-01T09:30:00"],
                "trigger_timezone": ["Europe/Berlin"],
            },
            {"type": "date", "run_at": "2030-06-01T09:30:00+02:00", "timezone": "Europe/Berlin"},
        ),
        ({"trigger_type": ["manual"]}, {"type": "manual"}),
        (
            {
                "trigger_type": ["cron"],
                "cron_expression": ["0  0 12 ? * MON-FRI"],
                "cron_dialect": ["quartz"],
                "trigger_timezone": [""],
            },
            {"type": "cron", "expression": "0 0 12 ? * MON-FRI", "dialect": "quartz", "timezone": "UTC"},
        ),
        (
            {
                "trigger_type": ["any"],
                **child_forms(
                    {"trigger_type": "cron", "cron_expression": "0 9 * * FRI#3", "trigger_timezone": ""},
                    {"trigger_type": "interval", "interval_seconds": "3600", "trigger_timezone": ""},
                ),
            },
            {
                "type": "any",
                "triggers": [
                    {"type": "cron", "expression": "0 9 * * FRI#3", "dialect": "crontab", "timezone": "UTC"},
                    {"type": "interval", "seconds": 3600},
                ],
            },
        ),
    ],
    ids=["interval", "date-in-zone", "manual", "quartz", "any-of"],
)
def test_add_job_with_each_trigger_type(admin_client, add_form, fields, trigger):
    add_form.update(fields)
    response = post_add(admin_client, add_form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Job.objects.get(name="payments").trigger == trigger


def errors_after_post(admin_client, data):
    before = (Job.objects.count(), JobDependency.objects.count())
    response = post_add(admin_client, data)
    assert response.status_code == 200
    assert (Job.objects.count(), JobDependency.objects.count()) == before
    assert not Job.objects.filter(name="payments").exists()
    form = response.context["adminform"].form
    html = response.content.decode()
    errors = {field: list(messages) for field, messages in form.errors.items()}
    for messages in errors.values():
        for message in messages:  # shown on the page, not only in the form object
            assert str(escape(message)) in html
    return errors


def escape(text):
    from django.utils.html import escape as html_escape

    return html_escape(text)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cron_expression": ["0 25 L * *"]}, {"cron_expression": ["field 2 (hour): '25' is outside 0-23"]}),
        ({"cron_expression": [""]}, {"cron_expression": ["a cron expression is required"]}),
        (
            {"cron_dialect": ["quartz"], "cron_expression": ["0 2 L * *"]},
            {"cron_expression": ["'0 2 L * *' has 5 fields; the quartz dialect expects 6 or 7"]},
        ),
        (
            {"trigger_timezone": ["Mars/Olympus"]},
            {"trigger_timezone": ["Unknown time zone Mars/Olympus: choose an IANA name from the list."]},
        ),
        ({"kwargs": ["{}"]}, {"kwargs": ["task demo.sleep is missing required argument 'seconds'"]}),
        (
            {"kwargs": ['{"seconds": 1, "loud": true}']},
            {"kwargs": ["task demo.sleep has no argument 'loud'"]},
        ),
        (
            {"args": ["[1, 2]"], "kwargs": ["{}"]},
            {"args": ["task demo.sleep takes 1 positional argument(s) but 2 were given"]},
        ),
        ({"kwargs": ["{not json"]}, {"kwargs": ["Enter a valid JSON."]}),
        (
            {"trigger_type": ["interval"], "interval_seconds": [""]},
            {"interval_seconds": ["the interval in seconds is required"]},
        ),
        (
            {
                "trigger_type": ["interval"],
                "interval_seconds": ["60"],
                "interval_start": ["2026-02-01T00:00:00+00:00"],
                "interval_end": ["2026-01-01T00:00:00+00:00"],
            },
            {"interval_end": ["must be after start"]},
        ),
        (
            {"trigger_type": ["date"], "run_at": ["next tuesday"]},
            {"run_at": ["'next tuesday' is not an ISO 8601 date-time (e.g. 2026-12-01T09:00:00+01:00)"]},
        ),
        (
            {"trigger_type": ["all"], **child_forms({"trigger_type": "interval", "interval_seconds": "60"})},
            {"combination": ["trigger.triggers: a combination needs a list of at least 2 triggers"]},
        ),
        ({"name": ["invoices"]}, {"name": ["Tenant Acme already has a job named 'invoices'."]}),
        (
            {"retry_backoff_seconds": ["100"], "retry_max_backoff_seconds": ["10"]},
            {"retry_max_backoff_seconds": ["Must be at least the backoff."]},
        ),
        (
            {"routing": ["tags"], "routing_tags": ["[]"]},
            {"routing_tags": ["Routing by tags needs at least one tag."]},
        ),
    ],
    ids=[
        "bad-cron",
        "empty-cron",
        "quartz-dialect",
        "bad-zone",
        "missing-kwarg",
        "unknown-kwarg",
        "too-many-args",
        "kwargs-not-json",
        "interval-missing",
        "interval-end-before-start",
        "bad-run-at",
        "combination-too-small",
        "duplicate-name",
        "backoff",
        "routing-tags",
    ],
)
def test_validation_errors_are_on_their_field(admin_client, add_form, fields, expected):
    add_form.update(fields)
    assert errors_after_post(admin_client, add_form) == expected


def test_group_of_another_tenant(admin_client, scenario, add_form):
    add_form["group"] = [str(scenario["ops"].pk)]
    assert errors_after_post(admin_client, add_form) == {"group": ["The group belongs to another tenant."]}


def test_calendar_of_another_tenant(admin_client, scenario, add_form):
    globex_cal = Calendar.objects.create(tenant=scenario["other"], name="closures")
    add_form["calendars"] = [str(globex_cal.pk)]
    assert errors_after_post(admin_client, add_form) == {
        "calendars": ["Calendar(s) of another tenant: closures."]
    }


def test_dependency_on_a_job_of_another_tenant(admin_client, scenario, add_form):
    add_form.update(
        {
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(scenario["jobs"]["crunch"].pk)],
            "upstream_edges-0-condition": ["success"],
        }
    )
    response = post_add(admin_client, add_form)
    assert response.status_code == 200
    assert not Job.objects.filter(name="payments").exists()
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.errors == [
        {"upstream": ["Dependencies cannot cross tenants: crunch is in Globex, payments is in Acme."]}
    ]
    assert "Dependencies cannot cross tenants" in response.content.decode()


def test_new_job_cannot_close_a_cycle_through_both_inlines(admin_client, scenario, add_form):
    jobs = scenario["jobs"]
    # report is downstream of extract (extract → invoices → report); the new job would
    # run after report and before extract: a cycle.
    add_form.update(
        {
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(jobs["report"].pk)],
            "upstream_edges-0-condition": ["success"],
            "downstream_edges-TOTAL_FORMS": ["1"],
            "downstream_edges-0-downstream": [str(jobs["extract"].pk)],
            "downstream_edges-0-condition": ["success"],
        }
    )
    before = JobDependency.objects.count()
    response = post_add(admin_client, add_form)
    assert response.status_code == 200
    assert not Job.objects.filter(name="payments").exists()
    assert JobDependency.objects.count() == before
    downstream = response.context["inline_admin_formsets"][1].formset
    assert downstream.errors == [
        {
            "downstream": [
                "This dependency would create a cycle: payments → extract → invoices → report → payments."
            ]
        }
    ]
    assert "would create a cycle" in response.content.decode()


# -- the change page --------------------------------------------------------------------


def test_change_page_shows_schedule_dependencies_and_runs(admin_client, scenario):
    jobs, runs = scenario["jobs"], scenario["runs"]
    invoices = jobs["invoices"]
    before = timezone.now()
    response = admin_client.get(url("job", "change", invoices.pk))
    assert response.status_code == 200
    html = response.content.decode()
    # trigger, in words, and the next fire times in the job's zone
    assert "At 02:00 on the last day of the month (Europe/Berlin)" in html
    assert "Next fire times (Europe/Berlin):" in html
    expected = [display.when(t) for t in next_last_days_of_month(3, before)]
    found = re.findall(r"<li>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \(Europe/Berlin\))</li>", html)
    assert len(found) == 10  # PREVIEW_COUNT
    assert found[:3] == expected
    # the form is filled from the trigger document
    values = form_values(response)
    assert values["trigger_type"] == ["cron"]
    assert values["cron_expression"] == ["0 2 L * *"]
    assert values["trigger_timezone"] == ["Europe/Berlin"]
    assert values["calendars"] == [str(scenario["holidays"].pk)]
    # dependencies both ways
    assert values["upstream_edges-INITIAL_FORMS"] == ["1"]
    assert values["upstream_edges-0-upstream"] == [str(jobs["extract"].pk)]
    assert values["upstream_edges-0-condition"] == ["success"]
    assert values["downstream_edges-INITIAL_FORMS"] == ["1"]
    assert values["downstream_edges-0-downstream"] == [str(jobs["report"].pk)]
    assert values["downstream_edges-0-condition"] == ["completion"]
    assert f'<option value="{jobs["extract"].pk}" selected>extract</option>' in html
    assert f'<option value="{jobs["report"].pk}" selected>report</option>' in html
    # recent runs, linked, in the job's zone
    failed = runs["failed"]
    assert url("jobrun", "change", failed.pk) in html
    assert "2026-03-31 03:00:00 +02:00 (Europe/Berlin)" in html
    assert "upstream finished" in html  # reason
    assert "0.500 s" in html
    assert "RuntimeError: partner API answered 503" in html
    assert url("jobrun") + f"?job__id__exact={invoices.pk}" in html


def test_change_page_of_job_without_runs_or_schedule(admin_client, scenario):
    html = admin_client.get(url("job", "change", scenario["jobs"]["old"].pk)).content.decode()
    assert "No runs yet." in html
    assert "no upcoming fire time" in html
    assert "Manual: runs only when started by hand or by an upstream job" in html


def test_change_page_survives_an_invalid_stored_trigger(admin_client, scenario):
    job = scenario["jobs"]["heartbeat"]
    Job.objects.filter(pk=job.pk).update(trigger={"type": "cron", "expression": "61 * * * *"})
    response = admin_client.get(url("job", "change", job.pk))
    assert response.status_code == 200
    assert (
        "invalid trigger: trigger.expression: field 1 (minute): &#x27;61&#x27; is outside"
        in response.content.decode()
    )
    assert admin_client.get(url("job")).status_code == 200


def test_change_form_saves_a_new_trigger(admin_client, scenario):
    job = scenario["jobs"]["invoices"]
    data = form_values(admin_client.get(url("job", "change", job.pk)))
    data.update(trigger_type=["interval"], interval_seconds=["300"], trigger_timezone=[""])
    response = admin_client.post(url("job", "change", job.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert job.trigger == {"type": "interval", "seconds": 300}
    assert job.upstream_edges.count() == 1 and job.downstream_edges.count() == 1


def test_change_page_dependency_errors_are_visible(admin_client, scenario):
    jobs = scenario["jobs"]
    extract = jobs["extract"]
    data = form_values(admin_client.get(url("job", "change", extract.pk)))
    data.update(
        {
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(jobs["report"].pk)],
            "upstream_edges-0-condition": ["success"],
        }
    )
    response = admin_client.post(url("job", "change", extract.pk), data)
    assert response.status_code == 200
    message = "This dependency would create a cycle: report → extract → invoices → report."
    assert response.context["inline_admin_formsets"][0].formset.errors == [{"upstream": [message]}]
    assert escape(message) in response.content.decode()
    data["upstream_edges-0-upstream"] = [str(extract.pk)]
    response = admin_client.post(url("job", "change", extract.pk), data)
    assert response.context["inline_admin_formsets"][0].formset.errors == [
        {"upstream": ["A job cannot depend on itself."]}
    ]
    assert "A job cannot depend on itself." in response.content.decode()
    assert JobDependency.objects.count() == 2


def test_change_page_cycle_through_both_inlines(admin_client, scenario):
    jobs = scenario["jobs"]
    heartbeat, old = jobs["heartbeat"], jobs["old"]
    data = form_values(admin_client.get(url("job", "change", heartbeat.pk)))
    data.update(
        {
            "upstream_edges-TOTAL_FORMS": ["1"],
            "upstream_edges-0-upstream": [str(old.pk)],
            "upstream_edges-0-condition": ["success"],
            "downstream_edges-TOTAL_FORMS": ["1"],
            "downstream_edges-0-downstream": [str(old.pk)],
            "downstream_edges-0-condition": ["success"],
        }
    )
    response = admin_client.post(url("job", "change", heartbeat.pk), data)
    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][1].formset.errors == [
        {"downstream": ["This dependency would create a cycle: heartbeat → old → heartbeat."]}
    ]
    assert JobDependency.objects.count() == 2
    # Either edge alone is fine.
    data["downstream_edges-TOTAL_FORMS"] = ["0"]
    response = admin_client.post(url("job", "change", heartbeat.pk), data)
    assert response.status_code == 302
    assert heartbeat.upstream_edges.get().upstream == old


def test_jobrun_change_page_is_read_only_and_shows_the_cause(admin_client, scenario):
    runs = scenario["runs"]
    response = admin_client.get(url("jobrun", "change", runs["failed"].pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert url("jobrun", "change", runs["succeeded"].pk) in html  # caused by
    assert "partner API answered 503" in html
    assert 'name="_save"' not in html
    assert admin_client.get(url("jobrun", "add")).status_code == 403


# -- bulk actions -----------------------------------------------------------------------


def act(admin_client, action, objs, model="job", **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objs], **extra}
    return admin_client.post(url(model), data, follow=True)


def redirected_to_list(response, model="job"):
    return response.status_code == 200 and response.redirect_chain == [(url(model), 302)]


@pytest.mark.parametrize(
    ("action", "field", "value", "verb"),
    [
        ("disable_selected", "enabled", False, "Disabled"),
        ("pause_selected", "paused", True, "Paused"),
    ],
)
def test_flag_actions(admin_client, scenario, action, field, value, verb):
    jobs = scenario["jobs"]
    chosen = [jobs["extract"], jobs["invoices"]]
    response = act(admin_client, action, chosen)
    assert redirected_to_list(response)
    assert messages_of(response) == [f"{verb}: 2."]
    state = dict(Job.objects.values_list("name", field))
    assert state["extract"] is value and state["invoices"] is value
    assert state["report"] is not value  # not selected


def test_enable_and_resume_actions(admin_client, scenario):
    jobs = scenario["jobs"]
    response = act(admin_client, "enable_selected", [jobs["old"]])
    assert messages_of(response) == ["Enabled: 1."]
    assert Job.objects.get(name="old").enabled is True
    response = act(admin_client, "resume_selected", [jobs["heartbeat"]])
    assert messages_of(response) == ["Resumed: 1."]
    assert Job.objects.get(name="heartbeat").paused is False


def test_run_now_queues_runs_and_refuses_disabled(admin_client, scenario):
    jobs = scenario["jobs"]
    before = timezone.now()
    response = act(admin_client, "run_selected_now", [jobs["extract"], jobs["heartbeat"], jobs["old"]])
    assert redirected_to_list(response)
    assert messages_of(response) == ["Queued runs: 2.", "Refused old: job is disabled."]
    new = JobRun.objects.filter(reason="manual").order_by("job__name")
    assert [(r.job.name, r.state, r.attempt) for r in new] == [
        ("extract", "queued", 1),
        ("heartbeat", "queued", 1),
    ]
    assert all(r.scheduled_for >= before and r.tenant_id == r.job.tenant_id for r in new)
    assert not JobRun.objects.filter(job=jobs["old"]).exists()


def test_move_to_group_intermediate_page_then_apply(admin_client, scenario):
    jobs = scenario["jobs"]
    chosen = [jobs["heartbeat"], jobs["old"]]
    response = act(admin_client, "move_selected_to_group", chosen)
    assert response.status_code == 200 and response.redirect_chain == []
    assert "admin/scheduler_app/job/move_to_group.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert "Move these 2 jobs:" in html
    assert "<li>acme/heartbeat</li>" in html and "<li>acme/old</li>" in html
    values = form_values_of_plain_form(html)
    assert values["action"] == ["move_selected_to_group"]
    assert sorted(values["_selected_action"]) == sorted(str(j.pk) for j in chosen)
    # only the selected jobs' tenant's groups are offered
    options = re.findall(r'<option value="(\d*)"[^>]*>([^<]*)</option>', html)
    assert sorted(name for _, name in options) == ["(no group)", "billing", "etl"]
    assert not Job.objects.filter(group__isnull=False, name__in=["heartbeat", "old"]).exists()
    values["group"] = [str(scenario["etl"].pk)]
    response = admin_client.post(url("job"), values, follow=True)
    assert redirected_to_list(response)
    assert messages_of(response) == ["Moved: 2."]
    assert set(Job.objects.filter(group=scenario["etl"]).values_list("name", flat=True)) == {
        "extract",
        "heartbeat",
        "old",
    }


def test_move_to_no_group(admin_client, scenario):
    jobs = scenario["jobs"]
    response = act(admin_client, "move_selected_to_group", [jobs["extract"]], apply="1", group="")
    assert redirected_to_list(response)
    assert messages_of(response) == ["Moved: 1."]
    assert Job.objects.get(name="extract").group is None


def test_move_refuses_jobs_of_another_tenant(admin_client, scenario):
    jobs = scenario["jobs"]
    response = act(
        admin_client,
        "move_selected_to_group",
        [jobs["old"], jobs["crunch"]],
        apply="1",
        group=str(scenario["billing"].pk),
    )
    assert redirected_to_list(response)
    assert messages_of(response) == [
        "Moved: 1.",
        "Refused crunch: group 'billing' belongs to another tenant.",
    ]
    assert Job.objects.get(name="old").group == scenario["billing"]
    assert Job.objects.get(name="crunch").group == scenario["ops"]


def test_move_with_a_group_not_offered_shows_the_form_again(admin_client, scenario):
    jobs = scenario["jobs"]
    response = act(
        admin_client, "move_selected_to_group", [jobs["old"]], apply="1", group=str(scenario["ops"].pk)
    )
    assert response.status_code == 200 and response.redirect_chain == []
    assert "Select a valid choice" in response.content.decode()
    assert Job.objects.get(name="old").group is None


def test_delete_action_confirms_then_deletes(admin_client, scenario):
    jobs = scenario["jobs"]
    chosen = [jobs["invoices"], jobs["heartbeat"]]
    response = act(admin_client, "delete_selected", chosen)
    assert response.status_code == 200 and response.redirect_chain == []
    assert "Are you sure you want to delete the selected jobs?" in response.content.decode()
    assert Job.objects.filter(name__in=["invoices", "heartbeat"]).count() == 2
    response = act(admin_client, "delete_selected", chosen, post="yes")
    assert redirected_to_list(response)
    assert messages_of(response) == ["Successfully deleted 2 jobs."]
    assert sorted(Job.objects.values_list("name", flat=True)) == ["crunch", "extract", "old", "report"]
    assert not JobDependency.objects.exists()  # both edges touched invoices
    assert not JobRun.objects.filter(job__name__in=["invoices", "heartbeat"]).exists()
    assert JobRun.objects.count() == 2


def test_delete_from_the_change_page(admin_client, scenario):
    job = scenario["jobs"]["report"]
    response = admin_client.post(url("job", "delete", job.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists()


def test_cancel_queued_runs(admin_client, scenario):
    runs = scenario["runs"]
    response = act(admin_client, "cancel_selected", [runs["queued"], runs["running"]], model="jobrun")
    assert redirected_to_list(response, "jobrun")
    assert messages_of(response) == [
        "Cancelled: 1.",
        f"Refused {runs['running']}: run is running, not queued.",
    ]
    queued = JobRun.objects.get(pk=runs["queued"].pk)
    assert (queued.state, queued.is_final) == ("cancelled", True)
    assert queued.finished_at is not None
    assert JobRun.objects.get(pk=runs["running"].pk).state == "running"


def test_actions_offered(admin_client, scenario):
    response = admin_client.get(url("job"))
    names = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert names == [
        "",
        "enable_selected",
        "disable_selected",
        "pause_selected",
        "resume_selected",
        "run_selected_now",
        "move_selected_to_group",
        "mute_alerts_selected",
        "unmute_alerts_selected",
        "backfill_selected",
        "delete_selected",
    ]
    response = admin_client.get(url("jobrun"))
    names = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert names == ["", "cancel_selected", "stop_selected"]  # no bulk deletion of history


def form_values_of_plain_form(html):
    """Values of the first <form> in the content block (the intermediate page's)."""
    html = html.replace('<form method="post">', '<form id="plain" method="post">', 1)
    parser = _FormValues("plain")
    parser.feed(html)
    return parser.values


# -- calendars --------------------------------------------------------------------------


def test_calendar_dates_added_in_the_admin_reach_the_scheduler(admin_client, scenario):
    holidays = scenario["holidays"]
    version = ConfigVersion.current()
    data = form_values(admin_client.get(url("calendar", "change", holidays.pk)), "calendar_form")
    assert data["dates-INITIAL_FORMS"] == ["1"]
    assert data["dates-0-date"] == ["2030-12-25"]
    data.update({"dates-1-date": ["2030-12-31"], "dates-1-label": ["New Year's Eve"]})
    response = admin_client.post(url("calendar", "change", holidays.pk), data)
    assert response.status_code == 302
    assert scenario["jobs"]["invoices"].excluded_dates() == [dt.date(2030, 12, 25), dt.date(2030, 12, 31)]
    assert ConfigVersion.current() > version


@pytest.mark.parametrize("how", ["delete-page", "action"])
def test_deleting_a_calendar_reaches_the_scheduler(admin_client, scenario, how):
    holidays = scenario["holidays"]
    version = ConfigVersion.current()
    if how == "delete-page":
        response = admin_client.post(url("calendar", "delete", holidays.pk), {"post": "yes"})
        assert response.status_code == 302
    else:
        response = act(admin_client, "delete_selected", [holidays], model="calendar", post="yes")
        assert redirected_to_list(response, "calendar")
    assert not Calendar.objects.exists()
    assert scenario["jobs"]["invoices"].excluded_dates() == []
    assert ConfigVersion.current() > version
