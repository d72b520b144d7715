"""Replace one value inside a JSON text and leave every other byte as it was.

Re-serializing a whole event would change what we have no business changing: escapes
(`\\u00e9` vs `é`), number spellings, spacing. So we find the span of the value at a key path and
splice a new value in, written in the style of the old one (compact or spaced, indented or not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["find_span", "replace_at"]

_decoder = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    assert m is not None  # the pattern matches the empty string
    return m.end()


def find_span(text: str, path: Sequence[str]) -> tuple[int, int] | None:
    """The (start, end) of the value at `path` (a list of object keys), or None.

    With duplicate keys, the last one wins, as in `json.loads`. Raises `ValueError` on text that
    is not JSON along the way.
    """
    i = _ws(text, 0)
    span: tuple[int, int] | None = None
    for key in path:
        if text[i : i + 1] != "{":
            return None
        i = _ws(text, i + 1)
        span = None
        if text[i : i + 1] == "}":
            return None
        while True:
            k, i = _decoder.raw_decode(text, i)
            i = _ws(text, i)
            if text[i : i + 1] != ":":
                raise ValueError(f"expected ':' at {i}")
            i = _ws(text, i + 1)
            start = i
            _, i = _decoder.raw_decode(text, i)
            if k == key:
                span = (start, i)
            i = _ws(text, i)
            c = text[i : i + 1]
            if c == ",":
                i = _ws(text, i + 1)
                continue
            if c == "}":
                break
            raise ValueError(f"expected ',' or '}}' at {i}")
        if span is None:
            return None
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


def replace_at(text: str, path: Sequence[str], value: Any) -> str:
    """Return `text` with the value at `path` replaced by `value`; the path must exist."""
    span = find_span(text, path)
    if span is None:
        raise KeyError("/".join(path))
    start, end = span
    return text[:start] + dumps_like(value, text[start:end], text, start) + text[end:]
