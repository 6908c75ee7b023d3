"""The JSON depth bound of the body limits: the scan agrees with the nesting of the
parsed value, at the boundary and for any JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.api import MAX_JSON_DEPTH
from reconciler.api.limits import deeper_than, json_depth


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
    assert deeper_than(body, MAX_JSON_DEPTH) is deeper


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=200,
)


def _nesting(value: object) -> int:
    """How deep the parsed value nests (what a recursive parser would meet)."""
    if isinstance(value, dict):
        return 1 + max(map(_nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_nesting, value), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=8), st.booleans())
def test_the_scan_agrees_with_the_parsed_value(value: object, limit: int, escaped: bool) -> None:
    body = json.dumps(value, ensure_ascii=escaped).encode()
    assert json_depth(body) == _nesting(value)
    assert deeper_than(body, limit) == (_nesting(value) > limit)
