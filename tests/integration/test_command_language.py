"""Issue 8 points 5 and 6: the management commands' help and messages in the language
of ``LANGUAGE_CODE`` (the demo reads it from ``DJANGO_LANGUAGE_CODE``), checked on real
``manage.py`` processes; English stays the default."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u4e00-\u9fff]")


def manage(*args, language=None, **env):
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env}
    environ.pop("DJANGO_LANGUAGE_CODE", None)
    if language:
        environ["DJANGO_LANGUAGE_CODE"] = language
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


HELP = [
    (("jobctl", "--help"), "停止触发器触发"),
    (("jobctl", "list", "--help"), "仅列出此租户的作业"),
    (("jobctl", "backfill", "--help"), "为作业触发器在 --from 到 --to 之间"),
    (("cronpreview", "--help"), "描述 cron 表达式"),
    (("importjobs", "--help"), "从作业文件"),
    (("runscheduler", "--help"), "在本机运行调度器"),
    (("backup", "--help"), "将备份写入 FILE"),
    (("restore", "--help"), "备份文件的路径"),
    (("apikey", "create", "--help"), "密钥所有者的用户名"),
]


@pytest.mark.parametrize(("args", "chinese"), HELP, ids=[" ".join(a) for a, _ in HELP])
def test_help_in_chinese(args, chinese):
    result = manage(*args, language="zh-hans")
    assert result.returncode == 0, result.stderr
    assert chinese in result.stdout, result.stdout


def test_help_is_english_by_default():
    for args in (("jobctl", "list", "--help"), ("cronpreview", "--help"), ("runscheduler", "--help")):
        result = manage(*args)
        assert result.returncode == 0 and not CJK.search(result.stdout), result.stdout


def test_messages_in_chinese():
    result = manage("cronpreview", "0 0 32 * *", language="zh-hans")
    assert result.returncode == 2
    assert "错误：第 3 个字段（日）：'32' 超出范围 1-31" in result.stderr
    result = manage(
        "cronpreview", "0 2 L * *", "--count", "1", "--timezone", "Asia/Shanghai", language="zh-hans"
    )
    assert result.stdout.splitlines()[0] == "每月最后一天 02:00（Asia/Shanghai）" or result.stdout.startswith(
        "每月最后一天 02:00"
    ), result.stdout
    result = manage("jobctl", "status", "nameless", language="zh-hans")
    assert result.returncode == 1 and "'nameless'：作业请写作 TENANT/NAME" in result.stderr
    result = manage("importjobs", language="zh-hans")
    assert "请给出作业文件" in result.stderr


def test_messages_in_english_by_default():
    result = manage("cronpreview", "0 0 32 * *")
    assert "error: field 3 (day of month): '32' is outside 1-31" in result.stderr
    result = manage("jobctl", "status", "nameless")
    assert "'nameless': name jobs as TENANT/NAME" in result.stderr


def test_system_checks_in_chinese():
    result = manage("check", language="zh-hans", SCHEDULER_JOB_STORE="bogus")
    assert result.returncode == 1
    assert "scheduler_app.E002" in result.stderr and "不是已知的作业存储" in result.stderr, result.stderr
    assert "请使用以下之一：memory" in result.stderr
