"""The capped, masked run-log buffer and the capture of records and output (pure engine,
no Django)."""

import logging
import re
import sys
import threading

import pytest

from scheduler_app.engine import runlog
from scheduler_app.engine.redaction import MASK, Redactor
from scheduler_app.engine.runlog import MARKER, RunLogBuffer, StreamCapture

SECRET = "Pässwörd-Ω"
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} [A-Z]+ [\w.]+: ")


def lines_of(buffer: RunLogBuffer) -> list[str]:
    return buffer.snapshot().text.split("\n")


class TestCap:
    def test_below_the_cap_everything_is_kept_in_order(self):
        buffer = RunLogBuffer(4096)
        for i in range(10):
            buffer.write(f"line {i}")
        log = buffer.snapshot()
        assert log.text == "\n".join(f"line {i}" for i in range(10))
        assert (log.lines_dropped, log.lines_total) == (0, 10)

    @pytest.mark.parametrize("cap", [1024, 1500, 4096, 65536])
    def test_over_the_cap_the_newest_lines_stay_under_a_marker(self, cap):
        buffer = RunLogBuffer(cap)
        for i in range(5000):
            buffer.write(f"line {i:05d} " + "x" * (i % 37))
        log = buffer.snapshot()
        lines = log.text.split("\n")
        assert len(log.text.encode()) <= cap
        assert (
            lines[0] == MARKER.format(n=log.lines_dropped) == f"… {log.lines_dropped} earlier lines dropped …"
        )
        kept = lines[1:]
        assert kept[-1].startswith("line 04999 ")
        numbers = [int(line.split()[1]) for line in kept]
        assert numbers == list(range(5000 - len(kept), 5000))  # the newest, in order, no gap
        assert log.lines_dropped == 5000 - len(kept) and log.lines_total == 5000
        # nearly full: dropping one line fewer would not have fitted
        assert len(log.text.encode()) + len(f"line {numbers[0] - 1:05d} ") + 37 + 1 > cap - 64

    def test_multibyte_text_is_counted_in_bytes(self):
        buffer = RunLogBuffer(1024)
        for _ in range(200):
            buffer.write("Ω" * 20)  # 40 bytes each
        assert len(buffer.snapshot().text.encode()) <= 1024
        assert buffer.snapshot().lines_dropped > 150

    def test_a_line_longer_than_the_cap_is_cut(self):
        buffer = RunLogBuffer(1024)
        buffer.write("start" + "é" * 5000)
        text = buffer.snapshot().text
        assert text.startswith("start") and text.endswith(" …")
        assert len(text.encode()) <= 1024

    def test_a_zero_cap_keeps_nothing(self):
        buffer = RunLogBuffer(0)
        buffer.write("x")
        assert not buffer and buffer.snapshot().text == ""

    def test_take_returns_only_changes(self):
        buffer = RunLogBuffer(4096)
        assert buffer.take() is None
        buffer.write("a")
        assert buffer.take().text == "a"
        assert buffer.take() is None
        buffer.write("b")
        assert buffer.take().text == "a\nb"


class TestDrainAndExtend:
    """A child process drains increments; the parent's buffer ends as the child's."""

    @pytest.mark.parametrize("burst", [3, 40, 400])
    def test_increments_rebuild_the_same_log(self, burst):
        child, parent = RunLogBuffer(1024), RunLogBuffer(1024)
        n = 0
        for _ in range(12):
            for _ in range(burst):
                child.write(f"line {n}")
                n += 1
            parent.extend(*child.drain())
        assert parent.snapshot() == child.snapshot()
        assert parent.snapshot().lines_total == n

    def test_nothing_new_drains_nothing(self):
        buffer = RunLogBuffer(1024)
        buffer.write("a")
        assert buffer.drain() == (["a"], 0)
        assert buffer.drain() == ([], 0)


