"""The addon's options, declared: name, kind, default, help, and what each accepts.

mitmproxy shows `help`; the README's options table is generated from `doc` (scripts/readme_tables.py).
Pure: the checks are usagefix.optioncheck; the glue (usagefix.optionhooks) declares these in `load`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from usagefix.framing import DEFAULT_MAX_EVENT_BYTES
from usagefix.ledger import parse_target
from usagefix.ledger.writer import SPOOL_MAX
from usagefix.userpath import user_path

__all__ = [
    "DEFAULT_MAX_SAVED_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "MIN_EVENT_BYTES",
    "OPTIONS",
    "PREFIX",
    "Option",
    "Value",
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

    return load_price_overrides(user_path(value)) if value else None


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
