"""Entanglement analysis of a trained LM: per layer and matrix type, the singular spectrum of
each weight (plain and whitened by the calibration data), its entropy, effective rank and the
energy a budget's rank discards; per layer, the sensitivity (perplexity change when only that
layer's matrices are compressed at the common ratio); and how the two correlate.

Index legend: n out_features, m in_features, r the budget's rank, σ singular values.

For a weight W (n × m) with singular values σ_i (of W, or of W·S with S Sᵀ = XᵀX + λI the
whitening of its calibration inputs X), p_i = σ_i² / Σ_j σ_j² is the share of its energy in
direction i. The *entropy* H = −Σ p_i log p_i (nats) is the entanglement entropy of W read as
a bipartite state (rows | columns), its *effective rank* is e^H, and the *discarded* energy
at rank r is Σ_{i>r} p_i: for the whitened spectrum that is the relative squared activation
error of the rank-r truncation (SVD-LLM's optimum). The budget's rank is SVD-LLM's uniform rule
r = ⌊(1 − ratio)·n·m/(n + m)⌋.

Sensitivity of layer ℓ: every selected linear of block ℓ replaced by its SVD-LLM truncation
at that rank (from the same statistics), the others untouched, perplexity measured by the
caller's ``evaluate``; reported as the relative change against the uncompressed model.

Example:
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> model = QTensorFormer(ModelConfig.dense(vocab_size=40, d_model=16, n_layers=4,
    ...                                         n_heads=2))
    >>> ids = torch.randint(0, 40, (4, 16), generator=torch.Generator().manual_seed(0))
    >>> rep = analyze(model, ids, AnalysisConfig(ratio=0.4, sensitivity=False, progress=False))
    >>> len(rep.matrices), sorted({m.kind for m in rep.matrices})
    (16, ['attn.out', 'attn.qkv', 'ffn.w1', 'ffn.w2'])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .api import _block_passes, _eval_mode, select_linears
from .budget import uniform_rank
from .calibrate import InputStats, _is_conv1d, find_blocks, linear_weight
from .config import CalibrationConfig
from .correlation import Correlation, pearson, spearman
from .linalg import lowrank_factors, spectrum, whitening
from .progress import progress_bar
from .sharing import matrix_type

__all__ = [
    "AnalysisConfig",
    "AnalysisReport",
    "LayerSensitivity",
    "MatrixAnalysis",
    "analyze",
    "sensitivity_weights",
    "spectrum_entropy",
]

F64 = torch.float64


@dataclass(frozen=True)
class AnalysisConfig:
    """What :func:`analyze` measures: the common ``ratio`` of each matrix's parameters
    removed (budget rank and sensitivity), the whitening ``damp``, whether to measure the
    ``sensitivity`` (one evaluation per layer), calibration ``batch_size`` and a
    ``progress`` bar."""

    ratio: float = 0.4
    damp: float = 1e-6
    sensitivity: bool = True
    batch_size: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ValueError(
                f"ratio must lie in (0, 1) (the fraction of parameters removed), got {self.ratio}"
            )
        if not self.damp >= 0:
            raise ValueError(f"damp must be >= 0, got {self.damp}")
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size}")


@dataclass
class MatrixAnalysis:
    """One matrix: its ``name``, block index ``layer``, matrix type ``kind`` (its name inside
    the block), ``shape`` (n, m), the budget's ``rank``; for the plain spectrum σ(W) and the
    whitened σ(W·S): entropy (nats), effective rank e^H and discarded energy share at
    ``rank``; both spectra (descending)."""

    name: str
    layer: int
    kind: str
    shape: tuple[int, int]
    rank: int
    entropy: float
    effective_rank: float
    discarded: float
    w_entropy: float
    w_effective_rank: float
    w_discarded: float
    spectrum: list[float] = field(repr=False, default_factory=list)
    w_spectrum: list[float] = field(repr=False, default_factory=list)


@dataclass
class LayerSensitivity:
    """Perplexity with only block ``layer`` compressed, and its change relative to the
    uncompressed model."""

    layer: int
    ppl: float
    change: float


@dataclass
class AnalysisReport:
    """What :func:`analyze` measured (see the module docstring). ``base_ppl`` is the
    uncompressed perplexity (None without sensitivity); ``correlations`` pair each
    per-layer measure (``entropy``, ``w_entropy``, ``w_discarded``: the mean over the
    layer's matrices) with the sensitivity."""

    ratio: float
    n_layers: int
    calibration: dict[str, Any]
    matrices: list[MatrixAnalysis]
    base_ppl: float | None = None
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    correlations: dict[str, list[Correlation]] = field(default_factory=dict)
    seconds: float = 0.0

    def per_layer(self, measure: str) -> list[float]:
        """The mean of a :class:`MatrixAnalysis` field over each layer's matrices."""
        out = []
        for layer in range(self.n_layers):
            vals = [getattr(m, measure) for m in self.matrices if m.layer == layer]
            out.append(sum(vals) / len(vals) if vals else math.nan)
        return out

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(m.kind for m in self.matrices))

    def middle_verdict(self, measure: str = "w_entropy") -> dict[str, Any]:
        """Is ``measure`` highest in the middle third of the layers? Yes only when its peak
        layer lies in the middle third *and* the middle third's mean exceeds the outer two
        thirds'; returns the peak layer, both means and their relative difference."""
        vals = self.per_layer(measure)
        n = len(vals)
        third = n // 3
        middle = vals[third : n - third] if n >= 3 else vals
        outer = vals[:third] + vals[n - third :] if n >= 3 else []
        peak = max(range(n), key=lambda i: vals[i])
        mid = sum(middle) / len(middle)
        out = sum(outer) / len(outer) if outer else math.nan
        in_middle = third <= peak < n - third
        return {
            "measure": measure,
            "peak_layer": peak,
            "peak_in_middle": in_middle,
            "middle": (third, n - third - 1),
            "middle_mean": mid,
            "outer_mean": out,
            "difference": mid / out - 1 if outer and out else math.nan,
            "middle_highest": bool(outer) and in_middle and mid > out,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["correlations"] = {k: [c.to_dict() for c in v] for k, v in self.correlations.items()}
        d["verdicts"] = {k: self.middle_verdict(k) for k in ("entropy", "w_entropy")}
        return d


def spectrum_entropy(sigma: torch.Tensor, rank: int) -> tuple[float, float, float]:
    """(entropy in nats, effective rank e^H, energy share beyond ``rank``) of singular values
    ``sigma``; a zero matrix gives (0, 1, 0).

    Example:
        >>> h, eff, disc = spectrum_entropy(torch.tensor([1.0, 1.0, 1.0, 1.0]), 2)
        >>> round(h, 6) == round(math.log(4), 6), round(eff, 6), disc
        (True, 4.0, 0.5)
    """
    e = sigma.to(F64) ** 2
    total = float(e.sum())
    if total <= 0:
        return 0.0, 1.0, 0.0
    p = e / total
    h = float(-(p[p > 0] * p[p > 0].log()).sum())
    return h, math.exp(h), float(p[rank:].sum())


def _analyse_matrix(
    name: str, module: nn.Module, path: str, stats: InputStats, config: AnalysisConfig
) -> tuple[MatrixAnalysis, torch.Tensor]:
    """The analysis of one matrix and its SVD-LLM truncation at the budget's rank."""
    W = linear_weight(module).detach().to(F64)
    n, m = W.shape
    r = uniform_rank(n, m, config.ratio)
    white = whitening(stats.gram, config.damp)
    plain, whitened = torch.linalg.svdvals(W), spectrum(W, white)
    A, B = lowrank_factors(W, white, r)
    layer, kind = matrix_type(name, path)
    rec = MatrixAnalysis(
        name,
        layer,
        kind,
        (n, m),
        r,
        *spectrum_entropy(plain, r),
        *spectrum_entropy(whitened, r),
        plain.tolist(),
        whitened.tolist(),
    )
    return rec, (A @ B).to(linear_weight(module).dtype)


def _set_weight(module: nn.Module, W: torch.Tensor) -> None:
    """Write W (n × m) into a Linear, or transposed into a GPT-2 Conv1D (m × n), in place."""
    module.weight.data.copy_(W.T if _is_conv1d(module) else W)


def _sensitivity(
    model: nn.Module,
    truncated: dict[str, torch.Tensor],
    modules: dict[str, nn.Module],
    layers: list[int],
    layer_of: dict[str, int],
    evaluate: Callable[[nn.Module], float],
    base: float,
    progress: bool,
) -> list[LayerSensitivity]:
    """Perplexity with each layer's matrices truncated in turn (restored after)."""
    out = []
    bar = progress_bar(progress)
    task = bar.add_task("sensitivity", total=len(layers))
    with bar:
        for layer in layers:
            names = [n for n in truncated if layer_of[n] == layer]
            saved = {n: modules[n].weight.detach().clone() for n in names}
            try:
                for n in names:
                    _set_weight(modules[n], truncated[n])
                ppl = evaluate(model)
            finally:
                for n in names:
                    modules[n].weight.data.copy_(saved[n])
            out.append(LayerSensitivity(layer, ppl, ppl / base - 1))
            bar.update(task, advance=1, description=f"sensitivity layer {layer}")
    return out


def _correlations(report: AnalysisReport) -> dict[str, list[Correlation]]:
    """Pearson and Spearman of each per-layer measure against the sensitivity."""
    y = [s.change for s in report.sensitivity]
    out = {}
    for measure in ("entropy", "w_entropy", "w_discarded"):
        x = [report.per_layer(measure)[s.layer] for s in report.sensitivity]
        try:
            out[measure] = [pearson(x, y), spearman(x, y)]
        except ValueError:  # fewer than 4 layers, or a constant measure
            continue
    return out


def analyze(
    model: nn.Module,
    calibration: torch.Tensor,
    config: AnalysisConfig | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> AnalysisReport:
    """Analyse every selected linear of ``model``'s blocks (default: all of them) on the
    calibration token ids (N, L); with ``config.sensitivity`` and ``evaluate`` (model →
    perplexity), also each layer's sensitivity and the correlations. The model is left as it
    was (weights restored after each sensitivity evaluation)."""
    config = config or AnalysisConfig()
    t0 = time.perf_counter()
    selected, path = select_linears(model, filter_fn)
    if path is None:
        raise ValueError("the analysis needs a model with repeated blocks (none were found)")
    n_layers = len(find_blocks(model)[1])
    records: list[MatrixAnalysis] = []
    truncated: dict[str, torch.Tensor] = {}

    def visit(prefix, block, mods, stats, held):
        for name, module in mods.items():
            rec, truncated[name] = _analyse_matrix(name, module, path, stats[name], config)
            records.append(rec)

    opts = CalibrationConfig(
        batch_size=config.batch_size, sequential=False, progress=config.progress
    )
    with _eval_mode(model):
        _block_passes(model, path, selected, calibration, opts, visit, "spectra")
    N, L = calibration.shape
    report = AnalysisReport(config.ratio, n_layers, {"n_samples": N, "seq_len": L}, records)
    if config.sensitivity and evaluate is not None:
        report.base_ppl = evaluate(model)
        layer_of = {r.name: r.layer for r in records}
        layers = sorted(set(layer_of.values()))
        report.sensitivity = _sensitivity(
            model,
            truncated,
            selected,
            layers,
            layer_of,
            evaluate,
            report.base_ppl,
            config.progress,
        )
        report.correlations = _correlations(report)
    report.seconds = time.perf_counter() - t0
    return report


def sensitivity_weights(report: AnalysisReport, floor: float = 0.01) -> dict[str, float]:
    """Importance weights per matrix for ``allocation="sensitivity"``, from an analysis with
    sensitivities: a first-order model in which layer ℓ's perplexity change grows in
    proportion to the whitened energy its matrices discard, calibrated by the one change c_ℓ
    measured at the report's ratio: w_ℓ = c_ℓ / D_ℓ, D_ℓ = Σ_j (energy share matrix j
    discarded at that ratio). Every matrix of layer ℓ gets w_ℓ; changes below ``floor`` ×
    the largest are raised to it (a layer that got better when truncated still costs
    something), and the weights are scaled to mean 1.

    Example:
        >>> rep = AnalysisReport(0.4, 2, {}, [
        ...     MatrixAnalysis("b.0.w", 0, "w", (4, 4), 2, 1.0, 2.7, 0.2, 1.0, 2.7, 0.2),
        ...     MatrixAnalysis("b.1.w", 1, "w", (4, 4), 2, 1.0, 2.7, 0.2, 1.0, 2.7, 0.1)],
        ...     1.0, [LayerSensitivity(0, 1.3, 0.3), LayerSensitivity(1, 1.05, 0.05)])
        >>> {k: round(v, 3) for k, v in sensitivity_weights(rep).items()}
        {'b.0.w': 1.5, 'b.1.w': 0.5}
    """
    if not report.sensitivity:
        raise ValueError("the analysis has no sensitivities: run it with an evaluate function")
    top = max(s.change for s in report.sensitivity)
    lowest = floor * top if top > 0 else 1e-6
    change = {s.layer: max(s.change, lowest) for s in report.sensitivity}
    discarded: dict[int, float] = {}
    for m in report.matrices:
        discarded[m.layer] = discarded.get(m.layer, 0.0) + m.w_discarded
    raw = {
        m.name: change[m.layer] / max(discarded[m.layer], 1e-12)
        for m in report.matrices
        if m.layer in change
    }
    mean = sum(raw.values()) / len(raw)
    return {k: v / mean for k, v in raw.items()}
