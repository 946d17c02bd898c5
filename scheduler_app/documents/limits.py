"""Limits on what input may hold: JSON nesting depth, encoded size, and NUL characters.

One definition used everywhere input enters (admin forms, jobs files, backups, run-now
overrides, the API, the model's own ``clean``), so each face refuses the same things
with the same message, naming the field:

* :func:`check_value` — a value already parsed (a dict, list, string...): nesting no
  deeper than ``MAX_JSON_DEPTH``, no ``\\u0000`` in any string or key, and (when given)
  a JSON encoding of at most ``max_bytes``. It walks without recursion, so a value
  100,000 deep is refused, never a ``RecursionError``.
* :func:`check_text` — one string: no ``\\u0000`` (PostgreSQL refuses it in text, SQLite
  would store it silently).
* :func:`loads_json` — parse JSON text after a pre-scan of its nesting, so text nested too
  deep is refused before the parser recurses.
* :func:`load_yaml` — a guarded safe loader: no aliases (no "billion laughs"), nesting
  bounded while composing, before any Python object is built.

Limits come from the ``SCHEDULER_APP`` settings (:mod:`scheduler_app.conf`); callers may
pass their own.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from django.utils.translation import gettext as _

NUL = "\x00"


class LimitError(ValueError):
    """A value breaks a limit; ``field`` names where (``kwargs``, ``jobs[3].kwargs``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def max_depth() -> int:
    from scheduler_app.conf import app_settings

    return int(app_settings.MAX_JSON_DEPTH)


def max_args_bytes() -> int:
    from scheduler_app.conf import app_settings

    return int(app_settings.MAX_ARGS_BYTES)


def max_entry_bytes() -> int:
    from scheduler_app.conf import app_settings

    return int(app_settings.MAX_JOBS_FILE_ENTRY_BYTES)


def max_jobs_file_bytes() -> int:
    from scheduler_app.conf import app_settings

    return int(app_settings.MAX_JOBS_FILE_BYTES)


def max_backup_bytes() -> int:
    from scheduler_app.conf import app_settings

    return int(app_settings.MAX_BACKUP_BYTES)


class FileTooLarge(Exception):
    """A file over a size limit: ``size`` is its size, or None for a stream (a pipe,
    ``/dev/stdin``) known only to hold more than ``limit``."""

    def __init__(self, size: int | None, limit: int) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit


def read_capped(path: str | Path, limit: int) -> bytes:
    """The file's bytes, at most ``limit`` of them, else :class:`FileTooLarge`: a regular
    file is measured (fstat of the open file) before anything is read; a stream is read up
    to one byte past the limit, never further."""
    with Path(path).open("rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise FileTooLarge(info.st_size, limit)
        data = fh.read(limit + 1)  # also bounds a regular file that grew since fstat
    if len(data) > limit:
        raise FileTooLarge(None, limit)
    return data


def size_text(size: int) -> str:
    """``1 GB``, ``16 MB``, ``256 KB``, ``1000 bytes``: a limit as people write it."""
    if size >= 1024**3 and size % 1024**3 == 0:
        return f"{size // 1024**3} GB"
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KB"
    return _("%(size)s bytes") % {"size": size}


def check_text(value: Any, field: str) -> None:
    """Refuse a string holding a NUL character."""
    if isinstance(value, str) and NUL in value:
        raise LimitError(field, _("must not contain NUL characters (\\u0000)"))


def check_value(
    value: Any,
    field: str,
    *,
    depth: int | None = None,
    max_bytes: int | None = None,
) -> None:
    """Refuse ``value`` if it nests deeper than ``depth`` (default ``MAX_JSON_DEPTH``),
    holds a NUL in a string or key, or (``max_bytes`` given) its JSON encoding is larger.
    Depth counts containers: ``{}`` and ``[1]`` are 1 deep, ``{"a": [1]}`` 2."""
    limit = max_depth() if depth is None else depth
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            check_text(item, field)
        elif isinstance(item, Mapping | list | tuple):
            level += 1
            if level > limit:
                raise LimitError(field, _("nested more than %(limit)s levels deep") % {"limit": limit})
            if isinstance(item, Mapping):
                for key, child in item.items():
                    check_text(key, field)
                    stack.append((child, level))
            else:
                stack.extend((child, level) for child in item)
    if max_bytes is not None:
        size = encoded_size(value)
        if size > max_bytes:
            raise LimitError(
                field,
                _("is %(size)s bytes as JSON; at most %(limit)s allowed")
                % {"size": f"{size:,}", "limit": size_text(max_bytes)},
            )


def encoded_size(value: Any) -> int:
    """Bytes of ``value``'s compact UTF-8 JSON encoding (call after :func:`check_value`)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        return 0
    return len(text.encode("utf-8", "surrogatepass"))


def check_args(args: Any, kwargs: Any, secret_kwargs: Any = None) -> dict[str, str]:
    """The field errors of a job's (or a run's) call: each of args, kwargs and secret
    kwargs within depth and free of NUL, together at most ``MAX_ARGS_BYTES``. Returns
    {field: message}; empty when all is well."""
    errors: dict[str, str] = {}
    total = 0
    for name, value in (("args", args), ("kwargs", kwargs), ("secret_kwargs", secret_kwargs)):
        if value is None:
            continue
        try:
            check_value(value, name)
        except LimitError as exc:
            errors[name] = exc.message
            continue
        total += encoded_size(value)
    limit = max_args_bytes()
    if not errors and total > limit:
        field = "kwargs" if kwargs else "args"
        errors[field] = _("args and kwargs are %(size)s bytes as JSON; at most %(limit)s allowed") % {
            "size": f"{total:,}",
            "limit": size_text(limit),
        }
    return errors


#: A JSON string (skipped whole) or a bracket: what the depth pre-scan looks at.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def scan_json_depth(text: str, *, depth: int | None = None, field: str = "document") -> None:
    """Refuse JSON text whose brackets nest deeper than ``depth``, without parsing it
    (strings and their escapes are skipped), so the parser never recurses that far."""
    limit = max_depth() if depth is None else depth
    level = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            level += 1
            if level > limit:
                line = text.count("\n", 0, match.start()) + 1
                raise LimitError(
                    field,
                    _("nested more than %(limit)s levels deep (line %(line)s)")
                    % {"limit": limit, "line": line},
                )
        elif token in ("]", "}"):
            level -= 1


#: Levels a jobs file or backup adds above a job's values (document, list, entry,
#: snapshot...): the whole text may nest this much deeper than one value.
DOCUMENT_SLACK = 6


def loads_json(text: str | bytes, *, depth: int | None = None, field: str = "document") -> Any:
    """``json.loads`` after :func:`scan_json_depth` of the whole text, bounded by
    ``depth`` (default ``MAX_JSON_DEPTH`` + :data:`DOCUMENT_SLACK`); each value is then
    checked on its own with :func:`check_value`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    limit = (max_depth() + DOCUMENT_SLACK) if depth is None else depth
    scan_json_depth(text, depth=limit, field=field)
    return json.loads(text)


def loads_stored_json(text: str) -> Any:
    """Decode JSON text read back from the database: ``json.loads`` when it nests within
    the limits (plus :data:`DOCUMENT_SLACK`), else :func:`loads_json_flat`, so a stored
    value deeper than the stack allows (old data, or written past the checks) still loads
    -- and is then shown as "not shown" by the admin, refused on save -- instead of failing
    with ``RecursionError`` wherever it is read."""
    limit = max_depth() + DOCUMENT_SLACK
    # Text with no more brackets than the limit cannot nest deeper (brackets inside
    # strings are counted too, so this only errs on the side of scanning): most stored
    # values, decoded for every row of a page, skip the scan.
    if text.count("[") + text.count("{") > limit:
        try:
            scan_json_depth(text, depth=limit)
        except LimitError:
            return loads_json_flat(text)
    return json.loads(text)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_LITERALS = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": float("nan"),
    "Infinity": float("inf"),
    "-Infinity": float("-inf"),
}


