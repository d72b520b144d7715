"""jsonedit: a value replaced inside a JSON text, every other byte left as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagefix.jsonedit import find_span, replace_at

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.sampled_from([0.00001, 1.5, 1e21])
    | st.text(max_size=3)
)
keys = st.sampled_from(["prompt_tokens", "cached_tokens", "cost", "é", 'a"b', "x"])
values = st.recursive(
    leaves,
    lambda inner: st.dictionaries(keys, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(keys, values, max_size=5)


def styles(obj: dict[str, Any]) -> list[str]:
    return [
        json.dumps(obj, separators=(",", ":")),
        json.dumps(obj),
        json.dumps(obj, indent=2),
        json.dumps(obj, separators=(",", ": "), ensure_ascii=False),
    ]


@given(old=objects, new=objects, style=st.integers(0, 3))
def test_replacing_gives_the_new_value_and_keeps_the_rest(
    old: dict[str, Any], new: dict[str, Any], style: int
) -> None:
    text = styles({"before": "caf\\u00e9", "usage": old, "after": [1.0, 0.00001]})[style]
    out = replace_at(text, ["usage"], new)
    parsed = json.loads(out)
    assert parsed["usage"] == new
    if old != new:  # an equal object keeps its text, in its own key order
        assert list(parsed["usage"]) == list(new)
    start, end = find_span(text, ["usage"]) or (0, 0)
    assert out[:start] == text[:start]  # nothing before the value is touched
    assert out.endswith(text[end:])  # nor after it
    if old == new:
        assert out == text


def test_an_unchanged_leaf_keeps_its_spelling_and_a_changed_one_is_written_alone() -> None:
    text = '{"usage": {"prompt_tokens": 13,"cost": 0.00001,"details": {"cached_tokens": 22000, "x": 1.0}}}'
    new = {"prompt_tokens": 22013, "cost": 1e-05, "details": {"cached_tokens": 22000, "x": 1}}
    assert replace_at(text, ["usage"], new) == text.replace("13,", "22013,")


def test_a_renamed_key_keeps_its_place_and_spacing() -> None:
    text = '{"d": {"cached_tokens": 0, "cached_creation_tokens": 5004, "audio_tokens": 0}}'
    new = {"cached_tokens": 0, "cache_write_tokens": 5004, "audio_tokens": 0}
    assert replace_at(text, ["d"], new) == text.replace("cached_creation_tokens", "cache_write_tokens")


def test_added_members_follow_the_style_around_them() -> None:
    assert replace_at('{"u": {"output_tokens": 6}}', ["u"], {"input_tokens": 11, "output_tokens": 6}) == (
        '{"u": {"input_tokens": 11, "output_tokens": 6}}'
    )
    assert replace_at('{"a": 1,"u": {"o": 6}}', ["u"], {"o": 6, "n": 1}) == '{"a": 1,"u": {"o": 6,"n": 1}}'
    pretty = '{\n  "u": {\n    "p": 1\n  }\n}'
    assert (
        replace_at(pretty, ["u"], {"p": 2, "d": {"c": 3}})
        == '{\n  "u": {\n    "p": 2,\n    "d": {\n      "c": 3\n    }\n  }\n}'
    )


def test_paths_go_through_arrays() -> None:
    text = '{"choices":[{"index":0},{"index":1,"usage":{"total_tokens":80, "t":0.006}}]}'
    assert find_span(text, ["choices", 5]) is None and find_span(text, ["choices", "x"]) is None
    out = replace_at(text, ["choices", 1, "usage"], {"total_tokens": 89, "t": 0.006})
    assert out == text.replace("80", "89")
    with pytest.raises(KeyError):
        replace_at(text, ["nope"], 1)


def test_duplicate_keys_are_rewritten_whole_the_last_one_winning() -> None:
    text = '{"u": {"a": 1, "a": 2}}'
    assert find_span(text, ["u", "a"]) == (text.rindex("2"), text.rindex("2") + 1)
    assert json.loads(replace_at(text, ["u"], {"a": 3})) == {"u": {"a": 3}}


def test_an_equal_value_keeps_its_text_and_an_unequal_one_is_written() -> None:
    text = '{"u": {"s": "x", "l": [1, 2.0], "b": true}}'
    assert replace_at(text, ["u"], {"b": True, "l": [1, 2], "s": "x"}) == text  # key order is no change
    assert replace_at(text, ["u", "l"], [1, 2, 3]) == text.replace("[1, 2.0]", "[1, 2, 3]")
    assert replace_at(text, ["u", "s"], "y") == text.replace('"x"', '"y"')
    # JSON's true is not 1, nor is 1 a string: each is a change, written as JSON writes it.
    assert replace_at(text, ["u", "b"], 1) == text.replace("true", "1")
    assert replace_at(text, ["u", "l", 0], "1") == text.replace("[1,", '["1",')


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("{}", ["a"]),
        (" { } ", ["a"]),
        ("[]", [0]),
        ("[ ]", [0]),
        ('{"a": 1}', [0]),
        ("[1]", ["a"]),
        ('{"a": {}}', ["a", "b"]),
        ('{"a": [1]}', ["a", -1]),
    ],
)
def test_a_path_that_is_not_there_finds_nothing(text: str, path: list[str | int]) -> None:
    assert find_span(text, path) is None
    with pytest.raises(KeyError):
        replace_at(text, path, 1)


@pytest.mark.parametrize(
    ("text", "path", "why"),
    [
        ('{"a" 1}', ["a"], "expected ':'"),
        ('{"a": 1 "b": 2}', ["b"], "expected ','"),
        ('{"a": 1,}', ["a"], "Expecting value"),
        ("[1 2]", [1], "expected ',' or ']'"),
        ("[1,", [0], "Expecting value"),
        ('{"a": [1 2]}', ["a", 1], "Expecting ',' delimiter"),
    ],
)
def test_text_that_is_not_json_along_the_path_is_an_error(text: str, path: list[str | int], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        find_span(text, path)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_changed_value_in_pretty_printed_text_is_written_pretty_at_its_indent(newline: str) -> None:
    text = '{\n  "u": {\n    "d": {\n      "c": 3\n    },\n    "n": 1\n  }\n}'.replace("\n", newline)
    expected = '{\n  "u": {\n    "d": [\n      1,\n      2\n    ],\n    "n": 1\n  }\n}'.replace("\n", newline)
    assert replace_at(text, ["u", "d"], [1, 2]) == expected
    # An indent step of 4 is kept as well; a value with no indented line after a newline gets 2.
    four = json.dumps({"u": {"d": {"c": 3}}}, indent=4)
    assert replace_at(four, ["u", "d"], [1]) == four.replace(
        '{\n            "c": 3\n        }', "[\n            1\n        ]"
    )
    assert replace_at('{"d": {"c": 3\n\r}}', ["d"], [1]) == '{"d": [\n  1\n]}'
