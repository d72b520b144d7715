"""One rule for what a path given to `usagefix diff`, `report` and `ledger import` stands for."""

from pathlib import Path

import pytest

from usagefix.flowfiles import flow_files


def test_a_directory_stands_for_the_flow_files_directly_in_it(tmp_path: Path) -> None:
    for name in ("b.mitm", "a.flows", "c.flow", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x.mitm").write_bytes(b"")
    (tmp_path / "d.mitm").mkdir()  # a directory named like one is not a flow file
    assert flow_files(tmp_path) == [tmp_path / "a.flows", tmp_path / "b.mitm", tmp_path / "c.flow"]


def test_a_file_is_itself_whatever_its_name(tmp_path: Path) -> None:
    f = tmp_path / "capture.bin"
    f.write_bytes(b"")
    assert flow_files(f) == [f]


def test_a_missing_path_or_a_directory_without_flow_files_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.mitm: no such file or directory"):
        flow_files(tmp_path / "nothing.mitm")
    with pytest.raises(
        FileNotFoundError, match=r"no flow files \(\*\.mitm, \*\.flows, \*\.flow\) in this directory"
    ):
        flow_files(tmp_path)
