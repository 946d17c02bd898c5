"""Differential check of the quartz dialect against Quartz's own CronExpression.

Compiles tests/quartz/QuartzOracle.java against Debian's libquartz2-java jar (packages:
``libquartz2-java default-jdk-headless``) into tests/quartz/build/, feeds it a few thousand
generated expression x start pairs (all in UTC, so the DST rules, where this product
deliberately differs from Quartz, do not interfere) plus fixed edge cases, and requires
identical fire times and identical accept/reject decisions.

Without java this test skips, except when CI=true, where it fails.

Quartz bugs this product deliberately does not reproduce (see docs/cron.md, "Deviations
from Quartz"); the generator leaves these shapes out, and test_cron_quartz.py pins the sane
behaviour instead:

* ``1W,15W``: Quartz silently acts as ``1W`` (W only ever uses the first day of the list);
  likewise W mixed with other days in a list.
* ``nW`` with n above 28: Quartz rolls e.g. ``31W`` into the next month in shorter months;
  here a month without day n has no fire.
* a step after a name (``MON-FRI/2``, ``JAN/3``): Quartz drops the step.
* ``L-n`` reaching before the 1st (n >= 28 in February): Quartz misbehaves (``0 0 0 L-30 2 ?``
  is accepted and never fires); here such months are skipped.
* a ``#`` or ``nL`` item mixed with other items in a list: Quartz keeps only one of them.
* years beyond the 100-year search horizon: never generated.  Quartz 2.3's ``*`` year set
  also ends 100 years after the year the JVM started, so fire times from 2100 on are not
  compared.
* an expression that can never fire (``0 0 0 ? 2 2#5 2027``): Quartz accepts it and returns
  no fire time; here parsing fails with "never fires".
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler_app.engine.cron import CronExpression, CronSyntaxError

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "quartz" / "QuartzOracle.java"
BUILD = ROOT / "tests" / "quartz" / "build"
SEED = 20260308
N_EXPRESSIONS = 1500
STARTS_PER_EXPRESSION = 2
CHAIN = 3
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Quartz differential check cannot run in CI: {reason}")
    pytest.skip(reason)


def _quartz_jar() -> str | None:
    override = os.environ.get("QUARTZ_JAR")
    if override:
        return override
    for pattern in ("/usr/share/java/quartz2.jar", "/usr/share/java/quartz2-*.jar"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="module")
def oracle() -> list[str]:
    """The java command line that runs the compiled oracle."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if not java or not javac:
        _unavailable("java/javac not found (apt-get install default-jdk-headless)")
    jar = _quartz_jar()
    if jar is None or not os.path.exists(jar):
        _unavailable("Quartz jar not found (apt-get install libquartz2-java)")
    assert java and javac and jar
    BUILD.mkdir(parents=True, exist_ok=True)
    classfile = BUILD / "QuartzOracle.class"
    if not classfile.exists() or classfile.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(
            [javac, "-nowarn", "-d", str(BUILD), "-cp", jar, str(SOURCE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return [java, "-Xshare:auto", "-cp", f"{jar}{os.pathsep}{BUILD}", "QuartzOracle"]


def run_oracle(cmd: list[str], queries: list[tuple[str, str, int, int]]) -> list[str]:
    stdin = "".join(f"{e}\t{tz}\t{start}\t{count}\n" for e, tz, start, count in queries)
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert len(lines) == len(queries), done.stderr[-2000:]
    return lines


def ours(expression: str, tz: str, start: int, count: int) -> str:
    try:
        expr = CronExpression.parse(expression, dialect="quartz", timezone=tz)
    except CronSyntaxError as exc:
        return f"ERR {exc}"
    out = ["OK"]
    current: datetime | None = datetime.fromtimestamp(start, UTC)
    for _ in range(count):
        current = None if current is None else expr.next_fire_time(current)
        out.append("-" if current is None else str(int(current.timestamp())))
    return " ".join(out)


# --------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------


def _time_field(rng: random.Random, hi: int) -> str:
    """Seconds (hi=59), minutes (59) or hours (23)."""
    r = rng.random()
    if r < 0.25:
        return str(rng.randint(0, hi))
    if r < 0.35:
        return "*"
    if r < 0.5:
        return f"*/{rng.randint(1, min(hi, 30))}"
    if r < 0.6:
        return f"{rng.randint(0, hi)}/{rng.randint(1, min(hi, 30))}"
    if r < 0.7:
        a, b = sorted(rng.sample(range(hi + 1), 2))
        return f"{a}-{b}"
    if r < 0.78:
        a, b = sorted(rng.sample(range(hi + 1), 2))
        return f"{a}-{b}/{rng.randint(1, 10)}"
    if r < 0.85:  # wrapping range
        a = rng.randint(hi // 2, hi)
        return f"{a}-{rng.randint(0, hi // 2 - 1)}"
    values = sorted(rng.sample(range(hi + 1), rng.randint(2, 4)))
    return ",".join(map(str, values))


def _dom_field(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.15:
        return "*"
    if r < 0.3:
        return str(rng.randint(1, 31))
    if r < 0.4:
        return ",".join(map(str, sorted(rng.sample(range(1, 32), rng.randint(2, 4)))))
    if r < 0.5:
        a, b = sorted(rng.sample(range(1, 32), 2))
        return f"{a}-{b}" if rng.random() < 0.7 else f"{a}-{b}/{rng.randint(2, 7)}"
    if r < 0.57:
        return f"{rng.randint(1, 31)}/{rng.randint(2, 10)}"
    if r < 0.64:
        return "L"
    if r < 0.71:
        return f"L-{rng.randint(1, 27)}"  # L-n with n >= 28: Quartz bug, excluded
    if r < 0.78:
        return "LW"
    if r < 0.9:
        return f"{rng.randint(1, 28)}W"  # nW with n > 28: Quartz bug, excluded
    if r < 0.95:
        return f"L-{rng.randint(1, 20)}W"
    a = rng.randint(20, 31)
    return f"{a}-{rng.randint(1, 10)}"  # wrapping range


def _dow_field(rng: random.Random) -> str:
    r = rng.random()

    def day() -> str:
        return DAY_NAMES[rng.randint(0, 6)] if rng.random() < 0.4 else str(rng.randint(1, 7))

    if r < 0.12:
        return "*"
    if r < 0.27:
        return day()
    if r < 0.37:
        return ",".join(map(str, sorted(rng.sample(range(1, 8), rng.randint(2, 3)))))
    if r < 0.5:
        if rng.random() < 0.5:
            a, b = rng.sample(DAY_NAMES, 2)  # may wrap (FRI-MON)
        else:
            a, b = (str(v) for v in rng.sample(range(1, 8), 2))
        return f"{a}-{b}"
    if r < 0.57:
        a, b = sorted(rng.sample(range(1, 8), 2))
        return f"{a}-{b}/{rng.randint(1, 3)}"  # numeric only: a step after a name is a bug
    if r < 0.62:
        return f"*/{rng.randint(1, 7)}" if rng.random() < 0.5 else f"{rng.randint(1, 7)}/2"
    if r < 0.72:
        return f"{day()}L"
    if r < 0.9:
        return f"{day()}#{rng.randint(1, 5)}"
    return "L"


def _month_field(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        return "*"
    if r < 0.6:
        return str(rng.randint(1, 12))
    if r < 0.68:
        return MONTH_NAMES[rng.randint(0, 11)]
    if r < 0.76:
        a, b = sorted(rng.sample(range(12), 2))
        if rng.random() < 0.5:
            return f"{MONTH_NAMES[a]}-{MONTH_NAMES[b]}"
        return f"{a + 1}-{b + 1}"
    if r < 0.84:
        return ",".join(map(str, sorted(rng.sample(range(1, 13), rng.randint(2, 4)))))
    if r < 0.92:
        return f"*/{rng.randint(2, 6)}" if rng.random() < 0.5 else f"{rng.randint(1, 12)}/3"
    return f"{rng.randint(7, 12)}-{rng.randint(1, 5)}"  # wrapping range


def _year_field(rng: random.Random) -> str | None:
    r = rng.random()
    if r < 0.8:
        return None
    if r < 0.85:
        return "*"
    if r < 0.9:
        return str(rng.randint(2024, 2040))
    if r < 0.95:
        a = rng.randint(2024, 2035)
        return f"{a}-{a + rng.randint(0, 6)}"
    return f"{rng.randint(2024, 2030)}/{rng.randint(1, 4)}"


def generate(rng: random.Random) -> str:
    sec = _time_field(rng, 59) if rng.random() < 0.5 else "0"
    minute = _time_field(rng, 59)
    hour = _time_field(rng, 23)
    if rng.random() < 0.5:
        dom, dow = _dom_field(rng), "?"
    else:
        dom, dow = "?", _dow_field(rng)
    fields = [sec, minute, hour, dom, _month_field(rng), dow]
    year = _year_field(rng)
    if year is not None:
        fields.append(year)
    return " ".join(fields)


def _start(rng: random.Random) -> int:
    lo = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    hi = int(datetime(2032, 1, 1, tzinfo=UTC).timestamp())
    t = rng.randint(lo, hi)
    r = rng.random()
    if r < 0.3:
        t -= t % 86400  # midnight
    elif r < 0.4:
        t -= t % 60
    return t


FIXED = [
    "0 0 12 ? * WED",
    "0 15 10 ? * MON-FRI",
    "0 15 10 L * ?",
    "0 15 10 L-2 * ?",
    "0 15 10 ? * 6L",
    "0 15 10 ? * 6#3",
    "0 15 10 ? * 6L 2026-2028",
    "0 0 0 1W * ?",
    "0 0 0 15W * ?",
    "0 0 0 28W * ?",
    "0 0 0 LW * ?",
    "0 0 0 L-3W * ?",
    "0 0 0 29 2 ?",
    "0 0 0 ? 2 2#5",
    "0 0 0 ? * 2#5",
    "0 0 0 ? * 1#5",
    "0 0/5 14,18 * * ?",
    "0 0-5 14 * * ?",
    "0 10,44 14 ? 3 WED",
    "0 0 12 1/5 * ?",
    "0 11 11 11 11 ?",
    "*/7 * * * * ?",
    "0 0 22-2 * * ?",
    "0 0 0 ? * FRI-MON",
    "0 0 0 ? * 7-2",
    "0 0 0 25-5 * ?",
    "0 0 0 1 NOV-FEB ?",
    "59 59 23 31 12 ? 2030",
    "0 0 0 ? * L",
    "0 0 0 ? * SUNL",
    "0 0 0 ? * SUN#1",
    "1 2 3 ? * */3",
    "0 0 0 ? * 2/2",
    "0 0 0 L * ? 2028",
    "0 0 0 29 * ?",
    "0 0 0 31 * ?",
    "0 30 * 31 1,3,5 ?",
]

# Shapes for the accept/reject comparison (plus mutations of generated expressions).
SYNTAX_PROBES = [
    "0 0 12 * * *",
    "0 0 12 ? * ?",
    "0 0 12 1 * MON",
    "0 0 12 * *",
    "0 0 12 * * ? 2026 1",
    "60 0 12 * * ?",
    "0 60 12 * * ?",
    "0 0 24 * * ?",
    "0 0 0 32 * ?",
    "0 0 0 0 * ?",
    "0 0 0 1 13 ?",
    "0 0 0 1 0 ?",
    "0 0 0 ? * 8",
    "0 0 0 ? * 0",
    "0 0 0 ? * 2#6",
    "0 0 0 ? * 2#0",
    "0 0 0 ? * 2#1,3#2",
    "0 0 0 L,15 * ?",
    "0 0 0 ? * 2L,3",
    "0 0 0 ? FOO *",
    "0 0 0 ? * FOO",
    "0 0 0 ? * MON-5",
    "0 0 0 ? * 1-FRI",
    "? 0 0 1 * ?",
    "0 ? 0 1 * ?",
    "0 0 0 1 ? ?",
    "0 */75 * * * ?",
    "0 0 */25 * * ?",
    "0 0 0 ? */13 *",
    "0 0 0 ? * */8",
    "0 0 0 ? * 5W",
    "0 0 0 L-31 * ?",
    "0 0 0 1L * ?",
    "0 0 0 W * ?",
    "0 0 0 ? * #3",
    "0 0 0 L W ?",
    "0 0 L * * ?",
    "0 0 0 1 JAN-FOO ?",
    "x 0 0 1 * ?",
    "0 0 0 1 * ? 1969",
    "0 0 0 1-32 * ?",
    "0 0 0 ? * MON#2",
    "0 0 0 ? * mon#2",
    "0 0 0 lw * ?",
]


def _mutate(rng: random.Random, expression: str) -> str:
    fields = expression.split()
    i = rng.randrange(len(fields))
    choice = rng.random()
    if choice < 0.3:
        fields[i] = rng.choice(["99", "-1", "0", "32", "8", "13", "24", "60", "?", "*", "L"])
    elif choice < 0.5:
        fields[i] = fields[i] + rng.choice(["W", "L", "#2", "/0", "/99", ",", "-"])
    elif choice < 0.7:
        del fields[i]
    else:
        fields[3], fields[5] = rng.choice([("*", "*"), ("?", "?"), ("1", "MON"), ("?", "1")])
    return " ".join(fields)


# --------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------

COMPARE_UNTIL = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())


def _comparable(answer: str) -> list[str]:
    """The answer's fire times up to (not including) the first one from 2100 on, or '-'."""
    words = answer.split()
    if words[0] != "OK":
        return words
    out = ["OK"]
    for word in words[1:]:
        if word == "-" or int(word) >= COMPARE_UNTIL:
            break
        out.append(word)
    return out


def test_fire_times_match_quartz(oracle: list[str]) -> None:
    rng = random.Random(SEED)
    queries: list[tuple[str, str, int, int]] = []
    expressions = FIXED + [generate(rng) for _ in range(N_EXPRESSIONS)]
    for expression in expressions:
        for _ in range(STARTS_PER_EXPRESSION):
            queries.append((expression, "UTC", _start(rng), CHAIN))
    # Starts exactly on boundaries for the fixed edge cases.
    for expression in FIXED:
        for year, month in ((2027, 2), (2028, 2), (2026, 12), (2026, 4)):
            start = int(datetime(year, month, 1, tzinfo=UTC).timestamp()) - 1
            queries.append((expression, "UTC", start, 4))
    expected = run_oracle(oracle, queries)
    mismatches = []
    for (expression, tz, start, count), want in zip(queries, expected, strict=True):
        assert not want.startswith("ERR"), f"generator produced an invalid expression: {expression!r}: {want}"
        got = ours(expression, tz, start, count)
        if got.startswith("ERR") and "never fires" in got and set(want.split()[1:]) == {"-"}:
            continue
        if _comparable(got) != _comparable(want):
            mismatches.append(f"{expression!r} after {start}: quartz={want} ours={got}")
    assert len(queries) >= 3000
    assert not mismatches, f"{len(mismatches)} mismatches, e.g.:\n" + "\n".join(mismatches[:25])


# Quartz accepts these (ignoring the junk) but this product rejects them on purpose.
DELIBERATELY_REJECTED = {
    "0 0 12 * * ? 2026 1",  # Quartz ignores fields after the 7th
    "0 0 L * * ?",  # Quartz ignores an L in the hour field
    "0 0 0 1 * ? 1969",  # years must be 1970-2999
}


def test_accept_reject_matches_quartz(oracle: list[str]) -> None:
    """Everything Quartz rejects is rejected; the probes Quartz accepts are accepted.

    Mutated (random junk) probes only check the first half: Quartz's parser silently
    ignores much trailing junk ('*L', '?-', '5-', '56-9#2'); this product rejects it.
    """
    rng = random.Random(SEED + 1)
    mutated = [_mutate(rng, generate(rng)) for _ in range(600)]
    probes = SYNTAX_PROBES + mutated
    answers = run_oracle(oracle, [(p, "UTC", 0, 0) for p in probes])
    wrongly_accepted = []
    rejected_by_us = set()
    for probe, answer in zip(probes, answers, strict=True):
        try:
            CronExpression.parse(probe, dialect="quartz")
        except CronSyntaxError:
            rejected_by_us.add(probe)
            continue
        if answer.startswith("ERR"):
            wrongly_accepted.append(f"{probe!r}: quartz says {answer}")
    assert not wrongly_accepted, "\n".join(wrongly_accepted[:25])
    quartz_accepts = {
        probe for probe, answer in zip(SYNTAX_PROBES, answers, strict=False) if not answer.startswith("ERR")
    }
    assert quartz_accepts & rejected_by_us == DELIBERATELY_REJECTED
