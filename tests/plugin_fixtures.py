"""Broken plugins for the plugin tests, loaded through SCHEDULER_APP["PLUGINS"]."""

from scheduler_app.engine.extensions import API_VERSION


class _Plugin:
    api_version = API_VERSION

    def __init__(self, name, register):
        self.name = name
        self.register = register


def _duplicate(registry):
    registry.add_executor("serial", lambda ctx: None)  # the example plugin's name


def _raises(registry):
    registry.add_executor("halfway", lambda ctx: None)
    raise RuntimeError("boom in register")


duplicate = _Plugin("dup", _duplicate)
raises = _Plugin("raiser", _raises)


class old:  # noqa: N801
    name = "old"
    api_version = 0

    @staticmethod
    def register(registry):
        pass


def _never(registry):
    from apscheduler.triggers.date import DateTrigger

    registry.add_trigger_type(
        "never",
        schema={"type": "object"},
        validate=lambda doc, path: dict(doc),
        build=lambda doc, ctx: DateTrigger(run_date="2000-01-01T00:00:00+00:00"),
        describe=lambda doc: "never",
    )


never = _Plugin("never", _never)


def _blocking(registry):
    import threading

    class Blocking:
        size = 1

        def __init__(self, ctx):
            self.gate = threading.Event()

        def free_slots(self):
            return 1

        def submit(self, run):
            self.gate.wait(60)

        def stop(self, run_id, state, reason):
            return False

        def running_ids(self):
            return []

        def shutdown(self, wait):
            self.gate.set()

    registry.add_executor("blocking", Blocking)


blocking = _Plugin("blocking", _blocking)


def _lax(registry):
    """A trigger type whose validate() accepts anything: only its schema refuses."""
    from apscheduler.triggers.interval import IntervalTrigger

    registry.add_trigger_type(
        "every_minutes",
        schema={
            "type": "object",
            "properties": {"minutes": {"type": "integer", "minimum": 1, "maximum": 1440}},
            "required": ["minutes"],
            "additionalProperties": False,
        },
        validate=lambda doc, path: dict(doc),
        build=lambda doc, ctx: IntervalTrigger(minutes=int(doc.get("minutes") or 1)),
        describe=lambda doc: f"every {doc.get('minutes')} minutes",
    )


lax = _Plugin("lax", _lax)


def _accents(registry):
    """Trigger types whose names read the same once sanitised for OpenAPI (``caf_``),
    and one that is that sanitised name itself."""
    from apscheduler.triggers.interval import IntervalTrigger

    for name, unit in (("café", "minutes"), ("cafè", "hours"), ("caf_", "seconds")):
        registry.add_trigger_type(
            name,
            schema={
                "type": "object",
                "properties": {unit: {"type": "integer", "minimum": 1}},
                "required": [unit],
                "additionalProperties": False,
            },
            validate=lambda doc, path: dict(doc),
            build=lambda doc, ctx, unit=unit: IntervalTrigger(**{unit: int(doc.get(unit) or 1)}),
            describe=lambda doc, unit=unit: f"every {doc.get(unit)} {unit}",
        )


accents = _Plugin("accents", _accents)
