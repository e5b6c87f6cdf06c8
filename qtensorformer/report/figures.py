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


def _plain(v: float, scientific: bool = False) -> str:
    """A tick label in plain digits (``12,300``, ``0.5``), or ``4e+13`` when ``scientific``
    or outside [0.001, 10⁷)."""
    if scientific or not 1e-3 <= abs(v) < 1e7:
        return f"{v:.3g}"
    rounded = float(f"{v:.3g}")
    text = f"{rounded:,.{max(0, 2 - math.floor(math.log10(abs(rounded))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _log_axis(ax: Any, values: list[float]) -> None:
    """A log y-axis for positive ``values`` labelled in plain numbers (never "4×10⁰"): 1-2-5
    ticks over up to two decades, powers of ten beyond (every other one past eight decades),
    and the lowest and highest value labelled too unless a tick already sits next to them."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = min(values), max(values)
    ax.set_yscale("log")
    ax.set_ylim(lo / 1.15, hi * 1.15)
    decades = math.log10(hi / lo)
    mantissas = (1, 2, 5) if decades <= 2 else (1,)
    exps = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0**e for e in exps for m in mantissas if lo / 1.15 <= m * 10.0**e <= hi * 1.15]
    if decades > 8:
        ticks = [t for t in ticks if round(math.log10(t)) % 2 == 0]
    near = max(0.15, 0.06 * decades)  # decades within which an end's label would overlap a tick
    ends = [v for v in (lo, hi) if not any(abs(math.log10(v / t)) < near for t in ticks)]
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks + ends)))
    sci = hi * 1.15 >= 1e7 or lo / 1.15 < 1e-3  # one style for every label of the axis
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v, sci)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _value_axis(ax: Any, values: list[float]) -> None:
    """Log scale when the values span more than 3×; linear from zero for a single value (one
    dot on an axis of a few percent says nothing about its size); else linear with 10%
    margins."""
    lo, hi = min(values), max(values)
    if lo > 0 and hi / lo > 3:
        _log_axis(ax, values)
    elif hi == lo:
        ax.set_ylim(min(0.0, 1.3 * lo), max(0.0, 1.3 * hi) or 1.0)
    else:
        pad = (hi - lo) * 0.1
        ax.set_ylim(lo - pad, hi + pad)


def draw_curves(curves: list[Curve], path: Path) -> Path | None:
    """Training loss and validation perplexity against the optimiser step, one colour a run;
    a run with one evaluation gets its value written beside its point."""
    if all(c.empty for c in curves):
        return None
    fig, (a, b) = _plt().subplots(1, 2, figsize=(11, 4))
    for i, c in enumerate(curves):
        if c.train_steps:
            marker = "o-" if len(c.train_steps) < 5 else "-"
            a.plot(c.train_steps, c.train_loss, marker, color=f"C{i}", label=c.name)
        if c.eval_steps:
            b.plot(c.eval_steps, c.eval_ppl, "o-", color=f"C{i}", label=c.name)
            if len(c.eval_steps) == 1:
                b.annotate(
                    f"{c.eval_ppl[0]:,.1f}",
                    (c.eval_steps[0], c.eval_ppl[0]),
                    textcoords="offset points",
                    xytext=(6, 6),
                    color=f"C{i}",
                )
    a.set(xlabel="step", ylabel="training LM loss (nats/token)", title="Training loss")
    b.set(xlabel="step", ylabel="validation perplexity", title="Validation perplexity")
    ppl = [v for c in curves for v in c.eval_ppl]
    if ppl:
        _value_axis(b, ppl)
    from matplotlib.ticker import MaxNLocator

    steps = [s for c in curves for s in (*c.train_steps, *c.eval_steps)]
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        if steps and max(steps) == min(steps):  # one step: a window around it
            ax.set_xlim(steps[0] - 1, steps[0] + 1)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
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
    _value_axis(ax, [p.ppl for s in series for p in s.points])
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


def _energy_panel(ax: Any, energy: EnergyTable, names: list[str], title: str) -> None:
    """Bars of µJ per query for the profiles ``names``, one bar a model."""
    w = 0.8 / len(energy.uj)
    for i, (model, vals) in enumerate(energy.uj.items()):
        ax.bar([j + i * w for j in range(len(names))], [vals[h] for h in names], w, label=model)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=20)
    values = [v[h] for v in energy.uj.values() for h in names if v[h] > 0]
    if values:
        _value_axis(ax, values)
        if ax.get_yscale() == "linear":
            ax.set_ylim(0, max(values) * 1.15)  # bars start at zero
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")


def draw_energy(energy: EnergyTable | None, path: Path) -> Path | None:
    """Estimated µJ per query, one bar a model: classical profiles and circuit hardware
    (simulator, QPU) in separate panels, each on its own scale."""
    if energy is None or not energy.uj:
        return None
    classical = [h for h in energy.profiles if energy.kinds.get(h, "classical") == "classical"]
    circuits = [h for h in energy.profiles if h not in classical]
    panels = [(classical, "Classical hardware"), (circuits, "Circuit hardware")]
    panels = [(names, title) for names, title in panels if names]
    widths = [max(len(names), 1) for names, _ in panels]
    fig, axes = _plt().subplots(
        1, len(panels), figsize=(10, 3.8), gridspec_kw={"width_ratios": widths}, squeeze=False
    )
    for ax, (names, title) in zip(axes[0], panels, strict=True):
        _energy_panel(ax, energy, names, title)
    axes[0][0].legend(fontsize=8)
    axes[0][0].set_ylabel("µJ per query (estimate)")
    fig.suptitle("Estimated energy per query by hardware profile")
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
