"""Why a queued run waits: the known reasons, each a code with parameters and one
stable English text (what ``JobRun.wait_reason`` stores and the API's ``wait_reason``
returns). :func:`parse` reads a stored text back into its code and parameters, so the
faces can show it in the user's language (``scheduler_app.monitoring.waiting``) while
the stored and API value stays the same in every language.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

#: code -> the stored English text (str.format fields are the parameters)
TEXTS = {
    "key": "waiting: concurrency key {key} ({running} of {limit} running)",
    "rate": "waiting: rate limit {rate} of {scope} {name} reached",
    "load_nodes": "deferred: the cluster is overloaded (every live node ({nodes}) is above its load or memory limit)",
    "load_queue": "deferred: the cluster is overloaded (more than {bound} due runs queued for {slots} slots)",
    "tags": "waiting for a node with tags {tags}",
}


@dataclass(frozen=True)
class Wait:
    code: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return TEXTS[self.code].format(**self.params)


def text(code: str, **params: object) -> str:
    """The stored text of a reason (raises KeyError for an unknown code)."""
    return TEXTS[code].format(**{k: str(v) for k, v in params.items()})


def _pattern(template: str) -> re.Pattern[str]:
    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name:
            parts.append(f"(?P<{name}>.+?)")
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


_PATTERNS = {code: _pattern(template) for code, template in TEXTS.items()}


def parse(stored: str) -> Wait | None:
    """The code and parameters of a stored reason; None for a text none of
    :data:`TEXTS` makes (shown as it is)."""
    for code, pattern in _PATTERNS.items():
        match = pattern.match(stored)
        if match is not None:
            return Wait(code, match.groupdict())
    return None
