"""SelectiveQuantumRouter: hard tokens to the quantum-kernel path, the rest to softmax attention.

Index legend: b batch, n sequence.

Hardness h_t = S_t / S_max ∈ [0, 1]. Forward: the hard decision h_t > θ (θ learnable).
Backward: straight-through, with the gradient of the soft gate sigmoid((h_t − θ)/τ). An
auxiliary loss (routed fraction − target)², with the same straight-through gradient, holds the
routed fraction near ``route_fraction``.
θ starts data-dependent: the first training batch sets it to the (1 − route_fraction) quantile
of its hardness (like ActNorm's init), so routing starts at the target fraction whatever the
score's distribution; the ``initialized`` buffer is saved with the model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["RouterOutput", "SelectiveQuantumRouter"]


class RouterOutput(NamedTuple):
    """``routed`` (b, n) bool; ``gate`` (b, n) float, equal to ``routed`` in value with the
    soft gate's gradient; ``soft`` (b, n) the soft gate; ``aux_loss`` the (unweighted) routed-
    fraction penalty; ``hardness`` (b, n) the scores compared with θ."""

    routed: torch.Tensor
    gate: torch.Tensor
    soft: torch.Tensor
    aux_loss: torch.Tensor
    hardness: torch.Tensor


class SelectiveQuantumRouter(nn.Module):
    """Routes tokens whose normalised entanglement score exceeds a learnable threshold θ.

    How the gate reaches the loss: a routed token's attention output is multiplied by ``gate``
    and a classical token's by ``1 − gate`` (both 1 in value), so ∂L/∂gate_t is
    ⟨∂L/∂y_t, y_t⟩ with the sign of the path taken: the part of the full straight-through
    estimate ⟨∂L/∂y_t, y_quantum − y_classical⟩ that can be had without running both paths.

    Example:
        >>> import torch
        >>> router = SelectiveQuantumRouter(route_fraction=0.2)
        >>> out = router(torch.rand(2, 10))
        >>> out.routed.shape, out.routed.dtype
        (torch.Size([2, 10]), torch.bool)
    """

    def __init__(
        self, route_fraction: float = 0.2, tau: float = 0.1, init_threshold: float = 0.5
    ) -> None:
        super().__init__()
        if not 0.0 < route_fraction < 1.0:
            raise ValueError(f"route_fraction must be in (0, 1), got {route_fraction}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.threshold = nn.Parameter(torch.tensor(float(init_threshold)))
        self.register_buffer("initialized", torch.tensor(False))
        # a buffer, so that budget adjustments are saved with the model
        self.register_buffer("target_fraction", torch.tensor(float(route_fraction)))

    @property
    def route_fraction(self) -> float:
        return float(self.target_fraction)

    @route_fraction.setter
    def route_fraction(self, value: float) -> None:
        if not 0.0 < value < 1.0:
            raise ValueError(f"route_fraction must be in (0, 1), got {value}")
        self.target_fraction.fill_(float(value))

    def forward(self, hardness: torch.Tensor) -> RouterOutput:
        if self.training and not bool(self.initialized) and hardness.numel():
            with torch.no_grad():
                q = torch.quantile(hardness.detach().float().flatten(), 1 - self.route_fraction)
                dist = torch.distributed
                if dist.is_available() and dist.is_initialized():  # one θ for every process
                    dist.all_reduce(q)
                    q = q / dist.get_world_size()
                self.threshold.fill_(float(q))
                self.initialized.fill_(True)
        theta = self.threshold.to(hardness.dtype)
        soft = torch.sigmoid((hardness - theta) / self.tau)
        routed = hardness > theta
        gate = routed.to(hardness.dtype) + (soft - soft.detach())
        # the penalty sees the hard fraction in value (the soft gate's mean can sit at the
        # target while far fewer tokens are routed) and the soft gate's gradient
        aux = (gate.mean() - self.target_fraction.to(soft.dtype)).square()
        return RouterOutput(routed, gate, soft, aux, hardness)

    def extra_repr(self) -> str:
        return f"route_fraction={self.route_fraction}, tau={self.tau}"
