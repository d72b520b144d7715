"""The README names the test behind each safety claim: every test it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# `tests/x.py`, `tests/x.py::test_name`, or `::test_name` (in the file named last before it).
REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def named_tests() -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    last: str | None = None
    for m in REF.finditer(README):
        path, name = m.group(1), m.group(2)
        if path is None and name is None:
            continue
        last = path or last
        assert last is not None, f"`::{name}` names no file before it"
        out.append((last, name))
    return out


def test_every_test_the_readme_names_exists() -> None:
    refs = named_tests()
    assert len(refs) >= 20
    for path, name in refs:
        source = ROOT / path
        assert source.exists(), path
        if name is not None:
            assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), f"{path}::{name}"


def test_the_first_screen_shows_exactly_the_two_commands() -> None:
    section = README.split("## Run it", 1)[1]
    assert section.lstrip().startswith("Two commands do everything")
    block = re.search(r"\n\n((?:    .*\n)+)", section)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["scripts/run", "scripts/test"]


def test_the_dialect_table_is_generated_from_the_registry() -> None:
    """`scripts/readme_tables.py --check`: the README's dialect table is the registry's, as `cog
    --check` would say; a drifted table fails the suite."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import readme_tables

    assert readme_tables.render(README) == README
    assert readme_tables.main(["--check"]) == 0
    drifted = README.replace("| Cohere Chat v2 |", "| Cohere |")
    assert readme_tables.render(drifted) != drifted


def test_the_profile_keys_name_every_dialect_a_profile_can_force() -> None:
    """The profile keys' `dialect` list, written in prose, is the registry's names: a dialect
    added or renamed without it fails the suite."""
    from usagefix.dialects import NAMES

    m = re.search(r"`dialect` \(any dialect of the table above:\s*(.*?)\)", README, re.S)
    assert m is not None
    assert sorted(re.findall(r"`(\w+)`", m.group(1))) == sorted(NAMES)


def test_the_options_table_is_generated_from_the_option_declarations() -> None:
    """The README's options table is `usagefix.options.OPTIONS`, each row its `doc` and default; a
    drifted table, or an option declared without its README words, fails the suite."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import readme_tables

    from usagefix.options import OPTIONS

    assert readme_tables.options_table() in README
    section = README.split("## Options", 1)[1].split("\n## ", 1)[0]
    for option in OPTIONS.values():
        assert option.doc, f"{option.name} has no README words (Option.doc)"
        assert f"| `{option.name}` | " in section
    drifted = README.replace("| `usage_ledger` | off |", "| `usage_ledger` | on |")
    assert readme_tables.render(drifted) != drifted
    assert readme_tables.render(drifted) == README
