"""`usage_request_stream_usage`'s request side, pure (the addon tests prove it through the hooks)."""

import json

from usagefix.streamusage import ask_for_stream_usage


def test_a_stream_request_without_usage_asks_for_it_and_keeps_its_other_options() -> None:
    asked = ask_for_stream_usage({"model": "m", "stream": True, "stream_options": {"x": 1}})
    assert asked is not None
    assert json.loads(asked) == {
        "model": "m",
        "stream": True,
        "stream_options": {"x": 1, "include_usage": True},
    }
    bare = ask_for_stream_usage({"stream": True, "stream_options": None, "n": "é"})
    assert bare == '{"stream":true,"stream_options":{"include_usage":true},"n":"é"}'.encode()


def test_a_request_that_is_no_stream_or_asks_already_is_left_alone() -> None:
    assert ask_for_stream_usage({"model": "m"}) is None
    assert ask_for_stream_usage({"stream": "true"}) is None
    assert ask_for_stream_usage({"stream": True, "stream_options": {"include_usage": True}}) is None
