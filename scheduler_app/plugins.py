"""Plugins: discovery and the registry of trigger types, executors and alert channels.

A plugin is an object (a module, a class, an instance) with ``api_version`` (must equal
:data:`API_VERSION`), a ``name`` and ``register(registry)``, found two ways:

* the Python entry-point group ``scheduler_app.plugins`` (``[project.entry-points."scheduler_app.plugins"]``
  in the plugin package's ``pyproject.toml``), and
* ``SCHEDULER_APP["PLUGINS"]``: ``"module:attribute"`` references in settings (never input).

``register`` calls :meth:`PluginRegistry.add_trigger_type`, :meth:`~PluginRegistry.add_executor`
and :meth:`~PluginRegistry.add_alert_channel`. Loading is lazy (first use) and never raises:
a plugin that fails to import, has another API version, registers a duplicate name or an
invalid declaration is left out and reported by the system checks
``scheduler_app.E030``-``E034`` naming it. See the README's "Plugins" section and
``examples/scheduler-app-example-plugin``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler_app.engine import extensions
from scheduler_app.engine.extensions import API_VERSION, ExecutorFactory, TriggerType

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "scheduler_app.plugins"
BUILTIN_EXECUTORS = ("asyncio", "thread", "process", "isolated")
BUILTIN_TRIGGERS = ("cron", "date", "interval", "manual", "all", "any")
BUILTIN_CHANNELS = ("email", "webhook", "apprise")

__all__ = ["API_VERSION", "AlertChannelType", "ExecutorType", "PluginError", "PluginRegistry", "registry"]


class PluginError(Exception):
    """A plugin declaration is invalid (reported by the system checks, not raised at run time)."""


@dataclass(frozen=True)
class ExecutorType:
    name: str
    factory: ExecutorFactory
    label: str
    #: Whether it enforces a job's CPU and memory limits (a job with limits on an
    #: executor that does not is refused on save).
    enforces_limits: bool = False
    plugin: str = ""


@dataclass(frozen=True)
class AlertChannelType:
    """An alert channel kind: ``config_schema`` (JSON schema of its configuration),
    ``secret_fields`` (configuration keys stored encrypted, never shown), optional
    ``validate(config)`` (returns the canonical configuration or raises
    ``ChannelConfigError(key, message)``), and ``send(config, message)`` which delivers
    one alert or raises. See :mod:`scheduler_app.engine.extensions`."""

    name: str
    config_schema: Mapping[str, Any]
    send: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
    secret_fields: tuple[str, ...] = ()
    plugin: str = ""
    validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    label: str = ""


@dataclass
class Problem:
    plugin: str
    check_id: str
    message: str


@dataclass
class PluginRegistry:
    trigger_types: dict[str, TriggerType] = field(default_factory=dict)
    executors: dict[str, ExecutorType] = field(default_factory=dict)
    alert_channels: dict[str, AlertChannelType] = field(default_factory=dict)
    plugins: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    _loaded: bool = False
    _current: str = ""

    # -- registration (called from a plugin's register()) --------------------------

    def add_trigger_type(
        self,
        name: str,
        *,
        schema: Mapping[str, Any],
        validate: Callable[[Mapping[str, Any], str], dict[str, Any]],
        build: Callable[[Mapping[str, Any], extensions.TriggerContext], Any],
        describe: Callable[[Mapping[str, Any]], str],
    ) -> None:
        self._check_name(name, "trigger type", BUILTIN_TRIGGERS, self.trigger_types)
        for what, value in (("validate", validate), ("build", build), ("describe", describe)):
            if not callable(value):
                raise PluginError(f"trigger type {name!r}: {what} must be callable")
        if not isinstance(schema, Mapping):
            raise PluginError(f"trigger type {name!r}: schema must be a JSON schema object")
        self.trigger_types[name] = TriggerType(name, dict(schema), validate, build, describe, self._current)

    def add_executor(
        self, name: str, factory: ExecutorFactory, *, label: str = "", enforces_limits: bool = False
    ) -> None:
        self._check_name(name, "executor", BUILTIN_EXECUTORS, self.executors)
        if len(name) > 16:
            raise PluginError(f"executor {name!r}: names are at most 16 characters")
        if not callable(factory):
            raise PluginError(f"executor {name!r}: the factory must be callable")
        self.executors[name] = ExecutorType(name, factory, label or name, enforces_limits, self._current)

    def add_alert_channel(
        self,
        name: str,
        *,
        config_schema: Mapping[str, Any],
        send: Callable[[Mapping[str, Any], Mapping[str, Any]], Any],
        secret_fields: tuple[str, ...] = (),
        validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        label: str = "",
    ) -> None:
        self._check_name(name, "alert channel", BUILTIN_CHANNELS, self.alert_channels)
        if len(name) > 16:
            raise PluginError(f"alert channel {name!r}: names are at most 16 characters")
        if not callable(send):
            raise PluginError(f"alert channel {name!r}: send must be callable")
        if validate is not None and not callable(validate):
            raise PluginError(f"alert channel {name!r}: validate must be callable")
        if not isinstance(config_schema, Mapping):
            raise PluginError(f"alert channel {name!r}: config_schema must be a JSON schema object")
        if isinstance(secret_fields, str) or not all(isinstance(f, str) for f in secret_fields):
            raise PluginError(f"alert channel {name!r}: secret_fields must be a tuple of key names")
        self.alert_channels[name] = AlertChannelType(
            name,
            dict(config_schema),
            send,
            tuple(secret_fields),
            self._current,
            validate,
            label or name,
        )

    def _check_name(self, name: Any, kind: str, builtin: tuple[str, ...], taken: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"{kind} name {name!r} must be an identifier")
        if name in builtin:
            raise PluginError(f"{kind} {name!r} is built in")
        if name in taken:
            raise PluginError(f"{kind} {name!r} is already registered by plugin {taken[name].plugin!r}")

    # -- discovery ------------------------------------------------------------------

    def load(self) -> PluginRegistry:
        with _lock:
            if not self._loaded:
                self._loaded = True
                for label, loader in _sources():
                    self._load_one(label, loader)
                extensions.TRIGGER_TYPES.clear()
                extensions.TRIGGER_TYPES.update(self.trigger_types)
        return self

    def _load_one(self, label: str, loader: Callable[[], Any]) -> None:
        try:
            plugin = loader()
        except Exception as exc:  # noqa: BLE001 - any import error is the plugin's
            self._problem(label, "E030", f"cannot be loaded: {type(exc).__name__}: {exc}")
            return
        name = getattr(plugin, "name", None) or label
        version = getattr(plugin, "api_version", None)
        if version != API_VERSION:
            self._problem(
                name, "E031", f"declares plugin API version {version!r}; this app has {API_VERSION}"
            )
            return
        if name in self.plugins:
            self._problem(name, "E032", f"is loaded twice ({label})")
            return
        register = getattr(plugin, "register", None)
        if not callable(register):
            self._problem(name, "E033", "has no register(registry) function")
            return
        # All or nothing: a plugin whose register() fails adds none of its parts.
        before = (dict(self.trigger_types), dict(self.executors), dict(self.alert_channels))
        self._current = name
        try:
            register(self)
        except Exception as exc:  # noqa: BLE001
            self.trigger_types, self.executors, self.alert_channels = before
            self._problem(name, "E034", f"failed to register: {type(exc).__name__}: {exc}")
            return
        finally:
            self._current = ""
        self.plugins[name] = plugin

    def _problem(self, plugin: str, check_id: str, message: str) -> None:
        self.problems.append(Problem(plugin, check_id, message))
        logger.error("plugin problem", extra={"plugin": plugin, "check": check_id, "problem": message})

    def reset(self) -> None:
        """Forget everything loaded (tests, settings changes)."""
        with _lock:
            self.trigger_types.clear()
            self.executors.clear()
            self.alert_channels.clear()
            self.plugins.clear()
            self.problems.clear()
            self._loaded = False
            extensions.TRIGGER_TYPES.clear()


_lock = threading.RLock()


def _sources() -> list[tuple[str, Callable[[], Any]]]:
    from importlib.metadata import entry_points

    from scheduler_app.conf import app_settings

    found: list[tuple[str, Callable[[], Any]]] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.append((f"entry point {point.name}", point.load))
    for reference in app_settings.PLUGINS or []:
        found.append((str(reference), lambda ref=reference: _import(ref)))
    return found


def _import(reference: Any) -> Any:
    if not isinstance(reference, str) or ":" not in reference:
        raise PluginError(f"{reference!r} is not a 'module:attribute' reference")
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise PluginError(f"module {module_name!r} has no {attribute!r}") from None


registry = PluginRegistry()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "SCHEDULER_APP":
        registry.reset()


def connect_signals() -> None:
    from django.core.signals import setting_changed

    setting_changed.connect(_reload, dispatch_uid="scheduler_app.plugins.reload")


# -- executors -----------------------------------------------------------------------


def executor_factories() -> dict[str, ExecutorFactory]:
    """The ``isolated`` executor and the plugins' executors, by name."""
    from scheduler_app.conf import app_settings
    from scheduler_app.engine.isolated import IsolatedExecutor, IsolationConfig

    def isolated(context: extensions.ExecutorContext) -> Any:
        config = IsolationConfig(
            environment=tuple(app_settings.ISOLATED_ENVIRONMENT),
            max_open_files=app_settings.ISOLATED_MAX_OPEN_FILES,
            user=app_settings.ISOLATED_USER,
            no_network=app_settings.ISOLATED_NO_NETWORK,
        )
        return IsolatedExecutor(
            app_settings.ISOLATED_POOL_SIZE,
            context.sink,
            context.result_max_bytes,
            config,
            log_max_bytes=context.run_log_max_bytes,
        )

    factories: dict[str, ExecutorFactory] = {"isolated": isolated}
    factories.update({name: kind.factory for name, kind in registry.load().executors.items()})
    return factories


