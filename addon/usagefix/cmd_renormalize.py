"""`usagefix renormalize`: normalize a capture again through the addon, never over its input.

usagefix renormalize IN                    writes IN.renormalized.mitm beside IN
usagefix renormalize IN -o OUT             writes OUT (refused if OUT is IN)
usagefix renormalize IN --in-place         replaces IN, atomically
usagefix renormalize IN --set usage_profiles=profiles.toml    options, as mitmdump takes them

In-process, not a `mitmdump -nr IN -w OUT` subprocess: a mitmproxy Master with the addon alone
takes the `--set` values as mitmdump does (kept aside, then checked by the addon and parsed by
mitmproxy), and each flow goes through the hooks `-nr` fires on it (`Master.load_flow`, what
mitmdump's ReadFile calls), so the flows come out as `-nr` writes them. Doing it here also writes
each flow once (`-nr -w` writes a flow that has a response and an error twice), needs neither a
mitmdump executable nor the addon's script file (an installed package has no `addon/` folder),
and lets every output go to a temporary file beside its destination that replaces it only once
the whole capture is written (`os.replace`): a failure leaves the destination as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import exceptions, hooks, http, master
from mitmproxy import io as mio
from mitmproxy import options as moptions

from usagefix.addon import UsageFix
from usagefix.options import PREFIX
from usagefix.outpath import OutputError, output_for
from usagefix.record import METADATA_KEY

__all__ = ["add_parser", "renormalize"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "renormalize",
        help="normalize a capture again through the addon (never over its input)",
        description="Normalize every flow of a capture again, from the upstream's original kept in its "
        "record, as `mitmdump -nr IN -s addon/normalize_usage.py -w OUT` would, without ever writing "
        "over IN (unless --in-place, which replaces it atomically).",
    )
    p.add_argument("input", type=Path, metavar="IN", help="a flow file")
    p.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="where to write (default: IN.renormalized.mitm)"
    )
    p.add_argument("--in-place", action="store_true", help="replace IN, atomically (temp file + rename)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="usage_NAME=VALUE",
        help="an addon option, as mitmdump's --set takes it (repeatable)",
    )
    p.set_defaults(run=lambda a: renormalize(a.input, a.output, in_place=a.in_place, sets=a.sets))


def _fail(message: str) -> int:
    print(f"usagefix: {message}", file=sys.stderr)
    return 2


def renormalize(src: Path, out: Path | None, *, in_place: bool, sets: Sequence[str]) -> int:
    try:
        dest = output_for(src, out, in_place=in_place)
    except OutputError as e:
        return _fail(str(e))
    if not src.is_file():
        return _fail(f"{src}: no such file")
    others = [s for s in sets if not s.split("=", 1)[0].replace("-", "_").lower().startswith(PREFIX)]
    if others:
        return _fail(f"--set {others[0]}: only the addon's {PREFIX}* options apply here")
    handler = logging.StreamHandler(sys.stderr)  # the addon's warnings (an unreadable record, ...)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("usagefix")
    logger.addHandler(handler)
    try:
        counts = asyncio.run(_run(src, dest, sets))
    except exceptions.OptionsError as e:
        return _fail(str(e).removeprefix("usagefix: "))
    except exceptions.FlowReadException as e:
        return _fail(f"{src}: {e} (nothing written)")
    except OSError as e:
        return _fail(f"{e} (nothing written)")
    finally:
        logger.removeHandler(handler)
    flows = counts.pop("", 0)
    detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"usagefix: {flows} flow(s) from {src} written to {dest}" + (f" ({detail})" if detail else ""))
    return 0


async def _run(src: Path, dest: Path, sets: Sequence[str]) -> Counter[str]:
    opts = moptions.Options()
    m = master.Master(opts)
    opts.set(*sets, defer=True)
    # The addon checks the options kept aside for it, as in mitmdump, before mitmproxy parses them.
    m.addons.add(UsageFix())  # type: ignore[no-untyped-call]
    m.addons.trigger(hooks.ConfigureHook(set(opts.keys())))  # type: ignore[no-untyped-call]
    counts: Counter[str] = Counter()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, src.open("rb") as inp:
            writer = mio.FlowWriter(fh)  # type: ignore[no-untyped-call]
            for flow in mio.FlowReader(inp).stream():
                await m.load_flow(flow)  # type: ignore[no-untyped-call]
                writer.add(flow)
                counts[""] += 1
                if isinstance(flow, http.HTTPFlow) and isinstance(
                    rec := flow.metadata.get(METADATA_KEY), dict
                ):
                    counts[str(rec.get("status"))] += 1
            fh.flush()
            os.fsync(fh.fileno())
        shutil.copymode(src, tmp)  # the new file is a version of the old one
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        await m.done()
    return counts
