"""A real browser (Debian's headless Chromium through Selenium) loads the scheduler's
main admin pages in the light and dark themes, checks that our pieces follow the theme
(readable contrast, no fixed colours) and that the job form shows only the chosen
trigger's fields, and saves the screenshots the README shows (docs/screenshots/)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them)")
        pytest.skip("chromium / chromium-driver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(3)
    yield driver
    driver.quit()


@pytest.fixture
def site(live_server, make_job, tenant, django_user_model, browser):
    from scheduler_app import services
    from scheduler_app.models import JobGroup

    django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-for-the-browser")
    group = JobGroup.objects.create(tenant=tenant, name="billing")
    job = make_job(
        "invoices",
        group=group,
        task="demo.echo",
        trigger={"type": "cron", "expression": "0 2 L * *", "timezone": "Asia/Shanghai"},
    )
    job.kwargs = {"limit": 5}
    services.save_job(job, summary="limit")
    browser.get(live_server.url + "/admin/login/")
    browser.find_element("name", "username").send_keys("admin")
    browser.find_element("name", "password").send_keys("pw-for-the-browser")
    browser.find_element("css selector", "input[type=submit]").click()
    from selenium.webdriver.support.ui import WebDriverWait

    # the click returns before the next page has loaded (asserting at once failed under load)
    WebDriverWait(browser, 20).until(lambda d: "login" not in d.current_url)
    assert "/admin/" in browser.current_url
    return live_server.url, job


def rgb(text):
    values = [float(v) for v in re.findall(r"[\d.]+", text)[:3]]
    return values


def luminance(colour):
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def set_theme(driver, theme):
    driver.execute_script("localStorage.setItem('theme', arguments[0]);", theme)
    driver.refresh()
    assert driver.execute_script("return document.documentElement.dataset.theme") == theme


def style(driver, selector, prop):
    return driver.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0]))[arguments[1]];", selector, prop
    )


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_main_pages_in_both_themes(site, browser, theme):
    base, job = site
    pages = {
        "jobs": "/admin/scheduler_app/job/",
        "job": f"/admin/scheduler_app/job/{job.pk}/change/",
        "versions": f"/admin/scheduler_app/job/{job.pk}/history/?a=1&b=2",
        "audit": f"/admin/scheduler_app/job/{job.pk}/audit/",
        "run": f"/admin/scheduler_app/job/{job.pk}/run/",
        "permissions": f"/admin/scheduler_app/job/{job.pk}/permissions/",
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    backgrounds = {}
    for name, path in pages.items():
        browser.get(base + path)
        set_theme(browser, theme)
        assert "Server Error" not in browser.title and "Page not found" not in browser.title, (
            name,
            browser.title,
        )
        body_bg = rgb(style(browser, "body", "backgroundColor"))
        body_fg = rgb(style(browser, "body", "color"))
        backgrounds[name] = body_bg
        assert contrast(body_bg, body_fg) >= 7, (name, theme, body_bg, body_fg)
        if name == "versions":
            for cell in ("table.diff td.old", "table.diff td.new"):
                bg, fg = rgb(style(browser, cell, "backgroundColor")), rgb(style(browser, cell, "color"))
                assert contrast(bg, fg) >= 4.5, (cell, theme, bg, fg)
        browser.save_screenshot(str(SHOTS / f"{name}-{theme}.png"))
    dark = luminance(backgrounds["jobs"]) < 0.2
    assert dark is (theme == "dark")
    assert all(bg == backgrounds["jobs"] for bg in backgrounds.values()), backgrounds  # every page follows


def test_job_form_shows_only_the_chosen_trigger_fields(site, browser):
    from selenium.webdriver.support.ui import Select

    base, job = site
    browser.get(base + f"/admin/scheduler_app/job/{job.pk}/change/")

    def visible(field):
        return browser.find_element("id", f"id_{field}").is_displayed()

    assert visible("cron_expression") and visible("trigger_timezone")
    assert not visible("interval_seconds") and not visible("run_at") and not visible("combination")
    # the live preview sits under the field, in the job's zone, and does not stretch the input
    preview = browser.find_element("css selector", ".cron-preview")
    assert "+08:00 (Asia/Shanghai)" in preview.text
    field = browser.find_element("id", "id_cron_expression")
    # exact (sub-pixel) boxes: Selenium's rounded locations are off by one at fractional offsets
    top, bottom = browser.execute_script(
        "return [arguments[0].getBoundingClientRect().top, arguments[1].getBoundingClientRect().bottom]",
        preview,
        field,
    )
    assert top >= bottom - 0.5, (top, bottom)
    Select(browser.find_element("id", "id_trigger_type")).select_by_value("interval")
    assert visible("interval_seconds") and visible("interval_start") and not visible("cron_expression")
    Select(browser.find_element("id", "id_trigger_type")).select_by_value("manual")
    assert not visible("trigger_timezone") and not visible("interval_seconds")
    # the zone search narrows the select; an unknown name says so and selects nothing new
    Select(browser.find_element("id", "id_trigger_type")).select_by_value("cron")
    search = browser.find_element("id", "id_trigger_timezone_search")
    search.send_keys("Kolkata")
    assert (
        Select(browser.find_element("id", "id_trigger_timezone")).first_selected_option.text == "Asia/Kolkata"
    )
    search.clear()
    search.send_keys("Mars/Olympus")
    assert "No time zone matches" in browser.find_element("css selector", ".zone-search-note").text
    browser.save_screenshot(str(SHOTS / "job-form-light.png"))


def test_a_plugin_trigger_as_a_child_shows_its_settings_field(site, browser, tenant):
    """The example plugin's business_days type inside an any trigger: the child shows the
    plugin's settings field (not "Advanced (JSON)" nor the cron fields) and saves."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from scheduler_app.models import Job

    base, _job = site
    browser.get(base + "/admin/scheduler_app/job/add/")

    def visible(element_id):
        return browser.find_element("id", element_id).is_displayed()

    Select(browser.find_element("id", "id_tenant")).select_by_value(str(tenant.pk))
    Select(browser.find_element("id", "id_trigger_type")).select_by_value("any")
    assert not visible("id_child-0-plugin_config") and visible("id_child-0-cron_expression")
    browser.find_element("id", "id_child-0-cron_expression").send_keys("0 9 * * *")
    Select(browser.find_element("id", "id_child-1-trigger_type")).select_by_value("business_days")
    assert visible("id_child-1-plugin_config")
    assert not visible("id_child-1-cron_expression") and not visible("id_child-1-document")
    assert (
        "every (integer, required)"
        in browser.find_element("css selector", "#id_child-1-plugin_config ~ .help").text
    )
    browser.find_element("id", "id_child-1-plugin_config").send_keys('{"every": 2, "at": "09:30"}')
    browser.find_element("id", "id_name").send_keys("settle")
    Select(browser.find_element("id", "id_task")).select_by_value("demo.noop")
    kwargs = browser.find_element("id", "id_kwargs")
    kwargs.clear()
    kwargs.send_keys("{}")
    browser.find_element("css selector", "input[name=_save]").click()
    WebDriverWait(browser, 10).until(lambda d: Job.objects.filter(name="settle").exists())
    child = Job.objects.get(name="settle").trigger["triggers"][1]
    assert (child["type"], child["every"], child["at"]) == ("business_days", 2, "09:30")


