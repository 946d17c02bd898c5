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


def _history(make_job, tenant):
    """An hour of a small installation: jobs that succeed, one that fails now and then
    with an error, a slow one, one running now, and cron jobs due within the hour."""
    from scheduler_app.models import Node

    now = timezone.now()
    jobs = {
        name: make_job(name, trigger={"type": "cron", "expression": cron})
        for name, cron in [
            ("export-orders", "*/5 * * * *"),
            ("sync-rates", "*/2 * * * *"),
            ("nightly-report", "0 * * * *"),
            ("partner-feed", "*/10 * * * *"),
        ]
    }
    for minute in range(58, 0, -1):
        at = now - dt.timedelta(minutes=minute)
        for name, job in jobs.items():
            if minute % {"export-orders": 1, "sync-rates": 2, "nightly-report": 15, "partner-feed": 3}[name]:
                continue
            failing = name == "partner-feed" and minute % 9 == 0
            duration = {"nightly-report": 40.0 + minute % 7, "sync-rates": 0.4}.get(
                name, 1.5 + minute % 4 / 2
            )
            _run(
                job,
                state="failed" if failing else "succeeded",
                is_final=True,
                scheduled_for=at - dt.timedelta(seconds=duration + 0.3 + minute % 5),
                started_at=at - dt.timedelta(seconds=duration),
                finished_at=at,
                duration=duration,
                node="web-1:4242",
                error="ConnectionError: partner API answered 503" if failing else "",
                traceback="",
            )
    _run(
        jobs["nightly-report"],
        state="running",
        scheduled_for=now - dt.timedelta(seconds=12),
        started_at=now - dt.timedelta(seconds=11),
        finished_at=None,
        duration=None,
        error="",
        node="web-1:4242",
    )
    Node.objects.create(
        name="web-1:4242",
        host="web-1",
        incarnation="shot",
        capacity={"thread": 10},
        used={"thread": 1},
        state="active",
        started_at=now - dt.timedelta(hours=3),
        heartbeat_at=now,
        load=0.4,
    )
    return jobs


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_dashboard_reads_in_both_themes_and_updates_itself(site, browser, make_job, tenant, theme):
    """With an hour of real rows: tiles, the charts (inline SVG, no network) and the
    tables render, text on the page keeps its contrast in the theme, and the page
    fetches fresh figures by itself; the README's screenshots come from here."""
    base, _job = site
    _history(make_job, tenant)
    browser.get(base + "/admin/scheduler_app/dashboard/")
    set_theme(browser, theme)
    assert "Server Error" not in browser.title
    tiles = {
        tile.get_attribute("data-figure"): tile.find_element("css selector", ".sa-tile-value").text
        for tile in browser.find_elements("css selector", ".sa-tile")
    }
    assert tiles["running"] == "1" and tiles["failed_24h"] == "6" and tiles["nodes_alive"] == "1"
    charts = browser.find_elements("css selector", "#sa-dashboard-panels svg.sa-chart")
    assert len(charts) >= 3 and all(c.size["width"] > 100 for c in charts)
    text = browser.find_element("css selector", "#content").text
    assert "ConnectionError: partner API answered 503" in text and "nightly-report" in text
    page_bg = rgb(style(browser, "body", "backgroundColor"))
    for selector in ("#sa-dashboard-panels svg.sa-chart", ".sa-tile-value", ".sa-error-line"):
        assert contrast(rgb(style(browser, selector, "color")), page_bg) >= 4.5, (theme, selector)
    before = browser.find_element("css selector", ".sa-tiles").get_attribute("data-generated")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = browser.find_element("css selector", ".sa-tiles").get_attribute("data-generated")
        if now != before:
            break
        time.sleep(0.5)
    assert now != before, "the dashboard did not refresh itself"
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1280, 1500)
    browser.save_screenshot(str(SHOTS / f"dashboard-{theme}.png"))
    browser.set_window_size(1280, 1000)
