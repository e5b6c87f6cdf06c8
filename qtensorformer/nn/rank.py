"""RankScheduler: per-token TT rank from the entanglement score.

Index legend: b batch, n sequence.

r_t = clip(r_min + round(α·S_t), r_min, r_max), with α > 0 learnable (stored as log α). The
soft rank ρ_t = clip(r_min + α·S_t, r_min, r_max) carries gradients: the TT-FFN adds
(ρ_t − sg(ρ_t))·sg(y_t(r_t) − y_t(r_t − 1)) to its output (sg = stop-gradient), a
finite-difference straight-through estimate of ∂y/∂r, so α and the score's circuit learn what
one more rank is worth; the rank-cost loss mean((ρ_t − r_min)/(r_max − r_min)) prices it.

With ``step`` s > 1 the ranks are rounded to the grid r_min + s·k (capped at r_max):
r_t = min(r_min + s·round(α·S_t / s), r_max), and the finite difference becomes
(y(r_t) − y(r_t − s)) / s. Fewer distinct ranks mean fewer token groups, so fewer and larger
GEMMs in the FFN; s = 1 is the exact per-token rank.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["RankDecision", "RankScheduler"]


class RankDecision(NamedTuple):
    """``ranks`` (b, n) int64; ``soft`` (b, n) the differentiable soft rank ρ_t;
    ``cost`` the (unweighted) mean normalised rank."""

    ranks: torch.Tensor
    soft: torch.Tensor
    cost: torch.Tensor


class RankScheduler(nn.Module):
    """Maps scores S_t (b, n) to ranks r_t in [r_min, r_max].

    Example:
        >>> import torch
        >>> sched = RankScheduler(r_min=2, r_max=6, alpha=2.0)
        >>> sched(torch.tensor([[0.0, 0.7, 1.4, 5.0]])).ranks
        tensor([[2, 3, 5, 6]])
    """

    def __init__(
        self, r_min: int, r_max: int, alpha: float, learnable: bool = True, step: int = 1
    ) -> None:
        super().__init__()
        if not 1 <= r_min <= r_max:
            raise ValueError(f"need 1 <= r_min <= r_max, got r_min={r_min}, r_max={r_max}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be an int >= 1, got {step!r}")
        self.r_min, self.r_max, self.step = int(r_min), int(r_max), step
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)), requires_grad=learnable)

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def forward(self, score: torch.Tensor) -> RankDecision:
        alpha = self.log_alpha.exp().to(score.dtype)
        soft = (self.r_min + alpha * score).clamp(self.r_min, self.r_max)
        if self.step == 1:
            ranks = torch.round(soft.detach()).long()
        else:
            k = torch.round((soft.detach() - self.r_min) / self.step)
            ranks = (self.r_min + self.step * k).clamp(max=self.r_max).long()
        span = max(self.r_max - self.r_min, 1)
        cost = ((soft - self.r_min) / span).mean()
        return RankDecision(ranks, soft, cost)

    def extra_repr(self) -> str:
        return f"r_min={self.r_min}, r_max={self.r_max}, alpha={self.alpha:.4g}, step={self.step}"