def build_executors(sink: Callable[[Any], None], result_max_bytes: int) -> dict[str, Any]:
    """The extra executors of a node (for ``backends.service``); broken ones are left
    out and logged (the system checks name them too)."""
    from scheduler_app.conf import app_settings
    from scheduler_app.registry import registry as tasks

    def resolve(name: str) -> Callable[..., Any]:
        return tasks.get(name).func

    options = app_settings.PLUGIN_OPTIONS or {}
    built: dict[str, Any] = {}
    for name, factory in executor_factories().items():
        plugin = registry.executors[name].plugin if name in registry.executors else ""
        context = extensions.ExecutorContext(
            sink, result_max_bytes, options.get(plugin, {}), resolve, app_settings.MAX_RUN_LOG_BYTES
        )
        made, _failed = extensions.build_executors({name: factory}, context)
        built.update(made)
    return built


def executor_choices() -> list[tuple[str, str]]:
    """Choices of a job's ``executor`` field: the built-in ones and the plugins'."""
    from scheduler_app.models.jobs import Executor

    return [*Executor.choices, *((k.name, k.label) for k in registry.load().executors.values())]


def enforces_limits(executor: str) -> bool:
    if executor in ("process", "isolated"):
        return True
    kind = registry.load().executors.get(executor)
    return bool(kind and kind.enforces_limits)


