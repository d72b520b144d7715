"""Incremental decoders: every encoding mitmproxy decodes, every member, any chunking, and every
byte either decoded or handed back in the error."""

from __future__ import annotations

import gzip
import importlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunking import bytewise, chunkings, cut
from usagefix import decoding
from usagefix.decoding import DecodeError, Decoder, make_decoder

GOLDEN = Path(__file__).parent.parent / "flows" / "golden"
BODY = (GOLDEN / "openai_chat" / "fix-founding-bug-stream.upstream.sse").read_bytes()
HALF = len(BODY) // 2


def _zstd_module() -> Any:
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    return None


def zstd_frame(data: bytes) -> bytes:
    mod = _zstd_module()
    if mod is not None:
        return bytes(mod.compress(data))
    zstandard: Any = importlib.import_module("zstandard")
    return bytes(zstandard.ZstdCompressor().compress(data))


def deflate(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(wbits=wbits)
    return c.compress(data) + c.flush()


def raw_deflate(data: bytes) -> bytes:
    return deflate(data, -15)


# encoding name → (content-encoding, one whole compressed BODY)
WHOLE: dict[str, tuple[str, bytes]] = {
    "gzip": ("gzip", gzip.compress(BODY)),
    "deflate-zlib": ("deflate", zlib.compress(BODY)),
    "deflate-raw": ("deflate", raw_deflate(BODY)),
    "br": ("br", brotli.compress(BODY)),
    "zstd": ("zstd", zstd_frame(BODY)),
}
# Several members one after the other: the whole of BODY only if every one is decoded.
MEMBERS: dict[str, tuple[str, bytes]] = {
    "gzip-members": ("gzip", gzip.compress(BODY[:HALF]) + gzip.compress(b"") + gzip.compress(BODY[HALF:])),
    "zlib-streams": ("deflate", zlib.compress(BODY[:HALF]) + zlib.compress(BODY[HALF:])),
    "zstd-frames": ("zstd", zstd_frame(BODY[:HALF]) + zstd_frame(BODY[HALF:])),
    "gzip-then-zlib": ("gzip", gzip.compress(BODY[:HALF]) + zlib.compress(BODY[HALF:])),
}
ALL = {**WHOLE, **MEMBERS}
# Neither a valid member nor a prefix of one: after the last member, an error.
GARBAGE = b"\x00not compressed\n"


def decode_all(d: Decoder, chunks: list[bytes]) -> bytes:
    return b"".join(d.decode(c) for c in chunks) + d.flush()


def decoder(encoding: str) -> Decoder:
    d = make_decoder(encoding)
    assert d is not None
    return d


def decode_until_error(d: Decoder, chunks: list[bytes]) -> tuple[bytes, DecodeError, bytes]:
    """Feed until the decoder fails: (output before, the error, raw bytes never fed)."""
    out = b""
    for i, c in enumerate(chunks):
        try:
            out += d.decode(c)
        except DecodeError as e:
            return out, e, b"".join(chunks[i + 1 :])
    try:
        out += d.flush()
    except DecodeError as e:
        return out, e, b""
    raise AssertionError("no DecodeError")


@pytest.mark.parametrize("name", ALL)
def test_each_encoding_decodes_whole(name: str) -> None:
    encoding, comp = ALL[name]
    assert decode_all(decoder(encoding), [comp]) == BODY


@pytest.mark.parametrize("name", ALL)
def test_each_encoding_decodes_byte_at_a_time(name: str) -> None:
    encoding, comp = ALL[name]
    assert decode_all(decoder(encoding), bytewise(comp)) == BODY


@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_is_decoded_not_only_the_first(name: str) -> None:
    # issue 10: the first member alone was decoded, and the client got a clean, truncated body.
    encoding, comp = MEMBERS[name]
    first_member_only = BODY[:HALF]
    assert decode_all(decoder(encoding), [comp]) == BODY != first_member_only


@pytest.mark.parametrize("name", [n for n in ALL if n != "br"])
@pytest.mark.parametrize("how", ["one chunk", "own chunk", "byte at a time"])
def test_trailing_bytes_are_an_error_that_hands_them_back(name: str, how: str) -> None:
    encoding, comp = ALL[name]
    chunks = {
        "one chunk": [comp + GARBAGE],
        "own chunk": [comp, GARBAGE],
        "byte at a time": bytewise(comp + GARBAGE),
    }[how]
    out, e, unfed = decode_until_error(decoder(encoding), chunks)
    assert out + e.decoded == BODY  # every member decoded...
    assert e.tail + unfed == GARBAGE  # ...and every byte after it handed back, exactly
    assert isinstance(e, ValueError) and encoding in str(e)


def test_brotli_trailing_bytes_are_an_error_too() -> None:
    comp = WHOLE["br"][1]
    out, e, _ = decode_until_error(decoder("br"), [comp, GARBAGE])
    assert (out + e.decoded, e.tail) == (BODY, GARBAGE)
    # brotli cannot say where in a chunk its stream ended: that chunk comes back whole.
    out, e, _ = decode_until_error(decoder("br"), [comp[:10], comp[10:] + GARBAGE])
    assert BODY.startswith(out) and e.decoded == b""
    assert e.tail.endswith(comp[10:] + GARBAGE) and comp.endswith(e.tail[: -len(GARBAGE)])


def test_a_partial_header_after_the_last_member_is_handed_back_at_the_end() -> None:
    comp = gzip.compress(BODY)
    out, e, _ = decode_until_error(decoder("gzip"), [comp, b"\x1f", b"\x8b"])
    assert out == BODY and e.tail == b"\x1f\x8b" and e.decoded == b""
    out, e, _ = decode_until_error(decoder("gzip"), [comp, b"\x1f\x8b", b"\x08", b"JUNK"])
    assert out == BODY and e.tail == b"\x1f\x8b\x08JUNK"


@pytest.mark.parametrize("name", ALL)
def test_corrupt_data_is_a_decode_error(name: str) -> None:
    encoding, comp = ALL[name]
    broken = comp[:4] + bytes(b ^ 0x5A for b in comp[4:40]) + comp[40:]
    d = decoder(encoding)
    with pytest.raises(DecodeError) as info:
        decode_all(d, [broken[:40], broken[40:]])
    assert info.value.tail  # the raw bytes go back to the caller, never nowhere
    with pytest.raises(DecodeError, match="after an error") as again:
        d.decode(b"more")
    assert again.value.tail == b"more"


def test_a_stream_cut_inside_a_member_keeps_what_it_decoded() -> None:
    # Like zlib and browsers: the cut itself is the stream's business (a cut-off record).
    c = zlib.compressobj(wbits=31)
    comp = c.compress(BODY) + c.flush(zlib.Z_SYNC_FLUSH)  # no end: the trailer never came
    assert decode_all(decoder("gzip"), [comp]) == BODY
    d = decoder("gzip")
    head = gzip.compress(BODY)[:10]  # a header, and nothing it decodes to
    assert d.decode(head) == b""
    with pytest.raises(DecodeError) as info:
        d.flush()
    assert info.value.tail == head


def test_deflate_tells_zlib_from_raw_by_its_header() -> None:
    for comp in (zlib.compress(BODY), raw_deflate(BODY), deflate(BODY, 9)):
        assert decode_all(decoder("deflate"), bytewise(comp)) == BODY
    with pytest.raises(DecodeError) as info:
        decode_all(decoder("deflate"), [b"\x78"])
    assert info.value.tail == b"\x78"


def test_zstd_skippable_frames_decode_to_nothing() -> None:
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    comp = skippable + zstd_frame(BODY[:HALF]) + skippable + zstd_frame(BODY[HALF:])
    assert decode_all(decoder("zstd"), [comp]) == BODY
    assert decode_all(decoder("zstd"), bytewise(comp)) == BODY


@pytest.mark.parametrize("backend", ["compression.zstd", "backports.zstd", "zstandard"])
def test_zstd_decodes_with_each_backend_mitmproxy_ships(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(backend)
    real = importlib.import_module
    order = ["compression.zstd", "backports.zstd", "zstandard"]
    unwanted = set(order[: order.index(backend)])

    def only(name: str, package: str | None = None) -> Any:
        if name in unwanted:
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(decoding.importlib, "import_module", only)
    comp = MEMBERS["zstd-frames"][1]
    assert decode_all(decoder("zstd"), [comp]) == BODY
    out, e, unfed = decode_until_error(decoder("zstd"), [comp, GARBAGE])
    assert (out + e.decoded, e.tail + unfed) == (BODY, GARBAGE)


@pytest.mark.parametrize(
    "value", ["compress", "x-unknown", "gzip, br", "br,gzip", "gzip, gzip", "aes128gcm", "sdch"]
)
def test_an_encoding_we_cannot_decode_gives_none(value: str) -> None:
    # A stack is refused: an inner coding's error could not hand back the wire's own bytes.
    assert make_decoder(value) is None


@pytest.mark.parametrize("module", ["brotli", "zstd"])
def test_a_missing_backend_gives_none(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, package: str | None = None) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(decoding.importlib, "import_module", missing)
    assert make_decoder({"brotli": "br", "zstd": "zstd"}[module]) is None
    assert make_decoder("gzip") is not None  # zlib is the stdlib's


def test_a_backend_failing_on_creation_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Decoder:
        raise RuntimeError("boom")

    monkeypatch.setitem(decoding._DECODERS, "gzip", broken)
    assert make_decoder("gzip") is None


@pytest.mark.parametrize("value", ["GZIP", " gzip ", "x-gzip", "identity, gzip", "gzip,identity"])
def test_names_are_read_as_http_reads_them(value: str) -> None:
    assert decode_all(decoder(value), [gzip.compress(BODY)]) == BODY


@pytest.mark.parametrize("value", ["identity", "none", "", " , "])
def test_identity_passes_bytes_as_they_are(value: str) -> None:
    assert decode_all(decoder(value), [BODY[:7], BODY[7:]]) == BODY


def test_an_empty_stream_decodes_to_nothing() -> None:
    for encoding in ("gzip", "deflate", "br", "zstd"):
        assert decode_all(decoder(encoding), []) == b""


def _flushed(compress: Callable[[bytes], bytes], end: Callable[[], bytes], pieces: list[bytes]) -> bytes:
    return b"".join(compress(p) for p in pieces) + end()


def _streamed(name: str, pieces: list[bytes]) -> tuple[str, bytes]:
    """BODY compressed piece by piece, flushed after each, as a streaming upstream does."""
    if name in ("gzip", "deflate-zlib", "deflate-raw"):
        wbits = {"gzip": 31, "deflate-zlib": 15, "deflate-raw": -15}[name]
        c = zlib.compressobj(wbits=wbits)
        comp = _flushed(lambda p: c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH), c.flush, pieces)
        return ("gzip" if name == "gzip" else "deflate"), comp
    if name == "br":
        b = brotli.Compressor()
        return "br", _flushed(lambda p: b.process(p) + b.flush(), b.finish, pieces)
    if name == "gzip-members":
        return "gzip", b"".join(gzip.compress(p) for p in pieces)
    if name == "zstd-frames":
        return "zstd", b"".join(zstd_frame(p) for p in pieces)
    return ALL[name]


STREAMED = ["gzip", "deflate-zlib", "deflate-raw", "br", "gzip-members", "zstd-frames", "zstd"]


@given(data=st.data(), name=st.sampled_from(STREAMED))
def test_any_chunking_of_a_compressed_body_decodes_to_the_same_bytes(data: st.DataObject, name: str) -> None:
    pieces = data.draw(chunkings(BODY), label="how the upstream compressed it")
    encoding, comp = _streamed(name, pieces)
    chunks = data.draw(chunkings(comp), label="how it arrived")
    assert decode_all(decoder(encoding), chunks) == BODY


@given(data=st.data(), name=st.sampled_from([n for n in ALL if n != "br"]))
def test_any_chunking_with_trailing_bytes_loses_none(data: st.DataObject, name: str) -> None:
    encoding, comp = ALL[name]
    chunks = data.draw(chunkings(comp + GARBAGE))
    out, e, unfed = decode_until_error(decoder(encoding), chunks)
    assert (out + e.decoded, e.tail + unfed) == (BODY, GARBAGE)


def test_zstandard_is_used_when_neither_the_stdlib_nor_the_backport_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mitmproxy 12.2 ships zstandard alone: its decompressobj() is one frame's decoder, as the
    # stdlib's ZstdDecompressor is (stood in for by it here, where zstandard may not be installed).
    real = _zstd_module()
    if real is None:
        pytest.skip("no zstd decoder to stand in for zstandard")
    made: list[object] = []

    class ZstdDecompressor:
        def decompressobj(self) -> Any:
            made.append(self)
            return real.ZstdDecompressor()

    fake = type(importlib)("zstandard")
    fake.ZstdDecompressor = ZstdDecompressor  # type: ignore[attr-defined]
    import_module = importlib.import_module

    def only_zstandard(name: str, package: str | None = None) -> Any:
        if name == "zstandard":
            return fake
        if name in ("compression.zstd", "backports.zstd"):
            raise ImportError(name)
        return import_module(name, package)

    monkeypatch.setattr(decoding.importlib, "import_module", only_zstandard)
    comp = MEMBERS["zstd-frames"][1]
    assert decode_all(decoder("zstd"), [comp]) == BODY
    assert len(made) == 2  # one decompressobj for each frame
    out, e, unfed = decode_until_error(decoder("zstd"), [comp, GARBAGE])
    assert (out + e.decoded, e.tail + unfed) == (BODY, GARBAGE)


def _gzip_with_comment(size: int) -> tuple[bytes, bytes]:
    """A gzip member's header with a `size`-byte comment (FCOMMENT, RFC 1952), and its body."""
    head = b"\x1f\x8b\x08\x10" + b"\x00" * 4 + b"\x00\xff" + b"c" * size + b"\x00"
    return head, gzip.compress(BODY)[10:]


def test_bytes_that_decode_to_nothing_are_handed_back_on_an_error() -> None:
    head, _ = _gzip_with_comment(1000)
    chunks = cut(head, range(0, len(head), 100))
    out, e, unfed = decode_until_error(decoder("gzip"), [*chunks, b"\xff\xff"])  # an invalid block
    assert (out, e.decoded, e.tail, unfed) == (b"", b"", head + b"\xff\xff", b"")


def test_past_the_keep_bound_an_error_hands_back_the_failing_chunk_alone() -> None:
    # The documented bound on memory: raw bytes that decoded to nothing are kept up to 64 KiB.
    head, _ = _gzip_with_comment(decoding._KEEP_UNPRODUCTIVE + 5000)
    chunks = cut(head, range(0, len(head), 1024))
    out, e, unfed = decode_until_error(decoder("gzip"), [*chunks, b"\xff\xff"])
    assert (out, e.decoded, e.tail, unfed) == (b"", b"", b"\xff\xff", b"")


def test_a_long_header_that_decodes_to_nothing_yet_is_no_error() -> None:
    head, body = _gzip_with_comment(decoding._KEEP_UNPRODUCTIVE + 5000)
    chunks = cut(head + body, range(0, len(head) + len(body), 1024))
    assert decode_all(decoder("gzip"), chunks) == BODY


@given(
    data=st.data(), encoding=st.sampled_from(["gzip", "deflate", "br", "zstd"]), junk=st.binary(max_size=300)
)
def test_arbitrary_bytes_raise_only_a_decode_error_that_hands_back_the_raw_tail(
    data: st.DataObject, encoding: str, junk: bytes
) -> None:
    d, fed = decoder(encoding), b""
    try:
        for c in data.draw(chunkings(junk)):
            fed += c
            d.decode(c)
        d.flush()
    except DecodeError as e:
        assert fed.endswith(e.tail)  # the bytes handed back are the last ones fed, as they came


@given(data=st.data(), name=st.sampled_from([n for n in ALL if n != "br"]), junk=st.binary(max_size=200))
def test_valid_members_then_arbitrary_bytes_decode_every_member_and_hand_back_the_rest(
    data: st.DataObject, name: str, junk: bytes
) -> None:
    encoding, comp = ALL[name]
    chunks = data.draw(chunkings(comp + junk))
    d, out, back, i = decoder(encoding), b"", b"", 0
    try:
        for i, c in enumerate(chunks):  # noqa: B007 (i says where it failed)
            out += d.decode(c)
        i = len(chunks)
        out += d.flush()
    except DecodeError as e:
        out += e.decoded
        back = e.tail + b"".join(chunks[i + 1 :])
    assert out[: len(BODY)] == BODY  # nothing of the valid members is lost
    assert junk.endswith(back)  # what is handed back raw is the junk's end, as it came
