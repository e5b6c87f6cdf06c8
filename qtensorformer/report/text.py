"""The words and numbers both renderers write: table cells, titles and notes.

Markdown and HTML differ only in markup; what they say is decided here, once.
"""

from __future__ import annotations

import math

from .content import EnergyTable, ReportData, RunSetup, TokenAnalysis

__all__ = [
    "ENERGY_TITLE",
    "FIGURE_ALT",
    "PARETO_NOTE",
    "TOKENS_LEGEND",
    "Table",
    "energy_caption",
    "energy_note",
    "energy_table",
    "fmt",
    "layers_intro",
    "layers_table",
    "models_table",
    "sample_line",
    "setup_line",
    "title",
    "tokens_title",
]

Table = tuple[list[str], list[list[str]]]  # header, rows of cells

ENERGY_TITLE = "Energy per query (estimates)"
PARETO_NOTE = (
    "Every evaluation (faint) and the non-dominated ones "
    "(perplexity, parameters, FLOPs per token, latency, energy)."
)
TOKENS_LEGEND = (
    "Layer 0, colour = entropy, superscript = TT rank, red outline = routed to quantum attention:"
)
FIGURE_ALT = {
    "curves": "training curves",
    "pareto": "pareto",
    "tokens": "tokens",
    "histograms": "Entropy and rank",
    "routed": "Routing",
    "energy": "energy",
}


def fmt(v: float | None, spec: str = ",.2f") -> str:
    """``v`` formatted with ``spec``, or ``-`` when it is missing or not a number."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def title(data: ReportData) -> str:
    return f"Report: {data.title}"


def setup_line(setup: RunSetup) -> str:
    return (
        f"Data: {setup.data or '-'} ({setup.tokenizer or '-'}). "
        f"Perplexity protocol: {setup.protocol or '-'}"
    )


def models_table(data: ReportData) -> Table:
    """Parameters, perplexities, speed and status per model (and the ratios to ``dense``)."""
    header = ["model", "params", "test ppl", "valid ppl", "tokens/s", "train s", "status"]
    if data.dense_baseline:
        header += ["ppl vs dense", "× fewer params"]
    rows = []
    for m in data.models:
        row = [
            m.name,
            fmt(m.params, ",d"),
            fmt(m.test_ppl),
            fmt(m.valid_ppl),
            fmt(m.tokens_per_second, ",.0f"),
            fmt(m.train_seconds, ",.0f"),
            m.status or "-",
        ]
        if data.dense_baseline:
            row += [fmt(m.ppl_vs_dense, "+.1%"), fmt(m.fewer_params, ".2f")]
        rows.append(row)
    return header, rows


def tokens_title(analysis: TokenAnalysis) -> str:
    return f"Decisions per token: {analysis.model}"


def sample_line(analysis: TokenAnalysis) -> str:
    return f"Sample: {analysis.sample}; score: {analysis.entropy_source} entropy."


def layers_intro(analysis: TokenAnalysis) -> str:
    return f"Per layer, over {analysis.n_tokens} tokens:"


def layers_table(analysis: TokenAnalysis) -> Table:
    """Mean entropy, mean rank and routed fraction per layer."""
    rows = [
        [
            str(d.layer),
            fmt(d.mean_entropy, ".3f"),
            fmt(d.mean_rank, ".2f"),
            fmt(d.routed_fraction, ".1%"),
        ]
        for d in analysis.layers
    ]
    return ["layer", "mean entropy", "mean rank", "routed"], rows


def energy_note(energy: EnergyTable) -> str:
    return (
        f"Forward FLOPs of one query of {energy.seq_len} random tokens × J/FLOP of each profile "
        "(docs/ENERGY.md). These are estimates, not measurements."
    )


def energy_table(energy: EnergyTable) -> Table:
    """Estimated µJ per query, one row per model, one column per hardware profile."""
    names = energy.profiles
    header = ["model", *[f"{h} µJ" for h in names]]
    return header, [[m, *[fmt(v[h], ",.4g") for h in names]] for m, v in energy.uj.items()]


def energy_caption(energy: EnergyTable) -> str:
    """One line under the energy figure: why its panels are split, what the classical
    estimates follow (each model's FLOPs and its LM head's share) and, when the LM head
    carries most of them, why compressing the blocks hardly moves the classical energy."""
    line = (
        "Classical profiles (left) and circuit hardware (right) are drawn apart: a QPU "
        "estimate counts shots of every circuit and sits orders of magnitude above."
    )
    if energy.classical_flops:
        per_model = ", ".join(
            f"{m} {f / 1e6:,.1f} MFLOP (LM head {energy.lm_head_share.get(m, 0):.0%})"
            for m, f in energy.classical_flops.items()
        )
        line += f" Classical estimates follow forward FLOPs per query: {per_model}."
    shares = list(energy.lm_head_share.values())
    if shares and min(shares) >= 0.5:
        line += (
            " The LM head (one d × vocabulary product per token) carries most of them, so "
            "compressing the blocks barely changes the classical energy."
        )
    return line
