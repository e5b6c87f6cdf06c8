"""Compressing one matrix by each method, and the module handlers of the method configs.

Index legend: n out_features, m in_features, r rank; W (n × m) in float64, G = XᵀX (m × m).

:func:`compress_matrix` turns a :class:`Target` (a weight, its bias, its calibration
statistics and its budget) into a :class:`MatrixResult` (the new module and what it is).
Low-rank methods give a :class:`~qtensorformer.tensor.lowrank.LowRankLinear`; the
tensor-train methods a :class:`~qtensorformer.tensor.TTLinear` (strict topology) or a
``LowRankLinear`` (the low-rank topology, a two-core train).

The data-free configs (:class:`SVDConfig`, :class:`TTConfig`) also work directly with
:func:`~qtensorformer.nn.replace.replace_modules`; the activation-aware ones need
calibration statistics and go through :func:`qtensorformer.compress.compress_`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from qtensorformer.nn.replace import replace_modules
    >>> model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
    >>> replace_modules(model, SVDConfig(ratio=0.5))
    ['0', '2']
    >>> model[0].extra_repr()
    'in_features=32, out_features=64, rank=10, bias=True'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.replace import register_handler
from ..tensor import TTLinear
from ..tensor.lowrank import LowRankLinear
from .budget import param_budget
from .calibrate import InputStats, linear_bias, linear_weight
from .config import (
    ASVDConfig,
    BasisSharingConfig,
    MethodConfig,
    SVDConfig,
    SVDLLMConfig,
    TTAwareConfig,
    TTConfig,
)
from .linalg import (
    Identity,
    Preconditioner,
    activation_scaling,
    lowrank_factors,
    spectrum,
    whitening,
)
from .ttfit import (
    Topology,
    TTFit,
    activation_objective,
    fit_activation,
    fit_weight,
    lowrank_topology,
    strict_topology,
)

__all__ = [
    "MatrixResult",
    "Target",
    "compress_matrix",
    "matrix_spectrum",
    "min_params",
    "preconditioner_for",
    "target_from_module",
]

F64 = torch.float64


@dataclass
class Target:
    """One matrix to compress: ``weight`` (n, m), ``bias``, the ``dtype``/``device`` of the
    new module, calibration ``stats`` (None for data-free runs), the budget (an explicit
    ``rank``, a bond cap for trains, or ``max_params`` weight parameters), and ``holdout``
    statistics of held-out calibration sequences, which choose the topology of aware trains
    (``topology="auto"``) when given."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    dtype: torch.dtype
    device: torch.device
    stats: InputStats | None = None
    rank: int | None = None
    max_params: int | None = None
    holdout: InputStats | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)

    @property
    def lowrank_rank(self) -> int:
        """The rank of the low-rank form: the explicit one, else the budget's."""
        if self.rank is not None:
            return self.rank
        n, m = self.shape
        return max(1, (self.max_params or 0) // (n + m))


@dataclass
class MatrixResult:
    """A compressed matrix: the new ``module``, its ``topology`` name, bond ``ranks``, its
    weight parameters, the approximation ``W_hat`` (float64) and the ``preconditioner``
    kind (identity / scaling / cholesky / eigh)."""

    module: nn.Module
    topology: str
    ranks: tuple[int, ...]
    params: int
    W_hat: torch.Tensor
    preconditioner: str = "identity"


def target_from_module(
    module: nn.Module,
    name: str,
    config: MethodConfig,
    stats: InputStats | None = None,
    rank: int | None = None,
    max_params: int | None = None,
) -> Target:
    """The :class:`Target` of a linear under ``config``'s budget (explicit rank, else
    ``max_params``, else the ratio's share of its parameters)."""
    W = linear_weight(module).detach()
    n, m = W.shape
    rank = rank if rank is not None else config.rank_for(name)
    if rank is None and max_params is None:
        if config.ratio is None:
            raise ValueError(
                f"{name} has no rank in the config's rank mapping and the config has no ratio"
            )
        max_params = param_budget(n, m, config.ratio)
    bias = linear_bias(module)
    return Target(
        name,
        W.to(F64),
        None if bias is None else bias.detach(),
        W.dtype,
        W.device,
        stats,
        rank,
        max_params,
    )


def _require_stats(config: MethodConfig, target: Target) -> InputStats:
    if target.stats is None:
        raise ValueError(
            f"method {config.name!r} is activation-aware and needs calibration data for "
            f"{target.name}: pass calibration token ids to compress_(…, calibration=ids)"
        )
    return target.stats


def preconditioner_for(config: MethodConfig, target: Target) -> Preconditioner:
    """P of the method: identity (svd, tt), ASVD scaling, or whitening (svd-llm, tt-aware,
    basis-sharing)."""
    if isinstance(config, ASVDConfig):
        return activation_scaling(_require_stats(config, target).abs_mean, config.alpha)
    if isinstance(config, (SVDLLMConfig, TTAwareConfig, BasisSharingConfig)):
        return whitening(_require_stats(config, target).gram, config.damp)
    return Identity()


def matrix_spectrum(config: MethodConfig, target: Target) -> torch.Tensor:
    """Singular values of W·P: the energies (squared) that ``"spectrum"`` allocation weighs."""
    return spectrum(target.weight, preconditioner_for(config, target))


# ---------------------------------------------------------------------------- low rank
def _lowrank_module(A: torch.Tensor, B: torch.Tensor, target: Target) -> LowRankLinear:
    kw = {"dtype": target.dtype, "device": target.device}
    return LowRankLinear.from_factors(A.to(**kw), B.to(**kw), target.bias)


def _compress_lowrank(config: MethodConfig, target: Target) -> MatrixResult:
    pre = preconditioner_for(config, target)
    A, B = lowrank_factors(target.weight, pre, target.lowrank_rank)
    module = _lowrank_module(A, B, target)
    r = A.shape[1]
    return MatrixResult(module, "lowrank", (r,), r * sum(target.shape), A @ B, pre.kind)


# ---------------------------------------------------------------------------- tensor trains
def _topologies(config: TTConfig, shape: tuple[int, int]) -> list[Topology]:
    n, m = shape
    strict, low = strict_topology(n, m, config.n_cores), lowrank_topology(n, m)
    return {"strict": [strict], "lowrank": [low], "auto": [strict, low]}[config.topology]


def min_params(config: MethodConfig, shape: tuple[int, int]) -> int:
    """The fewest weight parameters the method can give a matrix of ``shape`` (n, m): one
    rank step n + m for low rank, the smallest rank-1 train of its topologies for trains."""
    n, m = shape
    if not isinstance(config, TTConfig):
        return n + m
    return min(t.num_params((1,) * len(t.full_ranks)) for t in _topologies(config, shape))


def _caps(topo: Topology, rank: int | None) -> tuple[int, ...] | None:
    return None if rank is None else tuple(min(rank, f) for f in topo.full_ranks)


def _weight_fit(config: TTConfig, target: Target, topo: Topology) -> TTFit:
    return fit_weight(
        target.weight,
        topo,
        max_params=target.max_params,
        ranks=_caps(topo, target.rank),
        sweeps=config.sweeps,
    )


def _lowrank_start(target: Target, pre: Preconditioner, rank: int) -> list[torch.Tensor]:
    """The SVD-LLM solution as a two-core train: (1, 1, m, r) and (r, n, 1, 1)."""
    A, B = lowrank_factors(target.weight, pre, rank)
    return [B.T[None, None], A.T[:, :, None, None]]


def _aware_fit(config: TTAwareConfig, target: Target, topo: Topology) -> TTFit:
    stats = _require_stats(config, target)
    starts = [_weight_fit(config, target, topo).cores]
    if topo.kind == "lowrank":
        rank = starts[0][0].shape[-1]
        starts.append(_lowrank_start(target, preconditioner_for(config, target), rank))
    return fit_activation(
        target.weight,
        stats.gram,
        starts,
        topo,
        config.sweeps,
        damp=config.damp,
        ridge=config.ridge,
        direct_limit=config.direct_limit,
        cg_iters=config.cg_iters,
    )


def _tt_module(fit: TTFit, target: Target) -> nn.Module:
    if fit.topology.kind == "lowrank":
        return _lowrank_module(*fit.lowrank_factors(), target)
    n, m = target.shape
    layer = TTLinear(
        m,
        n,
        list(fit.ranks),
        bias=target.bias is not None,
        in_modes=fit.topology.in_modes,
        out_modes=fit.topology.out_modes,
        device=target.device,
        dtype=target.dtype,
    )
    layer.load_tt([c.to(target.dtype) for c in fit.cores])
    if target.bias is not None:
        with torch.no_grad():
            layer.bias.copy_(target.bias)
    return layer


def _compress_tt(config: TTConfig, target: Target) -> MatrixResult:
    aware = isinstance(config, TTAwareConfig)
    fits, errors = [], []
    for topo in _topologies(config, target.shape):
        try:
            fits.append(
                _aware_fit(config, target, topo) if aware else _weight_fit(config, target, topo)
            )
        except ValueError as err:  # the budget does not fit this topology
            errors.append(str(err))
    if not fits:
        raise ValueError(f"{target.name}: " + "; ".join(errors))
    fit = min(fits, key=lambda f: _selection_score(f, target, aware))
    kind = preconditioner_for(config, target).kind if aware else "identity"
    module = _tt_module(fit, target)
    return MatrixResult(module, fit.topology.name, fit.ranks, fit.num_params, fit.to_dense(), kind)


def _selection_score(fit: TTFit, target: Target, aware: bool) -> float:
    """How topologies compete: the held-out activation objective for aware fits when there is
    held-out data (the in-sample one favours the more flexible fit), else the fit's own."""
    if aware and target.holdout is not None:
        return activation_objective(target.weight, fit.to_dense(), target.holdout.gram)
    return fit.objective


def compress_matrix(config: MethodConfig, target: Target) -> MatrixResult:
    """Compress one matrix by ``config``'s method within the target's budget (basis-sharing:
    a matrix that shares its basis with no other, i.e. SVD-LLM)."""
    if isinstance(config, TTConfig):
        return _compress_tt(config, target)
    if isinstance(config, (SVDConfig, ASVDConfig, SVDLLMConfig, BasisSharingConfig)):
        return _compress_lowrank(config, target)
    raise TypeError(f"no compression method for config {type(config).__name__}")


# ---------------------------------------------------------------------------- module handlers
@register_handler(SVDConfig)
@register_handler(TTConfig)
def _data_free_handler(module: nn.Module, name: str, config: MethodConfig) -> nn.Module:
    """replace_modules handler of the data-free methods (uniform or explicit ranks)."""
    if config.allocation != "uniform":
        raise ValueError(
            "allocation='spectrum' spreads one budget over many matrices: use compress_()"
        )
    return compress_matrix(config, target_from_module(module, name, config)).module


@register_handler(ASVDConfig)
@register_handler(SVDLLMConfig)
@register_handler(TTAwareConfig)
@register_handler(BasisSharingConfig)
def _aware_handler(module: nn.Module, name: str, config: MethodConfig) -> nn.Module:
    raise ValueError(
        f"method {config.name!r} is activation-aware and needs calibration data: use "
        "qtensorformer.compress.compress_(model, config, calibration=token_ids)"
    )
