"""The report's figures (PNG, matplotlib) drawn from a :class:`~.content.ReportData`.

matplotlib is imported on first use, so that importing the report costs no start-up time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .content import Curve, Decision, EnergyTable, LayerDistribution, ParetoSeries, ReportData

__all__ = ["FIGURE_NAMES", "draw_figures", "viridis_hex"]

FIGURE_NAMES = ("curves", "pareto", "tokens", "histograms", "routed", "energy")


def _plt() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def viridis_hex(x: float) -> str:
    """The viridis colour of ``x`` in [0, 1] as ``#rrggbb``."""
    import matplotlib

    return matplotlib.colors.to_hex(matplotlib.colormaps["viridis"](x))


def draw_curves(curves: list[Curve], path: Path) -> Path | None:
    """Training loss and validation perplexity against the optimiser step, one colour a run."""
    if all(c.empty for c in curves):
        return None
    from matplotlib.ticker import ScalarFormatter

    fig, (a, b) = _plt().subplots(1, 2, figsize=(11, 4))
    for i, c in enumerate(curves):
        if c.train_steps:
            a.plot(c.train_steps, c.train_loss, color=f"C{i}", label=c.name)
        if c.eval_steps:
            b.plot(c.eval_steps, c.eval_ppl, "o-", color=f"C{i}", label=c.name)
    a.set(xlabel="step", ylabel="training LM loss (nats/token)", title="Training loss")
    b.set(xlabel="step", ylabel="validation perplexity", title="Validation perplexity")
    b.set_yscale("log")
    b.yaxis.set_major_formatter(ScalarFormatter())
    b.yaxis.set_minor_formatter(ScalarFormatter())
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def draw_pareto(series: list[ParetoSeries], path: Path) -> Path | None:
    """Every evaluation (faint) and the non-dominated ones, perplexity against parameters."""
    if not series:
        return None
    fig, ax = _plt().subplots(figsize=(6.5, 4.5))
    for i, s in enumerate(series):
        ax.scatter(
            [p.params / 1e6 for p in s.points],
            [p.ppl for p in s.points],
            s=18,
            color=f"C{i}",
            alpha=0.35,
        )
        front = [p for p in s.points if p.on_front]
        ax.scatter(
            [p.params / 1e6 for p in front],
            [p.ppl for p in front],
            s=50,
            color=f"C{i}",
            edgecolor="black",
            label=f"{s.name} (front)",
        )
    ax.set(
        xlabel="parameters (millions)",
        ylabel="validation perplexity",
        title="Evaluations and non-dominated points",
    )
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def draw_tokens(decisions: list[list[Decision]], path: Path) -> Path:
    """Layers × tokens heat map of the score, with ranks written in and routed tokens boxed."""
    from matplotlib.patches import Rectangle

    n_layers, n = len(decisions), len(decisions[0])
    ent = [[math.nan if d.entropy is None else d.entropy for d in row] for row in decisions]
    fig, ax = _plt().subplots(figsize=(max(6, 0.55 * n), 0.8 + 0.7 * n_layers))
    im = ax.imshow(ent, aspect="auto", cmap="viridis")
    for li, row in enumerate(decisions):
        for t, d in enumerate(row):
            if d.rank is not None:
                bright = im.norm(d.entropy) > 0.6 if d.entropy is not None else True
                colour = "black" if bright else "white"
                ax.text(t, li, str(d.rank), ha="center", va="center", fontsize=7, color=colour)
            if d.routed:
                ax.add_patch(Rectangle((t - 0.5, li - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(n), [d.token for d in decisions[0]], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_layers), [f"layer {i}" for i in range(n_layers)])
    ax.set_title(
        "Score per token (colour), TT rank (number), routed to quantum attention (red box)"
    )
    fig.colorbar(im, ax=ax, label="entropy (nats)", fraction=0.03)
    return _save(fig, path)


def draw_histograms(layers: list[LayerDistribution], path: Path) -> Path | None:
    """Entropy and TT-FFN rank histograms per layer (None when there is nothing to show)."""
    if not any(d.entropies for d in layers) and not any(len(set(d.ranks)) > 1 for d in layers):
        return None
    fig, (a, b) = _plt().subplots(1, 2, figsize=(11, 3.8))
    for d in layers:
        label = f"layer {d.layer}"
        if d.entropies:
            a.hist(d.entropies, bins=30, histtype="step", lw=1.5, label=label)
        if d.ranks:
            bins = range(min(d.ranks), max(d.ranks) + 2)
            b.hist(d.ranks, bins=bins, histtype="step", lw=1.5, label=label, align="left")
    a.set(xlabel="entropy score (nats)", ylabel="tokens", title="Entropy per layer")
    b.set(xlabel="TT-FFN rank", ylabel="tokens", title="Rank per layer")
    for ax in (a, b):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def draw_routed(layers: list[LayerDistribution], path: Path) -> Path | None:
    """Fraction of tokens routed to quantum attention per layer, with the training targets."""
    if all(d.routed_fraction is None for d in layers):
        return None
    fig, ax = _plt().subplots(figsize=(5.5, 3.2))
    fractions = [d.routed_fraction or 0.0 for d in layers]
    ax.bar(range(len(layers)), fractions, color="C3")
    targets = [d.target for d in layers if d.target is not None]
    for i, d in enumerate(layers):
        if d.target is not None:
            ax.hlines(d.target, i - 0.4, i + 0.4, colors="black", linestyles="--")
    ax.set_xticks(range(len(layers)), [f"layer {d.layer}" for d in layers])
    ax.set(ylabel="routed fraction", title="Tokens routed to quantum attention (-- target)")
    ax.set_ylim(0, max(0.05, *fractions, *targets) * 1.25)
    return _save(fig, path)


def draw_energy(energy: EnergyTable | None, path: Path) -> Path | None:
    """Estimated µJ per query, grouped by hardware profile, one bar a model (log scale)."""
    if energy is None or not energy.uj:
        return None
    names = energy.profiles
    fig, ax = _plt().subplots(figsize=(9, 3.8))
    w = 0.8 / len(energy.uj)
    for i, (model, vals) in enumerate(energy.uj.items()):
        ax.bar([j + i * w for j in range(len(names))], [vals[h] for h in names], w, label=model)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=20)
    ax.set_yscale("log")
    ax.set(
        ylabel="µJ per query (ESTIMATE, log scale)",
        title="Estimated energy per query by hardware profile",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def draw_figures(data: ReportData, folder: Path) -> dict[str, Path]:
    """Draw every figure ``data`` has material for into ``folder`` (``<name>.png``); returns
    the paths by name, in :data:`FIGURE_NAMES` order."""
    folder = Path(folder)
    drawn = {
        "curves": draw_curves(data.curves, folder / "curves.png"),
        "pareto": draw_pareto(data.pareto, folder / "pareto.png"),
    }
    if data.tokens is not None and data.tokens.decisions:
        drawn["tokens"] = draw_tokens(data.tokens.decisions, folder / "tokens.png")
        drawn["histograms"] = draw_histograms(data.tokens.layers, folder / "histograms.png")
        drawn["routed"] = draw_routed(data.tokens.layers, folder / "routed.png")
    drawn["energy"] = draw_energy(data.energy, folder / "energy.png")
    return {k: p for k, p in drawn.items() if p is not None}
