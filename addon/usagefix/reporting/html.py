"""A report as one self-contained HTML file: no server, no network, nothing fetched. Pure.

The session table with its total row, and inline SVG charts drawn here: cost before and after per
session (a negative "before" draws below the zero line), and each session's context per main-lane
step against the model's window. A few lines of script sort the table by a column. A token sum
over only some of its group's steps is shown `≥12,345` (a lower bound; its title says how many
steps it covers), with a line saying what the mark means.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

from usagefix.reporting.aggregate import TOKEN_KINDS, Coverage, Group, Report
from usagefix.reporting.terminal import INFERRED, PARTIAL_NOTE, context_cell, count, dollars, tokens_cell

__all__ = ["render_html"]

_W, _H, _PAD = 760, 260, 48
_MAX_CHARTS = 24  # sessions drawn in the context charts (the table lists all)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{padding:.25em .6em;border-bottom:1px solid #ddd}
th{cursor:pointer;background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:bold;border-top:2px solid #888}.inferred{color:#a60}.unpriced{color:#b00}
.partial{color:#a60}
#totals dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}#totals dt{color:#666}
figure{display:inline-block;margin:0 1em 1em 0}svg text{font:11px system-ui,sans-serif}
.bar-before{fill:#d98c8c}.bar-after{fill:#4a7fb5}.ctx{fill:none;stroke:#4a7fb5;stroke-width:2}
.window{stroke:#b00;stroke-dasharray:4 3}.axis{stroke:#888}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], up = th.dataset.dir !== 'up';
  const key = r => { const c = r.cells[i], v = c.dataset.v; return v === undefined ? c.textContent : +v; };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1))
    .forEach(r => body.appendChild(r));
  th.dataset.dir = up ? 'up' : 'down';
}));
"""


def _num(value: int | Decimal | None, text: str) -> str:
    data = "" if value is None else f' data-v="{value}"'
    cls = "n unpriced" if text == "unpriced" else "n"
    return f'<td class="{cls}"{data}>{escape(text)}</td>'


def _covered(c: Coverage) -> str:
    """`a lower bound: 7 of 10 steps reported it (2 without this count, 1 without usage)`."""
    why = [
        f"{n} {what}"
        for n, what in ((c.unreported, "without this count"), (c.unmeasured, "without usage"))
        if n
    ]
    return f"a lower bound: {c.measured} of {c.steps} steps reported it ({', '.join(why)})"


def _tokens(value: int | None, c: Coverage) -> str:
    if not c.partial:
        return _num(value, count(value))
    return (
        f'<td class="n partial" data-v="{value}" title="{escape(_covered(c))}">'
        f"{escape(tokens_cell(value, c))}</td>"
    )


def _row(group: Group, label: str, total: bool = False) -> str:
    source = group.source or ""
    cells = [f"<td>{escape(label)}</td>"]
    if not total:
        cls = ' class="inferred"' if source in INFERRED else ""
        cells += [f"<td>{escape(group.client or '')}</td>", f"<td{cls}>{escape(source)}</td>"]
        cells.append(f"<td>{escape(', '.join(group.lanes))}</td>")
    else:
        cells.append('<td colspan="3"></td>')
    cells.append(_num(group.steps, str(group.steps)))
    cells.append(f"<td>{escape(', '.join(group.models))}</td>")
    for kind in TOKEN_KINDS:
        cells.append(_tokens(group.tokens[kind], group.coverage[kind]))
    for value in (group.cost_before, group.cost_after):
        cells.append(_num(value, dollars(value)))
    provider = group.cost_provider
    cells.append(_num(provider, dollars(provider) if provider is not None else "—"))
    if not total:
        cells += [
            _num(group.context.tokens, context_cell(group.context)),
            _num(group.context.peak, count(group.context.peak)),
        ]
    else:
        cells.append('<td colspan="2"></td>')
    return "<tr>" + "".join(cells) + "</tr>"


_HEADS = (
    *("Session", "Client", "Source", "Lanes", "Steps", "Models", "Input", "Cache read", "Cache write"),
    *("Output", "Reasoning", "Cost before", "Cost after", "Provider", "Context (last step)", "Peak input"),
)


def _label(group: Group) -> str:
    return group.key if group.key is not None else f"(no session) {group.rows[0].id}"


