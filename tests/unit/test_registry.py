"""The task registry: registration rules and signature checks (no Django needed)."""

import pytest

from scheduler_app.registry import TaskArgumentsError, TaskError, TaskNotRegistered, TaskRegistry


@pytest.fixture
def reg():
    r = TaskRegistry()

    def send(to, subject="hi", *, urgent=False):
        return to

    def only_pos(a, /, b):
        return a

    def anything(*args, **kwargs):
        return args

    async def coro(seconds):
        return seconds

    r.register(send, name="mail.send")
    r.register(only_pos, name="pos")
    r.register(anything, name="any")
    r.register(coro, name="coro")
    return r


def test_decorator_registers_and_returns_function():
    import scheduler_app
    from scheduler_app.registry import registry

    @scheduler_app.task(name="tests.decorated")
    def decorated(x):
        return x * 2

    try:
        assert decorated(2) == 4
        assert registry.get("tests.decorated").func is decorated
    finally:
        registry.unregister("tests.decorated")


def test_coroutines_are_marked(reg):
    assert reg.get("coro").is_coroutine
    assert not reg.get("mail.send").is_coroutine


def test_unknown_task(reg):
    with pytest.raises(TaskNotRegistered, match="task 'nope' is not registered"):
        reg.get("nope")


def test_name_clash_between_functions_is_refused(reg):
    def other(to):
        return to

    with pytest.raises(TaskError, match="already registered"):
        reg.register(other, name="mail.send")


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "field", "message"),
    [
        ("mail.send", [], {}, "kwargs", "missing required argument 'to'"),
        ("mail.send", [], {"to": "a", "cc": "b"}, "kwargs", "has no argument 'cc'"),
        ("mail.send", ["a", "s", "x"], {}, "args", "takes 2 positional argument(s) but 3 were given"),
        ("mail.send", ["a"], {"to": "b"}, "kwargs", "argument 'to' of task mail.send is also given in args"),
        ("pos", [], {"a": 1, "b": 2}, "kwargs", "argument 'a' of task pos is positional-only"),
        ("mail.send", "abc", {}, "args", "args must be a list"),
        ("mail.send", [], ["to"], "kwargs", "kwargs must be an object"),
        ("mail.send", [], {"not valid": 1}, "kwargs", "is not a valid argument name"),
    ],
    ids=[
        "missing",
        "unknown-kw",
        "too-many-positional",
        "twice",
        "positional-only",
        "args-not-list",
        "kwargs-not-dict",
        "bad-name",
    ],
)
def test_bad_calls_name_the_field_and_argument(reg, name, args, kwargs, field, message):
    with pytest.raises(TaskArgumentsError) as info:
        reg.check_call(name, args, kwargs)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("mail.send", ["a"], {}),
        ("mail.send", [], {"to": "a", "urgent": True}),
        ("pos", [1], {"b": 2}),
        ("any", [1, 2, 3], {"x": 1}),
        ("coro", [], {"seconds": 1}),
    ],
)
def test_good_calls_pass(reg, name, args, kwargs):
    reg.check_call(name, args, kwargs)
