"""Replace one value inside a JSON text and leave every other byte as it was.

Re-serializing a whole event, or even a whole usage block, would change what we have no business
changing: escapes (`\\u00e9` vs `é`), number spellings (`0.00001` vs `1e-05`), spacing. So we
find the span of the value at a key path and edit it in place, down to the leaves: a member
whose value is unchanged keeps its original text; a changed leaf is written in the style of the
text around it (compact or spaced, indented or not); a renamed key keeps its place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["find_span", "replace_at"]

_decoder = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    assert m is not None  # the pattern matches the empty string
    return m.end()


@dataclass(frozen=True, slots=True)
class _Member:
    key: str
    key_start: int
    value_start: int
    value_end: int
    value: Any


def _members(text: str, i: int) -> tuple[list[_Member], int]:
    """The members of the object starting at `i` (a `{`), and the index just past its `}`."""
    i = _ws(text, i + 1)
    out: list[_Member] = []
    if text[i : i + 1] == "}":
        return out, i + 1
    while True:
        key_start = i
        k, i = _decoder.raw_decode(text, i)
        i = _ws(text, i)
        if text[i : i + 1] != ":":
            raise ValueError(f"expected ':' at {i}")
        i = _ws(text, i + 1)
        start = i
        v, i = _decoder.raw_decode(text, i)
        out.append(_Member(k, key_start, start, i, v))
        i = _ws(text, i)
        c = text[i : i + 1]
        if c == ",":
            i = _ws(text, i + 1)
            continue
        if c == "}":
            return out, i + 1
        raise ValueError(f"expected ',' or '}}' at {i}")


def _elements(text: str, i: int) -> list[tuple[int, int]]:
    """The (start, end) of each element of the array starting at `i` (a `[`)."""
    i = _ws(text, i + 1)
    out: list[tuple[int, int]] = []
    if text[i : i + 1] == "]":
        return out
    while True:
        start = i
        _, i = _decoder.raw_decode(text, i)
        out.append((start, i))
        i = _ws(text, i)
        c = text[i : i + 1]
        if c == ",":
            i = _ws(text, i + 1)
            continue
        if c == "]":
            return out
        raise ValueError(f"expected ',' or ']' at {i}")


def find_span(text: str, path: Sequence[str | int]) -> tuple[int, int] | None:
    """The (start, end) of the value at `path` (object keys, and array indices), or None.

    With duplicate keys, the last one wins, as in `json.loads`. Raises `ValueError` on text that
    is not JSON along the way.
    """
    i = _ws(text, 0)
    span: tuple[int, int] | None = None
    for key in path:
        if isinstance(key, int):
            if text[i : i + 1] != "[":
                return None
            elements = _elements(text, i)
            if not 0 <= key < len(elements):
                return None
            span = elements[key]
        else:
            if text[i : i + 1] != "{":
                return None
            members, _ = _members(text, i)
            found = [m for m in members if m.key == key]
            if not found:
                return None
            span = (found[-1].value_start, found[-1].value_end)
        i = span[0]
    return span


def _indent_of_line(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    m = _WS.match(text, line_start)
    assert m is not None
    return text[line_start : m.end()].replace("\n", "").replace("\r", "")


def dumps_like(value: Any, old: str, text: str, start: int) -> str:
    """Serialize `value` in the style of `old`, the text it replaces at `start` in `text`."""
    if "\n" in old:
        # Pretty-printed: reuse the indent step and the indent of the line we start on.
        base = _indent_of_line(text, start)
        first_key = re.search(r"\n([ \t]*)\S", old)
        step = len(first_key.group(1)) - len(base) if first_key else 2
        newline = "\r\n" if "\r\n" in old else "\n"
        body = json.dumps(value, indent=max(step, 1), ensure_ascii=False)
        return body.replace("\n", newline + base)
    # The two separators are styled independently: Gemini writes `{"a": 1,"b": 2}`.
    item = ", " if re.search(r",[ \t]", old) else ","
    key = ": " if re.search(r'":[ \t]', old) else ":"
    return json.dumps(value, separators=(item, key), ensure_ascii=False)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, without Python's `True == 1` (but with `1 == 1.0`).

    Iterative: a value nested as deep as `json.loads` reads must not exhaust the call stack.
    """
    todo = [(a, b)]
    while todo:
        x, y = todo.pop()
        if isinstance(x, bool) or isinstance(y, bool) or x is None or y is None:
            if x is not y:
                return False
        elif isinstance(x, int | float) and isinstance(y, int | float):
            if x != y:
                return False
        elif isinstance(x, Mapping) and isinstance(y, Mapping):
            if x.keys() != y.keys():
                return False
            todo.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return False
            todo.extend(zip(x, y, strict=True))
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _edit(text: str, start: int, end: int, old: Any, new: Any) -> str:
    """The new text of the value `old` at text[start:end], now `new`, changed as little as can be."""
    if _same(old, new):
        return text[start:end]
    if isinstance(old, Mapping) and isinstance(new, Mapping) and old:
        return _edit_object(text, start, end, new)
    return dumps_like(new, text[start:end], text, start)


