"""Basis Sharing: which matrices share a basis, and compressing one set of them.

Index legend: n out_features, m in_features, k the rank of a set, g its members.

A :class:`~qtensorformer.compress.config.BasisSharingConfig` run goes over groups of
adjacent blocks (:func:`block_groups`; the calibration pass is in
:mod:`qtensorformer.compress.api`). Inside a group, the selected linears of one shared
*matrix type* (the name inside the block, e.g. ``self_attn.q_proj``) form one set
(:func:`split_group`), which :func:`compress_shared` replaces by
:class:`~qtensorformer.tensor.lowrank.SharedBasisLinear` layers holding one basis B (k × m):
the whitened stack [W_1; …; W_g]·S = U Σ Vᵀ with S Sᵀ = Σ_i X_iᵀX_i + λI gives
B = Σ_k V_kᵀ S⁻¹ and A_i = layer i's rows of U_k (see the config's docstring for what follows
the official code). The rest of the group's linears are compressed one by one (SVD-LLM).

The group stores k·m + g·k·n weight parameters; each member's record gets its own k·n plus an
equal share of the basis (the remainder to the first members), so the records sum to what
the model holds.

Example:
    >>> block_groups(5, 2)
    [[0, 1], [2, 3], [4]]
    >>> matrix_type("model.layers.3.self_attn.q_proj", "model.layers")
    (3, 'self_attn.q_proj')
    >>> split_group(["h.0.attn", "h.0.mlp", "h.1.attn", "h.1.mlp"], "h", {"attn"})
    ([['h.0.attn', 'h.1.attn']], ['h.0.mlp', 'h.1.mlp'])
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..nn.replace import replace_modules
from ..tensor.lowrank import SharedBasisLinear
from .budget import shared_rank
from .calibrate import InputStats, linear_weight
from .config import BasisSharingConfig
from .linalg import activation_error, shared_basis_factors, weight_error, whitening
from .methods import Target, target_from_module
from .summary import ModuleReport

__all__ = [
    "DEFAULT_SHARED",
    "block_groups",
    "compress_shared",
    "default_shared",
    "matrix_type",
    "shared_types",
    "split_group",
]

_LLAMA_MHA = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
)
_LLAMA_GQA = ("self_attn.q_proj", "mlp.gate_proj", "mlp.up_proj")

#: The matrix types shared by default, by model class (the official configs for GPT-2 and
#: OPT; the same rule, input-side projections shared, for the others). Llama-style blocks
#: (any class with ``self_attn.q_proj``) are resolved by :func:`default_shared`.
DEFAULT_SHARED: dict[str, tuple[str, ...]] = {
    "GPT2LMHeadModel": ("attn.c_attn", "attn.c_proj", "mlp.c_fc"),
    "OPTForCausalLM": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "fc1"),
    "GPTNeoXForCausalLM": ("attention.query_key_value", "mlp.dense_h_to_4h"),
    "QTensorFormer": ("attn.qkv", "ffn.w1"),
}


# ---------------------------------------------------------------------------- grouping
def block_groups(n_blocks: int, group_size: int) -> list[list[int]]:
    """Adjacent blocks in groups of ``group_size`` from the first; the last takes the rest."""
    return [list(range(i, min(i + group_size, n_blocks))) for i in range(0, n_blocks, group_size)]


def matrix_type(name: str, path: str) -> tuple[int, str]:
    """(block index, name inside the block) of a linear under the blocks at ``path``."""
    index, _, local = name[len(path) + 1 :].partition(".")
    return int(index), local


def _matches(kind: str, suffix: str) -> bool:
    return kind == suffix or kind.endswith("." + suffix)


def default_shared(model: nn.Module, shapes: dict[str, tuple[int, int]]) -> tuple[str, ...]:
    """The paper's shared types for ``model`` given its blocks' types and (n, m) shapes:
    Llama-style blocks share q, k, v, gate, up (k and v per layer when narrower than q:
    grouped-query attention, as the official Mistral config); else
    :data:`DEFAULT_SHARED` by class; () for an architecture it does not know."""
    if "self_attn.q_proj" in shapes and type(model).__name__ not in DEFAULT_SHARED:
        q, k = shapes["self_attn.q_proj"], shapes.get("self_attn.k_proj")
        return _LLAMA_GQA if k is not None and k[0] < q[0] else _LLAMA_MHA
    return DEFAULT_SHARED.get(type(model).__name__, ())


def shared_types(
    config: BasisSharingConfig, model: nn.Module, selected: dict[str, nn.Module], path: str
) -> set[str]:
    """The matrix types (names inside a block) among ``selected`` whose bases are shared:
    those matching ``config.shared`` (every entry must match one), else the default."""
    shapes = {matrix_type(n, path)[1]: tuple(linear_weight(m).shape) for n, m in selected.items()}
    wanted = config.shared
    if wanted is None:
        wanted = default_shared(model, shapes)
        if not wanted:
            raise ValueError(
                f"basis-sharing has no default shared matrix types for {type(model).__name__}: "
                f"give shared=(…) from the blocks' types {sorted(shapes)}"
            )
    for suffix in config.shared or ():
        if not any(_matches(k, suffix) for k in shapes):
            raise ValueError(
                f"shared entry {suffix!r} matches none of the selected matrix types "
                f"{sorted(shapes)}: give name suffixes inside a block, e.g. {sorted(shapes)[0]!r}"
            )
    return {k for k in shapes if any(_matches(k, s) for s in wanted)}


def split_group(names: list[str], path: str, shared: set[str]) -> tuple[list[list[str]], list[str]]:
    """The sets of two or more names of one shared type (in block order), and the rest."""
    by_type: dict[str, list[str]] = {}
    for name in names:
        kind = matrix_type(name, path)[1]
        if kind in shared:
            by_type.setdefault(kind, []).append(name)
    sets = [members for members in by_type.values() if len(members) > 1]
    in_sets = {name for members in sets for name in members}
    return sets, [name for name in names if name not in in_sets]


# ---------------------------------------------------------------------------- compressing
def _group_rank(config: BasisSharingConfig, names: list[str], shape: tuple[int, int]) -> int:
    """The explicit rank of the set (its members must agree), else the ratio's."""
    ranks = {config.rank_for(n) for n in names}
    if len(ranks) > 1:
        raise ValueError(
            f"{names} share one basis but the config gives them ranks {sorted(ranks, key=str)}: "
            "give every member of a group the same rank"
        )
    rank = ranks.pop()
    if rank is not None:
        return rank
    if config.ratio is None:
        raise ValueError(f"{names} have no rank in the config's rank mapping and there is no ratio")
    return shared_rank(*shape, len(names), config.ratio)


