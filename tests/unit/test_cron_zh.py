"""Chinese cron descriptions, cron errors and trigger descriptions (engine/cron_zh.py)."""

from datetime import UTC, datetime

import pytest

from scheduler_app.engine import cron_zh, triggerspec
from scheduler_app.engine.cron import CronExpression, CronSyntaxError

DESCRIPTIONS = [
    ("0 2 L * *", "crontab", "每月最后一天 02:00"),
    ("0 9 * * MON-FRI", "crontab", "每周一至周五 09:00"),
    ("0 9 * * 1-5", "crontab", "每周一至周五 09:00"),
    ("30 8 * * *", "crontab", "每天 08:30"),
    ("0 8,12,18 * * *", "crontab", "每天 08:00、12:00、18:00"),
    ("5,10 0 * * *", "crontab", "每天 00:05、00:10"),
    ("* * * * *", "crontab", "每分钟"),
    ("*/5 * * * *", "crontab", "每5分钟"),
    ("0 * * * *", "crontab", "每小时整点"),
    ("30 * * * *", "crontab", "每小时第30分钟"),
    ("0 9-17 * * 1-5", "crontab", "每周一至周五 9点至17点每小时整点"),
    ("*/15 9-17 * * *", "crontab", "9点至17点每15分钟"),
    ("0 */2 * * *", "crontab", "每2小时的整点"),
    ("15 */2 * * *", "crontab", "每2小时的第15分钟"),
    ("0 0 1 1 *", "crontab", "每年1月1日 00:00"),
    ("@yearly", "crontab", "每年1月1日 00:00"),
    ("@weekly", "crontab", "每周日 00:00"),
    ("0 0 1,15 * *", "crontab", "每月1日、15日 00:00"),
    ("0 0 1-7 * *", "crontab", "每月1日至7日 00:00"),
    ("0 0 */3 * *", "crontab", "每月从1日起每3天 00:00"),
    ("0 0 15 1-3 *", "crontab", "每年1月至3月的15日 00:00"),
    ("0 0 * 1,7 *", "crontab", "每年1月、7月的每天 00:00"),
    ("0 0 * 6 1-5", "crontab", "每年6月的每周一至周五 00:00"),
    ("0 0 * * 0,6", "crontab", "每周日、周六 00:00"),
    # crontab ORs two restricted day fields, ANDs them when one starts with '*'
    ("0 0 1 * 1", "crontab", "每月1日或每周一 00:00"),
    ("0 0 1-7 * 1", "crontab", "每月1日至7日或每周一 00:00"),
    ("0 0 */7 * 1", "crontab", "每月从1日起每7天中的周一 00:00"),
    ("0 0 * * 5L", "crontab", "每月最后一个周五 00:00"),
    ("0 0 * * 5#3", "crontab", "每月第三个周五 00:00"),
    ("0 0 * 2 5L", "crontab", "每年2月最后一个周五 00:00"),
    ("0 0 LW * *", "crontab", "每月最后一个工作日 00:00"),
    ("0 0 15W * *", "crontab", "每月离15日最近的工作日 00:00"),
    ("0 0 L-3 * *", "crontab", "每月最后一天前3天 00:00"),
    ("*/10 * * * * ?", "quartz", "每10秒"),
    ("30 */5 * * * ?", "quartz", "每5分钟的第30秒"),
    ("15 30 10 * * ?", "quartz", "每天 10:30:15"),
    ("0 0 12 ? * 2-6 2026", "quartz", "2026年每周一至周五 12:00"),
    ("0 0 12 1 * ? 2026", "quartz", "2026年每月1日 12:00"),
    ("0 0 12 ? JAN MON-FRI 2026", "quartz", "2026年1月的每周一至周五 12:00"),
    ("0 15 10 ? * 6L 2026-2028", "quartz", "2026年至2028年每月最后一个周五 10:15"),
]


@pytest.mark.parametrize(("expression", "dialect", "chinese"), DESCRIPTIONS, ids=[d[0] for d in DESCRIPTIONS])
def test_describe_in_chinese(expression, dialect, chinese):
    expr = CronExpression.parse(expression, dialect=dialect)
    assert expr.describe("zh-hans") == chinese
    assert expr.describe("zh_Hans") == chinese
    assert expr.describe("en") != chinese  # English stays the default
    assert expr.describe() == expr.describe("en")


@pytest.mark.parametrize("language", ["zh", "zh-hans", "zh-Hans", "ZH-CN", "zh_TW"])
def test_every_chinese_tag_gets_chinese(language):
    assert CronExpression.parse("0 2 L * *").describe(language) == "每月最后一天 02:00"


@pytest.mark.parametrize("language", ["en", "en-us", "fr", "", "zhx"])
def test_other_languages_get_english(language):
    assert CronExpression.parse("0 2 L * *").describe(language) == "At 02:00 on the last day of the month"


