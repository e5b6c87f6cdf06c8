"""LowRankLinear: y = x Wᵀ + b with W = A B of rank r, run as two GEMMs.

Index legend: B tokens (flattened batch), m in_features, n out_features, r rank.
W (n × m) = A (n × r) · B (r × m); ``down`` holds B (an ``nn.Linear(m, r)`` without bias),
``up`` holds A (an ``nn.Linear(r, n)`` with the layer's bias), so y = up(down(x)).
Parameters r·(m + n) (+ n bias), fewer than m·n exactly when r < m·n / (m + n).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LowRankLinear"]


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class LowRankLinear(nn.Module):
    """Linear layer whose weight is a rank-``rank`` product A·B, run as ``up(down(x))``.

    Example:
        >>> import torch
        >>> layer = LowRankLinear(16, 24, rank=4)
        >>> layer(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 24])
        >>> layer.num_params(), 4 * (16 + 24) + 24
        (184, 184)
        >>> A, B = torch.randn(24, 4), torch.randn(4, 16)
        >>> bool(torch.allclose(LowRankLinear.from_factors(A, B).to_dense(), A @ B))
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        self.rank = _check_size("rank", rank)
        kw = {"device": device, "dtype": dtype}
        self.down = nn.Linear(in_features, rank, bias=False, **kw)  # B: (r, m)
        self.up = nn.Linear(rank, out_features, bias=bias, **kw)  # A: (n, r)

    @classmethod
    def from_factors(
        cls, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None = None
    ) -> LowRankLinear:
        """The layer with weight A (out × r) · B (r × in) and ``bias`` (out,) or none; the
        layer takes A's dtype and device."""
        if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
            raise ValueError(
                f"need A (out, r) and B (r, in) with matching r, got {tuple(A.shape)} and "
                f"{tuple(B.shape)}"
            )
        if bias is not None and bias.shape != (A.shape[0],):
            raise ValueError(f"bias must have shape ({A.shape[0]},), got {tuple(bias.shape)}")
        layer = cls(
            B.shape[1],
            A.shape[0],
            A.shape[1],
            bias=bias is not None,
            device=A.device,
            dtype=A.dtype,
        )
        with torch.no_grad():
            layer.up.weight.copy_(A)
            layer.down.weight.copy_(B)
            if bias is not None:
                layer.up.bias.copy_(bias)
        return layer

    @property
    def bias(self) -> nn.Parameter | None:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, expected in_features={self.in_features}"
            )
        return self.up(self.down(x))

    def to_dense(self) -> torch.Tensor:
        """The weight W = A·B, (out_features, in_features)."""
        return self.up.weight @ self.down.weight

    def num_params(self) -> int:
        """Stored parameters: r·(in + out), plus the bias."""
        return sum(p.numel() for p in self.parameters())

    def decayed_parameters(self) -> list[nn.Parameter]:
        """The parameters that take weight decay: the two factors (not the bias)."""
        return [self.down.weight, self.up.weight]

    def flops(self, tokens: int, rank: int | None = None) -> int:
        """Forward FLOPs on ``tokens`` rows: the two GEMMs, 2·B·r·(in + out), plus the bias.

        ``rank`` (the interface of the nested-rank layers) must be None or at least the
        layer's rank: the layer always runs at its one rank.
        """
        if rank is not None and rank < self.rank:
            raise ValueError(
                f"LowRankLinear runs at its rank {self.rank} only; got rank={rank} (no nested "
                "truncation)"
            )
        bias = tokens * self.out_features if self.bias is not None else 0
        return 2 * tokens * self.rank * (self.in_features + self.out_features) + bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, bias={self.bias is not None}"
        )
