"""Tensor trains: TT-SVD, rounding, and TT layers with nested ranks."""

from .factorize import Modes, balanced_factors, check_modes, default_n_modes, factorize
from .layers import NestedRankSampler, TTEmbedding, TTLinear, TTMatrix
from .tt import (
    TTDecomposition,
    tt_build_flops,
    tt_dense_flops,
    tt_num_params,
    tt_round,
    tt_split_flops,
    tt_svd,
    tt_to_dense,
)

__all__ = [
    "Modes",
    "NestedRankSampler",
    "TTDecomposition",
    "TTEmbedding",
    "TTLinear",
    "TTMatrix",
    "balanced_factors",
    "check_modes",
    "default_n_modes",
    "factorize",
    "tt_build_flops",
    "tt_dense_flops",
    "tt_num_params",
    "tt_round",
    "tt_split_flops",
    "tt_svd",
    "tt_to_dense",
]