def loads_json_flat(text: str) -> Any:
    """``json.loads`` without recursion, however deep the text nests (same results and
    :class:`json.JSONDecodeError` on bad text); slower, so for deep values only."""
    from json.decoder import scanstring
    from json.scanner import NUMBER_RE

    def skip(i: int) -> int:
        return _WHITESPACE.match(text, i).end()  # type: ignore[union-attr]

    def key_at(i: int) -> tuple[str, int]:
        if text[i : i + 1] != '"':
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = scanstring(text, i + 1)
        i = skip(i)
        if text[i : i + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        return key, skip(i + 1)

    # Open containers, innermost last: [container, key of the value being read (dicts)].
    stack: list[list[Any]] = []
    i = skip(0)
    while True:
        char = text[i : i + 1]
        if char == "{":
            i = skip(i + 1)
            if text[i : i + 1] == "}":
                value, i = {}, i + 1
            else:
                key, i = key_at(i)
                stack.append([{}, key])
                continue
        elif char == "[":
            i = skip(i + 1)
            if text[i : i + 1] == "]":
                value, i = [], i + 1
            else:
                stack.append([[], None])
                continue
        elif char == '"':
            value, i = scanstring(text, i + 1)
        else:
            for word, literal in _LITERALS.items():
                if text.startswith(word, i):
                    value, i = literal, i + len(word)
                    break
            else:
                match = NUMBER_RE.match(text, i)
                if match is None:
                    raise json.JSONDecodeError("Expecting value", text, i)
                integer, fraction, exponent = match.groups()
                value = (
                    float(integer + (fraction or "") + (exponent or ""))
                    if fraction or exponent
                    else int(integer)
                )
                i = match.end()
        # A value is complete: put it in its container, closing those that end here.
        while True:
            i = skip(i)
            if not stack:
                if i != len(text):
                    raise json.JSONDecodeError("Extra data", text, i)
                return value
            container, key = stack[-1]
            if isinstance(container, dict):
                container[key] = value
            else:
                container.append(value)
            char = text[i : i + 1]
            if char == ",":
                i = skip(i + 1)
                if isinstance(container, dict):
                    stack[-1][1], i = key_at(i)
                break
            if char == ("}" if isinstance(container, dict) else "]"):
                stack.pop()
                value, i = container, i + 1
                continue
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)


class GuardedSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with bounded nesting."""

    max_nesting = 32

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in jobs files", event.start_mark
            )
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            self._nesting += 1
            if self._nesting > self.max_nesting:
                event = self.peek_event()
                raise yaml.constructor.ConstructorError(
                    None, None, f"nested more than {self.max_nesting} levels deep", event.start_mark
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self._nesting -= 1
        return super().compose_node(parent, index)


def load_yaml(text: str, *, depth: int | None = None) -> Any:
    """Parse YAML with :class:`GuardedSafeLoader` (raises ``yaml.YAMLError``)."""
    limit = (max_depth() if depth is None else depth) + DOCUMENT_SLACK
    loader_class = type("BoundedLoader", (GuardedSafeLoader,), {"max_nesting": limit})
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_instance(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """The limit errors of a model instance's own values: NUL in every text field, depth
    and NUL of every JSON field. {field name: message}; empty when all is well."""
    from django.db import models

    errors: dict[str, str] = {}
    for field in obj._meta.concrete_fields:
        if field.name in skip or not isinstance(
            field, models.CharField | models.TextField | models.JSONField
        ):
            continue
        try:
            check_value(getattr(obj, field.attname, None), field.name)
        except LimitError as exc:
            errors[field.name] = exc.message
    return errors


def check_job(job: Any) -> dict[str, str]:
    """The limit errors of a job: those of :func:`check_instance`, and of its call
    (args, kwargs, secret kwargs) together. {field: message}; empty when all is well."""
    errors = check_instance(job, skip=("args", "kwargs"))
    pending = getattr(job, "_pending_secrets", None)
    errors.update(check_args(job.args, job.kwargs, pending if isinstance(pending, dict) else None))
    return errors


def check_entry(
    item: Mapping[str, Any], where: str, *, max_bytes: int | None = None, depth: int | None = None
) -> None:
    """One entry of a jobs file or backup (an object): each field within depth and free of
    NUL (named ``where: field``), the whole entry at most ``max_bytes`` (default
    ``MAX_JOBS_FILE_ENTRY_BYTES``) as JSON. Raises :class:`LimitError`."""
    for key, value in item.items():
        check_text(key, where)
        try:
            check_value(value, str(key), depth=depth)
        except LimitError as exc:
            raise LimitError(f"{where}: {exc.field}", exc.message) from None
    limit = max_entry_bytes() if max_bytes is None else max_bytes
    if limit <= 0:
        return
    size = encoded_size(item)
    if size > limit:
        raise LimitError(
            where,
            _("the entry is %(size)s bytes as JSON; at most %(limit)s allowed")
            % {"size": f"{size:,}", "limit": size_text(limit)},
        )
