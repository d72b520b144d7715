"""Tests for where `usagefix renormalize` writes: never over its input unless asked."""

import os
from pathlib import Path

import pytest

from usagefix.outpath import OutputError, output_for, same_file


def test_the_default_output_is_beside_the_input_under_another_name(tmp_path: Path) -> None:
    assert output_for(tmp_path / "day.mitm", None, in_place=False) == tmp_path / "day.renormalized.mitm"
    assert output_for(tmp_path / "capture", None, in_place=False) == tmp_path / "capture.renormalized.mitm"
    assert output_for(tmp_path / "a.mitm", tmp_path / "b.mitm", in_place=False) == tmp_path / "b.mitm"


def test_the_input_is_never_the_output_unless_in_place(tmp_path: Path) -> None:
    src = tmp_path / "day.mitm"
    src.write_bytes(b"x")
    os.link(src, tmp_path / "hard.mitm")
    (tmp_path / "soft.mitm").symlink_to(src)
    for other in (src, tmp_path / "." / "day.mitm", tmp_path / "hard.mitm", tmp_path / "soft.mitm"):
        assert same_file(src, other)
        with pytest.raises(OutputError, match="this is the input file.*--in-place"):
            output_for(src, other, in_place=False)
        assert output_for(src, other, in_place=True) == src
    assert not same_file(src, tmp_path / "new.mitm")
    assert output_for(src, None, in_place=True) == src
    with pytest.raises(OutputError, match="not both"):
        output_for(src, tmp_path / "new.mitm", in_place=True)
