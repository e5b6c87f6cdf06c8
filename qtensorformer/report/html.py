"""The report as one self-contained HTML page, written straight from a
:class:`~.content.ReportData`: every text escaped, every figure embedded as base64 PNG.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

from . import text
from .content import Decision, EnergyTable, LayerNote, ReportData, TokenAnalysis
from .figures import viridis_hex

__all__ = ["render_html"]

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
)


def _esc(s: str) -> str:
    return html.escape(s)


def _p(s: str) -> str:
    return f"<p>{_esc(s)}</p>"


def _h(level: int, s: str) -> str:
    return f"<h{level}>{_esc(s)}</h{level}>"


def _table(table: text.Table) -> str:
    header, rows = table
    head = "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _figure(key: str, images: Mapping[str, bytes]) -> str:
    """The figure embedded as a data URI, or nothing when it was not drawn."""
    if key not in images:
        return ""
    data = base64.b64encode(images[key]).decode()
    alt = _esc(text.FIGURE_ALT[key])
    return f'<img src="data:image/png;base64,{data}" alt="{alt}" style="max-width:100%">'


def _token_span(d: Decision, lo: float, hi: float) -> str:
    """One token coloured by its entropy, its rank as superscript, outlined if routed."""
    if d.entropy is None:
        colour, light = "#dddddd", False
    else:
        x = 0.0 if hi <= lo else (d.entropy - lo) / (hi - lo)
        colour, light = viridis_hex(x), hi > lo and x > 0.6
    style = f"background:{colour};color:{'#000' if light else '#fff'};padding:2px 4px;margin:2px;"
    style += "border-radius:3px;display:inline-block;"
    if d.routed:
        style += "outline:3px solid #d62728;"
    tip = _esc(f"entropy {d.entropy}, rank {d.rank}, path {d.path}")
    rank = f"<sup>{d.rank}</sup>" if d.rank is not None else ""
    return f'<span style="{style}" title="{tip}">{_esc(d.token)}{rank}</span>'


def _token_spans(decisions: list[Decision]) -> str:
    """One layer's tokens, coloured on the scale of that layer's entropies."""
    ents = [d.entropy for d in decisions if d.entropy is not None]
    lo, hi = (min(ents), max(ents)) if ents else (0.0, 1.0)
    return "".join(_token_span(d, lo, hi) for d in decisions)


def _notes(notes: list[LayerNote]) -> str:
    items = []
    for n in notes:
        details = "".join(f"<li>{_esc(d)}</li>" for d in n.details)
        items.append(
            f"<li>{_esc(n.summary)}" + (f"<ul>{details}</ul>" if details else "") + "</li>"
        )
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _header(data: ReportData) -> str:
    out = _h(1, text.title(data))
    return out + (_p(text.setup_line(data.setup)) if data.setup is not None else "")


def _training(images: Mapping[str, bytes]) -> str:
    out = ""
    if "curves" in images:
        out += _h(2, "Training") + _figure("curves", images)
    if "pareto" in images:
        out += _h(2, "Pareto front") + _p(text.PARETO_NOTE) + _figure("pareto", images)
    return out


def _tokens(analysis: TokenAnalysis, images: Mapping[str, bytes]) -> str:
    out = _h(2, text.tokens_title(analysis))
    if analysis.decisions:
        out += _p(text.TOKENS_LEGEND) + f"<p>{_token_spans(analysis.decisions[0])}</p>"
    out += _p(text.sample_line(analysis)) + _figure("tokens", images) + _notes(analysis.notes)
    out += _p(text.layers_intro(analysis)) + _table(text.layers_table(analysis))
    return out + _figure("histograms", images) + _figure("routed", images)


def _energy(energy: EnergyTable, images: Mapping[str, bytes]) -> str:
    out = _h(2, text.ENERGY_TITLE) + _p(text.energy_note(energy))
    out += _table(text.energy_table(energy)) + _figure("energy", images)
    return out + (_p(text.energy_caption(energy)) if "energy" in images else "")


def render_html(data: ReportData, images: Mapping[str, bytes]) -> str:
    """The HTML page of ``data``; ``images`` maps a figure's name (``curves``, ``tokens``...) to
    its PNG bytes, embedded in the page (sections without one are left out)."""
    body = _header(data) + _h(2, "Models") + _table(text.models_table(data))
    body += _training(images)
    if data.tokens is not None:
        body += _tokens(data.tokens, images)
    if data.energy is not None and data.energy.uj:
        body += _energy(data.energy, images)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Q-TensorFormer report"
        f"</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
