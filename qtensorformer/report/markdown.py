"""The report as Markdown, from a :class:`~.content.ReportData` and the links of its figures."""

from __future__ import annotations

from collections.abc import Mapping

from . import text
from .content import EnergyTable, ReportData, TokenAnalysis

__all__ = ["render_markdown"]


def _table(table: text.Table) -> list[str]:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _figure(key: str, figures: Mapping[str, str]) -> list[str]:
    """An image line and a blank line, or nothing when the figure was not drawn."""
    if key not in figures:
        return []
    return [f"![{text.FIGURE_ALT[key]}]({figures[key]})", ""]


def _header(data: ReportData) -> list[str]:
    lines = [f"# {text.title(data)}", ""]
    if data.setup is not None:
        lines += [text.setup_line(data.setup), ""]
    return lines


def _training(figures: Mapping[str, str]) -> list[str]:
    lines = []
    if "curves" in figures:
        lines += ["## Training", "", *_figure("curves", figures)]
    if "pareto" in figures:
        lines += ["## Pareto front", "", text.PARETO_NOTE, "", *_figure("pareto", figures)]
    return lines


def _tokens(analysis: TokenAnalysis, figures: Mapping[str, str]) -> list[str]:
    lines = [f"## {text.tokens_title(analysis)}", "", text.sample_line(analysis), ""]
    lines += _figure("tokens", figures)
    for note in analysis.notes:
        lines += [f"- {note.summary}", *(f"  - {d}" for d in note.details)]
    lines += ["", text.layers_intro(analysis), "", *_table(text.layers_table(analysis))]
    return lines + _figure("histograms", figures) + _figure("routed", figures)


def _energy(energy: EnergyTable, figures: Mapping[str, str]) -> list[str]:
    lines = [f"## {text.ENERGY_TITLE}", "", text.energy_note(energy), ""]
    lines += _table(text.energy_table(energy)) + _figure("energy", figures)
    return lines + ([text.energy_caption(energy), ""] if "energy" in figures else [])


def render_markdown(data: ReportData, figures: Mapping[str, str]) -> str:
    """The Markdown report of ``data``; ``figures`` maps a figure's name (``curves``,
    ``tokens``...) to its link, relative to the report (sections without one are left out)."""
    lines = _header(data)
    lines += ["## Models", "", *_table(text.models_table(data))]
    lines += _training(figures)
    if data.tokens is not None:
        lines += _tokens(data.tokens, figures)
    if data.energy is not None and data.energy.uj:
        lines += _energy(data.energy, figures)
    return "\n".join(lines) + "\n"
