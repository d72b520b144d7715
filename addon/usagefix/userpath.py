"""A path an option names, `~` expanded, or one clear error. Pure.

`Path.expanduser` raises RuntimeError for a `~user` with no such user (or no home directory):
an option value must stop mitmdump with one line that says why, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_path"]


def user_path(value: str) -> Path:
    """`value` as a path, `~` and `~user` expanded. ValueError when they cannot be."""
    expanded = os.path.expanduser(value)
    if expanded.startswith("~"):
        raise ValueError(
            f"{value}: cannot expand {expanded.split('/', 1)[0]} (no such user or home directory)"
        )
    return Path(expanded)
