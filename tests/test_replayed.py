"""Tests for finding the record of a server-replayed response again."""

from usagefix.comment import summary
from usagefix.recordbuild import http_error_record
from usagefix.replayed import Recorded, RecordIndex

A = {"status": "rewritten", "n": 1}
B = {"status": "unchanged", "n": 2}
C = {"status": "rewritten", "n": 3}


def test_a_response_finds_the_record_it_was_saved_with() -> None:
    index = RecordIndex.of(
        [
            Recorded(("POST", "/v1/chat/completions"), (200, b"one"), A),
            Recorded(("POST", "/v1/messages"), (200, b"two"), B),
        ]
    )
    assert len(index) == 2
    assert index.find(("POST", "/v1/messages"), (200, b"two")) == B
    # The request is only a tie-break: a redacted path still finds its response's record.
    assert index.find(("POST", "/v1/chat/completions?key=real"), (200, b"one")) == A
    assert index.find(("POST", "/v1/chat/completions"), (200, b"other")) is None
    assert index.find(("POST", "/v1/chat/completions"), (500, b"one")) is None


def test_identical_responses_are_told_apart_by_their_request_else_the_first_wins() -> None:
    index = RecordIndex.of(
        [
            Recorded(("POST", "/a"), (200, b"same"), A),
            Recorded(("POST", "/b"), (200, b"same"), B),
            Recorded(("POST", "/b"), (200, b"same"), C),
        ]
    )
    assert index.find(("POST", "/b"), (200, b"same")) == B
    assert index.find(("POST", "/a"), (200, b"same")) == A
    assert index.find(("POST", "/c"), (200, b"same")) == A
    assert len(RecordIndex()) == 0 and RecordIndex().find(("GET", "/"), (200, b"")) is None


def test_an_error_status_is_recorded_as_such_and_measures_nothing() -> None:
    rec = http_error_record("openai_chat", None, 401, "Unauthorized", "the upstream")
    assert (rec.status, rec.final_seen, rec.usage_before, rec.usage_after) == (
        "http_error",
        False,
        None,
        None,
    )
    assert rec.error == "the upstream answered HTTP 401 Unauthorized: no usage read"
    assert summary(rec) == "HTTP 401 Unauthorized: no usage read"
    assert http_error_record("gemini", "p", 404, "", "server replay").error == (
        "server replay answered HTTP 404: no usage read"
    )
