"""The addon's options, and the checks mitmproxy does not make for them.

mitmproxy (12.2 and 12.3 alike) keeps a `--set` for a script's option, and a confdir `config.yaml`
key, aside until the script declares the option, then parses it in `OptManager.process_deferred`,
inside the script's registration. A value that fails to parse there aborts the script's loading
and nothing says so: mitmdump runs on as a plain proxy. A name no addon declares stays aside
silently. So the addon checks every `usage_*` value left aside, with exactly the spellings
mitmproxy's `--set` parser accepts, before mitmproxy parses them.

Pure: the glue (addon.py) declares the options from `OPTIONS` and reports what this module finds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Literal

from usagefix.framing import DEFAULT_MAX_EVENT_BYTES
from usagefix.ledger import parse_target
from usagefix.ledger.writer import SPOOL_MAX

__all__ = [
    "DEFAULT_MAX_SAVED_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "MIN_EVENT_BYTES",
    "OPTIONS",
    "PREFIX",
    "Option",
    "OptionError",
    "SetStrings",
    "check_deferred",
    "check_value",
    "parse_set",
    "header_names",
]

PREFIX = "usage_"

# Below this an event bound would cut ordinary usage events in two; above this one, a single
# held event could take a good part of the proxy's memory (the largest real ones are a few MB).
MIN_EVENT_BYTES = 4096
MAX_EVENT_BYTES = 256 * 1024 * 1024

# A streamed body is kept whole for the saved flow (mitmweb shows it, `-nr` re-normalizes it) up to
# this size: LLM streams are a few MB at most; one past it is saved without its body.
DEFAULT_MAX_SAVED_BODY_BYTES = 64 * 1024 * 1024

Kind = Literal["bool", "int", "path", "header"]
Value = bool | int | str | None


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    kind: Kind
    default: Value
    help: str
    accepted: str
    """What a value may be, in words, for the error messages."""
    minimum: int | None = None
    maximum: int | None = None
    parse: Callable[[str], object] | None = None
    """For a path: what reads the value (a file, a URL), raising `ValueError` with one line that
    says what is wrong, so a bad value is refused wherever it comes from (`--set`, config.yaml,
    mitmweb's option editor)."""
    doc: str = ""
    """The README's words for it (Markdown, one table cell): richer than `help`, which mitmproxy
    shows; scripts/readme_tables.py generates the README's options table from these."""
    default_note: str = ""
    """Said after the default in that table, e.g. where a launcher sets another."""


def _load_prices(value: str) -> object:
    from usagefix.price_overrides import load_price_overrides  # genai-prices' data, only if used

    return load_price_overrides(Path(value).expanduser()) if value else None


_LEDGER_ACCEPTED = "a file path, a postgresql:// URL, or off"


def _ledger(value: str) -> object:
    try:
        return parse_target(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not usable: {e} ({_LEDGER_ACCEPTED})") from None


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "usage_max_event_bytes",
            "int",
            DEFAULT_MAX_EVENT_BYTES,
            "The largest streamed event (in bytes) held back to be parsed; a larger one is forwarded "
            "untouched and flagged.",
            f"bytes, from {MIN_EVENT_BYTES} to {MAX_EVENT_BYTES}",
            minimum=MIN_EVENT_BYTES,
            maximum=MAX_EVENT_BYTES,
            doc=f"the largest streamed event held back to be parsed; a larger one is forwarded untouched and "
            f"flagged `oversize_events` (from {MIN_EVENT_BYTES} to {MAX_EVENT_BYTES})",
        ),
        Option(
            "usage_redact_secrets",
            "bool",
            True,
            "Mask credentials (Authorization, API-key and token headers, cookies, key=, access_token= and "
            "AWS presigned query parameters) in saved flows. The upstream always receives the real ones.",
            "true or false",
            doc="mask credentials in saved flows (see above)",
        ),
        Option(
            "usage_profiles",
            "path",
            None,
            "A TOML file of upstream profiles: what an upstream gets wrong that a response cannot prove.",
            "the path of a TOML file, or empty for none",
            doc="a TOML file of upstream profiles (see *Upstream profiles*)",
        ),
        Option(
            "usage_prices",
            "path",
            None,
            "A TOML file of price overrides: which genai-prices model (and provider, context window) "
            "a model name means, for names the price table does not know or knows under another.",
            "the path of a TOML file, or empty for none",
            parse=_load_prices,
            doc="a TOML file of price overrides: which genai-prices model, provider or context window a "
            "model name means (see *Prices*)",
        ),
        Option(
            "usage_max_saved_body_bytes",
            "int",
            DEFAULT_MAX_SAVED_BODY_BYTES,
            "The largest streamed body (in bytes, as the client received it) kept for the saved flow; "
            "a larger one is saved without its body (its record is kept), so memory stays bounded.",
            "bytes, 0 or more",
            minimum=0,
            doc="the largest streamed body (as the client received it) kept for the saved flow; a larger "
            "stream still reaches the client whole, but its flow is saved without the body (*content "
            "missing*, with its full record and the anomaly `body_not_saved:<bytes>`), so the proxy's "
            "memory stays bounded; `-nr` leaves such a flow as it is",
        ),
        Option(
            "usage_session_header",
            "header",
            None,
            "Request headers (comma-separated) that name a session, read before the generic session "
            "keys (x-session-id, x-litellm-session-id, ...): e.g. X-My-Run-Id.",
            "header names separated by commas, or empty for none",
            doc="request headers (comma-separated) that name a session, read before the generic session "
            "keys (see *Sessions and cost reports*)",
        ),
        Option(
            "usage_log_lines",
            "bool",
            False,
            "Say what the proxy does: a start banner (mode, capture, the lines to paste into a client), "
            "one line per LLM response, and a summary at exit. scripts/run turns it on.",
            "true or false",
            doc="log a start banner (mode, capture, the lines to paste into a client), one line per LLM "
            "response (dialect, model, HTTP status, the numbers changed, the rules) and a summary at "
            "exit (responses, rewritten, unmeasured, tokens restored)",
            default_note=" (true in `scripts/run`)",
        ),
        Option(
            "usage_request_stream_usage",
            "bool",
            False,
            "Ask OpenAI Chat streams for usage (stream_options.include_usage) when the client did not, "
            "record it, and remove it from what the client receives.",
            "true or false",
            doc="ask OpenAI Chat streams for usage (`stream_options.include_usage`) when the client did "
            'not, record it, and remove the extra usage chunk (and the `"usage": null` keys) from what '
            "the client receives, so it sees exactly the stream it asked for",
        ),
        Option(
            "usage_ledger",
            "path",
            "off",
            "Write one row per LLM exchange to this ledger: a SQLite file path, a postgresql:// URL "
            "(several proxies may share it), or off.",
            _LEDGER_ACCEPTED,
            parse=_ledger,
            doc="one row per LLM exchange to this ledger: a SQLite file path, a `postgresql://` (or "
            "`postgres://`) URL, or `off` (see *The ledger*; `scripts/run` sets "
            "`flows/captures/usagefix.sqlite`)",
        ),
        Option(
            "usage_ledger_spool_rows",
            "int",
            SPOOL_MAX,
            "How many ledger rows wait in memory while the ledger's database is unreachable; rows past "
            "that are dropped, counted and logged (the flow file keeps them: usagefix ledger import).",
            "rows, 0 or more",
            minimum=0,
            doc="rows kept in memory while the ledger's database is unreachable; past that they are "
            "dropped, counted and logged",
        ),
    )
}


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