ERRORS = [
    ("0 0 32 * *", "crontab", "第 3 个字段（日）：'32' 超出范围 1-31"),
    ("61 * * * *", "crontab", "第 1 个字段（分钟）：'61' 超出范围 0-59"),
    ("0 0 * FOO *", "crontab", "第 4 个字段（月）：'FOO' 不是月份数字或名称（JAN-DEC）"),
    ("0 0 * * MON#6", "crontab", "第 5 个字段（星期）：'MON#6' 含有 #6；# 后的序号必须是 1-5"),
    ("*/0 * * * *", "crontab", "第 1 个字段（分钟）：'*/0' 的步长为 0；步长必须在 1 到 59 之间"),
    ("0 0 1,,2 * *", "crontab", "第 3 个字段（日）：'1,,2' 含有空的列表项"),
    ("0 0 * *", "crontab", "'0 0 * *' 有 4 个字段；crontab 方言需要 5、6 或 7 个"),
    (
        "@sometimes",
        "crontab",
        "'@sometimes' 不是已知的宏（请使用 @yearly、@annually、@monthly、@weekly、@daily、@midnight 或 @hourly）",
    ),
    ("0 0 31 2 *", "crontab", "'0 0 31 2 *' 永远不会触发：允许的月份（和年份）中没有符合条件的日期"),
    ("0 0 30 2 ?", "quartz", "'0 0 30 2 ?' 有 5 个字段；quartz 方言需要 6 或 7 个"),
    (
        "0 0 0 * * 1",
        "quartz",
        "第 6 个字段（星期）：'1' 与“日”字段的 '*' 冲突：quartz 方言要求两个日期字段中恰好一个为 '?'",
    ),
    ("0 0 0 ? * ?", "quartz", "第 6 个字段（星期）：'?' 不能同时用于两个日期字段；只在其中一个写 '?'"),
]


@pytest.mark.parametrize(("expression", "dialect", "chinese"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_in_chinese(expression, dialect, chinese):
    with pytest.raises(CronSyntaxError) as caught:
        CronExpression.parse(expression, dialect=dialect)
    assert cron_zh.error_message(caught.value) == chinese
    assert cron_zh.reason(caught.value.reason) != caught.value.reason


def test_unknown_zone_error_in_chinese():
    with pytest.raises(CronSyntaxError) as caught:
        CronExpression.parse("0 0 * * *", timezone="Mars/Olympus")
    assert cron_zh.error_message(caught.value) == "'Mars/Olympus' 不是已知的 IANA 时区"


def test_every_english_reason_in_the_engine_has_a_chinese_pattern():
    """A reason added to cron.py without a Chinese pattern fails here."""
    import ast
    import inspect

    from scheduler_app.engine import cron

    tree = ast.parse(inspect.getsource(cron))
    reasons = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
            "_FieldError",
            "CronSyntaxError",
            "error",
        ):
            args = [a for a in node.args if isinstance(a, ast.Constant | ast.JoinedStr)]
            if node.func.id == "error":
                args = node.args[1:2]
            for a in args[:1]:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    reasons.append(a.value)
                elif isinstance(a, ast.JoinedStr):  # f-string: fill placeholders with digits
                    reasons.append("".join(v.value if isinstance(v, ast.Constant) else "2" for v in a.values))
    assert len(reasons) > 30
    untranslated = [r for r in reasons if cron_zh.reason(r) == r]
    assert untranslated == []


TRIGGERS = [
    (
        {"type": "cron", "expression": "0 2 L * *", "timezone": "Asia/Shanghai"},
        "每月最后一天 02:00（Asia/Shanghai）",
    ),
    ({"type": "manual"}, "手动：仅在手动启动或由上游作业触发时运行"),
    ({"type": "interval", "seconds": 3600}, "每1小时"),
    ({"type": "interval", "seconds": 90, "jitter": 5}, "每90秒，随机延后最多 5 秒"),
    ({"type": "date", "run_at": "2026-12-01T09:00:00+08:00"}, "在 2026-12-01T09:00:00+08:00 运行一次"),
    (
        {
            "type": "any",
            "triggers": [{"type": "cron", "expression": "0 9 * * 1-5"}, {"type": "interval", "seconds": 600}],
        },
        "满足以下任一条件时：（每周一至周五 09:00（UTC））或（每10分钟）",
    ),
]


@pytest.mark.parametrize(("document", "chinese"), TRIGGERS, ids=[t[0]["type"] for t in TRIGGERS])
def test_trigger_descriptions_in_chinese(document, chinese):
    spec = triggerspec.parse_trigger(document)
    assert triggerspec.describe(spec, language="zh-hans") == chinese
    assert triggerspec.describe(spec) == triggerspec.describe(spec, language="en")


@pytest.mark.parametrize(
    ("document", "chinese"),
    [
        ({"type": "cron", "expression": "0 0 32 * *"}, "第 3 个字段（日）：'32' 超出范围 1-31"),
        ({"type": "cron", "expression": ""}, "必须填写 cron 表达式"),
        ({"type": "cron", "expression": "* * * * *", "timezone": "Mars/X"}, "未知时区 'Mars/X'"),
        ({"type": "interval", "seconds": 0}, "必须大于 0"),
        (
            {"type": "weekly"},
            "'weekly' 不是触发器类型；请使用以下之一：cron, date, interval, manual, all, any",
        ),
    ],
)
def test_trigger_errors_in_chinese(document, chinese):
    with pytest.raises(triggerspec.TriggerSpecError) as caught:
        triggerspec.parse_trigger(document)
    # Plugin trigger types loaded earlier in the process are listed after the built-in ones.
    assert cron_zh.trigger_message(caught.value).startswith(chinese)


def test_chinese_description_matches_the_schedule():
    """Spot-check that the Chinese names the same days as the fire times."""
    expr = CronExpression.parse("0 0 * * 5L")
    fire = expr.next_fire_time(datetime(2026, 12, 1, tzinfo=UTC))
    assert fire == datetime(2026, 12, 25, tzinfo=UTC) and fire.weekday() == 4  # 周五
    assert "周五" in expr.describe("zh-hans")
