"""Run-state badges (white text on the state's colour) read in every theme: each colour
is at least 4.5:1 against white (WCAG AA). The browser test checks the pages; this
checks every state, including those no page of the browser test shows."""

import pytest

from scheduler_app.admin import STATE_COLOURS, state_badge
from scheduler_app.models import RunState
from tests.browser.test_pages import contrast


def _rgb(hex_colour):
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


@pytest.mark.parametrize("state", RunState.values)
def test_badge_contrast(state):
    assert state in STATE_COLOURS
    ratio = contrast(_rgb(STATE_COLOURS[state]), [255, 255, 255])
    assert ratio >= 4.5, (state, STATE_COLOURS[state], round(ratio, 2))
    assert "color:#fff" in state_badge(state)
