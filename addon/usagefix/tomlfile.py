"""The user's TOML files (profiles, price overrides): read, and their problems told in one line. Pure.

Both files are arrays of tables (`[[profile]]`, `[[price]]`), validated by strict pydantic models;
a problem is named by its key and the line it is on, in its own entry, so that a user finds it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

__all__ = ["explain", "read_toml"]


def read_toml(path: Path, what: str, error: type[ValueError]) -> tuple[str, dict[str, Any]]:
    """The file's text and its TOML, or `error` with one line: unreadable, not UTF-8 (which
    byte, on which line), or not TOML (where)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        bad = f"byte {e.object[e.start]:#04x} on line {e.object.count(b'\n', 0, e.start) + 1}"
        raise error(f"{path}: not UTF-8 text ({bad})") from e
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: {e}") from e


def explain(path: Path, text: str, e: ValidationError, table: str) -> str:
    """One line for all of a validation's problems: `FILE: price.0.provider (line 4): why; …`."""
    problems = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        line = _line_of(text, loc, table)
        where = ".".join(loc) + (f" (line {line})" if line else "")
        problems.append(f"{where}: {err['msg']}")
    return f"{path}: " + "; ".join(problems)


def _line_of(text: str, loc: list[str], table: str) -> int | None:
    """The line of the key an error is about (`price.2.provider`), looked for in its own entry;
    the entry's `[[table]]` line when the error is about the whole entry or the key is not
    written (a missing one)."""
    start, line = 0, None
    if len(loc) >= 2 and loc[0] == table and loc[1].isdigit():
        entry = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(table)}[ \t]*\]\]", re.MULTILINE)
        headers = [m.start() for m in entry.finditer(text)]
        if int(loc[1]) < len(headers):
            start = headers[int(loc[1])]
            line = text.count("\n", 0, start) + 1
    key = next((p for p in reversed(loc[2:] if line else loc) if not p.isdigit()), None)
    if key is not None:
        m = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.MULTILINE).search(text, start)
        line = text.count("\n", 0, m.start()) + 1 if m else line
    return line
