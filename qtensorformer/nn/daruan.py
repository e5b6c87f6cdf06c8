"""DARUAN: a single-qubit data re-uploading activation, and the B-spline activation it distils to.

Index legend: ``...`` batch, C channels, r re-uploads, G spline intervals.

DARUAN (QKAN, arXiv:2509.14026), per channel c:
    φ_c(x) = ⟨ψ(x)|Z|ψ(x)⟩,  ψ(x) = W_{r+1} Π_{ℓ=1..r} RZ(w_ℓ x + b_ℓ) W_ℓ · H|0⟩,
    W_ℓ = RY(θ_ℓ1) RZ(θ_ℓ0)   (ℓ = 1 applied first).
It is computed exactly, in real arithmetic, on the Bloch vector (X, Y, Z) of the qubit: H|0⟩ is
(1, 0, 0); RZ(φ) rotates (X, Y) by φ; RY(θ) rotates (Z, X) by θ; ⟨Z⟩ is the final Z. Two
consecutive RZ merge, so each re-upload costs one (cos, sin) pair per element.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DARUAN", "BSplineActivation", "bspline_basis"]


def _rz(X, Y, phi):
    c, s = torch.cos(phi), torch.sin(phi)
    return X * c - Y * s, X * s + Y * c


def _ry(X, Z, theta):
    c, s = torch.cos(theta), torch.sin(theta)
    return X * c + Z * s, Z * c - X * s


class DARUAN(nn.Module):
    """Elementwise DARUAN activation with its own (θ, w, b) per channel.

    Parameters: ``theta`` (C, r+1, 2) (θ_ℓ0 for RZ, θ_ℓ1 for RY), ``w`` (C, r), ``b`` (C, r).
    Without ``base`` the output is the circuit's ⟨Z⟩ ∈ [-1, 1] (θ drawn uniformly in
    [-π, π]). With ``base=True`` it is the QKAN layer's form
    φ_c(x) = β_c·SiLU(x) + a_c·⟨Z⟩_c(x) + c_c, with β = 0.5, a = 1, c = 0 and θ ~ N(0, 0.1) at
    the start, as in the QKAN reference implementation: the FFN starts as a SiLU MLP and the
    circuit part grows from near zero (``base_weight``, ``post_weight``, ``post_bias`` (C,)).
    :meth:`expval` is the circuit's ⟨Z⟩ alone.

    Example:
        >>> import torch
        >>> act = DARUAN(channels=8, reps=2)
        >>> y = act(torch.randn(3, 8))
        >>> y.shape, bool(y.abs().max() <= 1)
        (torch.Size([3, 8]), True)
    """

    def __init__(self, channels: int, reps: int = 2, base: bool = False) -> None:
        super().__init__()
        if channels < 1 or reps < 1:
            raise ValueError(f"channels and reps must be >= 1, got {channels}, {reps}")
        self.channels, self.reps, self.base = channels, reps, bool(base)
        self.theta = nn.Parameter(torch.empty(channels, reps + 1, 2))
        self.w = nn.Parameter(torch.empty(channels, reps))
        self.b = nn.Parameter(torch.empty(channels, reps))
        if self.base:
            self.base_weight = nn.Parameter(torch.empty(channels))
            self.post_weight = nn.Parameter(torch.empty(channels))
            self.post_bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.base:
                self.theta.normal_(0.0, 0.1)
                self.base_weight.fill_(0.5)
                self.post_weight.fill_(1.0)
                self.post_bias.zero_()
            else:
                self.theta.uniform_(-math.pi, math.pi)
            self.w.normal_(1.0, 0.1)
            self.b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.expval(x)
        if not self.base:
            return z
        bw, pw, pb = (p.to(x.dtype) for p in (self.base_weight, self.post_weight, self.post_bias))
        return bw * F.silu(x) + pw * z + pb

    def expval(self, x: torch.Tensor) -> torch.Tensor:
        """⟨Z⟩ of each channel's circuit at inputs x (..., C): the quantum part alone."""
        if x.shape[-1] != self.channels:
            raise ValueError(f"input has {x.shape[-1]} channels, DARUAN expects {self.channels}")
        th = self.theta.to(x.dtype)
        w, b = self.w.to(x.dtype), self.b.to(x.dtype)
        # W_1 on H|0> = (1, 0, 0): RZ(θ_10) then RY(θ_11); input-independent, per channel (C,)
        X, Y = _rz(torch.ones_like(th[:, 0, 0]), torch.zeros_like(th[:, 0, 0]), th[:, 0, 0])
        X, Z = _ry(X, torch.zeros_like(X), th[:, 0, 1])
        for ell in range(self.reps):
            # RZ(w x + b) then W_{ℓ+1} = RY(θ1) RZ(θ0): the two RZ merge into one rotation
            X, Y = _rz(X, Y, x * w[:, ell] + (b[:, ell] + th[:, ell + 1, 0]))
            if ell < self.reps - 1:
                X, Z = _ry(X, Z, th[:, ell + 1, 1])
        # last RY: only its Z output is needed
        c, s = torch.cos(th[:, self.reps, 1]), torch.sin(th[:, self.reps, 1])
        return Z * c - X * s

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reps={self.reps}, base={self.base}"


