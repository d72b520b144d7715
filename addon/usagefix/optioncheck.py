"""The checks mitmproxy does not make for the addon's options.

mitmproxy (12.2 and 12.3 alike) keeps a `--set` for a script's option, and a confdir `config.yaml`
key, aside until the script declares the option, then parses it in `OptManager.process_deferred`,
inside the script's registration. A value that fails to parse there aborts the script's loading
and nothing says so: mitmdump runs on as a plain proxy. A name no addon declares stays aside
silently. So the addon checks every `usage_*` value left aside, with exactly the spellings
mitmproxy's `--set` parser accepts, before mitmproxy parses them.

Pure: the declarations are usagefix.options; the glue (usagefix.optionhooks) reports what this
module finds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import get_close_matches

from usagefix.options import OPTIONS, PREFIX, Option, Value

__all__ = [
    "OptionError",
    "SetStrings",
    "check_deferred",
    "check_value",
    "header_names",
    "parse_set",
]


class OptionError(ValueError):
    """A value (or name) the addon cannot run with; the message names the option and what it accepts."""


@dataclass(frozen=True, slots=True)
class SetStrings:
    """The strings of `--set name=value` (one per `--set`; none for a bare `--set name`), unparsed."""

    values: tuple[str, ...]


def _bad(option: Option, value: object, problem: str) -> OptionError:
    return OptionError(f"{option.name}: {value!r} {problem} ({option.accepted})")


def check_value(option: Option, value: object) -> Value:
    """A typed value (config.yaml, mitmweb's option editor, or one parsed from `--set`), checked."""
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise _bad(option, value, "is not a boolean")
        return value
    if option.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(option, value, "is not an integer")
        if option.minimum is not None and value < option.minimum:
            raise _bad(option, value, "is too small")
        if option.maximum is not None and value > option.maximum:
            raise _bad(option, value, "is too large")
        return value
    if option.kind == "header":
        if value is not None and (
            not isinstance(value, str) or not all(map(_TOKEN.fullmatch, _split(value)))
        ):
            raise _bad(option, value, "is not a list of header names")
        return value
    if value is not None and not isinstance(value, str):
        raise _bad(option, value, "is not a path")
    if value is not None and option.parse is not None:
        try:
            option.parse(value)
        except ValueError as e:
            raise OptionError(f"{option.name}: {e}") from None
    return value


# An HTTP header name (RFC 9110 `token`).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _split(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def header_names(value: Value) -> tuple[str, ...]:
    """The header names a `header` option's value lists, in order (none for None or empty)."""
    return tuple(_split(value)) if isinstance(value, str) else ()


def parse_set(option: Option, values: tuple[str, ...]) -> Value:
    """What mitmproxy's `--set` parser makes of `values`, or why it (or the addon) refuses them.

    Mirrors `OptManager._parse_setval` for the kinds used here: a bool is `true`, `false`, `toggle`
    or no value (`--set name`, `--set name=`: true); an int is what Python's `int()` reads from a
    non-empty string; a path is any string, or none. Anything else stops mitmproxy from loading
    the addon, so it is an error here.
    """
    if len(values) > 1:
        given = ", ".join(repr(v) for v in values)
        raise OptionError(f"{option.name}: set {len(values)} times ({given}); set it once")
    text = values[0] if values else None
    if option.kind == "bool":
        if not text or text == "true":
            return True
        if text == "false":
            return False
        if text == "toggle":
            return not option.default
        raise _bad(option, text, "is not a boolean")
    if option.kind == "int":
        if text is None:
            raise OptionError(f"{option.name}: needs a value ({option.accepted})")
        try:
            number = int(text)
        except ValueError:
            raise _bad(option, text, "is not an integer") from None
        return check_value(option, number)
    return check_value(option, text)


def _unknown(name: str) -> OptionError:
    close = get_close_matches(name.replace("-", "_").lower(), OPTIONS, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "usagefix has " + ", ".join(sorted(OPTIONS))
    return OptionError(f"{name}: no such option ({hint})")


def check_deferred(deferred: Iterable[tuple[str, object]]) -> list[str]:
    """One message per `usage_*` option mitmproxy kept aside that it would drop or ignore silently.

    `deferred` gives each name with its `SetStrings` (from `--set`) or its typed value (from
    config.yaml); names without the prefix belong to other addons and are left alone.
    """
    problems = []
    for name, value in deferred:
        if not name.replace("-", "_").lower().startswith(PREFIX):
            continue  # another addon's (`usage-…`, `USAGE_…`: ours misspelled, so refused too)
        try:
            option = OPTIONS.get(name)
            if option is None:
                raise _unknown(name)
            if isinstance(value, SetStrings):
                parse_set(option, value.values)
            else:
                check_value(option, value)
        except OptionError as e:
            problems.append(str(e))
    return problems
