"""Turning what a task returned or raised into storable values."""

from __future__ import annotations

import json
import traceback as tb_module
from typing import Any

TRACEBACK_MAX = 20_000
#: How secret values are shown wherever they would otherwise appear.
MASK = "••••••"


def storable_result(value: Any, max_bytes: int) -> tuple[Any, str]:
    """(JSON value to store, note). Results that are not JSON-serializable or larger
    than ``max_bytes`` are replaced by a small description, and the note says why."""
    if value is None:
        return None, ""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        preview = _safe_repr(value)
        return (
            {"unserializable": preview, "type": type(value).__name__},
            f"result of type {type(value).__name__} is not JSON-serializable ({exc}); stored its repr",
        )
    if len(text.encode()) > max_bytes:
        return (
            {"truncated": True, "size_bytes": len(text.encode()), "preview": text[:1000]},
            f"result of {len(text.encode())} bytes exceeds the {max_bytes}-byte cap; stored a preview",
        )
    return json.loads(text), ""


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:1000]
    except Exception as exc:  # a broken __repr__ must not fail the run's bookkeeping
        return f"<unrepresentable {type(value).__name__}: {exc!r}>"


def describe_exception(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, traceback text) of an exception, traceback size-capped."""
    kind = type(exc).__module__ + "." + type(exc).__qualname__
    if kind.startswith("builtins."):
        kind = kind[len("builtins.") :]
    message = _safe_str(exc)
    text = "".join(tb_module.format_exception(exc))
    if len(text) > TRACEBACK_MAX:
        text = text[: TRACEBACK_MAX // 2] + "\n... (truncated) ...\n" + text[-TRACEBACK_MAX // 2 :]
    return kind, message, text


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} with unprintable message>"
