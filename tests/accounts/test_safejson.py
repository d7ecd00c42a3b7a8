"""accounts/lib/safejson.py: JSON with a nesting limit and only storable text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.lib import safejson


@pytest.mark.parametrize(
    "text",
    [
        "[" * 3000 + "]" * 3000,  # past Python's recursion limit: RecursionError from json.loads
        "[" * 33 + "]" * 33,
        '{"a":' * 33 + "1" + "}" * 33,
        '["\\u0000"]',
        '{"\\u0000": 1}',
        '"\\ud800"',
        '"\\uDFFF"',
        '"\\ud83d\\ude00\\ude00"',
        '"\\ud83d\\ud83d\\ude00"',
        '"x\\ud800\\u0041"',
        "NaN",
        "[Infinity]",
        "[-Infinity]",
    ],
)
def test_it_refuses_what_no_entry_point_can_use(text):
    with pytest.raises(safejson.UnusableJson):
        safejson.loads(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[" * 32 + "]" * 32, json.loads("[" * 32 + "]" * 32)),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # an escaped pair, as ensure_ascii clients send emoji
        ('"\\\\u0000"', "\\u0000"),  # an escaped backslash: text, not NUL
        ('"\\\\ud800"', "\\ud800"),
        ('{"a": [1, 2.5, "é", null, true]}', {"a": [1, 2.5, "é", None, True]}),
        (b'{"a": "\xc3\xa9"}', {"a": "é"}),
    ],
)
def test_it_reads_what_json_loads_reads(text, value):
    assert safejson.loads(text) == value


def test_a_depth_limit_of_its_own():
    assert safejson.loads('{"a": {"b": 1}}', max_depth=2) == {"a": {"b": 1}}
    with pytest.raises(safejson.UnusableJson, match="at most 2 levels"):
        safejson.loads('{"a": {"b": [1]}}', max_depth=2)


def test_what_is_not_json_is_a_value_error():
    texts: list[str | bytes] = ["", "{", "[1] x", b"\xff"]
    for text in texts:
        with pytest.raises(ValueError):
            safejson.loads(text)


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)


DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@settings(max_examples=50, deadline=None)
@given(DOCUMENTS)
def test_it_agrees_with_json_loads_on_storable_documents(value):
    text = json.dumps(value)
    if any("\x00" in s or any("\ud800" <= ch <= "\udfff" for ch in s) for s in strings(value)):
        with pytest.raises(safejson.UnusableJson):
            safejson.loads(text)
    else:
        assert safejson.loads(text) == json.loads(text)
