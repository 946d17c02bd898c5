"""Languages: the locale middleware and switcher of the demo, the shipped catalogs."""

import gettext
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "scheduler_app" / "locale" / "zh_Hans" / "LC_MESSAGES"

needs_gettext = pytest.mark.skipif(
    shutil.which("msgfmt") is None or shutil.which("xgettext") is None,
    reason="GNU gettext is not installed (.ci/run installs it)",
)


def _messages_tool():
    spec = importlib.util.spec_from_file_location("messages_tool", ROOT / "tools" / "messages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def login_page(client, **headers):
    return client.get(reverse("admin:login"), headers=headers)


@pytest.mark.django_db
def test_english_by_default(client):
    page = login_page(client)
    assert page.headers["Content-Language"] == "en"
    assert '<html lang="en"' in page.text
    assert "Log in" in page.text


@pytest.mark.django_db
def test_accept_language_chinese(client):
    page = login_page(client, accept_language="zh-CN,zh;q=0.9")
    assert page.headers["Content-Language"] == "zh-hans"
    assert "调度器管理" in page.text  # the demo's own title
    assert "登录" in page.text  # Django's admin catalog


@pytest.mark.django_db
@pytest.mark.parametrize("cookie", ["fr", "de-at", "xx-yy", "", "../../etc", "en" * 300])
def test_language_cookie_we_do_not_ship_falls_back_to_english(client, cookie):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = cookie
    page = login_page(client)
    assert page.status_code == 200
    assert page.headers["Content-Language"] == "en"
    assert "Log in" in page.text


@pytest.mark.django_db
@pytest.mark.parametrize("cookie", ["zh-hant", "zh-tw", "zh"])
def test_other_chinese_variants_get_the_chinese_we_ship(client, cookie):
    """Django's variant fallback: a Chinese reader gets Simplified Chinese, not English."""
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = cookie
    assert login_page(client).headers["Content-Language"] == "zh-hans"


@pytest.mark.django_db
def test_language_cookie_wins_over_accept_language(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert login_page(client, accept_language="zh-CN").headers["Content-Language"] == "en"
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    assert login_page(client, accept_language="en").headers["Content-Language"] == "zh-hans"


@pytest.mark.django_db
def test_switcher_offers_english_and_chinese_and_switches(admin_client):
    index = admin_client.get(reverse("admin:index"))
    assert f'action="{reverse("set_language")}"' in index.text
    assert '<option value="en" lang="en" selected>English</option>' in index.text
    assert '<option value="zh-hans" lang="zh-hans">简体中文</option>' in index.text
    # Without JavaScript: a plain form POST, then back to the page the user was on.
    answer = admin_client.post(reverse("set_language"), {"language": "zh-hans", "next": "/admin/"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/"
    assert answer.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    index = admin_client.get(reverse("admin:index"))
    assert '<html lang="zh-hans"' in index.text
    assert '<option value="zh-hans" lang="zh-hans" selected>简体中文</option>' in index.text
    assert "调度器" in index.text and "切换语言" in index.text


@pytest.mark.django_db
def test_switcher_refuses_a_language_we_do_not_ship(admin_client):
    # Django ships French for its own apps, so set_language stores the cookie; the locale
    # middleware only takes languages from LANGUAGES, so the page stays English.
    admin_client.post(reverse("set_language"), {"language": "fr", "next": "/admin/"})
    index = admin_client.get(reverse("admin:index"))
    assert index.headers["Content-Language"] == "en"
    assert '<option value="en" lang="en" selected>English</option>' in index.text


def test_switcher_does_not_redirect_off_site(client):
    answer = client.post(reverse("set_language"), {"language": "zh-hans", "next": "https://evil.example/"})
    assert answer.headers["Location"] == "/"


def test_app_strings_are_translated_at_runtime():
    with translation.override("zh-hans"):
        from django.utils.translation import gettext as _

        assert _("Versions") == "版本"
        assert _("Audit trail") == "审计记录"
    with translation.override("en"):
        assert translation.gettext("Versions") == "Versions"


def test_committed_mo_matches_po():
    """The .mo shipped in the wheel is the compiled .po (no build step compiles it)."""
    import polib

    po = polib.pofile(str(CATALOG / "django.po"))
    with (CATALOG / "django.mo").open("rb") as fh:
        catalog = gettext.GNUTranslations(fh)._catalog
    expected = {}
    for e in po.translated_entries():
        key = f"{e.msgctxt}\x04{e.msgid}" if e.msgctxt else e.msgid
        if e.msgid_plural:
            for n, text in e.msgstr_plural.items():
                expected[(key, int(n))] = text
        else:
            expected[key] = e.msgstr
    got = {k: v for k, v in catalog.items() if k != ""}
    assert got == expected, "django.mo is stale: run ./dev messages and commit the .mo"
    assert po.percent_translated() == 100, [e.msgid for e in po.untranslated_entries()]


def test_package_data_ships_the_catalogs():
    """setuptools package-data (what the wheel contains) matches the locale files."""
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "scheduler_app"
    ]
    app = ROOT / "scheduler_app"
    shipped = {p for pattern in patterns for p in app.glob(pattern)}
    for name in ("django.po", "django.mo"):
        assert CATALOG / name in shipped


@needs_gettext
@pytest.mark.slow
def test_makemessages_would_add_no_untranslated_msgid():
    """CI: makemessages over a copy of the tree must find nothing that lacks a translation,
    and the committed .mo files must match their .po. Fix with ./dev messages."""
    problems = _messages_tool().check()
    assert problems == []


@needs_gettext
@pytest.mark.slow
def test_the_check_notices_a_new_untranslated_string(tmp_path, monkeypatch):
    tool = _messages_tool()
    for name in ["scheduler_app", "project", "templates", "tools"]:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    template = tmp_path / "scheduler_app" / "templates" / "admin" / "scheduler_app" / "object_page.html"
    template.write_text(template.read_text() + '{% translate "A brand-new sentence" %}')
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    assert tool.check() == [
        "scheduler_app/locale/zh_Hans/LC_MESSAGES/django.po: no translation for 'A brand-new sentence'"
    ]
    # ./dev messages (update) adds it to the .po, compiles, and reports it.
    result = subprocess.run(
        [sys.executable, str(tmp_path / "tools" / "messages.py"), "update"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "'A brand-new sentence'" in result.stdout
    assert 'msgid "A brand-new sentence"' in (tmp_path / CATALOG.relative_to(ROOT) / "django.po").read_text()


@pytest.mark.parametrize(
    ("command", "chinese"),
    [
        ("backup", "将备份写入 FILE"),
        ("restore", "备份文件的路径"),
        ("exportjobs", "仅导出此租户"),
        ("migratejobs", "打印将要迁移的内容"),
        ("prunejobruns", "保留在这么多天内结束的运行"),
        ("rotatekeys", "每个事务处理的作业数"),
        ("apikey", "为用户创建密钥并打印"),
    ],
)
def test_command_help_in_chinese(command, chinese):
    """Option help is translated when the parser is built (gettext, not gettext_lazy:
    argparse cannot wrap lazy strings), so in the language active then."""
    from django.core.management import load_command_class

    def help_text(language):
        with translation.override(language):
            return (
                load_command_class("scheduler_app", command).create_parser("manage.py", command).format_help()
            )

    assert chinese in help_text("zh-hans")
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in help_text("en"))
