"""The non-recursive JSON decoder used for stored values deeper than the limits: the same
result as json.loads for any document, the same error for bad text, and no RecursionError
however deep the nesting."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_app.documents.limits import loads_json_flat

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from([None, 2]))
def test_same_result_as_json_loads(document, indent):
    text = json.dumps(document, indent=indent)
    assert loads_json_flat(text) == json.loads(text)


@pytest.mark.parametrize(
    "text", ["", "[1,", '{"a" 1}', "[1 2]", '{"a": 1,}', "tru", "[1]]", '"unterminated', "{1: 2}"]
)
def test_bad_text_raises_the_same_error(text):
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads_json_flat(text)


def test_deep_nesting_decodes_without_recursion():
    depth = 100_000
    value = loads_json_flat("[" * depth + "]" * depth)
    for _ in range(depth - 1):
        (value,) = value
    assert value == []
    nested = loads_json_flat('{"a":' * depth + "1" + "}" * depth)
    for _ in range(depth):
        nested = nested["a"]
    assert nested == 1


def test_special_literals():
    assert math.isnan(loads_json_flat("NaN"))
    assert loads_json_flat("[Infinity, -Infinity, 1e3, -0.5]") == [math.inf, -math.inf, 1000.0, -0.5]
