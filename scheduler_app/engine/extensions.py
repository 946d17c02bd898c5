"""The engine's side of the plugin API (version :data:`API_VERSION`): what a plugin
supplies, checked here without Django. Discovery and the registry live in
:mod:`scheduler_app.plugins`.

Executors
    A plugin executor is made by an :data:`ExecutorFactory` called once per node start
    with an :class:`ExecutorContext`; it must satisfy :class:`~.interfaces.Executor`:

    * ``free_slots()`` is its capacity now; the node claims at most that many runs for it.
    * ``submit(run)`` accepts a claimed run and returns at once (it is wrapped in
      :class:`~.plugin_executor.GuardedExecutor`: a submit that blocks longer than the
      guard's timeout fails that run, naming the executor); the outcome goes, exactly
      once, to ``context.sink``.
    * ``stop(run_id, state, reason)`` ends a run (``timed_out`` when the run's
      ``timeout`` passed: the node calls it; the executor reports nothing more for it).
    * ``running_ids()`` and ``shutdown(wait)`` as for the built-in executors.
    * optional: ``take_logs()`` -> ``{run_id: RunLog}``, the captured logs of its running
      runs that changed since the last call (the node writes them while the runs go on);
      the final log travels in ``Outcome.log`` (capped at ``context.run_log_max_bytes``). Masking the run's secrets in them is the
      executor's job (:class:`~.runlog.RunLogBuffer` does it).

Trigger types
    A :class:`TriggerType` names a document ``{"type": name, ...}``: ``schema`` (JSON
    schema of the other keys, shown in the API), ``validate(doc, path)`` returns the
    canonical document or raises ``TriggerSpecError(path_of_key, message)``,
    ``build(doc, context)`` returns an APScheduler 3 trigger, ``describe(doc)`` plain words.

Alert channels
    ``config_schema`` (a JSON schema object: ``properties`` with ``type``, ``required``,
    ``additionalProperties``) is checked first; then the plugin's own
    ``validate(config)``, if given, returns the canonical configuration or raises
    :class:`ChannelConfigError` naming the key. ``send(config, message)`` delivers one
    alert (``config`` with the secret fields decrypted; ``message`` is the webhook
    payload plus ``subject`` and ``body`` rendered in the channel's language) or raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from scheduler_app.engine.interfaces import Executor, Outcome

logger = logging.getLogger(__name__)

API_VERSION = 1
EXECUTOR_METHODS = ("free_slots", "submit", "stop", "running_ids", "shutdown")


@dataclass(frozen=True)
class ExecutorContext:
    """What an executor factory gets: where outcomes go, the result size cap, the
    plugin's own options (``SCHEDULER_APP["PLUGIN_OPTIONS"][plugin]``) and ``resolve``
    (registered task name -> callable; only registered tasks run)."""

    sink: Callable[[Outcome], None]
    result_max_bytes: int
    options: Mapping[str, Any] = field(default_factory=dict)
    resolve: Callable[[str], Callable[..., Any]] | None = None
    # The cap of a run's captured log (MAX_RUN_LOG_BYTES; 0: capture off).
    run_log_max_bytes: int = 65_536


ExecutorFactory = Callable[[ExecutorContext], Executor]


@dataclass(frozen=True)
class TriggerContext:
    """What a plugin trigger is built with: the job's identity and exclusion dates."""

    hash_key: str | None = None
    anchor: datetime | None = None
    excluded_dates: frozenset[date] = frozenset()


@dataclass(frozen=True)
class TriggerType:
    name: str
    schema: Mapping[str, Any]
    validate: Callable[[Mapping[str, Any], str], dict[str, Any]]
    build: Callable[[Mapping[str, Any], TriggerContext], Any]
    describe: Callable[[Mapping[str, Any]], str]
    plugin: str = ""


class ChannelConfigError(ValueError):
    """A plugin alert channel's configuration is invalid: ``field`` names the key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


#: Trigger types contributed by plugins, by name; filled by scheduler_app.plugins.
TRIGGER_TYPES: dict[str, TriggerType] = {}


def check_executor(executor: Any, name: str) -> None:
    """Raise TypeError unless ``executor`` has the Executor protocol's methods."""
    missing = [m for m in EXECUTOR_METHODS if not callable(getattr(executor, m, None))]
    if missing:
        raise TypeError(f"executor {name!r} lacks {', '.join(missing)} (the Executor protocol)")


def build_executors(
    factories: Mapping[str, ExecutorFactory], context: ExecutorContext, *, submit_timeout: float = 5.0
) -> tuple[dict[str, Executor], dict[str, str]]:
    """Make each plugin executor, guarded; a factory that fails is left out and
    reported (name -> message), never a crash of the node."""
    from scheduler_app.engine.plugin_executor import GuardedExecutor

    built: dict[str, Executor] = {}
    failed: dict[str, str] = {}
    for name, factory in factories.items():
        try:
            guard = GuardedExecutor(name, context.sink, submit_timeout, context.result_max_bytes)
            inner = factory(
                ExecutorContext(
                    sink=guard.sink,
                    result_max_bytes=context.result_max_bytes,
                    options=context.options,
                    resolve=context.resolve,
                    run_log_max_bytes=context.run_log_max_bytes,
                )
            )
            check_executor(inner, name)
            guard.attach(inner)
            built[name] = guard
        except Exception as exc:  # a broken plugin must not take the node down
            failed[name] = f"{type(exc).__name__}: {exc}"
            logger.error("executor plugin failed to start", extra={"executor": name, "error": failed[name]})
    return built, failed


# -- the top level of a JSON schema (plugin trigger documents, channel configs) ------------

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def type_ok(value: Any, wanted: Any) -> bool:
    names = wanted if isinstance(wanted, list) else [wanted]
    for name in names:
        kinds = JSON_TYPES.get(name)
        if kinds is None:
            return True  # a type we do not know: the plugin's validate() decides
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, kinds):
            return True
    return False


def schema_problems(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for what ``config`` breaks of the top level of ``schema``: unknown
    keys (``additionalProperties: false``), ``required`` keys, each property's ``type``,
    ``enum``, ``minLength`` and ``minimum``/``maximum``."""
    problems: list[tuple[str, str]] = []
    properties = schema.get("properties") or {}
    for key in schema.get("required") or []:
        if key not in config:
            problems.append((key, "required"))
    if schema.get("additionalProperties") is False:
        for key in sorted(set(config) - set(properties)):
            problems.append((key, f"unknown key; known: {', '.join(sorted(properties)) or '(none)'}"))
    for key, rules in properties.items():
        if key not in config or not isinstance(rules, Mapping):
            continue
        value = config[key]
        if "type" in rules and not type_ok(value, rules["type"]):
            problems.append((key, f"must be of type {rules['type']}, not {value!r}"))
            continue
        if "enum" in rules and value not in rules["enum"]:
            problems.append((key, f"must be one of {', '.join(map(repr, rules['enum']))}"))
        if isinstance(value, str) and len(value) < int(rules.get("minLength", 0)):
            problems.append((key, "must not be empty" if rules["minLength"] == 1 else "is too short"))
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in rules and value < rules["minimum"]:
                problems.append((key, f"must be at least {rules['minimum']}"))
            if "maximum" in rules and value > rules["maximum"]:
                problems.append((key, f"must be at most {rules['maximum']}"))
    return problems
