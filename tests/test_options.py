"""The addon's option checks: exactly mitmproxy's `--set` spellings, one clear message per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import exceptions, hooks, optmanager
from mitmproxy.test import taddons

from usagefix.addon import UsageFix
from usagefix.optioncheck import (
    _TOKEN,
    OptionError,
    SetStrings,
    _split,
    check_deferred,
    check_value,
    header_names,
    parse_set,
)
from usagefix.optionhooks import TYPESPECS as _TYPESPECS
from usagefix.options import OPTIONS, Option
from usagefix.profiles import ProfileError, load_profiles

SPELLINGS = [
    *["true", "false", "toggle", "", "True", "False", "TRUE", "yes", "no", "on", "off", "1", "0", "maybe"],
    *[" true", "true ", "4096", "65536", " 65536 ", "6_5536", "+65536", "-1", "10", "abc", "0x1000", "1e5"],
    *["٦٥٥٣٦", "4096.0", "profiles.toml", "~/p.toml", "postgresql://u@h/db", "mysql://h/db", "a.sqlite"],
]


def mitmproxy_parses(option: Option, values: tuple[str, ...]) -> object:
    """What mitmproxy's own `--set` parser makes of the values (raises OptionsError if it refuses)."""
    opts = optmanager.OptManager()
    opts.add_option(option.name, _TYPESPECS[option.kind], option.default, option.help)
    opts.set(*([f"{option.name}={v}" for v in values] or [option.name]))
    return getattr(opts, option.name)


def assert_same_as_mitmproxy(option: Option, values: tuple[str, ...]) -> None:
    try:
        theirs = mitmproxy_parses(option, values)
    except exceptions.OptionsError:
        with pytest.raises(OptionError):
            parse_set(option, values)
        return
    try:
        ours = parse_set(option, values)
    except OptionError:
        # The refusals of ours mitmproxy does not make: a bound below the addon's minimum, a
        # header option's value that is no list of header names, a value the option's own reader
        # refuses (a ledger URL of another scheme, a price file it cannot use).
        if option.kind == "header":
            assert isinstance(theirs, str) and not all(map(_TOKEN.fullmatch, _split(theirs)))
            return
        if option.parse is not None and isinstance(theirs, str):
            with pytest.raises(ValueError):
                option.parse(theirs)
            return
        assert option.minimum is not None and isinstance(theirs, int) and theirs < option.minimum
        return
    assert ours == theirs and type(ours) is type(theirs)


@pytest.mark.parametrize("option", OPTIONS.values(), ids=list(OPTIONS))
@pytest.mark.parametrize("text", SPELLINGS)
def test_a_value_is_accepted_exactly_when_mitmproxy_accepts_it(option: Option, text: str) -> None:
    assert_same_as_mitmproxy(option, (text,))


@pytest.mark.parametrize("option", OPTIONS.values(), ids=list(OPTIONS))
def test_a_bare_set_and_a_repeated_set_are_judged_as_mitmproxy_judges_them(option: Option) -> None:
    assert_same_as_mitmproxy(option, ())
    assert_same_as_mitmproxy(option, ("false", "true"))


@given(st.sampled_from(list(OPTIONS.values())), st.text(max_size=12))
def test_any_text_is_accepted_exactly_when_mitmproxy_accepts_it(option: Option, text: str) -> None:
    assert_same_as_mitmproxy(option, (text,))


def test_the_messages_name_the_option_the_value_and_what_is_accepted() -> None:
    problems = check_deferred(
        [
            ("usage_redact_secrets", SetStrings(("yes",))),
            ("usage_request_stream_usage", SetStrings(("True",))),
            ("usage_max_event_bytes", SetStrings(("abc",))),
            ("usage_max_event_byte", SetStrings(("100000",))),
            ("usage_colour_scheme", SetStrings(("blue",))),
            ("usage_profiles", SetStrings(("a.toml", "b.toml"))),
        ]
    )
    assert problems == [
        "usage_redact_secrets: 'yes' is not a boolean (true or false)",
        "usage_request_stream_usage: 'True' is not a boolean (true or false)",
        "usage_max_event_bytes: 'abc' is not an integer (bytes, from 4096 to 268435456)",
        "usage_max_event_byte: no such option (did you mean usage_max_event_bytes?)",
        "usage_colour_scheme: no such option (usagefix has usage_ledger, usage_ledger_spool_rows, "
        "usage_log_lines, usage_max_event_bytes, usage_max_saved_body_bytes, usage_prices, usage_profiles, "
        "usage_redact_secrets, usage_request_stream_usage, usage_session_header)",
        "usage_profiles: set 2 times ('a.toml', 'b.toml'); set it once",
    ]


def test_good_values_and_other_addons_options_pass() -> None:
    assert (
        check_deferred(
            [
                ("usage_redact_secrets", SetStrings(("false",))),
                ("usage_request_stream_usage", SetStrings(())),
                ("usage_max_event_bytes", SetStrings(("65536",))),
                ("usage_profiles", SetStrings(("profiles.toml",))),
                ("web_columns", SetStrings(("comment",))),  # another addon's, not ours to judge
                ("myaddon_level", "anything"),
            ]
        )
        == []
    )


def test_typed_values_from_a_config_file_are_checked_too() -> None:
    # confdir/config.yaml values arrive typed; YAML reads `yes` as True, which is a boolean.
    assert check_deferred([("usage_redact_secrets", True), ("usage_max_event_bytes", 65536)]) == []
    assert check_deferred(
        [
            ("usage_redact_secrets", "maybe"),
            ("usage_max_event_bytes", True),
            ("usage_max_event_bytes", 10),
            ("usage_profiles", 12),
        ]
    ) == [
        "usage_redact_secrets: 'maybe' is not a boolean (true or false)",
        "usage_max_event_bytes: True is not an integer (bytes, from 4096 to 268435456)",
        "usage_max_event_bytes: 10 is too small (bytes, from 4096 to 268435456)",
        "usage_profiles: 12 is not a path (the path of a TOML file, or empty for none)",
    ]
    assert check_value(OPTIONS["usage_profiles"], None) is None


