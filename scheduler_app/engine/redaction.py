"""Masking secret values in whatever a run reports. Pure Python: no Django.

A :class:`Redactor` is built from a run's revealed secret values and masks them:

* in **text** (errors, tracebacks, notes, output): every occurrence of every secret
  text, in every form the text can take when it is written somewhere — as is, JSON-
  escaped (``ensure_ascii`` on and off), as ``repr``/``ascii`` write it inside quotes of
  either kind, as our log lines quote it, and HTML-escaped (Django's and the numeric
  entities). Every character that belongs to any occurrence of any of these is masked,
  so secrets that contain or overlap each other are masked whole (each run of covered
  characters becomes one mask). Masking repeats until nothing is left, because a mask
  next to a secret's neighbour can spell a secret that starts or ends with the mask's
  own character;
* in **values** (results): the structure is walked and every string, dict key and
  number is masked on its own (a string that *is* a secret becomes :data:`MASK`, one that
  contains one has it masked as text). A list or object equal to a secret value becomes
  :data:`MASK`. The JSON text is never searched, because a secret in it is written
  escaped and a replacement could break its syntax.

What counts as a secret's text: a string itself; for a number its JSON text; for a list
or object its JSON and Python forms and every string and number inside it (not an
object's keys: they name the parts of a secret, like ``"password"``). ``true``,
``false`` and ``null`` are not masked (they cannot be told apart from ordinary output).

Short secrets: a text shorter than :data:`MIN_TEXT_LENGTH` characters is masked only
where a whole string, key or number *equals* it, never inside longer text — masking every
``"42"`` or ``"ab"`` in a traceback would destroy it and reveal the secret by its gaps.
A secret made only of the mask's character (``•``) cannot be told apart from the mask
and is not masked inside text either.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable
from typing import Any

#: How secret values are shown wherever they would otherwise appear.
MASK = "••••••"
_MASK_CHAR = "•"
#: Secret texts shorter than this are masked only where a value equals them.
MIN_TEXT_LENGTH = 3


def log_quoted(text: str) -> str:
    """How :mod:`scheduler_app.logutils` writes a text inside double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _quoted_bodies(text: str, quote: Any) -> set[str]:
    """What ``repr``/``ascii`` write between the quotes. Inside a longer string the
    quoting style depends on the whole string, so both styles are covered."""
    bodies = {quote(text)[1:-1], quote(text + "'\"")[1:-4]}  # '...' with \' escaped
    if '"' not in text:
        bodies.add(quote(text + "'")[1:-2])  # "..." with ' as is
    return bodies


