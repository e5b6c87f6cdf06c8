"""distill_to_kan: replace every DARUAN activation by a fitted per-channel cubic B-spline (KAN).

Index legend: S sample points, C channels, G spline intervals.

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

__all__ = ["KANFitReport", "distill_to_kan", "fit_bspline"]


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

    def target(xs: torch.Tensor) -> torch.Tensor:
        """What the spline fits: the bounded circuit part (the SiLU branch is copied)."""
        xs = xs[:, None].expand(-1, act.channels)
        if not ref.base:
            return ref(xs)
        return ref.post_weight * ref.expval(xs) + ref.post_bias

    A = _design(x, lo, hi, grid)
    coef = torch.linalg.lstsq(A, target(x)).solution  # (G+3, C)
    xm = (x[1:] + x[:-1]) / 2  # held-out points
    err = (_design(xm, lo, hi, grid) @ coef - target(xm)).abs()
    dtype = act.theta.dtype
    spline = BSplineActivation(act.channels, grid, lo, hi, base=act.base).to(dtype)
    spline.coef.copy_(coef.T.to(dtype))
    if act.base:
        spline.base_weight.copy_(act.base_weight.detach().to(dtype))
    return spline, {"max_abs_error": float(err.max()), "mean_abs_error": float(err.mean())}


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
    acts = [(i, b.ffn.act) for i, b in enumerate(model.blocks) if isinstance(b.ffn.act, DARUAN)]
    if not acts:
        raise ValueError("the model has no DARUAN activation to distil (build it with use_qkan)")
    ranges = {i: x_range for i, _ in acts}
    inputs: dict[int, torch.Tensor] = {}
    if calibration_ids is not None:
        hooks = [
            act.register_forward_hook(
                lambda m, a, o, i=i: inputs.setdefault(i, []).append(
                    a[0].detach().reshape(-1, m.channels)
                )
            )
            for i, act in acts
        ]
        was = model.training
        model.eval()
        try:
            model(calibration_ids)
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
        for i in inputs:
            inputs[i] = torch.cat(inputs[i])
            lo, hi = float(inputs[i].min()), float(inputs[i].max())
            pad = 0.05 * (hi - lo) + 1e-6
            ranges[i] = (lo - pad, hi + pad)

    new = copy.deepcopy(model)
    report = KANFitReport(grid=grid)
    all_max, all_mean, c_max, c_mean = [], [], [], []
    for i, act in acts:
        lo, hi = ranges[i]
        spline, err = fit_bspline(act, lo, hi, grid, points)
        new.blocks[i].ffn.act = spline.to(next(act.parameters()).device)
        new.blocks[i].ffn.activation = "kan"
        row = {"layer": i, "range": (lo, hi), **err}
        if i in inputs:
            xi = inputs[i]
            e = (spline(xi) - act(xi)).abs()
            row["calib_max_abs_error"] = float(e.max())
            row["calib_mean_abs_error"] = float(e.mean())
            c_max.append(row["calib_max_abs_error"])
            c_mean.append(row["calib_mean_abs_error"])
        report.layers.append(row)
        all_max.append(err["max_abs_error"])
        all_mean.append(err["mean_abs_error"])
    report.max_abs_error = max(all_max)
    report.mean_abs_error = sum(all_mean) / len(all_mean)
    if c_max:
        report.calib_max_abs_error = max(c_max)
        report.calib_mean_abs_error = sum(c_mean) / len(c_mean)
    for i, b in enumerate(new.blocks):
        if b.encoder is not None:
            report.remaining_quantum.append(f"blocks.{i}.encoder")
        if b.attn.quantum is not None:
            report.remaining_quantum.append(f"blocks.{i}.attn.quantum")
    if report.remaining_quantum:
        warnings.warn(
            "distill_to_kan replaced the DARUAN activations, but the model still simulates "
            f"circuits in {report.remaining_quantum}",
            stacklevel=2,
        )
    new.config = replace(model.config, kan_grid=grid)
    for b in new.blocks:
        b.cfg = new.config
    new.kan_report = report
    return new
