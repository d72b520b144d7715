"""The `usage_prices` file: good files load, bad ones are refused in one line with file, key, line."""

from __future__ import annotations

from pathlib import Path

import pytest

from usagefix.optioncheck import OptionError, SetStrings, check_deferred, check_value
from usagefix.options import OPTIONS
from usagefix.price_overrides import (
    PriceOverrideError,
    PriceOverrides,
    load_price_overrides,
    overrides_from_option,
)

GOOD = """\
# Names a gateway gives models, and what they are.
[[price]]
model = "house-sonnet*"
host = "127.0.0.1:8317"
price_as = "claude-sonnet-4-5"
provider = "anthropic"

[[price]]
model = "GLM-*"
provider = "zai"
context_window = 200000

[[price]]
model = "gemini-2.5-pro"
context_window = 1048576
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "prices.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_a_good_file_loads_and_matches_by_model_and_host(tmp_path: Path) -> None:
    table = load_price_overrides(write(tmp_path, GOOD))
    assert [p.model for p in table.price] == ["house-sonnet*", "GLM-*", "gemini-2.5-pro"]
    first = table.match("127.0.0.1", 8317, "House-Sonnet-v2")  # globs ignore case
    assert first is not None and (first.price_as, first.provider) == ("claude-sonnet-4-5", "anthropic")
    assert table.match("127.0.0.1", 9999, "house-sonnet") is None  # another upstream
    glm = table.match("api.z.ai", 443, "glm-4.6")  # no host: any upstream
    assert glm is not None and (glm.provider, glm.context_window) == ("zai", 200_000)
    assert table.match("api.z.ai", 443, None) is None
    assert table.match("localhost", 1, "gpt-5") is None
    host_only = load_price_overrides(
        write(tmp_path, '[[price]]\nmodel = "*"\nhost = "gw.internal"\nprovider = "openai"\n')
    )
    assert (
        host_only.match("GW.internal", 443, "x") is not None and host_only.match("gw.other", 443, "x") is None
    )
    assert load_price_overrides(write(tmp_path, "")) == PriceOverrides()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[price]]\nmodel = "x"\nprovidr = "anthropic"\n', "price.0.providr (line 3): Extra inputs are not permitted"),
        # The key's own entry, not the first entry with that key.
        (GOOD + '\n[[price]]\nmodel = "y"\nprovider = "antropic"\n',
         "price.3.provider (line 19): Value error, 'antropic' is not a genai-prices provider"),
        ('[[price]]\nmodel = "x"\nprice_as = "claude-sonet-4-5"\n',
         "price.0.price_as (line 3): Value error, 'claude-sonet-4-5' is not a genai-prices model"),
        ('[[price]]\nmodel = "x"\nprovider = "openai"\nprice_as = "claude-sonnet-4-5"\n',
         "price.0.price_as (line 4): Value error, 'claude-sonnet-4-5' is not a genai-prices model of provider 'openai'"),
        ('\n[[price]]\nmodel = "x"\n', "price.0 (line 2): Value error, give price_as, provider or context_window"),
        ('[[price]]\nprovider = "openai"\n', "price.0.model (line 1): Field required"),
        ('[[price]]\nmodel = "x"\ncontext_window = 0\n', "price.0.context_window (line 3): Input should be greater than 0"),
        ('price = [{model = "x"}]\n', "price.0 (line 1): Value error, give price_as, provider or context_window"),
        ('[[prices]]\nmodel = "x"\n', "prices: Extra inputs are not permitted"),
        ("[[price]\n", "Expected ']]' at the end of an array declaration (at line 1, column 8)"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_key_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceOverrideError) as e:
        load_price_overrides(path)
    assert str(e.value) == f"{path}: {problem}"
    assert "\n" not in str(e.value)


def test_a_bad_provider_is_reported_alone_not_again_for_its_model(tmp_path: Path) -> None:
    path = write(tmp_path, '[[price]]\nmodel = "x"\nprovider = "nope"\nprice_as = "gpt-5"\n')
    with pytest.raises(PriceOverrideError) as e:
        load_price_overrides(path)
    assert (
        str(e.value)
        == f"{path}: price.0.provider (line 3): Value error, 'nope' is not a genai-prices provider"
    )


def test_an_unreadable_or_non_utf8_file_is_named_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(
        PriceOverrideError, match=r"^cannot read price overrides .*missing\.toml: No such file"
    ):
        load_price_overrides(missing)
    latin1 = write(tmp_path, '[[price]]\nmodel = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(PriceOverrideError) as e:
        load_price_overrides(latin1)
    assert str(e.value) == f"{latin1}: not UTF-8 text (byte 0xe9 on line 2)"


def test_the_option_refuses_a_bad_file_in_one_line_wherever_its_value_comes_from(tmp_path: Path) -> None:
    option = OPTIONS["usage_prices"]
    bad = write(tmp_path, '[[price]]\nmodel = "x"\nprovidr = "anthropic"\n')
    with pytest.raises(OptionError) as e:
        check_value(option, str(bad))
    assert str(e.value) == f"usage_prices: {bad}: price.0.providr (line 3): Extra inputs are not permitted"
    # config.yaml values arrive typed, and are checked the same way.
    assert check_deferred([("usage_prices", str(bad))]) == [str(e.value)]
    # And so are `--set` values: the file is read as the value is parsed, before mitmdump listens.
    assert check_deferred([("usage_prices", SetStrings((str(bad),)))]) == [str(e.value)]
    good = write(tmp_path, GOOD)
    assert check_value(option, str(good)) == str(good)
    assert check_value(option, None) is None and check_value(option, "") == ""


def test_the_readmes_example_file_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("--set usage_prices=FILE`:\n\n```toml\n", 1)[1].split("```", 1)[0]
    table = load_price_overrides(write(tmp_path, example))
    glm = table.match("127.0.0.1", 4000, "glm-4.6")
    assert len(table.price) == 3 and glm is not None and glm.provider == "zai"


def test_the_options_value_gives_the_table(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert overrides_from_option(str(path)) == load_price_overrides(path)
    assert overrides_from_option(None) is None and overrides_from_option("") is None