class TestMasking:
    def test_secrets_are_masked_before_they_are_kept(self):
        buffer = RunLogBuffer(4096, Redactor([SECRET, "tok-123456"]))
        buffer.write(f"password={SECRET} token=tok-123456 again {SECRET!r}")
        text = buffer.snapshot().text
        assert SECRET not in text and "tok-123456" not in text
        assert text == f"password={MASK} token={MASK} again '{MASK}'"

    def test_a_secret_over_two_lines_of_one_entry(self):
        buffer = RunLogBuffer(4096, Redactor(["first\nsecond"]))
        buffer.write("before first\nsecond after")
        assert buffer.snapshot().text == f"before {MASK} after"

    def test_lines_from_a_child_are_masked_again(self):
        buffer = RunLogBuffer(4096, Redactor([SECRET]))
        buffer.extend([f"child said {SECRET}"])
        assert buffer.snapshot().text == f"child said {MASK}"

    def test_a_secret_cut_by_the_line_cap_is_masked_first(self):
        buffer = RunLogBuffer(1024, Redactor([SECRET]))
        buffer.write("x" * 950 + SECRET)
        text = buffer.snapshot().text
        assert "Pässw" not in text


class TestStreams:
    def test_output_is_kept_by_lines_and_still_written(self, capsys):
        buffer = RunLogBuffer(4096, Redactor([SECRET]))
        stream = StreamCapture(sys.stdout, buffer, "stdout")
        stream.write("hello ")
        stream.write("world\nsecret " + SECRET[:4])
        stream.write(SECRET[4:] + " done\nno newline")
        stream.close_capture()
        lines = lines_of(buffer)
        assert [line[13:] for line in lines] == [
            "STDOUT stdout: hello world",
            f"STDOUT stdout: secret {MASK} done",
            "STDOUT stdout: no newline",
        ]
        assert all(LINE.match(line) for line in lines)
        assert "hello world" in capsys.readouterr().out  # the original stream got it too


class TestCapture:
    def test_records_of_one_thread_only(self):
        log = logging.getLogger("tests.unit.runlog")
        log.setLevel(logging.INFO)
        buffers = [RunLogBuffer(65536) for _ in range(4)]
        barrier = threading.Barrier(4)

        def work(i):
            with runlog.capturing(buffers[i]):
                barrier.wait()
                for n in range(200):
                    log.info("run %d line %d", i, n)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.info("outside any run")
        for i, buffer in enumerate(buffers):
            lines = lines_of(buffer)
            assert [line.split(": ", 1)[1] for line in lines] == [f"run {i} line {n}" for n in range(200)]
            assert all(" INFO tests.unit.runlog: " in line for line in lines)
        assert logging.getLogger().handlers.count(runlog._HANDLER) == 0  # detached again

    def test_a_traceback_is_kept_with_its_record(self):
        buffer = RunLogBuffer(65536, Redactor([SECRET]))
        with runlog.capturing(buffer):
            try:
                raise ValueError(f"bad {SECRET}")
            except ValueError:
                logging.getLogger("tests.unit.runlog").exception("caught")
        text = buffer.snapshot().text
        assert " ERROR tests.unit.runlog: caught\nTraceback (most recent call last):" in text
        assert f"ValueError: bad {MASK}" in text and SECRET not in text

    def test_records_nobody_else_handles_still_reach_the_last_resort(self, capsys):
        buffer = RunLogBuffer(4096)
        root = logging.getLogger()
        saved, root.handlers = root.handlers, []  # as in a project without root handlers
        try:
            with runlog.capturing(buffer):
                logging.getLogger("tests.unit.unhandled").warning("still printed")
        finally:
            root.handlers = saved
        assert "still printed" in capsys.readouterr().err
        assert buffer.snapshot().text.endswith("WARNING tests.unit.unhandled: still printed")

    def test_a_whole_process_with_its_output(self, capsys):
        buffer = RunLogBuffer(65536)
        with runlog.capturing_process(buffer):
            print("printed")
            t = threading.Thread(target=lambda: logging.getLogger("tests.unit.t").warning("from a thread"))
            t.start()
            t.join()
            sys.stderr.write("to stderr\n")
        assert sys.stdout is not None and not isinstance(sys.stdout, StreamCapture)
        texts = [line[13:] for line in lines_of(buffer)]
        assert texts == [
            "STDOUT stdout: printed",
            "WARNING tests.unit.t: from a thread",
            "STDERR stderr: to stderr",
        ]
