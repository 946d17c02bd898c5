"""The demo tasks are a public contract (README, "Demo tasks"): benchmarks count real
executions with demo.append_line, so its one-line-per-execution promise is tested."""

import threading

import pytest

from project import scheduler_tasks  # noqa: F401  (registers the demo tasks)
from scheduler_app.registry import registry


def test_append_line_writes_one_whole_line_per_execution_even_from_many_threads(tmp_path):
    out = tmp_path / "lines.txt"
    func = registry.get("demo.append_line").func
    threads = [
        threading.Thread(target=func, args=(str(out), f"run-{i:03d}"), kwargs={"seconds": 0.01})
        for i in range(50)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == [f"run-{i:03d}" for i in range(50)]
    for line in lines:
        name, start, end = line.split()
        assert float(end) - float(start) >= 0.01  # the end is written after the sleep


def test_append_line_returns_its_line_and_refuses_a_newline(tmp_path):
    func = registry.get("demo.append_line").func
    assert func(str(tmp_path / "a.txt"), "hello") == "hello"
    with pytest.raises(ValueError, match="line: must not contain a newline"):
        func(str(tmp_path / "b.txt"), "two\nlines")
    assert not (tmp_path / "b.txt").exists()
