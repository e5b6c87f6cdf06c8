"""The model's building blocks: kernel attention, router, rank scheduler, DARUAN/KAN, blocks."""

from .attention import AttentionOutput, CausalSelfAttention, LayerCache
from .block import QTensorFormerBlock
from .daruan import DARUAN, BSplineActivation, bspline_basis
from .distill import KANFitReport, distill_to_kan, fit_bspline
from .ffn import FeedForward
from .kernel_attention import KERNEL_NORMS, QuantumKernelAttention
from .rank import RankDecision, RankScheduler
from .router import RouterOutput, SelectiveQuantumRouter
from .stats import ForwardStats, LayerStats

__all__ = [
    "DARUAN",
    "KERNEL_NORMS",
    "AttentionOutput",
    "BSplineActivation",
    "CausalSelfAttention",
    "FeedForward",
    "ForwardStats",
    "KANFitReport",
    "LayerCache",
    "LayerStats",
    "QTensorFormerBlock",
    "QuantumKernelAttention",
    "RankDecision",
    "RankScheduler",
    "RouterOutput",
    "SelectiveQuantumRouter",
    "bspline_basis",
    "distill_to_kan",
    "fit_bspline",
]