def _basis_shares(total: int, members: int) -> list[int]:
    """``total`` split into ``members`` near-equal ints (the remainder to the first)."""
    q, r = divmod(total, members)
    return [q + (i < r) for i in range(members)]


def _targets(
    modules: dict[str, nn.Module], config: BasisSharingConfig, stats: dict[str, InputStats]
) -> list[Target]:
    targets = [target_from_module(m, n, config, stats[n], rank=1) for n, m in modules.items()]
    shapes = {t.shape for t in targets}
    if len(shapes) != 1:
        raise ValueError(
            f"{list(modules)} cannot share a basis: their shapes differ {sorted(shapes)}"
        )
    return targets


def _error(W: torch.Tensor, W_hat: torch.Tensor, stats: InputStats | None) -> float | None:
    return None if stats is None else activation_error(W, W_hat, stats.gram)


def compress_shared(
    model: nn.Module,
    modules: dict[str, nn.Module],
    config: BasisSharingConfig,
    stats: dict[str, InputStats],
    held: dict[str, InputStats],
    records: dict[str, ModuleReport],
) -> None:
    """Replace ``modules`` (full dotted names in ``model``, one matrix type of adjacent
    blocks) by SharedBasisLinear layers with one basis, whitened by the sum of their Gram
    matrices; add their records."""
    t0 = time.perf_counter()
    names = list(modules)
    targets = _targets(modules, config, stats)
    n, m = targets[0].shape
    rank = _group_rank(config, names, (n, m))
    pre = whitening(sum(stats[name].gram for name in names), config.damp)
    coefficients, basis = shared_basis_factors([t.weight for t in targets], pre, rank)
    kw = {"dtype": targets[0].dtype, "device": targets[0].device}
    layers = SharedBasisLinear.group(
        basis.to(**kw), [A.to(**kw) for A in coefficients], [t.bias for t in targets]
    )
    new = dict(zip(names, layers, strict=True))
    replace_modules(model, lambda module, name: new[name], lambda module, name: name in new)
    k, g = basis.shape[0], len(names)
    seconds = (time.perf_counter() - t0) / g
    shares = _basis_shares(k * m, g)
    for i, (name, t, A) in enumerate(zip(names, targets, coefficients, strict=True)):
        W_hat = A @ basis
        records[name] = ModuleReport(
            name,
            config.name,
            f"shared-basis(group of {g})",
            (k,),
            n * m,
            shares[i] + k * n,
            0 if t.bias is None else t.bias.numel(),
            weight_error(t.weight, W_hat),
            _error(t.weight, W_hat, stats[name]),
            seconds,
            pre.kind,
            _error(t.weight, W_hat, held.get(name)),
        )
