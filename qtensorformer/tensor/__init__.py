"""Tensor trains: TT-SVD, rounding, and TT layers with nested ranks."""

from .factorize import Modes, balanced_factors, check_modes, default_n_modes, factorize
from .layers import (
    TT_COSTS,
    NestedRankSampler,
    TTCosts,
    TTEmbedding,
    TTLinear,
    TTMatrix,
    set_tt_costs,
)
from .lowrank import LowRankLinear, SharedBasisLinear
from .tree import TreeSharedLinear
from .tt import (
    TTDecomposition,
    full_ranks,
    tt_build_flops,
    tt_dense_flops,
    tt_num_params,
    tt_round,
    tt_split_flops,
    tt_svd,
    tt_to_dense,
)

__all__ = [
    "TT_COSTS",
    "LowRankLinear",
    "Modes",
    "NestedRankSampler",
    "SharedBasisLinear",
    "TTCosts",
    "TTDecomposition",
    "TTEmbedding",
    "TTLinear",
    "TTMatrix",
    "TreeSharedLinear",
    "balanced_factors",
    "check_modes",
    "default_n_modes",
    "factorize",
    "full_ranks",
    "set_tt_costs",
    "tt_build_flops",
    "tt_dense_flops",
    "tt_num_params",
    "tt_round",
    "tt_split_flops",
    "tt_svd",
    "tt_to_dense",
]