def _edit_object(text: str, start: int, end: int, new: Mapping[str, Any]) -> str:
    members, _ = _members(text, start)
    keys = [m.key for m in members]
    if len(set(keys)) != len(keys):  # duplicate keys: no sane in-place edit, write it anew
        return dumps_like(new, text[start:end], text, start)
    by_key = {m.key: m for m in members}
    new_keys = list(new)
    # A key that went where another came, at the same position, was renamed in place.
    renamed = {
        k: members[i]
        for i, k in enumerate(new_keys)
        if k not in by_key and i < len(members) and members[i].key not in new
    }
    first = members[0]
    colon = text[_key_end(text, first.key_start) : first.value_start]
    seps = [text[a.value_end : b.key_start] for a, b in zip(members, members[1:], strict=False)]
    if seps:
        default_sep = seps[-1]
    else:
        lead = text[start + 1 : first.key_start]
        default_sep = "," + lead if "\n" in lead else _item_sep(text, colon)
    parts: list[str] = []
    for k in new_keys:
        m = by_key.get(k) or renamed.get(k)
        if m is not None and m.key == k:
            value = _edit(text, m.value_start, m.value_end, m.value, new[k])
            parts.append(text[m.key_start : m.value_start] + value)
        elif m is not None:  # renamed: the old key's spacing, a new name, the value edited
            value = _edit(text, m.value_start, m.value_end, m.value, new[k])
            between = text[_key_end(text, m.key_start) : m.value_start]
            parts.append(json.dumps(k, ensure_ascii=False) + between + value)
        else:
            value = _dump_new(new[k], text, start, end, members[-1].value_start)
            parts.append(json.dumps(k, ensure_ascii=False) + colon + value)
    body = "".join(
        (seps[i - 1] if i - 1 < len(seps) else default_sep) + p if i else p for i, p in enumerate(parts)
    )
    lead = text[start + 1 : first.key_start]
    trail = text[members[-1].value_end : end - 1]
    return "{" + lead + body + trail + "}"


def _dump_new(value: Any, text: str, start: int, end: int, member_at: int) -> str:
    """A new member's value, in the style of the object at text[start:end] (members at `member_at`)."""
    old = text[start:end]
    if "\n" in old and isinstance(value, dict | list) and value:
        indent = _indent_of_line(text, member_at)
        step = max(len(indent) - len(_indent_of_line(text, start)), 1)
        newline = "\r\n" if "\r\n" in old else "\n"
        return json.dumps(value, indent=step, ensure_ascii=False).replace("\n", newline + indent)
    return dumps_like(value, old.replace("\n", ""), text, start)


def _item_sep(text: str, colon: str) -> str:
    """The separator between members, as the rest of the text writes it; else as spaced as `colon`."""
    m = re.search(r',([ \t]*)"', text)
    if m is not None:
        return "," + m.group(1)
    return ", " if colon.endswith(" ") else ","


def _key_end(text: str, key_start: int) -> int:
    _, i = _decoder.raw_decode(text, key_start)
    return i


def replace_at(text: str, path: Sequence[str | int], value: Any) -> str:
    """Return `text` with the value at `path` replaced by `value`; the path must exist.

    Only what differs is rewritten (see the module's docstring).
    """
    span = find_span(text, path)
    if span is None:
        raise KeyError("/".join(map(str, path)))
    start, end = span
    old = json.loads(text[start:end])
    return text[:start] + _edit(text, start, end, old, value) + text[end:]
