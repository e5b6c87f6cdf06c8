"""FLOPs actually spent by the layers this package builds (a multiply-add is 2 FLOPs)."""

from __future__ import annotations

from torch import nn

from ..tensor.layers import TTMatrix

__all__ = ["linear_flops"]


def linear_flops(layer: nn.Module, tokens: int, rank: int | None = None) -> int:
    """Forward FLOPs of ``layer`` (``nn.Linear`` or a TT layer) on ``tokens`` rows at nested
    ``rank``: the GEMM(s) of the path the layer takes for that call (for a TT layer that is not
    cached, the dense path includes building W), plus the bias."""
    if tokens <= 0:
        return 0
    if isinstance(layer, nn.Linear):
        bias = tokens * layer.out_features if layer.bias is not None else 0
        return 2 * tokens * layer.in_features * layer.out_features + bias
    if isinstance(layer, TTMatrix):
        f = layer.path_flops(tokens, rank)[layer.choose_path(tokens, rank)]
        has_bias = getattr(layer, "bias", None) is not None
        return f + (tokens * layer.rows if has_bias else 0)
    raise TypeError(f"no FLOP count for {type(layer).__name__}")