def test_the_session_header_option_takes_header_names() -> None:
    option = OPTIONS["usage_session_header"]
    assert parse_set(option, ("X-My-Run-Id, x-other",)) == "X-My-Run-Id, x-other"
    assert header_names("X-My-Run-Id, x-other,") == ("X-My-Run-Id", "x-other")
    assert header_names(None) == () and header_names("") == ()
    assert check_value(option, None) is None
    for bad in ("a b", "x:y", 7):
        with pytest.raises(OptionError, match="usage_session_header: .* is not a list of header names"):
            check_value(option, bad)


def test_a_deferred_bad_value_is_refused_when_the_addon_registers() -> None:
    # The path mitmproxy takes for `--set` on a script's option: kept aside, then parsed right
    # after the addon's load hook. Without a proxy server (a test context), the refusal is an
    # OptionsError; in mitmdump it is one line and exit 1 (tests/e2e/test_options_e2e.py).
    with taddons.context() as tctx:
        tctx.options.set("usage_redact_secrets=yes", "usage_max_event_byte=1", defer=True)
        with pytest.raises(exceptions.OptionsError) as e:
            tctx.master.addons.register(UsageFix())
    assert str(e.value) == (
        "usagefix: usage_redact_secrets: 'yes' is not a boolean (true or false); "
        "usagefix: usage_max_event_byte: no such option (did you mean usage_max_event_bytes?)"
    )


def test_a_deferred_good_value_takes_effect() -> None:
    addon = UsageFix()
    with taddons.context() as tctx:
        tctx.options.set("usage_redact_secrets=false", "usage_max_event_bytes=65536", defer=True)
        tctx.master.addons.register(addon)
        tctx.master.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set(OPTIONS)))
    assert (addon.redact_secrets, addon.max_event_bytes) == (False, 65536)


def test_a_bad_runtime_change_keeps_every_old_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[profile]]\nname = "x"\nhots = "a"\n')
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"^usagefix: usage_profiles: .*hots \(line 3\)"):
            tctx.configure(addon, usage_redact_secrets=False, usage_profiles=str(bad))
        assert addon.redact_secrets is True and tctx.options.usage_redact_secrets is True


def test_a_profile_file_that_is_not_utf8_is_named_in_one_line(tmp_path: Path) -> None:
    latin1 = tmp_path / "profiles.toml"
    latin1.write_bytes('[[profile]]\nname = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ProfileError) as e:
        load_profiles(latin1)
    assert str(e.value) == f"{latin1}: not UTF-8 text (byte 0xe9 on line 2)"


def test_a_usage_option_spelled_with_dashes_or_capitals_is_refused_with_its_name() -> None:
    assert check_deferred([("usage-request-stream-usage", SetStrings(("true",)))]) == [
        "usage-request-stream-usage: no such option (did you mean usage_request_stream_usage?)"
    ]
    assert check_deferred([("USAGE_PROFILES", SetStrings(("p.toml",)))]) == [
        "USAGE_PROFILES: no such option (did you mean usage_profiles?)"
    ]


def test_an_event_bound_past_the_maximum_is_refused() -> None:
    assert check_deferred([("usage_max_event_bytes", SetStrings(("99999999999999999999999",)))]) == [
        "usage_max_event_bytes: 99999999999999999999999 is too large (bytes, from 4096 to 268435456)"
    ]


def test_the_ledger_option_takes_a_path_a_postgres_url_or_off() -> None:
    ledger = OPTIONS["usage_ledger"]
    assert ledger.default == "off"
    for good in ("off", "flows/captures/usagefix.sqlite", "postgresql://u@h/db", "postgres://h/db", None):
        assert check_value(ledger, good) == good
    assert check_deferred([("usage_ledger", SetStrings(("mysql://h/db",)))]) == [
        "usage_ledger: 'mysql://h/db' is not usable: mysql:// is not a ledger's scheme "
        "(a file path, a postgresql:// URL, or off)"
    ]
    assert check_deferred([("usage_ledger_spool_rows", SetStrings(("-1",)))]) == [
        "usage_ledger_spool_rows: -1 is too small (rows, 0 or more)"
    ]


def test_a_ledger_file_that_cannot_be_opened_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        with pytest.raises(
            exceptions.OptionsError, match=r"^usagefix: usage_ledger: cannot open .*dir\.sqlite: "
        ):
            tctx.configure(addon, usage_ledger=str(tmp_path / "dir.sqlite"))
        tctx.configure(addon, usage_ledger=str(tmp_path / "ok.sqlite"))
        assert addon.ledger.writer is not None and (tmp_path / "ok.sqlite").is_file()
        tctx.configure(addon, usage_ledger="off")
        assert addon.ledger.writer is None


@pytest.mark.parametrize("name", ["usage_prices", "usage_profiles", "usage_ledger"])
def test_a_path_under_a_user_that_does_not_exist_is_refused_in_one_line(name: str) -> None:
    # Path.expanduser raises RuntimeError for an unknown ~user: a traceback, not a refusal.
    addon = UsageFix()
    with taddons.context(addon) as tctx:
        with pytest.raises(
            exceptions.OptionsError,
            match=r"^usagefix: usage_\w+: .*~nosuchuser0/x: cannot expand ~nosuchuser0 \(no such user",
        ):
            tctx.configure(addon, **{name: "~nosuchuser0/x"})