# -- alert channels --------------------------------------------------------------------


def alert_channel_choices() -> list[tuple[str, str]]:
    """The plugins' alert channel types as choices (value, label)."""
    return [(k.name, k.label or k.name) for k in registry.load().alert_channels.values()]


def alert_channel_type(name: str) -> AlertChannelType | None:
    return registry.load().alert_channels.get(name)


# The top-level JSON-schema checks live in the engine (trigger documents use them too).
_JSON_TYPES = extensions.JSON_TYPES
_type_ok = extensions.type_ok
schema_problems = extensions.schema_problems


def clean_channel_config(
    kind: AlertChannelType, config: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The canonical configuration and its problems as (key, message): the declared
    schema, then the plugin's ``validate`` (whose returned mapping, if any, is the
    canonical form). A ``validate`` that raises anything but ChannelConfigError is
    reported as a problem too (never a crash of the page or the API)."""
    problems = schema_problems(kind.config_schema, config)
    if problems or kind.validate is None:
        return dict(config), problems
    try:
        cleaned = kind.validate(dict(config))
    except extensions.ChannelConfigError as exc:
        return dict(config), [(exc.field, exc.message)]
    except Exception as exc:  # noqa: BLE001 - a plugin bug: name it, do not crash
        logger.warning("plugin channel validate raised", extra={"channel_type": kind.name}, exc_info=True)
        return dict(config), [
            ("", f"the {kind.name} plugin could not check the settings: {type(exc).__name__}: {exc}")
        ]
    return (dict(cleaned) if isinstance(cleaned, Mapping) else dict(config)), []