def bspline_basis(u: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform cubic B-spline weights at positions ``u`` ∈ [0, grid] (in interval units).

    Returns ``(index, weights)``: the first of the 4 coefficients that act (…, ) int64 and their
    weights (…, 4), which sum to 1.
    """
    i = u.floor().clamp(0, grid - 1)
    t = u - i
    t2, t3 = t * t, t * t * t
    w = torch.stack(
        [
            (1 - t) ** 3 / 6,
            (3 * t3 - 6 * t2 + 4) / 6,
            (-3 * t3 + 3 * t2 + 3 * t + 1) / 6,
            t3 / 6,
        ],
        -1,
    )
    return i.long(), w


class BSplineActivation(nn.Module):
    """Per-channel uniform cubic B-spline on [lo, hi] (a KAN activation); inputs outside the
    interval are clamped to it. With ``base=True``, KAN's residual form
    φ_c(x) = β_c·SiLU(x) + spline_c(x) (``base_weight`` (C,)).

    ``coef`` (C, G+3) trainable; ``lo``/``hi`` (C,) buffers.

    Example:
        >>> import torch
        >>> act = BSplineActivation(channels=4, grid=16, lo=-3.0, hi=3.0)
        >>> act(torch.randn(5, 4)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self, channels: int, grid: int = 32, lo: float = -4.0, hi: float = 4.0, base: bool = False
    ) -> None:
        super().__init__()
        if channels < 1 or grid < 1:
            raise ValueError(f"channels and grid must be >= 1, got {channels}, {grid}")
        if not hi > lo:
            raise ValueError(f"need hi > lo, got lo={lo}, hi={hi}")
        self.channels, self.grid, self.base = channels, grid, bool(base)
        self.coef = nn.Parameter(torch.zeros(channels, grid + 3))
        if self.base:
            self.base_weight = nn.Parameter(torch.full((channels,), 0.5))
        self.register_buffer("lo", torch.full((channels,), float(lo)))
        self.register_buffer("hi", torch.full((channels,), float(hi)))

    def basis_position(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lo.to(x.dtype), self.hi.to(x.dtype)
        return (x.clamp(min=lo, max=hi) - lo) / (hi - lo) * self.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.channels:
            raise ValueError(f"input has {x.shape[-1]} channels, expected {self.channels}")
        idx, w = bspline_basis(self.basis_position(x), self.grid)  # (..., C), (..., C, 4)
        coef = self.coef.to(x.dtype)
        ch = torch.arange(self.channels, device=x.device)
        flat = coef.reshape(-1)
        base = (ch * (self.grid + 3)).expand_as(idx) + idx  # (..., C) flat index of 1st coef
        c4 = torch.stack([flat[base + k] for k in range(4)], -1)  # (..., C, 4)
        y = (c4 * w).sum(-1)
        if self.base:
            y = y + self.base_weight.to(x.dtype) * F.silu(x)
        return y

    def extra_repr(self) -> str:
        return f"channels={self.channels}, grid={self.grid}, base={self.base}"