def test_combined_trigger_children_and_tenant_calendars(site, browser, tenant, other_tenant):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from scheduler_app.models import Calendar, Job

    Calendar.objects.create(tenant=tenant, name="holidays")
    Calendar.objects.create(tenant=other_tenant, name="closures")
    base, _job = site
    browser.get(base + "/admin/scheduler_app/job/add/")
    wait = WebDriverWait(browser, 10)

    def visible(element_id):
        return browser.find_element("id", element_id).is_displayed()

    # the calendar boxes (SelectFilter2) follow the tenant
    def available():
        wait.until(lambda d: d.find_elements("id", "id_calendars_from"))
        return [o.text for o in Select(browser.find_element("id", "id_calendars_from")).options]

    assert sorted(available()) == ["closures", "holidays"]  # no tenant chosen yet
    Select(browser.find_element("id", "id_tenant")).select_by_value(str(tenant.pk))
    assert available() == ["holidays"]
    Select(browser.find_element("id", "id_tenant")).select_by_value(str(other_tenant.pk))
    assert available() == ["closures"]
    Select(browser.find_element("id", "id_tenant")).select_by_value(str(tenant.pk))
    assert available() == ["holidays"]

    # all/any: the children, each showing only its type's fields, with the live preview
    Select(browser.find_element("id", "id_trigger_type")).select_by_value("any")
    assert visible("id_combination") and not visible("id_cron_expression")
    assert visible("id_child-0-cron_expression") and not visible("id_child-0-interval_seconds")
    browser.find_element("id", "id_child-0-cron_expression").send_keys("0 9 * * MON-FRI")
    Select(browser.find_element("id", "id_child-0-trigger_timezone")).select_by_value("Asia/Shanghai")
    preview = "#id_child-0-cron_expression ~ .cron-preview, [data-child-trigger] .cron-preview"
    wait.until(lambda d: "+08:00 (Asia/Shanghai)" in d.find_element("css selector", preview).text)
    Select(browser.find_element("id", "id_child-1-trigger_type")).select_by_value("interval")
    assert visible("id_child-1-interval_seconds") and not visible("id_child-1-cron_expression")
    browser.find_element("id", "id_child-1-interval_seconds").send_keys("3600")
    # "Add another child trigger" clones the empty form, with its own preview
    browser.find_element("css selector", "button.sa-add-child").click()
    assert browser.find_element("id", "id_child-TOTAL_FORMS").get_attribute("value") == "3"
    third = browser.find_element("id", "id_child-2-cron_expression")
    third.send_keys("30 6 * * *")
    wait.until(
        lambda d: (
            len([p for p in d.find_elements("css selector", "[data-child-trigger] .cron-preview") if p.text])
            >= 2
        )
    )
    # (the README's screenshots of this form: tests/browser/test_contrast.py)

    browser.find_element("id", "id_name").send_keys("combined")
    Select(browser.find_element("id", "id_task")).select_by_value("demo.noop")
    kwargs = browser.find_element("id", "id_kwargs")
    kwargs.clear()
    kwargs.send_keys("{}")
    browser.find_element("css selector", "input[name=_save]").click()
    wait.until(lambda d: Job.objects.filter(name="combined").exists())
    assert Job.objects.get(name="combined").trigger == {
        "type": "any",
        "triggers": [
            {
                "type": "cron",
                "expression": "0 9 * * MON-FRI",
                "dialect": "crontab",
                "timezone": "Asia/Shanghai",
            },
            {"type": "interval", "seconds": 3600, "timezone": "UTC"},
            {"type": "cron", "expression": "30 6 * * *", "dialect": "crontab", "timezone": "UTC"},
        ],
    }
