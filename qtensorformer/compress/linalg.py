"""Low-rank factorisations of one weight, plain and activation-aware, and their errors.

Index legend: n out_features, m in_features, r rank, T calibration tokens.
W (n × m) acts on inputs x (m); X (T × m) stacks the calibration inputs and G = XᵀX (m × m)
is their Gram matrix. The activation error of an approximation Ŵ is
    ‖X (W − Ŵ)ᵀ‖_F² = tr((W − Ŵ) G (W − Ŵ)ᵀ).
Every method is a truncated SVD of W·P for a preconditioner P (m × m): the identity (plain
SVD), diag(mean|x|^α) (ASVD) or a square root S of G, G = S Sᵀ (SVD-LLM whitening, which
makes the truncation optimal for the activation error). With W·P = U Σ Vᵀ the factors are
    A = U_r √Σ_r (n × r),   B = √Σ_r V_rᵀ P⁻¹ (r × m),   Ŵ = A B.
Everything runs in float64.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> W = torch.randn(6, 5, dtype=torch.float64, generator=g)
    >>> X = torch.randn(40, 5, dtype=torch.float64, generator=g)
    >>> G = X.T @ X
    >>> white = whitening(G)
    >>> A, B = lowrank_factors(W, white, 2)
    >>> A0, B0 = lowrank_factors(W, Identity(), 2)
    >>> activation_error(W, A @ B, G) <= activation_error(W, A0 @ B0, G)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "Identity",
    "Preconditioner",
    "Scaling",
    "Whitening",
    "activation_error",
    "activation_scaling",
    "damped_gram",
    "damping",
    "lowrank_factors",
    "shared_basis_factors",
    "spectrum",
    "thin_svd",
    "weight_error",
    "whitening",
]

F64 = torch.float64


class Preconditioner:
    """P (m × m) of a method: ``apply(W)`` = W·P and ``unapply(B)`` = B·P⁻¹."""

    kind = "identity"

    def apply(self, W: torch.Tensor) -> torch.Tensor:
        return W

    def unapply(self, B: torch.Tensor) -> torch.Tensor:
        return B


class Identity(Preconditioner):
    """P = I: plain truncated SVD (optimal for the weight error)."""


@dataclass
class Scaling(Preconditioner):
    """P = diag(s), s > 0 (ASVD)."""

    s: torch.Tensor  # (m,)
    kind = "scaling"

    def apply(self, W: torch.Tensor) -> torch.Tensor:
        return W * self.s

    def unapply(self, B: torch.Tensor) -> torch.Tensor:
        return B / self.s


@dataclass
class Whitening(Preconditioner):
    """P = S with S Sᵀ = G + λI: lower-triangular Cholesky factor (``kind="cholesky"``), or
    S = Q Λ^{1/2} from the eigendecomposition with eigenvalues clamped (``kind="eigh"``).
    ``unapply`` solves triangular systems (or uses the orthogonal Q) and never inverts."""

    S: torch.Tensor  # (m, m)
    kind: str = "cholesky"
    Q: torch.Tensor | None = None  # (m, m), eigh only
    sqrt_eig: torch.Tensor | None = None  # (m,), eigh only
    damping: float = 0.0

    def apply(self, W: torch.Tensor) -> torch.Tensor:
        return W @ self.S

    def unapply(self, B: torch.Tensor) -> torch.Tensor:
        if self.kind == "cholesky":  # B S⁻¹: solve X S = B, S lower triangular
            return torch.linalg.solve_triangular(self.S, B, upper=False, left=False)
        return (B / self.sqrt_eig) @ self.Q.T  # S⁻¹ = Λ^{-1/2} Qᵀ


def damping(G: torch.Tensor, damp: float) -> float:
    """λ = damp · mean(diag G); 1 when G is all zero (then whitening is the identity)."""
    mean_diag = float(G.diagonal().mean())
    return damp * mean_diag if mean_diag > 0 else 1.0


def damped_gram(G: torch.Tensor, damp: float) -> torch.Tensor:
    """G + λI (float64, symmetrised), λ from :func:`damping`: the Gram matrix the aware
    methods fit, so that directions the calibration never excites keep their weights."""
    G = G.to(F64)
    G = 0.5 * (G + G.T)
    eye = torch.eye(G.shape[0], dtype=F64, device=G.device)
    return G + damping(G, damp) * eye


def whitening(G: torch.Tensor, damp: float = 1e-6) -> Whitening:
    """A square root S of G + λI (λ = ``damp``·mean(diag G)) that never fails.

    Cholesky first; when G + λI is not numerically positive definite (singular or
    rank-deficient G with ``damp=0``, rounding), the eigendecomposition with eigenvalues
    clamped to at least max(λ, 1e-12·λ_max) (and > 0).
    """
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"the Gram matrix must be square, got shape {tuple(G.shape)}")
    G = G.to(F64)
    G = 0.5 * (G + G.T)
    lam = damping(G, damp)
    eye = torch.eye(G.shape[0], dtype=F64, device=G.device)
    L, info = torch.linalg.cholesky_ex(G + lam * eye)
    if int(info) == 0 and bool(torch.isfinite(L).all()):
        return Whitening(L, "cholesky", damping=lam)
    evals, Q = torch.linalg.eigh(G)
    floor = max(lam, 1e-12 * float(evals.abs().max()), torch.finfo(F64).tiny)
    sq = evals.clamp_min(floor).sqrt()
    return Whitening(Q * sq, "eigh", Q=Q, sqrt_eig=sq, damping=lam)


def activation_scaling(abs_mean: torch.Tensor, alpha: float = 0.5) -> Scaling:
    """ASVD's scaling s_j = mean|x_j|^α, with zero (dead) features raised to 1e-6·max s so
    that s stays invertible."""
    s = abs_mean.to(F64).clamp_min(0) ** alpha
    top = float(s.max()) if s.numel() else 0.0
    return Scaling(s.clamp_min(1e-6 * top if top > 0 else 1.0))


def _wide(M: torch.Tensor) -> bool:
    """Whether M has more columns than rows: LAPACK decomposes its transpose faster
    (docs/RESULTS.md, "SVD of wide matrices")."""
    return M.shape[-2] < M.shape[-1]


def thin_svd(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.linalg.svd(M, full_matrices=False)``, computed on Mᵀ when M is wider than
    tall (the same factors)."""
    if not _wide(M):
        return torch.linalg.svd(M, full_matrices=False)
    U, s, Vh = torch.linalg.svd(M.mT, full_matrices=False)  # Mᵀ = U Σ Vᴴ
    return Vh.mT, s, U.mT


