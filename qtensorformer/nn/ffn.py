"""Feed-forward block: W2 act(W1 x), dense or tensor-train, with per-token nested ranks.

Index legend: T tokens (flattened b·n), d model width, f hidden width.

With per-token ranks the tokens are grouped by rank (one sort) and each group runs both
layers at its rank, so a lower rank costs fewer FLOPs on the factorised path. The activation
is GELU, DARUAN (``use_qkan``) or its distilled B-spline (``kan_grid``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..tensor.layers import TTLinear
from ._flops import linear_flops
from .daruan import DARUAN, BSplineActivation

__all__ = ["FFNOutput", "FeedForward", "daruan_flops"]

#: Elementwise FLOPs per element and re-upload of DARUAN (an affine map, cos+sin counted as
#: ~10 each as in common FLOP conventions for transcendental functions, two 2-D rotations).
DARUAN_FLOPS_PER_REP = 30
#: Per element: GELU (tanh form, ~8), cubic B-spline (basis ~15 + 4 multiply-adds).
GELU_FLOPS, SPLINE_FLOPS, SILU_FLOPS = 8, 23, 5


def daruan_flops(elements: int, reps: int) -> int:
    return elements * (DARUAN_FLOPS_PER_REP * reps + 10)


class FFNOutput(NamedTuple):
    """``y`` (the input's shape); ``flops``: forward FLOPs the call spent (every rank group,
    and the straight-through term's extra evaluations)."""

    y: torch.Tensor
    flops: int


class FeedForward(nn.Module):
    """y = W2 act(W1 x + b1) + b2 with W1: d→f, W2: f→d.

    ``forward(x, ranks=None, soft_rank=None)``: ``ranks`` (x.shape[:-1]) int64 gives each token
    its nested TT rank (TT layers only; an int: one rank for all); ``soft_rank`` (same shape,
    float) adds the rank scheduler's straight-through term (see :mod:`qtensorformer.nn.rank`).
    Returns :class:`FFNOutput` (the output and the FLOPs spent).

    Example:
        >>> import torch
        >>> ffn = FeedForward(16, 64, tt_rank=4)
        >>> x = torch.randn(2, 5, 16)
        >>> ffn(x, ranks=torch.randint(1, 5, (2, 5))).y.shape
        torch.Size([2, 5, 16])
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        tt_rank: int | None = None,
        activation: str = "gelu",
        qkan_reps: int = 2,
        kan_grid: int = 32,
        qkan_base: bool = False,
    ) -> None:
        super().__init__()
        if tt_rank is None:
            self.w1: nn.Module = nn.Linear(d_model, d_ff)
            self.w2: nn.Module = nn.Linear(d_ff, d_model)
        else:
            self.w1 = TTLinear(d_model, d_ff, tt_rank)
            self.w2 = TTLinear(d_ff, d_model, tt_rank)
        if activation == "gelu":
            self.act: nn.Module = nn.GELU(approximate="tanh")
        elif activation == "daruan":
            self.act = DARUAN(d_ff, qkan_reps, base=qkan_base)
        elif activation == "kan":
            self.act = BSplineActivation(d_ff, kan_grid, base=qkan_base)
        else:
            raise ValueError(f"activation must be 'gelu', 'daruan' or 'kan', got {activation!r}")
        self.d_model, self.d_ff, self.activation = d_model, d_ff, activation
        self.is_tt = tt_rank is not None

    def _act_flops(self, elements: int) -> int:
        base = elements * (SILU_FLOPS + 3) if getattr(self.act, "base", False) else 0
        if self.activation == "daruan":
            return daruan_flops(elements, self.act.reps) + base
        return elements * (GELU_FLOPS if self.activation == "gelu" else SPLINE_FLOPS) + base

    def _run(self, x: torch.Tensor, rank: int | None) -> torch.Tensor:
        if self.is_tt:
            return self.w2(self.act(self.w1(x, rank)), rank)
        return self.w2(self.act(self.w1(x)))

    def flops(self, tokens: int, rank: int | None = None) -> int:
        """Forward FLOPs on ``tokens`` tokens at one nested ``rank`` (both layers and the
        activation)."""
        return (
            linear_flops(self.w1, tokens, rank)
            + self._act_flops(tokens * self.d_ff)
            + linear_flops(self.w2, tokens, rank)
        )

    def forward(
        self,
        x: torch.Tensor,
        ranks: torch.Tensor | int | None = None,
        soft_rank: torch.Tensor | None = None,
        rank_step: int = 1,
    ) -> FFNOutput:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.d_model)  # (T, d)
        T = x2.shape[0]
        if ranks is not None and not self.is_tt:
            raise ValueError("TT ranks need a TT feed-forward (use_tt_ffn=True)")
        if ranks is None or isinstance(ranks, int):
            return FFNOutput(
                self._run(x2, ranks).reshape(*lead, self.d_model), self.flops(T, ranks)
            )
        if ranks.shape != lead:
            raise ValueError(
                f"per-token ranks must have shape {tuple(lead)}, got {tuple(ranks.shape)}"
            )
        r = ranks.reshape(-1)
        if T and int(r.min()) < 1:
            raise ValueError("per-token ranks must be >= 1")
        straight_through = soft_rank is not None and soft_rank.requires_grad
        order = torch.argsort(r, stable=True)
        values, counts = torch.unique_consecutive(r[order], return_counts=True)
        groups = x2.index_select(0, order).split(counts.tolist())
        ys, diffs, flops = [], [], 0
        for xg, rk in zip(groups, values.tolist(), strict=True):
            ys.append(self._run(xg, rk))
            flops += self.flops(xg.shape[0], rk)
            if straight_through:
                # marginal value of one rank index: (y(r) − y(r − s)) / s, no gradient
                lo = max(rk - rank_step, 1)
                with torch.no_grad():
                    lower = self._run(xg, lo) if lo < rk else ys[-1]
                    diffs.append((ys[-1].detach() - lower) / max(rk - lo, 1))
                flops += self.flops(xg.shape[0], lo) if lo < rk else 0
        y = torch.cat(ys)
        y = torch.empty_like(y).index_copy(0, order, y)  # back to token order
        if straight_through:
            dy = torch.cat(diffs)
            dy = torch.empty_like(dy).index_copy_(0, order, dy)
            s = soft_rank.reshape(-1, 1).to(y.dtype)
            y = y + (s - s.detach()) * dy
        return FFNOutput(y.reshape(*lead, self.d_model), flops)