def _cost_chart(groups: Sequence[Group]) -> str:
    values = [v for g in groups for v in (g.cost_before, g.cost_after) if v is not None]
    if not groups:
        return '<p id="cost-chart-empty">No sessions.</p>'
    hi, lo = max([Decimal(0), *values]), min([Decimal(0), *values])
    span = (hi - lo) or Decimal(1)
    inner = _H - 2 * _PAD

    def y(v: Decimal) -> float:
        return _PAD + float((hi - v) / span) * inner

    slot = (_W - 2 * _PAD) / len(groups)
    bar = max(2.0, min(28.0, slot / 3))
    parts = [
        f'<line class="axis" x1="{_PAD}" x2="{_W - _PAD}" y1="{y(Decimal(0)):.1f}" y2="{y(Decimal(0)):.1f}"/>'
    ]
    parts.append(f'<text x="4" y="{_PAD - 8}">{escape(dollars(hi))}</text>')
    if lo < 0:
        parts.append(f'<text x="4" y="{_H - _PAD + 14}">{escape(dollars(lo))}</text>')
    for i, g in enumerate(groups):
        x0 = _PAD + i * slot + slot / 2 - bar
        for j, (kind, v) in enumerate((("before", g.cost_before), ("after", g.cost_after))):
            title = f"{_label(g)}: cost {kind} {dollars(v)}"
            if v is None:
                parts.append(
                    f'<text class="unpriced" x="{x0:.1f}" y="{y(Decimal(0)) - 4 - 12 * j:.1f}">'
                    f"<title>{escape(title)}</title>unpriced</text>"
                )
                continue
            top, height = min(y(v), y(Decimal(0))), abs(y(v) - y(Decimal(0)))
            parts.append(
                f'<rect class="bar-{kind}" x="{x0 + j * bar:.1f}" y="{top:.1f}" width="{bar:.1f}" '
                f'height="{max(height, 0.5):.1f}" data-usd="{v}"><title>{escape(title)}</title></rect>'
            )
        parts.append(f'<text x="{x0:.1f}" y="{_H - 8}">{escape(_label(g)[-14:])}</text>')
    legend = (
        '<rect class="bar-before" x="{0}" y="8" width="10" height="10"/><text x="{1}" y="17">before</text>'
    )
    legend += (
        '<rect class="bar-after" x="{2}" y="8" width="10" height="10"/><text x="{3}" y="17">after</text>'
    )
    parts.append(legend.format(_W - 150, _W - 136, _W - 80, _W - 66))
    return (
        f'<svg id="cost-chart" role="img" aria-label="cost before and after per session" width="{_W}" '
        f'height="{_H}" viewBox="0 0 {_W} {_H}">' + "".join(parts) + "</svg>"
    )


def _context_chart(group: Group) -> str:
    main = [r for r in group.rows if r.lane == "main" and r.usage_after is not None]
    points = [int(r.usage_after["input_total"]) for r in main if r.usage_after is not None]
    window = group.context.window
    top = max([*points, window or 0, 1]) * 1.05
    w, h, pad = 360, 180, 40

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (i * (w - 2 * pad) / max(len(points) - 1, 1))
        return x, h - pad - v / top * (h - 2 * pad)

    parts = [f'<line class="axis" x1="{pad}" x2="{w - pad}" y1="{h - pad}" y2="{h - pad}"/>']
    if window:
        _, wy = xy(0, window)
        parts.append(f'<line class="window" x1="{pad}" x2="{w - pad}" y1="{wy:.1f}" y2="{wy:.1f}"/>')
        parts.append(f'<text x="{pad}" y="{wy - 4:.1f}">window {window:,}</text>')
    else:
        parts.append(f'<text x="{pad}" y="14">window unknown</text>')
    coords = [xy(i, v) for i, v in enumerate(points)]
    parts.append('<polyline class="ctx" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
    for i, ((x, y), v) in enumerate(zip(coords, points, strict=True)):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"<title>step {i + 1}: {v:,} input tokens</title></circle>"
        )
    parts.append(
        f'<text x="{pad}" y="{h - 10}">main-lane steps: {len(points)}; '
        f"last: {escape(context_cell(group.context))}</text>"
    )
    label = escape(_label(group))
    return (
        f'<figure><figcaption>{label}</figcaption><svg class="context-chart" role="img" '
        f'aria-label="context per step of {label}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        + "".join(parts)
        + "</svg></figure>"
    )


def render_html(report: Report, *, title: str = "usagefix report") -> str:
    """The whole document; `report` is grouped by session."""
    t = report.totals
    facts = [
        ("Sessions", str(len(report.groups))),
        ("Steps", str(t.steps)),
        ("Cost before", dollars(t.cost_before)),
        ("Cost after", dollars(t.cost_after)),
        ("Provider-reported cost", dollars(t.cost_provider) if t.cost_provider is not None else "—"),
        *(
            (f"Tokens: {k.replace('_', ' ')}", tokens_cell(t.tokens[k], t.coverage[k]))
            for k in ("input", "cache_read", "cache_write", "output")
        ),
        ("Unpriced steps", str(t.unpriced_steps)),
        ("Unmeasured steps", str(t.unmeasured_steps)),
    ]
    totals = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    # A partial group sum makes the total's partial too: the total row says whether any cell is.
    partial = any(t.coverage[k].partial for k in TOKEN_KINDS)
    note = (
        f'<p id="partial-note">{escape(PARTIAL_NOTE)}; hover a marked cell for how many steps it covers.</p>'
        if partial
        else ""
    )
    heads = "".join(f"<th>{h}</th>" for h in _HEADS)
    body = "".join(_row(g, _label(g)) for g in report.groups)
    charts = "".join(_context_chart(g) for g in report.groups[:_MAX_CHARTS] if g.context.tokens is not None)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f'<section id="totals"><h2>Totals</h2><dl>{totals}</dl></section>'
        "<p>Cost is the sum over every step of every lane, cache writes included; context is the last "
        "main-lane step's full input (not cumulative), peak its largest. Unpriced is never $0.</p>"
        f"{note}"
        f'<table id="sessions" class="sortable"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody>'
        f"<tfoot>{_row(t, 'Total', total=True)}</tfoot></table>"
        f"<h2>Cost before and after, per session</h2>{_cost_chart(report.groups)}"
        f"<h2>Context per step, against the window</h2>{charts or '<p>No main-lane steps with usage.</p>'}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
