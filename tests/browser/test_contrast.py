"""Issue 8 point 7 in a real browser (headless Chromium): on every page of ours, every
piece of text reads against what is behind it (WCAG AA: 4.5:1, 3:1 for large text) in
the light, dark and auto themes (auto following the system's dark preference), so no
fixed colour of ours is left that only works in one theme. Also writes the combined
trigger form's screenshots the README shows."""

from __future__ import annotations

import pytest

from tests.browser import test_pages
from tests.browser.test_pages import SHOTS

browser = test_pages.browser
site = test_pages.site

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every visible element with its own text inside the page's content: its colour against
# the first opaque background behind it (composited over the page), WCAG contrast.
LOW_CONTRAST = """
function parse(c) {
  var m = c.match(/[\\d.]+/g) || [0, 0, 0, 0];
  return [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1];
}
function lum(c) {
  var v = c.slice(0, 3).map(function (x) {
    x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
function over(top, under) {
  var a = top[3];
  return [0, 1, 2].map(function (i) { return top[i] * a + under[i] * (1 - a); }).concat([1]);
}
function background(el) {
  var layers = [];
  for (var e = el; e; e = e.parentElement) {
    var c = parse(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  var base = [255, 255, 255, 1];
  if (!layers.length || layers[layers.length - 1][3] < 1) {
    base = parse(getComputedStyle(document.body).backgroundColor);
  }
  for (var i = layers.length - 1; i >= 0; i--) base = over(layers[i], base);
  return base;
}
var bad = [];
var root = document.getElementById("content") || document.body;
root.querySelectorAll("*").forEach(function (el) {
  var own = Array.prototype.some.call(el.childNodes, function (n) {
    return n.nodeType === 3 && n.textContent.trim();
  });
  if (!own && !(el.tagName === "INPUT" && el.value && el.type !== "hidden")) return;
  if (!el.offsetParent && getComputedStyle(el).position !== "fixed") return;  // not shown
  var s = getComputedStyle(el);
  if (s.visibility === "hidden" || +s.opacity === 0) return;
  // WCAG leaves out disabled controls; text moved off screen (an icon button's label) is not seen
  if (el.disabled || parseFloat(s.textIndent) < -100) return;
  var bg = background(el), fg = over(parse(s.color), bg);
  var a = lum(fg), b = lum(bg);
  var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  var size = parseFloat(s.fontSize), weight = parseInt(s.fontWeight, 10) || 400;
  var need = size >= 24 || (size >= 18.66 && weight >= 700) ? 3 : 4.5;
  if (ratio < need) {
    bad.push({
      text: (el.textContent || el.value).trim().slice(0, 40), tag: el.tagName,
      cls: String(el.className).slice(0, 60), ratio: Math.round(ratio * 100) / 100,
      color: s.color, background: "rgb(" + bg.slice(0, 3).map(Math.round).join(",") + ")"
    });
  }
});
return bad;
"""


def pages(job, run, group):
    return {
        "jobs": "/admin/scheduler_app/job/",
        "job": f"/admin/scheduler_app/job/{job.pk}/change/",
        "job add": "/admin/scheduler_app/job/add/",
        "versions": f"/admin/scheduler_app/job/{job.pk}/history/?a=1&b=2",
        "audit": f"/admin/scheduler_app/job/{job.pk}/audit/",
        "run now": f"/admin/scheduler_app/job/{job.pk}/run/",
        "permissions": f"/admin/scheduler_app/job/{job.pk}/permissions/",
        "group permissions": f"/admin/scheduler_app/jobgroup/{group.pk}/permissions/",
        "runs": "/admin/scheduler_app/jobrun/",
        "run page": f"/admin/scheduler_app/jobrun/{run.pk}/change/",
        "dashboard": "/admin/scheduler_app/dashboard/",
        "nodes": "/admin/scheduler_app/node/",
    }


def use_theme(driver, theme):
    """light / dark: the admin's switch (localStorage); auto-dark: "auto" with the
    system asking for dark."""
    scheme = "dark" if theme == "auto-dark" else "light"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    driver.execute_script(
        "localStorage.setItem('theme', arguments[0]);", "auto" if theme == "auto-dark" else theme
    )
    driver.refresh()


@pytest.fixture
def scene(site):
    import datetime as dt

    from django.utils import timezone

    from scheduler_app.models import JobRun

    base, job = site
    now = timezone.now()
    run = JobRun.objects.create(
        job=job,
        state="failed",
        scheduled_for=now,
        started_at=now,
        finished_at=now,
        duration=1.5,
        error="ValueError: bad invoice 42",
        traceback="Traceback (most recent call last):\n  raise ValueError",
    )
    earlier = now - dt.timedelta(minutes=5)
    JobRun.objects.create(
        job=job, state="succeeded", scheduled_for=earlier, started_at=earlier, finished_at=earlier
    )
    return base, job, run


@pytest.mark.parametrize("theme", ["light", "dark", "auto-dark"])
def test_every_text_of_our_pages_reads_in_every_theme(scene, browser, theme):
    base, job, run = scene
    problems = {}
    for name, path in pages(job, run, job.group).items():
        browser.get(base + path)
        use_theme(browser, theme)
        assert "Server Error" not in browser.title and "Page not found" not in browser.title, name
        if name == "job add":  # the combined trigger's children are part of the form
            from selenium.webdriver.support.ui import Select

            Select(browser.find_element("id", "id_trigger_type")).select_by_value("any")
        dark = browser.execute_script(
            "return matchMedia('(prefers-color-scheme: dark)').matches || "
            "document.documentElement.dataset.theme === 'dark'"
        )
        assert bool(dark) is (theme != "light"), name
        bad = browser.execute_script(LOW_CONTRAST)
        if bad:
            problems[name] = bad
    report = "\n".join(f"{page}: {item}" for page, items in problems.items() for item in items)
    assert not problems, f"low contrast in the {theme} theme:\n{report}"


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_combined_trigger_form_screenshots(site, browser, theme):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, _job = site
    browser.get(base + "/admin/scheduler_app/job/add/")
    browser.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false');")
    use_theme(browser, theme)
    Select(browser.find_element("id", "id_trigger_type")).select_by_value("any")
    browser.find_element("id", "id_child-0-cron_expression").send_keys("0 9 * * MON-FRI")
    Select(browser.find_element("id", "id_child-0-trigger_timezone")).select_by_value("Asia/Shanghai")
    Select(browser.find_element("id", "id_child-1-trigger_type")).select_by_value("interval")
    browser.find_element("id", "id_child-1-interval_seconds").send_keys("3600")
    WebDriverWait(browser, 10).until(
        lambda d: (
            "+08:00 (Asia/Shanghai)"
            in d.find_element("css selector", "[data-child-trigger] .cron-preview").text
        )
    )
    chooser = browser.find_element("id", "id_trigger_type")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -60);", chooser)
    assert not browser.execute_script(LOW_CONTRAST)
    browser.save_screenshot(str(SHOTS / f"job-form-combined-{theme}.png"))
