"""Turning what a task returned or raised into storable values, with the run's secrets
masked before anything is cut short (a secret cut in half would no longer match)."""

from __future__ import annotations

import json
import traceback as tb_module
from typing import Any

from scheduler_app.engine.redaction import MASK, NO_SECRETS, Redactor

TRACEBACK_MAX = 20_000
PREVIEW_CHARS = 1000
# A repr is masked over this many characters at most before its preview is cut (a
# broken task may return a set of a million items).
_REPR_MASKED_MAX = 200_000

__all__ = ["MASK", "TRACEBACK_MAX", "describe_exception", "storable_result"]


def storable_result(value: Any, max_bytes: int, redactor: Redactor = NO_SECRETS) -> tuple[Any, str]:
    """(JSON value to store, note), secrets masked. Results that are not JSON-serializable
    or larger than ``max_bytes`` are replaced by a small description, and the note says
    why."""
    if value is None:
        return None, ""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        preview = _preview(_safe_repr(value), redactor)
        note = f"result of type {type(value).__name__} is not JSON-serializable ({exc}); stored its repr"
        return {"unserializable": preview, "type": type(value).__name__}, redactor.text(note)
    result = json.loads(text)
    if redactor:
        result = redactor.value(result)
        text = json.dumps(result)
    size = len(text.encode())
    if size > max_bytes:
        return (
            {"truncated": True, "size_bytes": size, "preview": text[:PREVIEW_CHARS]},
            f"result of {size} bytes exceeds the {max_bytes}-byte cap; stored a preview",
        )
    return result, ""


def _preview(text: str, redactor: Redactor) -> str:
    if len(text) > _REPR_MASKED_MAX:
        # Cut short before masking: drop whatever end a secret could continue from.
        text, _ = redactor.split_safe(text[:_REPR_MASKED_MAX])
    else:
        text = redactor.text(text)
    return text[:PREVIEW_CHARS]


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not fail the run's bookkeeping
        return f"<unrepresentable {type(value).__name__}: {exc!r}>"


def describe_exception(exc: BaseException, redactor: Redactor = NO_SECRETS) -> tuple[str, str, str]:
    """(type name, message, traceback text) of an exception, secrets masked, traceback
    size-capped after masking."""
    kind = type(exc).__module__ + "." + type(exc).__qualname__
    if kind.startswith("builtins."):
        kind = kind[len("builtins.") :]
    message = redactor.text(_safe_str(exc))
    text = redactor.text("".join(tb_module.format_exception(exc)))
    if len(text) > TRACEBACK_MAX:
        text = text[: TRACEBACK_MAX // 2] + "\n... (truncated) ...\n" + text[-TRACEBACK_MAX // 2 :]
    return redactor.text(kind), message, text


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} with unprintable message>"
