"""distill_to_kan: replace every DARUAN activation by a fitted per-channel cubic B-spline (KAN).

Index legend: S sample points, C channels, G spline intervals.

:func:`distill_to_kan` is a :func:`~qtensorformer.nn.replace.replace_modules` pass with the
handler registered for :class:`KANDistillConfig`.

The fit is linear least squares on S points spread over [lo, hi] per layer (the basis is shared
by the channels, so one ``lstsq`` with C right-hand sides per layer), in float64. The interval
is the range of the activation's inputs on calibration tokens when given (widened by 5%),
else ``x_range``; inputs outside it are clamped by the spline. The error is measured on points
halfway between the fitting points, and on the calibration inputs when given.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, replace

import torch

from .daruan import DARUAN, BSplineActivation, bspline_basis
from .replace import register_handler, replace_modules

__all__ = ["KANDistillConfig", "KANFitReport", "distill_to_kan", "fit_bspline"]


@dataclass
class KANFitReport:
    """Fit errors of a DARUAN → B-spline distillation (absolute errors of the activation's
    output, which lies in [-1, 1]): overall and per layer."""

    grid: int
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0
    calib_max_abs_error: float | None = None
    calib_mean_abs_error: float | None = None
    calib_outside_fraction: float | None = None
    layers: list[dict] = field(default_factory=list)
    remaining_quantum: list[str] = field(default_factory=list)


def _design(x: torch.Tensor, lo: float, hi: float, grid: int) -> torch.Tensor:
    """B-spline design matrix (S, G+3) at points x (S,)."""
    u = (x.clamp(lo, hi) - lo) / (hi - lo) * grid
    idx, w = bspline_basis(u, grid)
    A = torch.zeros(x.shape[0], grid + 3, dtype=x.dtype)
    for k in range(4):
        A.scatter_add_(1, (idx + k)[:, None], w[:, k : k + 1])
    return A


def _target(act: DARUAN, ref: DARUAN, xs: torch.Tensor) -> torch.Tensor:
    """What the spline fits at points xs (S,): the bounded circuit part (S, C) (the SiLU
    branch is copied, not fitted)."""
    xs = xs[:, None].expand(-1, act.channels)
    if not ref.base:
        return ref(xs)
    return ref.post_weight * ref.expval(xs) + ref.post_bias


@torch.no_grad()
def fit_bspline(
    act: DARUAN, lo: float, hi: float, grid: int = 32, points: int = 4096
) -> tuple[BSplineActivation, dict]:
    """Fit a :class:`BSplineActivation` on [lo, hi] to every channel of ``act``.

    Returns the spline and ``{"max_abs_error", "mean_abs_error"}`` on the midpoints.
    """
    if not hi > lo:
        raise ValueError(f"need hi > lo, got [{lo}, {hi}]")
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    ref = copy.deepcopy(act).double()  # float64 reference; the caller's module is left as is
    A = _design(x, lo, hi, grid)
    coef = torch.linalg.lstsq(A, _target(act, ref, x)).solution  # (G+3, C)
    xm = (x[1:] + x[:-1]) / 2  # held-out points
    err = (_design(xm, lo, hi, grid) @ coef - _target(act, ref, xm)).abs()
    dtype = act.theta.dtype
    spline = BSplineActivation(act.channels, grid, lo, hi, base=act.base).to(dtype)
    spline.coef.copy_(coef.T.to(dtype))
    if act.base:
        spline.base_weight.copy_(act.base_weight.detach().to(dtype))
    return spline, {"max_abs_error": float(err.max()), "mean_abs_error": float(err.mean())}


@dataclass
class KANDistillConfig:
    """How :func:`distill_to_kan` replaces a DARUAN: ``grid`` spline intervals, ``points``
    fitting points, the input interval ``ranges[name]`` of each module by name (else
    ``x_range``). ``fits`` collects each replaced module's fit errors by name."""

    grid: int = 32
    x_range: tuple[float, float] = (-4.0, 4.0)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    points: int = 4096
    fits: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 1:
            raise ValueError(f"KANDistillConfig: grid must be an int >= 1, got {self.grid!r}")
        if not self.x_range[1] > self.x_range[0]:
            raise ValueError("KANDistillConfig: x_range must be (lo, hi) with hi > lo")


@register_handler(KANDistillConfig)
def _distill_handler(module: DARUAN, name: str, config: KANDistillConfig) -> BSplineActivation:
    """Replace one DARUAN by its fitted B-spline (errors recorded in ``config.fits``)."""
    lo, hi = config.ranges.get(name, config.x_range)
    spline, err = fit_bspline(module, lo, hi, config.grid, config.points)
    config.fits[name] = {"range": (lo, hi), **err}
    return spline.to(next(module.parameters()).device)


