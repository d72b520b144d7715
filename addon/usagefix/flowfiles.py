"""Which files a path given to `usagefix diff`, `report` or `ledger import` stands for: one rule for
all three. Pure (paths only)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["FLOW_SUFFIXES", "flow_files"]

FLOW_SUFFIXES = (".mitm", ".flows", ".flow")
"""The names mitmproxy's users give flow files (`-w flows.mitm`, its docs' `.flows`)."""


def flow_files(path: Path) -> list[Path]:
    """A file as it is; a directory as the flow files directly inside it (by `FLOW_SUFFIXES`,
    sorted: `scripts/run` writes one per run, named by its start), never what is in folders below
    it. OSError, naming the path, when it does not exist or is a directory holding none."""
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        return [path]
    found = sorted(p for p in path.iterdir() if p.suffix in FLOW_SUFFIXES and p.is_file())
    if not found:
        kinds = ", ".join(f"*{s}" for s in FLOW_SUFFIXES)
        raise FileNotFoundError(f"{path}: no flow files ({kinds}) in this directory")
    return found
