"""Write flows/synthetic-*.mitm: small captures for the README's "try it offline" section.

Synthetic: a local emulator plays the upstream (the golden corpus bodies), the real SDKs are the
clients, and a real mitmdump with the addon records. Run with `.venv/bin/python
scripts/make_demo_flows.py` after changing the corpus or the record schema.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from upstream import Scenario, Upstream, awkward_cuts  # noqa: E402

from conftest import start_mitmdump, stop  # noqa: E402

GOLDEN = ROOT / "flows" / "golden"
MESSAGES = [{"role": "user", "content": "What changed in the café menu?"}]


def sse(name: str) -> Scenario:
    body = (GOLDEN / name).read_bytes()
    return Scenario(body=body, content_type="text/event-stream", chunks=awkward_cuts(body))


def main() -> None:
    up = Upstream()
    out = ROOT / "flows" / "synthetic-founding-bug.mitm"
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as d:
        proc, port = start_mitmdump(
            ["--mode", f"reverse:{up.url}", "-s", str(ROOT / "addon" / "normalize_usage.py"), "-w", str(out)],
            Path(d),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            oai = openai.OpenAI(base_url=base + "/v1", api_key="sk-demo-not-a-real-key", max_retries=0)
            up.scenario = Scenario(body=(GOLDEN / "openai_chat/fix-founding-bug.upstream.json").read_bytes())
            oai.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)  # type: ignore[arg-type]
            up.scenario = sse("openai_chat/fix-founding-bug-stream.upstream.sse")
            for _ in oai.chat.completions.create(
                model="claude-sonnet-4-5",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            ):
                pass
            up.scenario = sse("openai_chat/ok-openai-stream.upstream.sse")
            for _ in oai.chat.completions.create(model="gpt-3.5-turbo", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                pass
            claude = anthropic.Anthropic(base_url=base, api_key="sk-ant-demo-not-a-real-key", max_retries=0)
            up.scenario = sse("anthropic/fix-cached-delta-crlf.upstream.sse")
            with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as s:  # type: ignore[arg-type]
                s.get_final_message()
            time.sleep(0.3)
        finally:
            stop(proc)
            up.close()
    r = subprocess.run(
        [str(Path(sys.executable).with_name("usagefix")), "diff", "--all", str(out)], check=True
    )
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)", file=sys.stderr)
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
