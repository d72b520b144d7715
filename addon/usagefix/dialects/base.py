"""What every dialect provides, and the tally its sessions fill in.

The verbs, one meaning each: a dialect *normalizes* usage and the result goes to the client.
`normalize_body` takes a whole JSON body's text, `normalize_event` one stream event's data (both
return the new text, or None to leave it as it was); the engine (`dialects/engine.py`) underneath
has `normalize_object` (an event or body, parsed, with its text) and `normalize_usage` (one usage
block: returns the block to emit). "Rewrite" names only what the rewriter (`rewriter.py`) does to
the bytes of a response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from usagefix.normalize import Fired, Outcome
from usagefix.profiles import Profile
from usagefix.usage import CanonicalUsage

__all__ = ["NO_CONTEXT", "Context", "Dialect", "Session", "StreamSession", "Tally", "unapplied"]


@dataclass(frozen=True, slots=True)
class Context:
    """What is known about a response before its body: the matched profile, the request's model."""

    profile: Profile | None = None
    model: str | None = None
    strip_usage_chunk: bool = False
    """We asked the upstream for usage the client did not ask for: drop it from the client's stream."""
    response_headers: tuple[tuple[str, str], ...] = ()
    """The response's headers (names lower-case), for dialects that report usage there (Bedrock
    InvokeModel's `x-amzn-bedrock-*-token-count`); empty when not known."""

    @property
    def observe_only(self) -> bool:
        """The matched profile says: record, never rewrite."""
        return self.profile is not None and self.profile.observe_only

    def header(self, name: str) -> str | None:
        """The first response header called `name` (lower-case), if any."""
        return next((v for k, v in self.response_headers if k == name), None)


NO_CONTEXT = Context()


def unapplied(outcome: Outcome, *extra: Fired) -> Outcome:
    """`outcome` as recorded when nothing reached the wire (observe-only): the client got the
    upstream's reading, and each rule is only what would have been repaired."""
    would = tuple(f"would_repair:{f.rule}" for f in (*outcome.fired, *extra))
    return Outcome(outcome.before, outcome.before, (), (*outcome.anomalies, *would))


@dataclass(slots=True)
class Tally:
    """What one response taught us about its usage; the last snapshot is authoritative (I5)."""

    snapshots: int = 0
    """Usage-bearing events (or bodies) seen."""
    final_seen: bool = False
    """Whether the usage that ends the response arrived (R7, R8): false means unmeasured."""
    before: CanonicalUsage | None = None
    after: CanonicalUsage | None = None
    upstream_usage: dict[str, Any] | None = None
    """The upstream's last usage block, verbatim."""
    emitted_usage: dict[str, Any] | None = None
    """The last usage block the client received."""
    fired: list[Fired] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    peak: int = 0
    """The largest total of the snapshots so far (a `last_snapshot` dialect flags a final one below it)."""

    def observe(
        self,
        outcome: Outcome,
        upstream: dict[str, Any],
        emitted: dict[str, Any] | None,
        *,
        final: bool,
        extra: tuple[Fired, ...] = (),
    ) -> None:
        """Record one snapshot; `emitted` is None when the block passes unchanged."""
        self.snapshots += 1
        self.final_seen = self.final_seen or final
        if final:  # a count an earlier last word left unknown is known now: no longer unreported
            self.anomalies = [a for a in self.anomalies if not a.startswith("unreported:")]
        self.before, self.after = outcome.before, outcome.after
        self.upstream_usage = upstream
        self.emitted_usage = upstream if emitted is None else emitted
        for f in (*outcome.fired, *extra):
            if all((f.rule, f.reason) != (g.rule, g.reason) for g in self.fired):
                self.fired.append(f)
        self.flag(*outcome.anomalies)

    def flag(self, *anomalies: str) -> None:
        for a in anomalies:
            if a not in self.anomalies:
                self.anomalies.append(a)


class Session:
    """What every dialect's stream session holds: the tally it fills, the response's context."""

    def __init__(self, tally: Tally, ctx: Context) -> None:
        self.tally = tally
        self.ctx = ctx
        self.observe_only = ctx.observe_only


class NeedleSession(Session):
    """A session whose byte test is a search for needles (the engine's dialects: their usage
    events' names or headline keys), and whose `quiet` searches for those and the end markers.
    A subclass with a `might_carry_usage` of its own needs a `quiet` of its own (as Chat's)."""

    def __init__(
        self, needles: tuple[bytes, ...], end_markers: tuple[bytes, ...], tally: Tally, ctx: Context
    ) -> None:
        super().__init__(tally, ctx)
        self.needles = needles
        self.loud = tuple(dict.fromkeys((*needles, *end_markers)))
        """Every needle and end marker, each once: one of them in a run makes it not quiet."""

    def might_carry_usage(self, raw: bytes) -> bool:
        for n in self.needles:  # `find`, not `in` (see StreamSession.might_carry_usage)
            if raw.find(n) >= 0:
                return True
        return False

    def quiet(self, run: bytes) -> bool:
        for n in self.loud:
            if run.find(n) >= 0:
                return False
        return True


class StreamSession(Protocol):
    """Per-response state of a dialect over a stream of SSE events."""

    def might_carry_usage(self, raw: bytes) -> bool:
        """A cheap byte test, run on every event the framer gives one by one: False means the
        event passes untouched (a run of whole events is asked `quiet` instead, which must agree).

        Search with `raw.find(needle) >= 0`, not `needle in raw`: CPython's `in` on bytes first
        tries the needle as an integer and builds, then drops, a TypeError every time (about
        170 ns a test, more than the search itself on a small event)."""
        ...

    def quiet(self, run: bytes) -> bool:
        """Whether no event of `run` (one or more whole events) can carry usage or end the
        stream: `might_carry_usage` False and none of the dialect's `end_markers` in it, asked
        in one call. `SSEFramer` asks it of every run of whole events; a quiet one goes to the
        client as it came, its events counted but not looked at (the hot path of a long stream).
        So it must be False wherever those tests would say look, and True of a run exactly when
        it is of each event in it: a search for needles without a line end is (events are joined
        by line ends, so no needle spans two of them), as is a pattern that crosses none."""
        ...

    def normalize_event(self, name: str | None, data: str) -> str | None:
        """The new `data` of a usage-bearing event (`""` drops it), or None to leave it as it was.

        May raise `UsageShapeError` (recorded `invalid_usage`, event untouched) or, on data that is
        not JSON or nested too deep to parse, a JSON error or `RecursionError` (recorded
        `unparseable_event`, event untouched); either way the stream goes on. Any other exception
        is a bug: the rewriter forwards this event and the rest of the stream untouched.
        """
        ...


class Dialect(Protocol):
    """A wire dialect: where usage lives in its bodies and streams, and its own standard."""

    name: str
    end_markers: tuple[bytes, ...]
    """Bytes every event that ends a complete stream holds (`[DONE]`, `message_stop`): a cheap
    test before `is_end`, which decides."""

    def is_end(self, name: str | None, data: str) -> bool:
        """Whether this complete event ends the response, by its name or type (never by a
        substring: a text delta may say "[DONE]")."""
        ...

    def normalize_body(self, text: str, tally: Tally, ctx: Context) -> str | None:
        """The new text of a whole (non-streamed) JSON body, or None to leave it as it was."""
        ...

    def stream_session(self, tally: Tally, ctx: Context) -> StreamSession: ...
