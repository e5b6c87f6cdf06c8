"""Configs of post-training compression: one dataclass per method, one for calibration.

Every method config carries the budget: ``ratio`` (the fraction of the selected matrices'
weight parameters to remove), or explicit ``rank`` (one int for every matrix, or a mapping
from module name to rank; names it does not list fall back to ``ratio``), and the
``allocation`` of the budget over matrices (``"uniform"``: the same fraction of every matrix;
``"spectrum"``: one global greedy allocation by the fraction of each matrix's energy
discarded per parameter; ``"spectrum-absolute"``: by the energy itself). For the
tensor-train methods ``rank`` caps every bond.

Example:
    >>> SVDLLMConfig(ratio=0.4).name, SVDLLMConfig.aware
    ('svd-llm', True)
    >>> method_config("tt-aware", ratio=0.2, topology="strict").topology
    'strict'
    >>> SVDConfig(ratio=1.5)
    Traceback (most recent call last):
    ...
    ValueError: ratio must lie in (0, 1) (the fraction of parameters removed), got 1.5
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

__all__ = [
    "ALLOCATIONS",
    "METHODS",
    "TOPOLOGIES",
    "ASVDConfig",
    "BasisSharingConfig",
    "CalibrationConfig",
    "MethodConfig",
    "SVDConfig",
    "SVDLLMConfig",
    "TTAwareConfig",
    "TTConfig",
    "TTNSConfig",
    "method_config",
]

ALLOCATIONS = ("uniform", "spectrum", "spectrum-absolute", "sensitivity")
TOPOLOGIES = ("auto", "strict", "lowrank")


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_nonnegative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


@dataclass
class MethodConfig:
    """The budget fields shared by every method (see the module docstring)."""

    name: ClassVar[str] = ""
    #: whether the method needs calibration data (activation statistics)
    aware: ClassVar[bool] = False
    #: whether the method builds tensor trains (else two-factor low rank)
    tensor_train: ClassVar[bool] = False

    ratio: float | None = 0.2
    rank: int | Mapping[str, int] | None = None
    allocation: str = "uniform"
    #: ``allocation="sensitivity"``: a weight > 0 per module name multiplying its energies
    #: (:func:`~qtensorformer.compress.analysis.sensitivity_weights`)
    importance: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        self._check_budget()

    def _check_budget(self) -> None:
        if self.ratio is not None:
            r = self.ratio
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1:
                raise ValueError(
                    f"ratio must lie in (0, 1) (the fraction of parameters removed), got {r!r}"
                )
        if isinstance(self.rank, Mapping):
            for key, value in self.rank.items():
                _check_positive_int(f"rank[{key!r}]", value)
        elif self.rank is not None:
            _check_positive_int("rank", self.rank)
        elif self.ratio is None:
            raise ValueError("give a ratio in (0, 1) or a rank: the config has neither")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if self.allocation != "uniform" and self.ratio is None:
            raise ValueError(
                f"allocation={self.allocation!r} shares a ratio's budget: give a ratio"
            )
        self._check_importance()

    def _check_importance(self) -> None:
        if self.allocation == "sensitivity" and not self.importance:
            raise ValueError(
                "allocation='sensitivity' needs importance weights per module: measure them "
                "with qtensorformer.compress.analysis.sensitivity_weights(analyze(...)), or "
                "let compress_model / qtf compress do it"
            )
        for key, value in (self.importance or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"importance[{key!r}] must be a number > 0, got {value!r}")

    def rank_for(self, module_name: str) -> int | None:
        """The explicit rank of ``module_name``, or None when the ratio decides."""
        if isinstance(self.rank, Mapping):
            return self.rank.get(module_name)
        return self.rank


@dataclass
class SVDConfig(MethodConfig):
    """Plain truncated SVD of every weight: W ≈ U_r Σ_r V_rᵀ (data-free)."""

    name: ClassVar[str] = "svd"


@dataclass
class ASVDConfig(MethodConfig):
    """Activation-scaled SVD: W·diag(s) with s_j = mean|x_j|^alpha, truncated, unscaled."""

    name: ClassVar[str] = "asvd"
    aware: ClassVar[bool] = True

    alpha: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_nonnegative("alpha", self.alpha)


@dataclass
class SVDLLMConfig(MethodConfig):
    """SVD-LLM whitening: S = chol(XᵀX + damp·mean(diag)·I), SVD of W·S, keep U√Σ and
    √ΣVᵀS⁻¹ (optimal for the activation error at each rank)."""

    name: ClassVar[str] = "svd-llm"
    aware: ClassVar[bool] = True

    damp: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_nonnegative("damp", self.damp)


@dataclass
class BasisSharingConfig(MethodConfig):
    """Basis Sharing (Wang et al., arXiv:2410.03765; official code TUDa-HWAI/Basis_Sharing):
    one matrix type of ``group_size`` adjacent blocks shares one basis, each layer keeps its
    own coefficients, whitened by calibration data as SVD-LLM.

    What this follows from the official code:

    - The basis is on the input side: with S the Cholesky factor of G = Σ_i X_iᵀX_i (the sum
      of the group's input Gram matrices, ``calib.py`` ``get_calib_data``), the stacked
      weights [W_1; …; W_g] (g·n × m) give [W_1; …; W_g]·S = U Σ Vᵀ, the shared basis
      B = Σ_k V_kᵀ S⁻¹ (k × m) and layer i's coefficients A_i = its n rows of U_k
      (``group.py`` ``_init_basis_coefficient``: the same in the transposed convention,
      ``basis = S⁻¹ U Σ``, ``coefficient = Vᵀ``). Each layer computes A_i (B x).
    - Groups of ``group_size`` adjacent blocks from the first, the last group the rest
      (``model_factory.py`` ``create_model``); the rank of a group of g matrices n × m is
      the largest k with k·(m + g·n) ≤ (1 − ratio)·g·n·m (``utils.py``
      ``compute_num_basis``). ``group_size`` is an int ≥ 1; a group of one
      (``group_size=1``, a last group of one block, or a type the filter keeps in one block
      only) is SVD-LLM of that matrix, as the official code's groups of one.
    - ``shared``: the matrix types (name suffixes inside a block, e.g.
      ``"self_attn.q_proj"``) whose bases are shared; the other selected types are
      compressed per layer by SVD-LLM at the same ratio (the official ``private_part``).
      None takes the official configs' choice: Llama q, k, v, gate, up shared and o, down
      per layer (``tasks/configs/wikitext_ppl/llama``), but k and v per layer when they are
      narrower than q (grouped-query attention, as the Mistral config does); GPT-2 c_attn,
      attn.c_proj, c_fc shared and mlp.c_proj per layer; OPT q, k, v, fc1 shared and
      out_proj, fc2 per layer. By the same rule (input-side projections shared, output
      projections per layer): this library's model shares attn.qkv and ffn.w1, GPT-NeoX
      query_key_value and dense_h_to_4h.

    Where this differs: the Gram matrices of a group come from its inputs after the groups
    before it were compressed (sequential calibration, as the other aware methods here;
    the official code calibrates the uncompressed model once), and G is damped by
    ``damp``·mean(diag G)·I before the Cholesky factorisation (with an eigendecomposition
    fallback) as :class:`SVDLLMConfig`. Only ``allocation="uniform"`` is supported; an
    explicit ``rank`` mapping must give every member of a group the same rank.
    """

    name: ClassVar[str] = "basis-sharing"
    aware: ClassVar[bool] = True

    group_size: int = 2
    shared: tuple[str, ...] | None = None
    damp: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("group_size", self.group_size)
        _check_nonnegative("damp", self.damp)
        _check_uniform_only(self, "one rank per group from the ratio")
        if self.shared is not None:
            self.shared = _check_shared(self.shared)


@dataclass
class TTNSConfig(MethodConfig):
    """Tree tensor network across layers (``ttns``, a hierarchical Tucker format over the
    stacked whitened weights; :mod:`qtensorformer.compress.ttns`): every block's matrix of
    one shared type (e.g. all ``mlp.gate_proj``) in one tree whose leaves are the layers in
    block order, adjacent layers paired first (a balanced binary tree by halving the index
    range). A root holds an orthonormal basis Q (k × m) of the whitened input space, every
    other node a transfer C_v (k_v × k_parent) with orthonormal rows; layer l's basis is the
    product down its root-to-leaf path, U_l = C_l ⋯ Q, and its own coefficients are
    A_l = W_l S U_lᵀ (n × k_l), with one whitening S Sᵀ = Σ_l G_l + damp·mean(diag)·I for the
    whole type (as Basis Sharing). Fitted to E = Σ_l ‖(W_l − Ŵ_l) S‖_F²: top-down truncated
    SVDs, then ``sweeps`` one-site sweeps (down and back up the tree) that never increase E.

    Ranks (one profile per ``growth`` g): every layer gets the leaf rank k (≤ min(n, m));
    an internal node gets min(⌈g · its largest child's rank⌉, the sum of its children's
    ranks, m). The tree is then simplified without changing what it can represent: a node
    of its parent's rank (a square rotation; a root's parent is the input space, rank m) is
    merged into the parent, its children and layers attaching there, and a node without
    layers of its own whose rank is the sum of its children's (it only spans them) is
    dropped, its children attaching to its parent or becoming roots. So g = 1 is one basis
    for every layer (Basis Sharing with one group of all blocks) and g = 2 a forest of one
    root per layer (SVD-LLM with the type's shared whitening); 1 < g < 2 gives real trees.
    The tree stores Σ_roots k·m + Σ_others k_v·k_parent + Σ_l n·k_l weight parameters; with
    a ``ratio``, k is the largest leaf rank whose tree fits (1 − ratio)·L·n·m (L layers),
    and when ``growth`` is a tuple every candidate is fitted and the one of lowest layer
    error (below) is kept (with the default, never worse than either end of the family).
    An explicit ``rank``
    fixes the leaf rank (a mapping must rank every member of a tree, or none) and takes the
    largest ``growth``.

    ``refit`` (default): once the bases are fitted, each layer's coefficients are refitted
    by least squares under the layer's *own* Gram matrix, A_l = W_l G_l B_lᵀ (B_l G_l
    B_lᵀ)⁻¹ with B_l = U_l S⁻¹ (the shared whitening weighs layers by their input scale, so
    layers with small inputs were fitted badly), G_l shrunk by 5% toward the type's pooled
    Gram so that few calibration tokens cannot make it blow up (it still wants many more
    tokens than m); the growth is then chosen by the mean over layers of the squared
    relative activation error, each under its own Gram. ``refit=False`` keeps
    A_l = W_l S U_lᵀ, as Basis Sharing does.

    ``shared``: the matrix types put in trees (the same default and rule as
    :class:`BasisSharingConfig`); the other selected types are compressed per layer by
    SVD-LLM at the same ratio. Calibration is one pass over the uncompressed model for all
    blocks (a tree spans every layer): no sequential block-by-block calibration, for the
    per-layer types either. Only ``allocation="uniform"``; no resume.
    """

    name: ClassVar[str] = "ttns"
    aware: ClassVar[bool] = True

    shared: tuple[str, ...] | None = None
    damp: float = 1e-6
    sweeps: int = 2
    growth: float | tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)
    refit: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_nonnegative("damp", self.damp)
        _check_positive_int("sweeps", self.sweeps, 0)
        if not isinstance(self.refit, bool):
            raise ValueError(f"refit must be True or False, got {self.refit!r}")
        _check_uniform_only(self, "one leaf rank per tree from the ratio")
        if self.shared is not None:
            self.shared = _check_shared(self.shared)
        self.growth = _check_growth(self.growth)

    @property
    def growths(self) -> tuple[float, ...]:
        """The growth candidates, as a tuple."""
        return self.growth if isinstance(self.growth, tuple) else (self.growth,)


def _check_growth(growth: Any) -> float | tuple[float, ...]:
    """``growth`` as a number in [1, 2] or a non-empty tuple of them."""
    values = tuple(growth) if isinstance(growth, (tuple, list)) else (growth,)
    ok = bool(values) and all(
        not isinstance(g, bool) and isinstance(g, (int, float)) and 1 <= g <= 2 for g in values
    )
    if not ok:
        raise ValueError(
            "growth must be a number in [1, 2] (an internal node's rank over its largest "
            f"child's) or a non-empty tuple of them, got {growth!r}"
        )
    values = tuple(float(g) for g in values)
    return values if isinstance(growth, (tuple, list)) else values[0]


def _check_uniform_only(config: MethodConfig, why: str) -> None:
    """Methods with one rank per shared set accept ``allocation="uniform"`` only."""
    if config.allocation != "uniform":
        raise ValueError(
            f"{config.name} supports allocation='uniform' only ({why}), got "
            f"{config.allocation!r}: drop allocation, or use svd-llm for spectrum allocation"
        )


def _check_shared(shared: Any) -> tuple[str, ...]:
    """``shared`` as a tuple of non-empty, distinct name suffixes."""
    if isinstance(shared, str):
        shared = (shared,)
    if not isinstance(shared, (tuple, list)) or not shared:
        raise ValueError(
            "shared must be a non-empty tuple of matrix types (name suffixes inside a block, "
            f"e.g. ('self_attn.q_proj', 'mlp.up_proj')) or None, got {shared!r}"
        )
    bad = [s for s in shared if not isinstance(s, str) or not s.strip(".")]
    if bad:
        raise ValueError(f"shared holds entries that are not name suffixes: {bad!r}")
    if len(set(shared)) != len(shared):
        raise ValueError(f"shared names a matrix type twice: {list(shared)!r}")
    return tuple(s.strip(".") for s in shared)


@dataclass
class TTConfig(MethodConfig):
    """Tensor train per matrix: TT-SVD, then two-site (DMRG-style) sweeps on the weight error
    with SVD-adaptive bond dimensions under the parameter budget.

    ``topology``: ``"strict"`` (every core carries input and output modes), ``"lowrank"``
    (two cores, the first taking every input mode: the low-rank form) or ``"auto"`` (the one
    of lower error). ``n_cores``: cores of the strict topology (default: one per factor of 8
    of the smaller dimension, at least 2).
    """

    name: ClassVar[str] = "tt"
    tensor_train: ClassVar[bool] = True

    topology: str = "auto"
    n_cores: int | None = None
    sweeps: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.n_cores is not None:
            _check_positive_int("n_cores", self.n_cores, 2)
        _check_positive_int("sweeps", self.sweeps, 0)


@dataclass
class TTAwareConfig(TTConfig):
    """Activation-aware tensor train: cores fitted by alternating least squares to minimise
    tr((W − W_TT) G (W − W_TT)ᵀ), G = XᵀX + damp·mean(diag)·I (the damping keeps directions
    the calibration never excites close to W), from the better of the TT-SVD/DMRG solution
    and, in the low-rank topology, the SVD-LLM solution. ``ridge`` is a proximal term
    λ‖C − C_old‖² on each core's normal equations (λ relative to their mean diagonal) for
    rank-deficient environments; cores with more than ``direct_limit`` unknowns per output
    row are solved by ``cg_iters`` of conjugate gradients from the current core instead of
    a Cholesky solve (a core with every input mode, as in the low-rank form, always has a
    Kronecker-structured exact solve). The default 20 iterations: nearly the error of 50 in
    about half the time (docs/RESULTS.md, "Conjugate-gradient iterations")."""

    name: ClassVar[str] = "tt-aware"
    aware: ClassVar[bool] = True

    sweeps: int = 4
    ridge: float = 1e-10
    damp: float = 1e-6
    direct_limit: int = 2048
    cg_iters: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_nonnegative("ridge", self.ridge)
        _check_nonnegative("damp", self.damp)
        _check_positive_int("direct_limit", self.direct_limit)
        _check_positive_int("cg_iters", self.cg_iters)


_BY_NAME: dict[str, type[MethodConfig]] = {
    c.name: c
    for c in (
        SVDConfig,
        ASVDConfig,
        SVDLLMConfig,
        TTConfig,
        TTAwareConfig,
        BasisSharingConfig,
        TTNSConfig,
    )
}
METHODS = tuple(_BY_NAME)


def method_config(name: str, **fields: Any) -> MethodConfig:
    """The config of method ``name`` (one of :data:`METHODS`) with ``fields``."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown compression method {name!r}; choose one of {METHODS}")
    cls = _BY_NAME[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"{name} takes no option {', '.join(unknown)} (its options: {', '.join(sorted(known))})"
        )
    return cls(**fields)


