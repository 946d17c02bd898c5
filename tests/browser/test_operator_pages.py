"""The run list's auto-refresh and the run page in a real browser (headless Chromium):
a run recorded while the list is open appears without a reload once "auto-refresh" is
ticked; the run page's traceback and timeline read in the light and dark themes."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.utils import timezone

from tests.browser import test_pages
from tests.browser.test_pages import SHOTS, contrast, rgb, set_theme, style

# The same browser and demo site as the main pages' test.
browser = test_pages.browser
site = test_pages.site

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _run(job, **fields):
    from scheduler_app.models import JobRun

    now = timezone.now()
    values = {
        "state": "failed",
        "scheduled_for": now - dt.timedelta(seconds=3),
        "started_at": now - dt.timedelta(seconds=2),
        "finished_at": now,
        "duration": 2.0,
        "error": "ValueError: bad invoice 42\nmore",
        "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    raise ValueError',
        **fields,
    }
    return JobRun.objects.create(job=job, **values)


def test_run_list_refreshes_itself_when_asked(site, browser):
    base, job = site
    _run(job)
    browser.get(base + "/admin/scheduler_app/jobrun/")
    rows = browser.find_elements("css selector", "#result_list tbody tr")
    assert len(rows) == 1
    browser.find_element("id", "sa-runlist-auto").click()
    _run(job, scheduled_for=timezone.now() - dt.timedelta(seconds=1), state="succeeded", error="")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if len(browser.find_elements("css selector", "#result_list tbody tr")) == 2:
            break
        time.sleep(0.5)
    assert len(browser.find_elements("css selector", "#result_list tbody tr")) == 2
    assert int(browser.find_element("id", "sa-runlist-refresh").get_attribute("data-refreshes")) >= 1
    # when it refreshed: seconds and the browser's UTC offset, not a locale time like "2:05 PM"
    updated = browser.find_element("id", "sa-runlist-updated").text
    assert re.fullmatch(r"\(\d\d:\d\d:\d\d [+-]\d\d:\d\d\)", updated), updated
    # the choice is remembered
    browser.refresh()
    assert browser.find_element("id", "sa-runlist-auto").is_selected()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_run_page_reads_in_both_themes(site, browser, theme):
    base, job = site
    run = _run(job, cpu_seconds=0.016044, peak_memory_mb=12.34)
    browser.get(base + f"/admin/scheduler_app/jobrun/{run.pk}/change/")
    set_theme(browser, theme)
    assert "Server Error" not in browser.title
    pre = "pre.sa-traceback"
    assert style(browser, pre, "whiteSpace") == "pre"
    assert "monospace" in style(browser, pre, "fontFamily") or "Mono" in style(browser, pre, "fontFamily")
    bg, fg = rgb(style(browser, pre, "backgroundColor")), rgb(style(browser, pre, "color"))
    assert contrast(bg, fg) >= 4.5, (theme, bg, fg)
    text = browser.find_element("css selector", "#content").text
    assert "0.016 s" in text and "12.3 MB" in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.execute_script("document.querySelector('table.sa-timeline').scrollIntoView();")
    browser.save_screenshot(str(SHOTS / f"runpage-{theme}.png"))
    browser.get(base + f"/admin/scheduler_app/job/{job.pk}/change/")
    set_theme(browser, theme)
    chart = "svg.sa-chart-history"
    chart_fg = rgb(style(browser, chart, "color"))
    page_bg = rgb(style(browser, "body", "backgroundColor"))
    assert contrast(chart_fg, page_bg) >= 4.5, (theme, chart_fg, page_bg)
