"""The JSON depth bound of the body limits: the bracket count that clears most bodies
agrees with the full walk, at the boundary and for any JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.api import MAX_JSON_DEPTH
from reconciler.api.limits import _may_nest_deeper, json_depth


@pytest.mark.parametrize(
    ("body", "deeper"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), True),
        (json.dumps({"name": "[" * 500}).encode(), False),  # brackets in a string
        (json.dumps([[1]] * 100).encode(), False),  # many brackets, shallow: walked
        (json.dumps({"a": '\\"[' * 100, "b": [[1]]}).encode(), False),  # escaped quotes
    ],
)
def test_the_boundary(body: bytes, deeper: bool) -> None:
    assert _may_nest_deeper(body, MAX_JSON_DEPTH) is deeper


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=200,
)


@given(json_values, st.integers(min_value=0, max_value=8))
def test_the_count_agrees_with_the_walk(value: object, limit: int) -> None:
    body = json.dumps(value).encode()
    assert _may_nest_deeper(body, limit) == (json_depth(body) > limit)
