"""The redactor and the storable forms of results and errors (pure engine, no Django)."""

from __future__ import annotations

import html
import json

import pytest

from scheduler_app.engine.redaction import MASK, NO_SECRETS, Redactor, encodings
from scheduler_app.engine.results import PREVIEW_CHARS, TRACEBACK_MAX, describe_exception, storable_result
from tests.secret_forms import find_leaks, text_forms

M = MASK

# (secrets, text, masked text)
TEXT_CASES = [
    pytest.param(["Pässwörd-Echo-Ω-3456"], "pw=Pässwörd-Echo-Ω-3456!", f"pw={M}!", id="non-ascii"),
    pytest.param(['a"b'], 'x a"b y', f"x {M} y", id="double-quote"),
    pytest.param(["it's"], "x it's y", f"x {M} y", id="single-quote"),
    pytest.param(["a\\b"], "path a\\b end", f"path {M} end", id="backslash"),
    pytest.param(["line1\nline2"], "got line1\nline2 end", f"got {M} end", id="newline"),
    pytest.param(["col\tcol"], "row col\tcol", f"row {M}", id="tab"),
    pytest.param(["\x00\x01ctl"], "a\x00\x01ctl", f"a{M}", id="control-chars"),
    pytest.param(["🔑key🔑"], "use 🔑key🔑 now", f"use {M} now", id="emoji"),
    pytest.param(["hunter2"], "hunter2 and hunter2", f"{M} and {M}", id="twice-in-one-string"),
    pytest.param(["hunter2"], "hunter2hunter2", f"{M}{M}", id="twice-adjacent"),
    pytest.param(["abcdef", "bcd"], "xabcdefx bcd", f"x{M}x {M}", id="substring-secrets"),
    pytest.param(["bcd", "abcdef"], "xabcdefx bcd", f"x{M}x {M}", id="substring-secrets-other-order"),
    pytest.param(["abcd", "cdef"], "abcdef", M, id="overlapping-secrets"),
    pytest.param(["a龘a", "龘a龘"], "xa龘a龘x", f"x{M}x", id="overlap-where-the-leftmost-is-shorter"),
    pytest.param(
        ["Pässwörd"], 'data {"p": "P\\u00e4ssw\\u00f6rd"}', f'data {{"p": "{M}"}}', id="json-ascii-form"
    ),
    pytest.param(['a"b\\c'], '{"p": "a\\"b\\\\c"}', f'{{"p": "{M}"}}', id="json-escaped-quote-backslash"),
    pytest.param(["line1\nline2"], '{"p": "line1\\nline2"}', f'{{"p": "{M}"}}', id="json-escaped-newline"),
    pytest.param(["Ωmega"], '{"p": "Ωmega"}', f'{{"p": "{M}"}}', id="json-unicode-form"),
    pytest.param(["it's"], repr({"p": "it's"}), f"{{'p': \"{M}\"}}", id="repr-double-quoted"),
    pytest.param(["it's"], repr({"p": "it's \""}), f"{{'p': '{M} \"'}}", id="repr-single-quoted"),
    pytest.param(["line1\nline2"], repr(["line1\nline2"]), f"['{M}']", id="repr-newline"),
    pytest.param(["Ω-secret"], ascii("Ω-secret"), f"'{M}'", id="ascii-form"),
    pytest.param(["<b>&\"x'"], "<p>" + html.escape("<b>&\"x'") + "</p>", f"<p>{M}</p>", id="html-form"),
    pytest.param(["<b>&\"x'"], "v=&lt;b&gt;&amp;&#34;x&#39;", f"v={M}", id="html-numeric-form"),
    pytest.param(['say "hi"\n'], 'msg="say \\"hi\\"\\n"', f'msg="{M}"', id="log-quoted-form"),
    pytest.param(
        ['a"b'],
        html.escape(json.dumps({"p": 'a"b'})),
        f"{{&quot;p&quot;: &quot;{M}&quot;}}",
        id="html-of-json",
    ),
    pytest.param([9876543210], "pin 9876543210.", f"pin {M}.", id="number-secret"),
    pytest.param([3.25], "ratio 3.25", f"ratio {M}", id="float-secret"),
    pytest.param([["list-α", 42]], 'got ["list-\\u03b1", 42]', f"got {M}", id="list-secret-json"),
    pytest.param([["list-α", 42]], "got ['list-α', 42]", f"got {M}", id="list-secret-repr"),
    pytest.param(
        [{"user": "bob-the-user", "pw": "x"}], "hi bob-the-user", f"hi {M}", id="string-inside-object"
    ),
    pytest.param(["b••"], "bb••", M + "••••", id="mask-next-to-secret-spells-it"),
    pytest.param(["•••"], "a•••b", "a•••b", id="only-mask-characters-not-masked"),
    pytest.param(["ab"], "abc ab", "abc ab", id="short-secret-not-in-text"),
    pytest.param([True, None, False], "True None null", "True None null", id="constants-not-secrets"),
    pytest.param(
        [{"password": "s3cret-value"}], "password: s3cret-value", f"password: {M}", id="keys-not-secret"
    ),
    pytest.param([], "nothing to mask", "nothing to mask", id="no-secrets"),
]


