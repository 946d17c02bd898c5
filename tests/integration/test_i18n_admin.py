"""Every admin page of the scheduler, rendered in Simplified Chinese: Chinese text on it
and no product string left in English.

How "left in English" is found: every msgid of scheduler_app's catalog is a product
string; a text node (or a title/placeholder/aria-label) of the page that *is* one of them
(after Django's capfirst and the label colon) was not translated. Data typed by people
(job names, tasks, expressions) is not in the catalog and so never counts.
"""

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.contrib import admin
from django.urls import reverse

from scheduler_app.models import Job
from tests.integration.test_admin import scenario  # noqa: F401  (fixture)

# The SQLite pass leaves this module out: translated pages are the same on either database.
DB_INDEPENDENT = True
pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "scheduler_app" / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
CJK = re.compile(r"[\u4e00-\u9fff]")


def _catalog_msgids() -> set[str]:
    ids = set()
    for entry in polib.pofile(str(PO)):
        for msgid in filter(None, (entry.msgid, entry.msgid_plural)):
            if "%(" in msgid or "%s" in msgid:  # a template: match its fixed text only
                for part in re.split(r"%\(\w+\)[sdr]|%s", msgid):
                    if len(part.strip(" :.,;()")) >= 8:
                        ids.add(_norm(part.strip(" :;,(")))
            else:
                ids.add(_norm(msgid))
    return {i for i in ids if i}


def _norm(text: str) -> str:
    text = " ".join(text.split()).rstrip(":：").strip()
    return text[:1].lower() + text[1:]