@dataclass
class CalibrationConfig:
    """How calibration runs: ``batch_size`` sequences per forward; ``n_samples`` and
    ``seq_len``, when given, the least calibration the run accepts (the first ``n_samples``
    rows and ``seq_len`` columns are used); ``holdout``: the last sequences kept out of the
    fit, on which every module's held-out activation error is measured and aware trains
    choose their topology; ``sequential``: each block's statistics come from the outputs of
    the blocks before it *after* their compression (as GPTQ does; False: from the
    uncompressed model's activations); ``dtype`` of the Gram matrices; ``progress`` a
    progress bar per block."""

    batch_size: int = 4
    n_samples: int | None = None
    seq_len: int | None = None
    holdout: int = 0
    sequential: bool = True
    dtype: torch.dtype = field(default=torch.float64)
    progress: bool = True

    def __post_init__(self) -> None:
        _check_positive_int("batch_size", self.batch_size)
        if self.n_samples is not None:
            _check_positive_int("n_samples", self.n_samples)
        if self.seq_len is not None:
            _check_positive_int("seq_len", self.seq_len)
        _check_positive_int("holdout", self.holdout, 0)
        if not isinstance(self.sequential, bool):
            raise ValueError(f"sequential must be True or False, got {self.sequential!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {self.dtype}")