@pytest.mark.parametrize(("secrets", "text", "expected"), TEXT_CASES)
def test_text(secrets, text, expected):
    assert Redactor(secrets).text(text) == expected


# (secrets, value, masked value)
VALUE_CASES = [
    pytest.param(["Pässwörd-Ω"], "Pässwörd-Ω", M, id="plain-string"),
    pytest.param(
        ["Pässwörd-Ω"], {"a": [1, {"b": ["x Pässwörd-Ω y"]}]}, {"a": [1, {"b": [f"x {M} y"]}]}, id="nested"
    ),
    pytest.param(['a"b\\c'], ['a"b\\c', 'pre a"b\\c'], [M, f"pre {M}"], id="quote-backslash"),
    pytest.param(["line1\nline2"], {"k": "line1\nline2"}, {"k": M}, id="newline"),
    pytest.param(["s3cret"], {"s3cret": 1, "user-s3cret": 2}, {M: 1, f"user-{M}": 2}, id="secret-as-key"),
    pytest.param(
        ["s3cret", "other"],
        {"s3cret": 1, "other": 2, M: 3},
        {M: 1, f"{M} (2)": 2, f"{M} (3)": 3},
        id="masked-keys-stay-distinct",
    ),
    pytest.param(
        [1234], {"n": 1234, "m": 5678, "s": "1234"}, {"n": M, "m": 5678, "s": M}, id="number-secret"
    ),
    pytest.param(["3456"], [123456, 3456.5, 78], [M, M, 78], id="number-containing-secret"),
    pytest.param([1], [1, True, 1.5, "1"], [M, True, 1.5, M], id="short-number-equal-only"),
    pytest.param(["ab"], ["ab", "abc", {"ab": "x"}], [M, "abc", {M: "x"}], id="short-string-equal-only"),
    pytest.param(
        [["a", "b"]], {"x": ["a", "b"], "y": ["a", "b", "c"]}, {"x": M, "y": [M, M, "c"]}, id="list-secret"
    ),
    pytest.param([{"k": "v"}], [{"k": "v"}, {"k": "w"}], [M, {"k": "w"}], id="object-secret"),
    pytest.param(["s3cret"], ("s3cret", ["s3cret"]), [M, [M]], id="tuples-become-lists"),
    pytest.param(["true"], [True, "true"], [M, M], id="constant-written-as-secret"),
    pytest.param(["s3cret"], [None, 0, "", [], {}], [None, 0, "", [], {}], id="untouched"),
]


@pytest.mark.parametrize(("secrets", "value", "expected"), VALUE_CASES)
def test_value(secrets, value, expected):
    assert Redactor(secrets).value(value) == expected


def test_no_secrets_gives_the_value_itself():
    value = {"a": ["b"]}
    assert NO_SECRETS.value(value) is value and not NO_SECRETS


def test_the_redactor_never_shows_its_secrets():
    redactor = Redactor(["s3cret-value"])
    assert "s3cret" not in repr(redactor) and "s3cret" not in str(redactor)


def test_encodings_cover_every_form_the_tests_look_for():
    for secret in ["Pässwörd-Echo-Ω-3456", 'a"b\\c', "line1\nline2", 'it\'s "q"', "<&>"]:
        assert set(text_forms(secret).values()) <= encodings(secret), secret


def test_fields_masks_every_text_and_the_result():
    fields = Redactor(["s3cret"]).fields(
        {
            "error": "s3cret",
            "traceback": "x s3cret",
            "error_type": "s3cret",
            "result": ["s3cret"],
            "cpu_seconds": 1.0,
        }
    )
    assert fields == {"error": M, "traceback": f"x {M}", "error_type": M, "result": [M], "cpu_seconds": 1.0}