def _is_daruan(module, name: str) -> bool:
    return isinstance(module, DARUAN)


def _input_ranges(model, acts: dict[str, DARUAN], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each DARUAN's inputs (tokens, C) on an eval forward of ``ids``."""
    inputs: dict[str, list[torch.Tensor]] = {}
    hooks = [
        act.register_forward_hook(
            lambda m, a, o, name=name: inputs.setdefault(name, []).append(
                a[0].detach().reshape(-1, m.channels)
            )
        )
        for name, act in acts.items()
    ]
    was = model.training
    model.eval()
    try:
        model(ids)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return {name: torch.cat(v) for name, v in inputs.items()}


@torch.no_grad()
def distill_to_kan(
    model,
    grid: int = 32,
    x_range: tuple[float, float] = (-4.0, 4.0),
    calibration_ids: torch.Tensor | None = None,
    points: int = 4096,
):
    """A copy of ``model`` with every DARUAN replaced by a fitted B-spline KAN.

    The copy's config has ``kan_grid=grid``, so it saves and loads as is; its fit errors are
    in ``kan_model.kan_report`` (:class:`KANFitReport`). With ``calibration_ids`` (b, n) the
    spline interval of each layer is the range of its activation's inputs on those tokens and
    the report adds the error on those very inputs. When the model has other quantum parts
    (encoder, kernel attention) they are kept, listed in ``remaining_quantum``, and a warning
    says the result still simulates circuits.

    Example:
        >>> import torch
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> cfg = ModelConfig.dense(vocab_size=50, d_model=16, n_layers=1, n_heads=2,
        ...                         use_qkan=True)
        >>> kan = distill_to_kan(QTensorFormer(cfg), grid=24)
        >>> kan.config.kan_grid, kan.kan_report.max_abs_error < 0.05
        (24, True)
    """
    acts = {n: m for n, m in model.named_modules() if isinstance(m, DARUAN)}
    if not acts:
        raise ValueError("the model has no DARUAN activation to distil (build it with use_qkan)")
    config = KANDistillConfig(grid, x_range, points=points)
    inputs = _input_ranges(model, acts, calibration_ids) if calibration_ids is not None else {}
    for name, xi in inputs.items():
        lo, hi = float(xi.min()), float(xi.max())
        pad = 0.05 * (hi - lo) + 1e-6
        config.ranges[name] = (lo - pad, hi + pad)
    new = copy.deepcopy(model)
    replace_modules(new, config, _is_daruan)
    for blk in new.blocks:
        if isinstance(blk.ffn.act, BSplineActivation):
            blk.ffn.activation = "kan"
    new.config = replace(model.config, kan_grid=grid)
    for b in new.blocks:
        b.cfg = new.config
    new.kan_report = _report(new, acts, inputs, config)
    return new


def _report(new, acts: dict[str, DARUAN], inputs, config: KANDistillConfig) -> KANFitReport:
    """The fit errors by layer (and on the calibration inputs), and the quantum parts left."""
    report = KANFitReport(grid=config.grid)
    modules = dict(new.named_modules())
    for i, name in enumerate(acts):
        row = {"layer": i, **config.fits[name]}
        if name in inputs:
            e = (modules[name](inputs[name]) - acts[name](inputs[name])).abs()
            row["calib_max_abs_error"] = float(e.max())
            row["calib_mean_abs_error"] = float(e.mean())
        report.layers.append(row)
    report.max_abs_error = max(r["max_abs_error"] for r in report.layers)
    report.mean_abs_error = sum(r["mean_abs_error"] for r in report.layers) / len(report.layers)
    calib = [r for r in report.layers if "calib_max_abs_error" in r]
    if calib:
        report.calib_max_abs_error = max(r["calib_max_abs_error"] for r in calib)
        report.calib_mean_abs_error = sum(r["calib_mean_abs_error"] for r in calib) / len(calib)
    for i, b in enumerate(new.blocks):
        if b.encoder is not None:
            report.remaining_quantum.append(f"blocks.{i}.encoder")
        if b.attn.quantum is not None:
            report.remaining_quantum.append(f"blocks.{i}.attn.quantum")
    if report.remaining_quantum:
        warnings.warn(
            "distill_to_kan replaced the DARUAN activations, but the model still simulates "
            f"circuits in {report.remaining_quantum}",
            stacklevel=3,
        )
    return report
