"""LowRankLinear: y = x Wᵀ + b with W = A B of rank r, run as two GEMMs; SharedBasisLinear:
the same with B shared by a group of layers.

Index legend: B tokens (flattened batch), m in_features, n out_features, r rank, g layers in
a group.
W (n × m) = A (n × r) · B (r × m); ``down`` holds B (an ``nn.Linear(m, r)`` without bias),
``up`` holds A (an ``nn.Linear(r, n)`` with the layer's bias), so y = up(down(x)).
Parameters r·(m + n) (+ n bias), fewer than m·n exactly when r < m·n / (m + n).

In a :class:`SharedBasisLinear` group every layer holds the *same* ``nn.Parameter`` basis
B (r × m) and its own coefficients A_i (n × r) and bias: W_i = A_i B. The group stores
r·m + g·r·n weight parameters (``model.parameters()`` yields a shared parameter once).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LowRankLinear", "SharedBasisLinear"]


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

    @torch.no_grad()
    def balance_(self) -> LowRankLinear:
        """Rescale each rank component so that its column of A and its row of B have the
        same norm (A[:, i]·c_i and B[i, :]/c_i); the weight A·B is unchanged. A whitened
        factorisation (SVD-LLM's A = U√Σ, B = √ΣVᵀS⁻¹) is far from balanced, and a
        fine-tune, whose Adam steps are about the same size for every entry, then moves the
        small factor relatively much more than the large one. Returns the layer.

        Example:
            >>> A, B = torch.full((4, 2), 10.0), torch.full((2, 4), 0.1)
            >>> layer = LowRankLinear.from_factors(A, B)
            >>> W = layer.to_dense()
            >>> bool(torch.allclose(layer.balance_().to_dense(), W))
            True
            >>> round(layer.up.weight[0, 0].item(), 4), round(layer.down.weight[0, 0].item(), 4)
            (1.0, 1.0)
        """
        A, B = self.up.weight, self.down.weight  # (n, r), (r, m)
        a, b = A.norm(dim=0), B.norm(dim=1)  # (r,), (r,)
        c = torch.where((a > 0) & (b > 0), (b / a.clamp_min(1e-30)).sqrt(), torch.ones_like(a))
        A.mul_(c)
        B.div_(c[:, None])
        return self

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


class SharedBasisLinear(nn.Module):
    """Linear layer W = A·B whose basis B (rank × in) is an ``nn.Parameter`` shared with the
    other layers of its group; A (out × rank) and the bias are its own. Runs as two GEMMs,
    y = (x Bᵀ) Aᵀ + b.

    Example:
        >>> import torch
        >>> basis = SharedBasisLinear.new_basis(16, rank=4)
        >>> a, b = SharedBasisLinear(basis, 24), SharedBasisLinear(basis, 24, bias=False)
        >>> a.basis is b.basis
        True
        >>> a(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 24])
        >>> group = torch.nn.ModuleList([a, b])
        >>> sum(p.numel() for p in group.parameters()), 4 * 16 + 2 * 4 * 24 + 24
        (280, 280)
    """

    def __init__(
        self,
        basis: nn.Parameter,
        out_features: int,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(basis, nn.Parameter) or basis.ndim != 2:
            raise ValueError("basis must be a 2-D nn.Parameter (rank, in_features)")
        self.out_features = _check_size("out_features", out_features)
        self.rank, self.in_features = basis.shape
        self.basis = basis  # (r, m), the same object in every layer of the group
        kw = {"device": basis.device, "dtype": basis.dtype}
        self.coefficient = nn.Parameter(torch.empty(out_features, self.rank, **kw))  # (n, r)
        nn.init.kaiming_uniform_(self.coefficient, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None

    @staticmethod
    def new_basis(
        in_features: int,
        rank: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> nn.Parameter:
        """A fresh basis parameter (rank × in_features), initialised as ``nn.Linear``'s
        weight, to hand to every layer of a group."""
        weight = torch.empty(
            _check_size("rank", rank),
            _check_size("in_features", in_features),
            device=device,
            dtype=dtype,
        )
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        return nn.Parameter(weight)

    @classmethod
    def group(
        cls,
        basis: torch.Tensor,
        coefficients: list[torch.Tensor],
        biases: list[torch.Tensor | None],
    ) -> list[SharedBasisLinear]:
        """The layers W_i = coefficients[i] (out_i × r) · ``basis`` (r × in), with
        ``biases[i]`` (out_i,) or None, all holding one new basis parameter (of ``basis``'s
        dtype and device; the coefficients and biases are cast to it)."""
        if basis.ndim != 2 or len(coefficients) != len(biases) or not coefficients:
            raise ValueError("need a basis (r, in) and one coefficient matrix and bias per layer")
        shared = nn.Parameter(basis.detach().clone(memory_format=torch.contiguous_format))
        layers = []
        for A, b in zip(coefficients, biases, strict=True):
            if A.ndim != 2 or A.shape[1] != basis.shape[0]:
                raise ValueError(
                    f"coefficients must be (out, {basis.shape[0]}), got {tuple(A.shape)}"
                )
            if b is not None and b.shape != (A.shape[0],):
                raise ValueError(f"bias must have shape ({A.shape[0]},), got {tuple(b.shape)}")
            layer = cls(shared, A.shape[0], bias=b is not None)
            with torch.no_grad():
                layer.coefficient.copy_(A)
                if b is not None:
                    layer.bias.copy_(b)
            layers.append(layer)
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, expected in_features={self.in_features}"
            )
        return F.linear(F.linear(x, self.basis), self.coefficient, self.bias)

    def to_dense(self) -> torch.Tensor:
        """The weight W = A·B, (out_features, in_features)."""
        return self.coefficient @ self.basis

    def num_params(self) -> int:
        """Parameters this layer reaches: the shared basis (counted here in full, though the
        group stores it once), its coefficients and bias."""
        return sum(p.numel() for p in self.parameters())

    def decayed_parameters(self) -> list[nn.Parameter]:
        """The parameters that take weight decay: the basis and the coefficients."""
        return [self.basis, self.coefficient]

    def flops(self, tokens: int, rank: int | None = None) -> int:
        """Forward FLOPs on ``tokens`` rows: 2·B·r·(in + out), plus the bias (sharing saves
        parameters, not FLOPs: every layer multiplies its own inputs by the basis).
        ``rank`` as in :meth:`LowRankLinear.flops`."""
        if rank is not None and rank < self.rank:
            raise ValueError(
                f"SharedBasisLinear runs at its rank {self.rank} only; got rank={rank} (no "
                "nested truncation)"
            )
        bias = tokens * self.out_features if self.bias is not None else 0
        return 2 * tokens * self.rank * (self.in_features + self.out_features) + bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank} (shared basis), bias={self.bias is not None}"
        )