class TestSplitSafe:
    def test_holds_back_a_secret_that_may_continue(self):
        assert Redactor(["hello-secret"]).split_safe("abc hello-sec") == ("abc ", "hello-sec")

    def test_continued_secret_is_masked(self):
        redactor = Redactor(["hello-secret"])
        safe, tail = redactor.split_safe("abc hello-sec")
        assert redactor.split_safe(tail + "ret done") == (f"{M} done", "")

    def test_nothing_held_when_no_secret_starts_at_the_end(self):
        assert Redactor(["hello-secret"]).split_safe("abc hello-secret x") == (f"abc {M} x", "")

    def test_held_back_prefix_of_an_escaped_form(self):
        assert Redactor(["Pässwörd"]).split_safe('{"p": "P\\u00e4s') == ('{"p": "', "P\\u00e4s")


class TestStorableResult:
    def test_masked_before_the_preview_is_cut(self):
        secret = "Pässwörd-Echo-Ω-3456"
        escaped = json.dumps(secret)[1:-1]
        pad = PREVIEW_CHARS - len('["') - len(escaped) // 2
        result, note = storable_result(["x" * pad, secret, "y" * 5000], 2000, Redactor([secret]))
        assert result["truncated"] is True and "stored a preview" in note
        assert result["preview"].startswith('["xxx') and '", "\\u2022\\u2022' in result["preview"][-20:]
        pieces = {escaped[i : i + 4] for i in range(len(escaped) - 3)}
        assert not [p for p in pieces if p in result["preview"]]
        assert result["size_bytes"] == len(json.dumps(["x" * pad, M, "y" * 5000]).encode())

    def test_unmasked_it_would_leak_half_a_secret(self):  # the case above, without masking
        secret = "Pässwörd-Echo-Ω-3456"
        pad = PREVIEW_CHARS - len('["') - len(json.dumps(secret)[1:-1]) // 2
        result, _ = storable_result(["x" * pad, secret, "y" * 5000], 2000)
        assert result["preview"][-20:].endswith("P\\u00e4ssw\\u0")

    def test_unserializable_repr_is_masked(self):
        secret = 'a"b\\c'
        result, note = storable_result({secret, "other"}, 1000, Redactor([secret]))
        assert result["type"] == "set" and "not JSON-serializable" in note
        assert find_leaks({"preview": result["unserializable"]}, [secret]) == []
        assert M in result["unserializable"] and "'other'" in result["unserializable"]

    def test_huge_repr_is_cut_safely(self):
        secret = "hello-secret"
        result, _ = storable_result({"x" * 300_000 + secret}, 1000, Redactor([secret]))
        assert len(result["unserializable"]) == PREVIEW_CHARS

    def test_result_masked_and_stored(self):
        assert storable_result({"pw": "s3cret", "n": 2}, 1000, Redactor(["s3cret"])) == (
            {"pw": M, "n": 2},
            "",
        )


class TestDescribeException:
    def test_every_occurrence_is_masked(self):
        secret = "Pässwörd-Echo-Ω-3456"
        try:
            raise RuntimeError(f"bad {secret} and {secret!r} in {{'password': {secret!r}}}")
        except RuntimeError as exc:
            kind, message, text = describe_exception(exc, Redactor([secret]))
        assert kind == "RuntimeError"
        assert message == f"bad {M} and '{M}' in {{'password': '{M}'}}"
        assert text.count(M) == 3 and secret not in text

    def test_masked_before_the_traceback_is_cut(self):
        secret = "Ω9z\nΨ8q-Ж7k"  # no four characters of it in this file's source lines

        def describe(pad):
            try:
                raise ValueError("x" * pad + secret + "y" * TRACEBACK_MAX)
            except ValueError as exc:
                return exc

        # Place the secret across the point where a long traceback is cut in two.
        probe = "".join(__import__("traceback").format_exception(describe(0)))
        pad = TRACEBACK_MAX // 2 - probe.index(secret) - len(secret) // 2
        _, _, unmasked = describe_exception(describe(pad))
        assert unmasked.split("\n... (truncated) ...\n")[0].endswith(secret[: len(secret) // 2])
        _, _, text = describe_exception(describe(pad), Redactor([secret]))
        head = text.split("\n... (truncated) ...\n")[0]
        assert not [secret[i : i + 4] for i in range(len(secret) - 3) if secret[i : i + 4] in head]
