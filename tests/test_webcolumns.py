"""mitmweb's columns with the Comment column on, the user's kept (pure part of CommentColumn)."""

from __future__ import annotations

from usagefix.webcolumns import with_comment

AVAILABLE = ["icon", "path", "method", "status", "size", "time", "tls", "comment"]
DEFAULT = ["tls", "icon", "path", "method", "status", "size", "time"]


def test_the_comment_column_is_added_after_the_users_columns() -> None:
    assert with_comment(DEFAULT, AVAILABLE) == [*DEFAULT, "comment"]
    assert with_comment(["path", "comment", "size"], AVAILABLE) is None  # already on: untouched


def test_a_comma_list_in_one_entry_becomes_its_columns() -> None:
    # `--set web_columns=path,status` is one bogus column: a blank table in mitmweb.
    assert with_comment(["path,status"], AVAILABLE) == ["path", "status", "comment"]
    assert with_comment(["path, comment", "path"], AVAILABLE) == ["path", "comment"]
    # A name mitmweb does not know is not guessed at: kept as the user wrote it.
    assert with_comment(["path,bogus"], AVAILABLE) == ["path,bogus", "comment"]


def test_a_mitmweb_without_a_comment_column_is_left_alone() -> None:
    assert with_comment(["path"], ["path"]) is None