class _Texts(HTMLParser):
    """Visible text nodes and the attributes people read (title, placeholder, aria-label,
    button values), without <script>/<style>."""

    ATTRS = ("title", "placeholder", "aria-label", "alt")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "textarea"):
            self._skip += 1
        values = dict(attrs)
        for name in self.ATTRS:
            if values.get(name):
                self.texts.append(values[name])
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.texts.append(values["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "textarea") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.texts.append(data)


def texts_of(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    return parser.texts


def untranslated(html: str, msgids: set[str]) -> list[str]:
    found = []
    for text in texts_of(html):
        norm = _norm(text)
        if norm in msgids:
            found.append(text.strip())
        else:  # a template's fixed part inside a longer sentence ("Next fire times (UTC):")
            found.extend(m for m in msgids if len(m) >= 12 and m in norm and not CJK.search(norm))
    return sorted(set(found))


def admin_pages(data):
    """(name, url) of every page of the scheduler's admin: changelists, add and change
    forms of every registered model, and the custom views."""
    pages = [
        ("index", reverse("admin:index")),
        ("app index", reverse("admin:app_list", args=["scheduler_app"])),
    ]
    for model in admin.site._registry:
        if model._meta.app_label != "scheduler_app":
            continue
        name = model._meta.model_name
        pages.append((f"{name} changelist", reverse(f"admin:scheduler_app_{name}_changelist")))
        pages.append((f"{name} add", reverse(f"admin:scheduler_app_{name}_add")))
        obj = model.objects.order_by("pk").first()
        assert obj is not None, f"the scenario has no {name}"
        pages.append((f"{name} change", reverse(f"admin:scheduler_app_{name}_change", args=[obj.pk])))
        pages.append((f"{name} history", reverse(f"admin:scheduler_app_{name}_history", args=[obj.pk])))
        pages.append((f"{name} delete", reverse(f"admin:scheduler_app_{name}_delete", args=[obj.pk])))
    invoices = data["jobs"]["invoices"]
    for view in ("run", "history", "audit", "permissions"):
        pages.append((f"job {view}", reverse(f"admin:scheduler_app_job_{view}", args=[invoices.pk])))
    # With two versions the versions page shows the diff of the last two.
    assert invoices.versions.count() >= 2
    pages.append(
        (
            "jobgroup permissions",
            reverse("admin:scheduler_app_jobgroup_permissions", args=[data["etl"].pk]),
        )
    )
    pages.append(("failed runs", reverse("admin:scheduler_app_jobrun_changelist") + "?state__exact=failed"))
    return pages


@pytest.fixture
def zh_client(admin_client):
    admin_client.cookies["django_language"] = "zh-hans"
    return admin_client


@pytest.fixture
def edited_scenario(scenario):  # noqa: F811
    """The scenario with a second version of invoices, so the versions diff has content."""
    from scheduler_app import services

    job = Job.objects.get(pk=scenario["jobs"]["invoices"].pk)
    job.kwargs = {"n": 2}
    services.save_job(job)
    return scenario


# Known gaps the lead is to close (each needs work outside this change); the test fails
# again as soon as one shows up on a page where it is not listed.
KNOWN_GAPS = {
    # ForeignKey fields without verbose_name: Django labels them with the bare field name
    # ("Tenant"), untranslatable. Fixing needs verbose_name=_(...) on the fields and an
    # AlterField migration (none allowed in this change).
    "Tenant": "*",
    "Tenant:": "*",
    "Group": "*",
    "Group:": "*",
    "Job": "*",
    "Job:": "*",
    "User": "*",
    "User:": "*",
    # Version summaries are stored as English text by the services ("created").
    "created": "job history",
}
# The audit trail lists raw model field names (args, kwargs, ...): the audit display is
# being reworked in parallel (issue 8 point 4); it should show the verbose names.
AUDIT_FIELD_NAMES = {f.name for f in Job._meta.get_fields()} | {"versions", "condition"}
# Names of the scenario's objects that happen to equal a msgid (a job named "heartbeat").
DATA = {"heartbeat"}


def _is_known(page: str, text: str) -> bool:
    where = KNOWN_GAPS.get(text)
    if where == "*" or (where and page.startswith(where)):
        return True
    return text in DATA or (page.startswith("job audit") and text in AUDIT_FIELD_NAMES)


def test_every_scheduler_admin_page_is_in_chinese(zh_client, edited_scenario):
    msgids = _catalog_msgids()
    assert len(msgids) > 200
    problems = {}
    pages = admin_pages(edited_scenario)
    assert len(pages) > 40
    for name, address in pages:
        # A delete page that refuses (an active node) sends back to the object's page,
        # which says why: that page and its message are checked too.
        response = zh_client.get(address, follow=name.endswith(" delete"))
        if response.status_code == 403 and name.endswith((" add", " delete")):
            continue  # e.g. runs are made by the scheduler, API keys revoked, not deleted
        assert response.status_code == 200, (name, address, response.status_code)
        html = response.content.decode()
        assert response.headers["Content-Language"] == "zh-hans", name
        assert '<html lang="zh-hans"' in html, name
        assert CJK.search(" ".join(texts_of(html))), f"{name}: no Chinese on the page"
        left = [t for t in untranslated(html, msgids) if not _is_known(name, t)]
        if left:
            problems[f"{name} ({address})"] = left
    report = "\n".join(f"{page}: {left}" for page, left in problems.items())
    assert not problems, f"English product strings on Chinese pages:\n{report}"


def test_the_check_finds_an_english_string(admin_client, scenario):  # noqa: F811
    """The same check on the English page finds the product strings: it cannot pass vacuously."""
    html = admin_client.get(
        reverse("admin:scheduler_app_job_change", args=[scenario["jobs"]["invoices"].pk])
    ).text
    left = untranslated(html, _catalog_msgids())
    assert {"Trigger", "Execution", "Retries", "Recent runs", "Time zone:"} <= set(left)


def test_job_page_details_in_chinese(zh_client, scenario):  # noqa: F811
    invoices = scenario["jobs"]["invoices"]
    page = zh_client.get(reverse("admin:scheduler_app_job_change", args=[invoices.pk])).content.decode()
    assert "每月最后一天 02:00（Europe/Berlin）" in page  # the schedule, described in Chinese
    assert "下次触发时间（Europe/Berlin）：" in page
    runs = zh_client.get(reverse("admin:scheduler_app_jobrun_changelist")).content.decode()
    assert "失败" in runs and "成功" in runs  # run states (choices)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 2 L * *", {"ok": True, "description": "每月最后一天 02:00"}),
        ("0 0 32 * *", {"ok": False, "error": "第 3 个字段（日）：'32' 超出范围 1-31"}),
        (
            "0 0 31 2 *",
            {"ok": False, "error": "'0 0 31 2 *' 永远不会触发：允许的月份（和年份）中没有符合条件的日期"},
        ),
    ],
)
def test_cron_preview_in_chinese(zh_client, expression, expected):
    answer = zh_client.get(reverse("admin:scheduler_app_cron_preview"), {"expression": expression}).json()
    assert {k: answer[k] for k in expected} == expected


def test_cron_preview_in_english_is_unchanged(admin_client):
    answer = admin_client.get(
        reverse("admin:scheduler_app_cron_preview"), {"expression": "0 0 32 * *"}
    ).json()
    assert answer["error"] == "field 3 (day of month): '32' is outside 1-31"


def test_job_form_errors_in_chinese(zh_client, scenario):  # noqa: F811
    from tests.integration.test_admin import form_values

    add = reverse("admin:scheduler_app_job_add")
    data = form_values(zh_client.get(add))
    data.update(
        tenant=str(scenario["tenant"].pk),
        name="nightly",
        task="demo.noop",
        trigger_type="cron",
        cron_expression="0 0 31 2 *",
    )
    page = zh_client.post(add, data).content.decode()
    assert "永远不会触发" in page
    data["cron_expression"] = "0 0 32 * *"
    page = zh_client.post(add, data).content.decode()
    assert "第 3 个字段（日）：&#x27;32&#x27; 超出范围 1-31" in page


def test_dates_and_numbers_follow_the_locale(zh_client):
    """Django's zh_Hans formats and the admin's JavaScript catalog (calendar widget)."""
    from django.utils import formats, translation

    with translation.override("zh-hans"):
        assert formats.date_format(dt.date(2026, 3, 31)) == "2026年3月31日"
    with translation.override("en"):
        assert formats.date_format(dt.date(2026, 3, 31)) == "March 31, 2026"
    catalog = zh_client.get(reverse("admin:jsi18n")).content.decode()
    assert "\\u4e00\\u6708" in catalog or "一月" in catalog  # January, for the date picker


def test_bulk_action_messages_in_chinese(zh_client, scenario):  # noqa: F811
    jobs = scenario["jobs"]
    chosen = [jobs["extract"].pk, jobs["old"].pk]
    answer = zh_client.post(
        reverse("admin:scheduler_app_job_changelist"),
        {"action": "run_selected_now", "_selected_action": chosen},
        follow=True,
    )
    shown = [str(m) for m in answer.context["messages"]]
    assert shown[0] == "已加入队列的运行：1 个。"
    assert shown[1].startswith("已拒绝 old：")
    answer = zh_client.post(
        reverse("admin:scheduler_app_job_changelist"),
        {"action": "pause_selected", "_selected_action": [jobs["extract"].pk]},
        follow=True,
    )
    assert [str(m) for m in answer.context["messages"]] == ["已暂停：1 个。"]
