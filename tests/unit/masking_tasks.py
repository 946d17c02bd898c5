"""Careless task functions for the executor masking tests, and the process-executor
initializer that resolves them (pure Python: the spawned worker needs no Django)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def returns(**secrets: Any) -> dict:
    values = list(secrets.values())
    return {"plain": values, "keys": {str(v): 1 for v in values}, "text": f"got {values!r}"}


async def returns_async(**secrets: Any) -> dict:
    await asyncio.sleep(0)
    return returns(**secrets)


def raises(**secrets: Any) -> None:
    raise RuntimeError(f"failed with {secrets!r}: {' '.join(map(str, secrets.values())) * 2}")


def unserializable(**secrets: Any) -> object:
    return {str(v) for v in secrets.values()}


def oversized(**secrets: Any) -> list:
    """Over the cap; the preview (1000 characters of JSON) ends inside the first secret."""
    return ["x" * 985, *map(str, secrets.values()), "y" * 5000]


def slow(seconds: float = 5, **secrets: Any) -> None:
    time.sleep(seconds)


TASKS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (returns, returns_async, raises, unserializable, oversized, slow)
}


def setup() -> Callable[[str], Callable[..., Any]]:
    return TASKS.__getitem__
