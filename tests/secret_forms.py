"""The ways a secret's text can be written, as the tests look for it: an oracle written
independently of ``scheduler_app.engine.redaction`` (pure Python, no Django)."""

from __future__ import annotations

import html
import json
from typing import Any


def _python_bodies(secret: str, quote: Any) -> list[str]:
    """What ``repr``/``ascii`` write between the quotes, in either quoting style: inside
    a longer string the style depends on the whole string, not on the secret."""
    single = quote(secret + "'\"")[1:-4]  # both quotes present: '...' with \' escaped
    bodies = [quote(secret)[1:-1], single]
    if '"' not in secret:
        bodies.append(quote(secret + "'")[1:-2])  # "..." with ' left as is
    return bodies


def text_forms(secret: str) -> dict[str, str]:
    """Every encoding of one secret text, named (the name says where it was found)."""
    base = {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "logfmt": secret.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"),
    }
    for i, body in enumerate(_python_bodies(secret, repr)):
        base[f"repr{i}"] = body
    for i, body in enumerate(_python_bodies(secret, ascii)):
        base[f"ascii{i}"] = body
    forms = dict(base)
    for name, text in base.items():
        forms[f"html({name})"] = html.escape(text)
        forms[f"html-noquote({name})"] = html.escape(text, quote=False)
        forms[f"html-numeric({name})"] = (
            text.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&#34;")
            .replace("'", "&#39;")
        )
    return forms


def secret_texts(value: Any) -> list[str]:
    """The texts of a secret value that must never show: a string itself; for numbers
    their text; for lists and objects every string and number inside (not the keys),
    and their JSON and Python forms."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [json.dumps(value)]
    texts = [json.dumps(value), json.dumps(value, ensure_ascii=False), repr(value)]
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for _key, child in children:  # keys name the parts of a secret; they are not secret
        texts.extend(secret_texts(child))
    return texts


def find_leaks(haystacks: dict[str, str], secrets: list[Any], min_length: int = 3) -> list[str]:
    """``where: form of secret`` for every encoding of every secret found in a text."""
    found = []
    for secret in secrets:
        for text in secret_texts(secret):
            if len(text) < min_length:
                continue
            for form, needle in text_forms(text).items():
                for where, haystack in haystacks.items():
                    if needle in haystack:
                        found.append(f"{where}: {form} of {text!r}")
    return sorted(set(found))
