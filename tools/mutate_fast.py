"""Mutation testing in one pytest process (``tools/mutate_fast.sh``): mutmut 3's runner
starts pytest (Django, the test database) afresh for every mutant, 20-30 s each on the
shared 2-core machine; this plugin takes the mutants mutmut generated in ``mutants/`` and
runs them all in one session, which costs only the tests themselves.

mutmut's trampolines pick the active mutant from ``MUTANT_UNDER_TEST`` at every call, so
the plugin (1) runs each selected test once with ``MUTANT_UNDER_TEST=stats`` to learn
which mutated functions it reaches (the clean run: every test must pass) and how long it
takes, then (2) for each mutant matching the globs runs only the tests reaching its
function, fastest first, until one fails (killed) or all pass (survived). A test running
longer than ``--mutate-timeout`` seconds counts as a kill (timeout). Results go to
``--mutate-out`` (JSON) and the survivors are printed; ``mutmut show NAME`` gives a diff.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol


def pytest_addoption(parser):
    group = parser.getgroup("mutate_fast")
    group.addoption("--mutate", action="append", default=[], help="mutant name glob (repeatable)")
    group.addoption("--mutate-out", default="mutate_fast.json")
    group.addoption("--mutate-timeout", type=float, default=60.0)
    group.addoption(
        "--mutate-skip", action="append", default=[], help="results JSON: skip the mutants it has killed"
    )


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout("mutant test timed out")


def _mutant_names(root: Path, package: str) -> list[str]:
    """Every mutant mutmut generated in ``package`` under ``root`` (module.x_func__mutmut_N)."""
    names = []
    for path in sorted((root / package).rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if "__mutmut_" not in text:
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for name in sorted(set(re.findall(r"^def (x\S*?__mutmut_\d+)\(", text, re.M)), key=_natural):
            names.append(f"{module}.{name}")
        for name in sorted(set(re.findall(r"^    def (xǁ\S*?__mutmut_\d+)\(", text, re.M)), key=_natural):
            names.append(f"{module}.{name}")
    return names


def _natural(name: str):
    head, _, number = name.rpartition("__mutmut_")
    return (head, int(number))


def _function_of(mutant: str) -> str:
    return mutant.rpartition("__mutmut_")[0]


def _failed(reports) -> str | None:
    for report in reports:
        if report.failed:
            return report.when
    return None


def _other(items, item):
    """A next item that is not ``item``: runtestprotocol tears down only what the next
    item does not share, so naming ``item`` itself would leave its function fixtures
    (its database transaction) in place for its next run. None: tear down everything."""
    return next((other for other in items if other is not item), None)


def _run(item, nextitem, timeout):
    session = item.session
    session._setupstate.teardown_exact(item)  # leave what the previous test set up for another
    if hasattr(item, "_initrequest"):
        item._initrequest()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    started = time.monotonic()
    try:
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    except _Timeout:
        reports = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return reports, time.monotonic() - started


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    config = session.config
    globs = config.getoption("mutate")
    if not globs:
        return None
    import mutmut.mutation.trampoline as trampoline

    hits: set[str] = set()
    trampoline.record_trampoline_hit = lambda name, caller=None: hits.add(name)
    signal.signal(signal.SIGALRM, _alarm)
    timeout = config.getoption("mutate_timeout")
    items = list(session.items)
    out = {"tests": {}, "mutants": {}}

    # 1. clean run, recording which functions each test reaches
    os.environ["MUTANT_UNDER_TEST"] = "stats"
    reached: dict[str, list[str]] = {}
    duration: dict[str, float] = {}
    for index, item in enumerate(items):
        hits.clear()
        reports, took = _run(
            item, items[index + 1] if index + 1 < len(items) else _other(items, item), timeout
        )
        if reports is None or _failed(reports):
            session._setupstate.teardown_exact(None)
            sys.stderr.write(f"mutate_fast: the clean run failed at {item.nodeid}\n")
            session.testsfailed = 1
            return True
        duration[item.nodeid] = took
        for name in hits:
            reached.setdefault(name, []).append(item.nodeid)
    by_id = {item.nodeid: item for item in items}
    out["tests"] = {name: len(ids) for name, ids in reached.items()}
    sys.stderr.write(f"mutate_fast: clean run of {len(items)} tests done\n")

    # 2. the mutants
    root = Path.cwd()
    mutants = [m for m in _mutant_names(root, "scheduler_app") if any(fnmatch.fnmatch(m, g) for g in globs)]
    done = {}
    for previous in config.getoption("mutate_skip"):
        for name, result in json.loads(Path(previous).read_text())["mutants"].items():
            if result["status"] in ("killed", "timeout"):
                done[name] = result
    mutants = [m for m in mutants if m not in done]
    killers: list[str] = []  # the tests that killed mutants, most recent first: tried first
    counts = {"killed": 0, "survived": 0, "timeout": 0, "no tests": 0}
    started = time.monotonic()
    for number, mutant in enumerate(mutants, 1):
        plan = sorted(reached.get(_function_of(mutant), []), key=lambda nodeid: duration[nodeid])
        plan.sort(key=lambda nodeid: killers.index(nodeid) if nodeid in killers else len(killers))
        status, by = "no tests", None
        if plan:
            os.environ["MUTANT_UNDER_TEST"] = mutant
            status = "survived"
            for index, nodeid in enumerate(plan):
                item = by_id[nodeid]
                nextitem = by_id[plan[index + 1]] if index + 1 < len(plan) else _other(items, item)
                reports, _ = _run(item, nextitem, timeout)
                if reports is None:
                    status, by = "timeout", nodeid
                    break
                if _failed(reports):
                    status, by = "killed", nodeid
                    break
        if by is not None:
            if by in killers:
                killers.remove(by)
            killers.insert(0, by)
        counts[status] += 1
        out["mutants"][mutant] = {"status": status, "by": by, "tests": len(plan)}
        sys.stderr.write(
            f"mutate_fast: {number}/{len(mutants)} {status:8} {mutant}"
            f"{' by ' + by if by else ''} ({time.monotonic() - started:.0f} s)\n"
        )
        Path(config.getoption("mutate_out")).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    os.environ["MUTANT_UNDER_TEST"] = ""
    session._setupstate.teardown_exact(None)
    survivors = [m for m, r in out["mutants"].items() if r["status"] in ("survived", "no tests")]
    sys.stderr.write(
        f"mutate_fast: {len(mutants)} mutants: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + "\n"
        + "".join(f"  {out['mutants'][m]['status']}: {m}\n" for m in survivors)
    )
    return True
