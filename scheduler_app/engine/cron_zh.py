"""Simplified Chinese for the engine's words: cron descriptions, cron errors, triggers.

The engine never imports Django, so it cannot use gettext catalogs; instead the public
functions take a ``language`` and this module writes the Chinese from the parsed
expression itself. Chinese orders a schedule from the largest unit down ("每月最后一天
02:00", "每周一至周五 9点至17点每小时整点"), so it is built here phrase by phrase, not
translated word for word from the English description.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from scheduler_app.engine import cron

if TYPE_CHECKING:
    from scheduler_app.engine.triggerspec import TriggerSpec

_WEEKDAYS: Final = ("周日", "周一", "周二", "周三", "周四", "周五", "周六")
_ORDINALS: Final = ("", "第一个", "第二个", "第三个", "第四个", "第五个")
_FIELD_NAMES: Final = ("秒", "分钟", "小时", "日", "月", "星期", "年")


def is_chinese(language: str | None) -> bool:
    """True for the Chinese we write (zh, zh-hans, zh-Hans, zh_CN, ...)."""
    return bool(language) and str(language).lower().replace("_", "-").split("-")[0] == "zh"


# --------------------------------------------------------------------------------------
# Cron descriptions
# --------------------------------------------------------------------------------------


def _runs(values: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _list(values: set[int], word: Callable[[int], str], sep: str = "、") -> str:
    """{1,2,3,4,5,15} -> '1日至5日、15日'; two neighbours are listed, not ranged."""
    parts: list[str] = []
    for a, b in _runs(values):
        if a == b:
            parts.append(word(a))
        elif b == a + 1:
            parts.extend((word(a), word(b)))
        else:
            parts.append(f"{word(a)}至{word(b)}")
    return sep.join(parts)


def _step(values: set[int], lo: int, hi: int) -> int | None:
    vs = sorted(values)
    if len(vs) < 2 or vs[0] != lo:
        return None
    n = vs[1] - vs[0]
    if n < 2 or vs != list(range(lo, hi + 1, n)):
        return None
    return n


def _time(c: cron._Compiled) -> tuple[str, bool]:
    """(the time of day, whether it names fixed clock times)."""
    secs, mins, hours = (c.specs[k].values for k in (cron.SEC, cron.MIN, cron.HOUR))
    all_hours = len(hours) == 24
    if len(secs) == 1 and len(mins) * len(hours) <= 6:
        (s,) = secs
        fmt = "{h:02d}:{m:02d}:{s:02d}" if s else "{h:02d}:{m:02d}"
        times = [fmt.format(h=h, m=m, s=s) for h in sorted(hours) for m in sorted(mins)]
        return "、".join(times), True
    hour_step = None if all_hours else _step(hours, 0, 23)
    if all_hours:
        hour_text = ""
    elif hour_step is not None:
        hour_text = f"每{hour_step}小时"
    else:
        hour_text = _list(hours, lambda h: f"{h}点")
    if len(mins) == 60:
        min_text = "每分钟"
    elif (min_step := _step(mins, 0, 59)) is not None:
        min_text = f"每{min_step}分钟"
    else:
        each_hour = "每小时" if hour_step is None and len(hours) > 1 else ""
        if mins == {0}:
            min_text = f"{each_hour}整点"
        else:
            min_text = f"{each_hour}第{_list(mins, str)}分钟"
        if hour_step is not None:
            min_text = "的" + min_text
    if secs == {0}:
        return hour_text + min_text, False
    if len(secs) == 60 or (sec_step := _step(secs, 0, 59)) is not None:
        sec_text = "每秒" if len(secs) == 60 else f"每{sec_step}秒"
        if min_text == "每分钟":  # "every 10 seconds" already covers every minute
            return hour_text + sec_text, False
        return f"{hour_text}{min_text}内{sec_text}", False
    return f"{hour_text}{min_text}的第{_list(secs, str)}秒", False


def _dom_parts(spec: cron._FieldSpec) -> list[str]:
    parts: list[str] = []
    if spec.values:
        step = _step(spec.values, 1, 31)
        if step is not None:
            parts.append(f"从1日起每{step}天")
        else:
            parts.append(_list(spec.values, lambda d: f"{d}日"))
    for offset, nearest in sorted(spec.last_days):
        day = "最后一天" if offset == 0 else f"最后一天前{offset}天"
        if nearest:
            parts.append("最后一个工作日" if offset == 0 else f"离{day}最近的工作日")
        else:
            parts.append(day)
    for n in sorted(spec.weekdays_w):
        parts.append(f"离{n}日最近的工作日")
    return parts


def _weekdays(values: set[int]) -> str:
    # Quartz counts Sunday as 1..7 but the parser already maps to 0=Sunday..6=Saturday;
    # a week read Monday first wraps Sunday to the end ("周一至周日" for 1-7).
    return _list(values, lambda w: _WEEKDAYS[w])


def _dow_parts(spec: cron._FieldSpec, each: str) -> list[str]:
    parts: list[str] = []
    if spec.values:
        parts.append(each + _weekdays(spec.values))
    for w in sorted(spec.last_weekdays):
        parts.append(f"最后一个{_WEEKDAYS[w]}")
    for w, k in sorted(spec.nth_weekdays):
        parts.append(f"{_ORDINALS[k]}{_WEEKDAYS[w]}")
    return parts


def _date(c: cron._Compiled) -> str:
    months = c.specs[cron.MON].values
    years = "" if c.years is None else _list(set(c.years), lambda y: f"{y}年")
    if len(months) == 12:
        prefix = years
        in_month = years + "每月"  # "2026年每月1日", "每月最后一个周五"
    else:
        prefix = (years or "每年") + _list(months, lambda m: f"{m}月")
        in_month = prefix if len(months) == 1 else prefix + "的"  # "每年1月1日", "每年1月至3月的15日"
    rule = c.day_rule
    if rule.mode == "all":
        return prefix + "的每天" if prefix else ""
    if rule.mode == "both":  # crontab with a star day field: both fields must match
        dows = "或".join(_dow_parts(rule.dow, ""))
        return f"{in_month}{'或'.join(_dom_parts(rule.dom))}中的{dows}"
    words: list[str] = []
    if rule.mode in ("dom", "either"):
        words.append(in_month + "或".join(_dom_parts(rule.dom)))
    if rule.mode in ("dow", "either"):
        dow = rule.dow
        weekly = _dow_parts(_only_values(dow), "每")
        monthly = _dow_parts(_without_values(dow), "")
        if weekly:
            words.append((prefix + ("的" if len(months) != 12 else "")) + weekly[0])
        if monthly:
            words.append(in_month + "或".join(monthly))
    return "或".join(words)


def _only_values(spec: cron._FieldSpec) -> cron._FieldSpec:
    out = cron._FieldSpec()
    out.values = spec.values
    return out


def _without_values(spec: cron._FieldSpec) -> cron._FieldSpec:
    out = cron._FieldSpec()
    out.last_weekdays, out.nth_weekdays = spec.last_weekdays, spec.nth_weekdays
    return out


def describe(c: cron._Compiled) -> str:
    """The Chinese description of a compiled expression (CronExpression.describe("zh-hans"))."""
    time, fixed = _time(c)
    date = _date(c)
    if not date:
        return ("每天 " + time) if fixed else time
    return f"{date} {time}"


# --------------------------------------------------------------------------------------
# Cron errors
# --------------------------------------------------------------------------------------

# English reason (as CronSyntaxError.reason holds it) -> Chinese; {0}, {1}... are the groups.
_REASONS: Final[list[tuple[str, str]]] = [
    (r"is outside (\d+)-(\d+)", "超出范围 {0}-{1}"),
    (r"is missing a value", "缺少值"),
    (r"is not a month number or name \(JAN-DEC\)", "不是月份数字或名称（JAN-DEC）"),
    (r"is not a day-of-week number or name \(SUN-SAT\)", "不是星期数字或名称（SUN-SAT）"),
    (r"is not a number in (\d+)-(\d+)", "不是 {0}-{1} 范围内的数字"),
    (r"has a step that is not a positive whole number", "的步长不是正整数"),
    (r"has a step of (\d+); steps must be between 1 and (\d+)", "的步长为 {0}；步长必须在 1 到 {1} 之间"),
    (r"is a range whose start is after its end", "是起点大于终点的范围"),
    (r"has an empty list item", "含有空的列表项"),
    (r"is only allowed in the day-of-month and day-of-week fields", "只能用于“日”和“星期”字段"),
    (r"cannot be combined with other values", "不能与其他值组合使用"),
    (r"uses L or W, which are only allowed in the day fields", "使用了 L 或 W，它们只能用于日期字段"),
    (r"uses W, which is only allowed in the day-of-month field", "使用了 W，它只能用于“日”字段"),
    (r"uses #, which is only allowed in the day-of-week field", "使用了 #，它只能用于“星期”字段"),
    (r"mixes a name and a number in one range", "在同一范围中混用了名称和数字"),
    (r"uses H, which is not allowed in the year field", "使用了 H，“年”字段不允许使用 H"),
    (
        r"is not a valid H \(hash\) form: use H, H\(a-b\), H/n or H\(a-b\)/n",
        "不是有效的 H（哈希）写法：请使用 H、H(a-b)、H/n 或 H(a-b)/n",
    ),
    (r"is an H range whose start is after its end", "是起点大于终点的 H 范围"),
    (r"has an offset from the last day above 30", "距最后一天的偏移超过 30"),
    (r"applies W to a range; W needs a single day of the month", "对范围使用了 W；W 只能用于单个日期"),
    (r"uses nL, which is only allowed in the day-of-week field", "使用了 nL，它只能用于“星期”字段"),
    (r"is not a valid day-of-month value", "不是有效的“日”字段值"),
    (
        r"is only allowed in the quartz dialect \(where it means Saturday\); use e\.g\. 5L for the last Friday",
        "只能用于 quartz 方言（表示周六）；表示最后一个周五请用例如 5L",
    ),
    (r"is not a valid n#k value \(e\.g\. 5#3 or FRI#3\)", "不是有效的 n#k 值（例如 5#3 或 FRI#3）"),
    (r"has #(.*); the occurrence after # must be 1-5", "含有 #{0}；# 后的序号必须是 1-5"),
    (r"is not a known IANA time zone", "不是已知的 IANA 时区"),
    (r"is not a dialect \(use 'crontab' or 'quartz'\)", "不是方言（请使用 'crontab' 或 'quartz'）"),
    (r"the expression must be a string", "表达式必须是字符串"),
    (
        r"is not a known macro \(use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly\)",
        "不是已知的宏（请使用 @yearly、@annually、@monthly、@weekly、@daily、@midnight 或 @hourly）",
    ),
    (r"the expression is empty", "表达式为空"),
    (r"has (\d+) field\w*; the (\w+) dialect expects (.+)", "有 {0} 个字段；{1} 方言需要 {2} 个"),
    (
        r"cannot be used in both day fields; put '\?' in exactly one",
        "不能同时用于两个日期字段；只在其中一个写 '?'",
    ),
    (
        r"conflicts with day of month '(.*)': the quartz dialect needs '\?' in exactly one of the two day fields",
        "与“日”字段的 '{0}' 冲突：quartz 方言要求两个日期字段中恰好一个为 '?'",
    ),
    (r"combines L with other days, which Quartz does not support", "将 L 与其他日期组合使用，Quartz 不支持"),
    (r"has more than one #, which Quartz does not support", "含有多个 #，Quartz 不支持"),
    (
        r"never fires: no allowed month \(and year\) has a matching day",
        "永远不会触发：允许的月份（和年份）中没有符合条件的日期",
    ),
]
_COMPILED_REASONS: Final = [(re.compile(pattern), zh) for pattern, zh in _REASONS]


def reason(english: str) -> str:
    """The Chinese of one CronSyntaxError.reason (the English one if it is not known)."""
    for pattern, zh in _COMPILED_REASONS:
        m = pattern.fullmatch(english)
        if m is not None:
            groups = [g.replace(", ", "、").replace(" or ", " 或 ") for g in m.groups()]
            return zh.format(*groups)
    return english


def error_message(exc: cron.CronSyntaxError) -> str:
    """str(exc) in Chinese: ``第 3 个字段（日）：'32' 超出范围 1-31``."""
    text = reason(exc.reason)
    subject = f"'{exc.text}' {text}" if exc.text is not None else text
    if exc.field is None:
        return subject
    name = exc.field_name
    kind = cron._FIELD_NAMES.index(name) if name in cron._FIELD_NAMES else None
    label = _FIELD_NAMES[kind] if kind is not None else name
    return f"第 {exc.field} 个字段（{label}）：{subject}"


# TriggerSpecError.message (English) -> Chinese.
_TRIGGER_MESSAGES: Final[list[tuple[str, str]]] = [
    (r"a combination needs a list of at least 2 triggers", "组合触发器至少需要包含 2 个触发器的列表"),
    (r"a cron expression is required", "必须填写 cron 表达式"),
    (r"a date-time is required", "必须填写日期时间"),
    (r"a manual trigger cannot be combined", "手动触发器不能参与组合"),
    (r"must be 0 or more", "必须大于或等于 0"),
    (r"must be a whole number of seconds", "必须是整数秒"),
    (r"must be after start", "必须晚于开始时间"),
    (r"must be an IANA time zone name, e\.g\. 'Europe/Berlin'", "必须是 IANA 时区名称，例如 'Asia/Shanghai'"),
    (r"must be an ISO 8601 date-time string", "必须是 ISO 8601 日期时间字符串"),
    (r"must be an object with a 'type'", "必须是带有 'type' 的对象"),
    (r"must be greater than 0", "必须大于 0"),
    (r"the interval in seconds is required", "必须填写间隔秒数"),
    (r"unknown key", "未知的键"),
    (r"combinations may nest at most (\d+) deep", "组合触发器最多只能嵌套 {0} 层"),
    (r"unknown time zone (.*)", "未知时区 {0}"),
    (r"(.*) is not a dialect; use crontab or quartz", "{0} 不是方言；请使用 crontab 或 quartz"),
    (r"(.*) is not a trigger type; use one of (.*)", "{0} 不是触发器类型；请使用以下之一：{1}"),
    (
        r"(.*) has no UTC offset; add one or give a 'timezone'",
        "{0} 没有 UTC 时差；请加上时差或指定 'timezone'",
    ),
    (
        r"(.*) is not an ISO 8601 date-time \(e\.g\. 2026-12-01T09:00:00\+01:00\)",
        "{0} 不是 ISO 8601 日期时间（例如 2026-12-01T09:00:00+08:00）",
    ),
]
_COMPILED_TRIGGER_MESSAGES: Final = [(re.compile(pattern), zh) for pattern, zh in _TRIGGER_MESSAGES]


def trigger_message(exc: ValueError) -> str:
    """TriggerSpecError.message in Chinese (a cron error inside it too)."""
    cron_error = getattr(exc, "cron_error", None)
    if isinstance(cron_error, cron.CronSyntaxError):
        return error_message(cron_error)
    message = str(getattr(exc, "message", exc))
    for pattern, zh in _COMPILED_TRIGGER_MESSAGES:
        m = pattern.fullmatch(message)
        if m is not None:
            return zh.format(*m.groups())
    return message


# --------------------------------------------------------------------------------------
# Trigger descriptions
# --------------------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}秒"


def describe_trigger(spec: TriggerSpec, *, hash_key: str | None = None) -> str:
    """triggerspec.describe() in Chinese: "每月最后一天 02:00（Asia/Shanghai）"."""
    from scheduler_app.engine import triggerspec as ts

    if isinstance(spec, ts.ManualSpec):
        return "手动：仅在手动启动或由上游作业触发时运行"
    if isinstance(spec, ts.CronSpec):
        expr = cron.CronExpression.parse(
            spec.expression, dialect=spec.dialect, timezone=spec.timezone, hash_key=hash_key
        )
        return f"{expr.describe('zh-hans')}（{spec.timezone}）"
    if isinstance(spec, ts.DateSpec):
        return f"在 {spec.run_at.isoformat()} 运行一次"
    if isinstance(spec, ts.IntervalSpec):
        text = f"每{_duration(spec.seconds)}"
        if spec.start is not None:
            text = f"从 {spec.start.isoformat()} 起" + text
        if spec.end is not None:
            text += f"，直到 {spec.end.isoformat()}"
        if spec.jitter:
            text += f"，随机延后最多 {spec.jitter} 秒"
        return text
    if isinstance(spec, ts.PluginSpec):
        # A plugin's own describe() speaks its language; the type name is the fallback.
        return ts.describe(spec, hash_key=hash_key)
    word = "同时满足以下全部条件时" if spec.type == "all" else "满足以下任一条件时"
    joiner = "且" if spec.type == "all" else "或"
    return f"{word}：" + joiner.join(f"（{describe_trigger(t, hash_key=hash_key)}）" for t in spec.triggers)
