"""A task module declaring a job in code; loaded only by the code-jobs acceptance test
(through TASK_MODULES in the runscheduler it starts), never by the test process."""

import scheduler_app


@scheduler_app.task(name="tests.code_tick", schedule={"type": "interval", "seconds": 1}, tenant="acme")
def code_tick() -> str:
    """Ticks every second: a job declared in code."""
    return "tick"
