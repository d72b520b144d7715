"""The addon's options, as mitmproxy sees them (glue: imports mitmproxy): declared from `OPTIONS`,
checked before mitmproxy parses them and again when they change, refused with one line (the
declarations are usagefix.options, the checks usagefix.optioncheck: both pure).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn, Optional

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from usagefix.liveledger import LiveLedger
from usagefix.optioncheck import OptionError, SetStrings, check_deferred, check_value, header_names
from usagefix.options import OPTIONS
from usagefix.profiles import ProfileError, ProfileSet, load_profiles
from usagefix.userpath import user_path

__all__ = ["TYPESPECS", "checked_options", "declare_options", "refuse"]

TYPESPECS: dict[str, Any] = {"bool": bool, "int": int, "path": Optional[str], "header": Optional[str]}  # noqa: UP045 (mitmproxy's)


def _unparsed(value: object) -> object:
    """A value mitmproxy kept aside: the strings of `--set` (its `_UnconvertedStrings`), or typed."""
    strings = getattr(value, "val", None)
    if isinstance(strings, list) and all(isinstance(s, str) for s in strings):
        return SetStrings(tuple(strings))
    return value


def _starting() -> bool:
    """Whether mitmproxy is still starting up (its proxy server addon not running yet)."""
    server = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    return server is not None and not getattr(server, "is_running", True)


def refuse(problems: list[str]) -> NoReturn:
    """Stop on options the addon cannot run with.

    While mitmproxy starts, one line per problem and exit 1, before anything listens: an
    `OptionsError` raised there would print a traceback and let mitmdump open its port first, and
    one raised while the options are parsed is dropped silently. Later (an option changed in mitmweb
    or the console), an `OptionsError`, which mitmproxy reports while it keeps the old values.
    """
    lines = ["usagefix: " + " ".join(p.split()) for p in problems]  # one line each, whatever a message holds
    if _starting():
        print("\n".join(lines), file=sys.stderr, flush=True)
        raise SystemExit(1)
    raise exceptions.OptionsError("; ".join(lines))  # type: ignore[no-untyped-call]


def declare_options(loader: Loader) -> None:
    """The `load` hook's part: declare every option, then check the `--set` values kept aside."""
    for option in OPTIONS.values():
        loader.add_option(option.name, TYPESPECS[option.kind], option.default, option.help)
    # Right after this hook mitmproxy parses the `--set` values it kept aside for these options,
    # and one that fails to parse aborts the addon's loading without a word: check them first.
    deferred = loader.master.options.deferred
    problems = check_deferred((name, _unparsed(value)) for name, value in deferred.items())
    if problems:
        refuse(problems)


def checked_options(ours: set[str], profiles: ProfileSet, ledger: LiveLedger) -> ProfileSet:
    """The `configure` hook's checks: every changed option (`ours`) checked before any takes effect,
    the profiles file read, the ledger switched; the profiles to use from now on. Refuses
    (`refuse`) what the addon cannot run with, so the caller changes nothing then."""
    try:
        for name in ours:
            check_value(OPTIONS[name], getattr(ctx.options, name))
        if "usage_profiles" in ours:
            path = ctx.options.usage_profiles
            try:
                profiles = ProfileSet(load_profiles(user_path(path)) if path else None)
            except (ProfileError, ValueError) as e:
                raise OptionError(f"usage_profiles: {e}") from None
        if ours & {"usage_ledger", "usage_ledger_spool_rows", "usage_session_header", "usage_prices"}:
            try:
                ledger.configure(
                    ctx.options.usage_ledger,
                    ctx.options.usage_ledger_spool_rows,
                    session_headers=header_names(ctx.options.usage_session_header),
                    prices=ctx.options.usage_prices,
                )
            except ValueError as e:
                raise OptionError(str(e)) from None
    except OptionError as e:
        refuse([str(e)])
    return profiles
