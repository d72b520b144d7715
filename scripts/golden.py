"""The golden corpus: run every case of flows/golden/ and compare with what it expects.

    scripts/golden --check   # exit 1 and show what drifted (tests/test_golden.py runs the same check)
    scripts/golden --regen   # rewrite each case's .expect.json (and .client.*) from what the code does now

A case is `<dialect>/<name>.upstream.<ext>` (the upstream's body), `<name>.client.<ext>` (what the
client must receive; absent: byte for byte the upstream's) and `<name>.expect.json`: the record's
`status`, `final_seen`, `rules`, `anomalies`, the canonical `usage_after` and the `emitted_usage`
block, and optionally a `request` (host, path, model, response headers, or an inline `profile`)
for cases that depend on a profile or on headers. See flows/golden/README.md.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usagefix.dialects import DIALECTS, Context
from usagefix.dialects.registry import FILE_SUFFIXES
from usagefix.framing import Framing
from usagefix.profiles import Profile, ProfileSet
from usagefix.record import UsageRecord
from usagefix.recordbuild import build_record
from usagefix.rewriter import rewrite_body, rewrite_stream

GOLDEN = Path(__file__).resolve().parent.parent / "flows" / "golden"
STREAMED = FILE_SUFFIXES  # a case's framing, by its file's suffix (the registry's map)
PINNED = ("status", "final_seen", "rules", "anomalies", "usage_after", "emitted_usage")


def cases() -> list[Path]:
    return sorted(GOLDEN.glob("*/*.upstream.*"))


def case_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name.split('.')[0]}"


def expect_path(upstream: Path) -> Path:
    return upstream.with_name(upstream.name.split(".")[0] + ".expect.json")


def client_path(upstream: Path) -> Path:
    return upstream.with_name(upstream.name.replace(".upstream.", ".client."))


def read_expect(upstream: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(expect_path(upstream).read_text(encoding="utf-8"))
    return data


def context_of(upstream: Path) -> Context:
    """The request a case was answered to: the profile that matches it, its model, its headers."""
    req = read_expect(upstream).get("request") or {}
    model = req.get("model")
    if req.get("profile"):
        profile: Profile | None = Profile.model_validate(req["profile"])
    elif req.get("host"):
        profile = ProfileSet().match(req["host"], int(req.get("port", 443)), req.get("path", "/"), model)
    else:
        profile = None
    headers = tuple((k.lower(), str(v)) for k, v in (req.get("headers") or {}).items())
    return Context(profile=profile, model=model, response_headers=headers)


def framing_of(upstream: Path) -> Framing | None:
    return STREAMED.get(upstream.suffix)


@dataclass(frozen=True, slots=True)
class Result:
    client: bytes
    """What the client received."""
    record: UsageRecord


def run(upstream: Path, body: bytes | None = None) -> Result:
    """Normalize a case's upstream body (or `body`) as the addon would, in one piece."""
    dialect = DIALECTS[upstream.parent.name]
    body = upstream.read_bytes() if body is None else body
    ctx = context_of(upstream)
    framing = framing_of(upstream)
    if framing is not None:
        out, rw = rewrite_stream(dialect, body, ctx=ctx, framing=framing)
        return Result(out, build_record(rw.result))
    result = rewrite_body(dialect, body, ctx)
    return Result(body if result.body is None else result.body, build_record(result.result))


def pinned(record: UsageRecord) -> dict[str, Any]:
    """The facts of a record a golden case pins, as JSON values (unknown counts left out)."""
    dumped = record.model_dump(mode="json")
    out = {k: dumped[k] for k in PINNED}
    out["rules"] = [r["rule"] for r in dumped["rules"]]
    if out["usage_after"] is not None:
        out["usage_after"] = {k: v for k, v in out["usage_after"].items() if v is not None}
    return out


def expected_client(upstream: Path) -> bytes:
    client = client_path(upstream)
    return client.read_bytes() if client.exists() else upstream.read_bytes()


def drift(upstream: Path) -> list[str]:
    """What differs between a case's expectations and what the code does now (empty: nothing)."""
    result = run(upstream)
    problems = []
    want = expected_client(upstream)
    if result.client != want:
        diff = difflib.unified_diff(
            want.decode("utf-8", "replace").splitlines(),
            result.client.decode("utf-8", "replace").splitlines(),
            "expected client",
            "actual client",
            lineterm="",
        )
        problems.append("client body differs:\n" + "\n".join(diff))
    expect = read_expect(upstream)
    got = pinned(result.record)
    for key in PINNED:
        if expect.get(key) != got[key]:
            problems.append(f"{key}: expected {json.dumps(expect.get(key))}, got {json.dumps(got[key])}")
    return problems


def regen(upstream: Path) -> list[str]:
    """Rewrite a case's expectations from what the code does now; return what it refused to write."""
    result = run(upstream)
    expect = read_expect(upstream) if expect_path(upstream).exists() else {}
    kept = {k: v for k, v in expect.items() if k not in PINNED}
    new = {**kept, **pinned(result.record)}
    expect_path(upstream).write_text(json.dumps(new, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    client = client_path(upstream)
    changed = result.client != upstream.read_bytes()
    if upstream.name.startswith("ok-") and changed:
        return [f"{case_id(upstream)}: an ok- case must pass byte for byte, but the client body changed"]
    if changed:
        client.write_bytes(result.client)
    elif client.exists():
        client.unlink()
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail on any drift from the expectations")
    mode.add_argument("--regen", action="store_true", help="rewrite the expectations from the code")
    parser.add_argument("case", nargs="*", help="case ids (dialect/name) to limit to")
    args = parser.parse_args(argv)
    selected = [p for p in cases() if not args.case or case_id(p) in args.case]
    failed = 0
    for upstream in selected:
        problems = regen(upstream) if args.regen else drift(upstream)
        if problems:
            failed += 1
            print(f"✗ {case_id(upstream)}", *(f"  {p}" for p in problems), sep="\n")
    verb = "regenerated" if args.regen else "checked"
    print(f"{len(selected)} cases {verb}, {failed} with problems", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