def _html_forms(text: str) -> set[str]:
    numeric = (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
    return {html.escape(text), html.escape(text, quote=False), numeric}


def encodings(text: str) -> set[str]:
    """Every form in which ``text`` may be written into a row, a log line or a page."""
    written = {
        text,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        log_quoted(text),
        *_quoted_bodies(text, repr),
        *_quoted_bodies(text, ascii),
    }
    return written | {form for w in written for form in _html_forms(w)}


def secret_texts(value: Any) -> list[str]:
    """The texts of one secret value (see the module docstring)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [json.dumps(value)]
    if isinstance(value, dict | list | tuple):
        texts = []
        try:
            texts += [
                json.dumps(value),
                json.dumps(value, ensure_ascii=False),
                json.dumps(value, separators=(",", ":")),
                json.dumps(value, sort_keys=True),
            ]
        except (TypeError, ValueError):
            pass
        texts.append(repr(value))
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for _key, child in children:  # keys name parts of the secret; they are not it
            texts += secret_texts(child)
        return texts
    return [str(value)]


def _canonical(value: Any) -> str | None:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return None


def _written(value: None | bool | int | float) -> str:
    """``json.dumps`` of a constant or number, without its overhead (results are
    walked leaf by leaf)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    return float.__repr__(value) if math.isfinite(value) else json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Redactor:
    """Masks a set of secret values in text and in JSON values. Immutable; cheap to
    call when it has nothing to mask."""

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        self.secrets: tuple[Any, ...] = tuple(secrets)
        self._exact: set[str] = set()  # strings and number texts masked where equal
        self._containers: dict[tuple[type, int], set[str]] = {}  # masked where equal
        texts: set[str] = set()
        for secret in self.secrets:
            self._collect(secret)
            texts.update(secret_texts(secret))
        patterns = {
            form
            for text in texts
            if len(text) >= MIN_TEXT_LENGTH and text.strip(_MASK_CHAR)
            for form in encodings(text)
        }
        # Longest first: the alternation then takes the longest secret at a position.
        self.patterns: tuple[str, ...] = tuple(sorted(patterns, key=lambda p: (-len(p), p)))
        # Zero-width, so that it reports the longest secret starting at *every*
        # position, overlapping ones included. (The re module caches compiled
        # patterns: the runs of one job share the work.)
        alternatives = "|".join(map(re.escape, self.patterns))
        self._starts_at = re.compile(f"(?=({alternatives}))") if self.patterns else None
        self._starts: dict[str, list[str]] = {}
        for pattern in self.patterns:
            self._starts.setdefault(pattern[0], []).append(pattern)

    def _collect(self, value: Any) -> None:
        if isinstance(value, str):
            if value:
                self._exact.add(value)
        elif _is_number(value):
            self._exact.add(json.dumps(value))
        elif isinstance(value, dict | list | tuple) and value:
            canonical = _canonical(list(value) if isinstance(value, tuple) else value)
            if canonical is not None:
                kind = dict if isinstance(value, dict) else list
                self._containers.setdefault((kind, len(value)), set()).add(canonical)
            for child in value.values() if isinstance(value, dict) else value:
                self._collect(child)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __repr__(self) -> str:  # never the secrets themselves
        return f"<Redactor of {len(self.secrets)} secret(s)>"

    # -- text --------------------------------------------------------------------------

    def text(self, text: str) -> str:
        """``text`` with every form of every secret replaced by :data:`MASK`."""
        if self._starts_at is None or not text:
            return text
        while True:  # terminates: each pass removes characters other than the mask's
            spans: list[list[int]] = []
            for match in self._starts_at.finditer(text):
                start, end = match.start(), match.end(1)
                if spans and start < spans[-1][1]:  # overlaps the previous occurrence
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
            if not spans:
                return text
            pieces, last = [], 0
            for start, end in spans:
                pieces += [text[last:start], MASK]
                last = end
            pieces.append(text[last:])
            text = "".join(pieces)

    def contains(self, text: str) -> bool:
        return self._starts_at is not None and self._starts_at.search(text) is not None

    def split_safe(self, text: str) -> tuple[str, str]:
        """Mask a piece of text that may continue later (a stream, or text cut short):
        returns (masked part safe to show, tail to hold back). The tail is the longest
        end of the masked text that a secret could continue from; it is empty when no
        secret starts there."""
        masked = self.text(text)
        if not self.patterns:
            return masked, ""
        longest = len(self.patterns[0])
        for start in range(max(len(masked) - longest + 1, 0), len(masked)):
            tail = masked[start:]
            if any(p.startswith(tail) for p in self._starts.get(masked[start], ())):
                return masked[:start], tail
        return masked, ""

    # -- values ------------------------------------------------------------------------

    def value(self, value: Any) -> Any:
        """A JSON value with the secrets masked: a copy (tuples become lists), or
        ``value`` itself when nothing in it needs masking."""
        if not self.secrets or not self._may_hold(value):
            return value
        return self._value(value)

    def _may_hold(self, value: Any) -> bool:
        """A cheap first look: one search over all of the value's texts at once
        instead of one per string (a false alarm only costs the full walk)."""
        texts: list[str] = []
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict | list | tuple):
                if ((dict if isinstance(item, dict) else list), len(item)) in self._containers:
                    return True
                stack.extend(item)  # a dict's keys
                if isinstance(item, dict):
                    stack.extend(item.values())
            elif item is None or isinstance(item, bool | int | float):
                texts.append(_written(item))
        return any(text in self._exact for text in texts) or self.contains("\x00".join(texts))

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return MASK if value in self._exact else self.text(value)
        if value is None or isinstance(value, bool | int | float):
            # Judged by the JSON text it is stored as (1e+16, true, null ...).
            written = _written(value)
            return MASK if written in self._exact or self.contains(written) else value
        if isinstance(value, dict | list | tuple):
            kind = dict if isinstance(value, dict) else list
            same_shape = self._containers.get((kind, len(value)))
            if same_shape and _canonical(list(value) if isinstance(value, tuple) else value) in same_shape:
                return MASK
            if isinstance(value, dict):
                out: dict[Any, Any] = {}
                for key, child in value.items():
                    out[self._unique_key(self._value(key), out)] = self._value(child)
                return out
            return [self._value(child) for child in value]
        return value

    @staticmethod
    def _unique_key(key: Any, taken: dict[Any, Any]) -> Any:
        """Masked keys must not overwrite each other (nor a key that was a mask)."""
        if key not in taken:
            return key
        n = 2
        while f"{key} ({n})" in taken:
            n += 1
        return f"{key} ({n})"

    def fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """An outcome's fields with the secrets masked in every text and the result."""
        if not self.secrets:
            return fields
        out = dict(fields)
        for key, item in fields.items():
            if key == "result":
                out[key] = self.value(item)
            elif isinstance(item, str):
                out[key] = self.text(item)
        return out


NO_SECRETS = Redactor()
