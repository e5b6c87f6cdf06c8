"""FLOPs actually spent by a linear-like layer (a multiply-add is 2 FLOPs)."""

from __future__ import annotations

from torch import nn

__all__ = ["linear_flops"]


def linear_flops(layer: nn.Module, tokens: int, rank: int | None = None) -> int:
    """Forward FLOPs of ``layer`` on ``tokens`` rows (at nested ``rank`` for a TT layer).

    A layer that counts its own cost has a ``flops(tokens[, rank])`` method (the TT and
    low-rank layers); ``nn.Linear`` costs 2·tokens·in·out plus the bias.
    """
    if tokens <= 0:
        return 0
    own = getattr(layer, "flops", None)
    if callable(own):
        return int(own(tokens) if rank is None else own(tokens, rank))
    if isinstance(layer, nn.Linear):
        bias = tokens * layer.out_features if layer.bias is not None else 0
        return 2 * tokens * layer.in_features * layer.out_features + bias
    raise TypeError(
        f"no FLOP count for {type(layer).__name__}: give it a flops(tokens, rank=None) method"
    )
