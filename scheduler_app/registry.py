"""The task registry: the only callables a job may run.

Projects register tasks in code with :func:`task`. A job stores the task's *name*; the
registry maps names to callables. Nothing here (or anywhere in the app) imports a dotted
path that came from a form, an API call or a jobs file.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar


def _(message: str) -> str:
    """gettext, in the active language, when Django is set up; the engine imports this
    module without Django (and without its settings), so the import is deferred and an
    unconfigured process gets the English text."""
    try:
        from django.utils.translation import gettext  # type: ignore[import-untyped]

        return str(gettext(message))
    except Exception:  # ImproperlyConfigured, AppRegistryNotReady: no Django here
        return message


F = TypeVar("F", bound=Callable[..., Any])


class TaskError(ValueError):
    """A task name or a call to a task is not valid."""


class TaskNotRegistered(TaskError):
    def __init__(self, name: str) -> None:
        super().__init__(_("task %(name)r is not registered") % {"name": name})
        self.name = name


class TaskArgumentsError(TaskError):
    """Arguments that do not fit the task's signature; ``field`` is args or kwargs."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RegisteredTask:
    name: str
    func: Callable[..., Any]
    description: str = ""
    is_coroutine: bool = field(default=False)

    @property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.func)

    def __str__(self) -> str:
        return f"{self.name}{self.signature}"

    def check_call(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise :class:`TaskArgumentsError` unless ``func(*args, **kwargs)`` would bind."""
        if not isinstance(args, list | tuple):
            raise TaskArgumentsError("args", _("args must be a list"))
        if not isinstance(kwargs, Mapping):
            raise TaskArgumentsError("kwargs", _("kwargs must be an object"))
        for key in kwargs:
            if not isinstance(key, str) or not key.isidentifier():
                raise TaskArgumentsError("kwargs", _("%(key)r is not a valid argument name") % {"key": key})
        sig = self.signature
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        takes_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        takes_varkw = any(p.kind is p.VAR_KEYWORD for p in params)
        if len(args) > len(positional) and not takes_varargs:
            raise TaskArgumentsError(
                "args",
                _("task %(task)s takes %(takes)d positional argument(s) but %(given)d were given")
                % {"task": self.name, "takes": len(positional), "given": len(args)},
            )
        bound_by_position = {p.name for p in positional[: len(args)]}
        names = {p.name: p for p in params}
        for key in kwargs:
            param = names.get(key)
            if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                if not takes_varkw:
                    raise TaskArgumentsError(
                        "kwargs", _("task %(task)s has no argument %(key)r") % {"task": self.name, "key": key}
                    )
            elif param.kind is param.POSITIONAL_ONLY:
                raise TaskArgumentsError(
                    "kwargs",
                    _("argument %(key)r of task %(task)s is positional-only")
                    % {"key": key, "task": self.name},
                )
            elif key in bound_by_position:
                raise TaskArgumentsError(
                    "kwargs",
                    _("argument %(key)r of task %(task)s is also given in args")
                    % {"key": key, "task": self.name},
                )
        for param in params:
            if param.default is not param.empty or param.kind in (
                param.VAR_POSITIONAL,
                param.VAR_KEYWORD,
            ):
                continue
            if param.name not in bound_by_position and param.name not in kwargs:
                where = "args" if param.kind is param.POSITIONAL_ONLY else "kwargs"
                raise TaskArgumentsError(
                    where,
                    _("task %(task)s is missing required argument %(name)r")
                    % {"task": self.name, "name": param.name},
                )


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, RegisteredTask] = {}

    def register(
        self, func: Callable[..., Any], *, name: str | None = None, description: str = ""
    ) -> RegisteredTask:
        task_name = name or f"{func.__module__}.{func.__qualname__}"
        if not task_name or any(c.isspace() for c in task_name) or len(task_name) > 200:
            raise TaskError(f"invalid task name {task_name!r}")
        existing = self._tasks.get(task_name)
        if existing is not None and _identity(existing.func) != _identity(func):
            raise TaskError(
                f"task name {task_name!r} is already registered by "
                f"{existing.func.__module__}.{existing.func.__qualname__}"
            )
        registered = RegisteredTask(
            name=task_name,
            func=func,
            description=description or (inspect.getdoc(func) or "").split("\n")[0],
            is_coroutine=inspect.iscoroutinefunction(func),
        )
        self._tasks[task_name] = registered
        return registered

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)

    def get(self, name: str) -> RegisteredTask:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotRegistered(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[RegisteredTask]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def check_call(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.get(name).check_call(args, kwargs)


def _identity(func: Callable[..., Any]) -> tuple[str, str]:
    # A module imported twice (e.g. as __main__ and by name) re-registers the "same"
    # function; compare by where it is defined rather than by object identity.
    return (func.__module__, func.__qualname__)


registry = TaskRegistry()


@dataclass(frozen=True)
class CodeJob:
    """A job declared in code: ``document`` is a job document (``trigger`` built from
    ``schedule``/``timezone``); ``module`` is where it was declared."""

    name: str
    module: str
    document: Mapping[str, Any]


#: Jobs declared with ``@task(schedule=...)``, in declaration order (synced by
#: scheduler_app.services.codejobs; two declarations of one name are refused there).
code_jobs: list[CodeJob] = []


def task(
    func: F | None = None,
    *,
    name: str | None = None,
    description: str = "",
    schedule: str | Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    job_name: str | None = None,
    **job: Any,
) -> Any:
    """Register a callable (sync function or coroutine function) as a schedulable task.

    Usable bare (``@task``) or with options (``@task(name="billing.send_invoices")``).
    With ``schedule`` (a cron expression, or a trigger document) it also declares a job
    managed by code, named ``job_name`` (default: the task name), with any other job
    document field (``kwargs=``, ``priority=``, ``tenant=`` ...), created, updated and
    deleted with the code by ``runscheduler`` and ``manage.py syncjobs``.
    The function is returned unchanged.
    """

    def decorator(f: F) -> F:
        registered = registry.register(f, name=name, description=description)
        if schedule is not None:
            trigger = (
                {"type": "cron", "expression": schedule, "timezone": timezone}
                if isinstance(schedule, str)
                else dict(schedule)
            )
            document = {"description": registered.description, **job, "task": registered.name}
            document["trigger"] = trigger
            code_jobs.append(CodeJob(job_name or registered.name, f.__module__, document))
        return f

    if func is not None:
        return decorator(func)
    return decorator