def spectrum(W: torch.Tensor, pre: Preconditioner) -> torch.Tensor:
    """Singular values of W·P (descending): their squares are the energies a rank cut
    discards (activation-weighted for whitening)."""
    M = pre.apply(W.to(F64))
    return torch.linalg.svdvals(M.mT if _wide(M) else M)


def lowrank_factors(
    W: torch.Tensor, pre: Preconditioner, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (n × r), B (r × m) with A·B the rank-r truncation of W·P, unpreconditioned
    (r = min(rank, n, m))."""
    U, s, Vh = thin_svd(pre.apply(W.to(F64)))
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    A = U[:, :r] * root  # (n, r)
    B = pre.unapply(root[:, None] * Vh[:r])  # (r, m)
    return A, B


def shared_basis_factors(
    weights: list[torch.Tensor], pre: Preconditioner, rank: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Coefficients A_i (n_i × r) and one basis B (r × m) with A_i·B the rows of W_i in the
    rank-r truncation of [W_1; …; W_g]·P, unpreconditioned (r = min(rank, Σn_i, m)).

    With P the whitening of G = Σ_i X_iᵀX_i this is Basis Sharing's factorisation; when
    every layer sees the same inputs it minimises Σ_i tr((W_i − A_i B) G (W_i − A_i B)ᵀ)
    over all rank-r bases and coefficients (Eckart–Young on the whitened stack). As in
    the official code, B carries the singular values and the coefficients are orthonormal
    columns of U.
    """
    W = torch.cat([w.to(F64) for w in weights])  # (Σ n_i, m)
    U, s, Vh = thin_svd(pre.apply(W))
    r = min(rank, s.numel())
    B = pre.unapply(s[:r, None] * Vh[:r])  # (r, m)
    coefficients = list(U[:, :r].split([w.shape[0] for w in weights]))
    return coefficients, B


def activation_error(W: torch.Tensor, W_hat: torch.Tensor, G: torch.Tensor) -> float:
    """Relative activation error √(tr(Δ G Δᵀ) / tr(W G Wᵀ)), Δ = W − Ŵ (0 when the
    denominator is 0)."""
    W, D = W.to(F64), W.to(F64) - W_hat.to(F64)
    G = G.to(F64)
    den = float(((W @ G) * W).sum())
    num = float(((D @ G) * D).sum())
    return (max(num, 0.0) / den) ** 0.5 if den > 0 else 0.0


def weight_error(W: torch.Tensor, W_hat: torch.Tensor) -> float:
    """Relative weight error ‖W − Ŵ‖_F / ‖W‖_F (0 for W = 0)."""
    W = W.to(F64)
    den = float(torch.linalg.norm(W))
    return float(torch.linalg.norm(W - W_hat.to(F64))) / den if den > 0 else 0.0
