"""Tensor-train (MPO) decomposition of weight matrices: TT-SVD, rounding, reconstruction,
parameter and FLOP counts.

Index legend: K cores, k core index, n_k output modes, m_k input modes, r_k bond ranks
(r_0 = r_K = 1), B rows of the input (tokens).

W (d_out × d_in) with d_out = Π n_k and d_in = Π m_k is
    W[(i_1..i_K), (j_1..j_K)] = G_1[:, i_1, j_1, :] G_2[:, i_2, j_2, :] ⋯ G_K[:, i_K, j_K, :]
with cores G_k of shape (r_{k-1}, n_k, m_k, r_k); mode 1 is the most significant digit of the
flat row/column index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .factorize import check_modes

__all__ = [
    "TTDecomposition",
    "full_ranks",
    "tt_build_flops",
    "tt_dense_flops",
    "tt_num_params",
    "tt_round",
    "tt_split_flops",
    "tt_svd",
    "tt_to_dense",
]


@dataclass
class TTDecomposition:
    """Result of :func:`tt_svd` / :func:`tt_round`.

    ``singular_values[k]`` are all singular values at bond k (between cores k and k+1) before
    truncation; ``spectra[k]`` their normalised squares p_i (the bond's entanglement spectrum)
    and ``entropies[k]`` = −Σ p_i log p_i. ``error_bound`` is the Oseledets bound
    √(Σ_k discarded_k²) / ‖W‖_F on the relative Frobenius error.
    """

    cores: list[torch.Tensor]
    out_modes: tuple[int, ...]
    in_modes: tuple[int, ...]
    singular_values: list[torch.Tensor] = field(default_factory=list)
    error_bound: float = 0.0

    @property
    def ranks(self) -> tuple[int, ...]:
        """Internal bond ranks (r_1, …, r_{K-1})."""
        return tuple(c.shape[-1] for c in self.cores[:-1])

    @property
    def spectra(self) -> list[torch.Tensor]:
        return [s.square() / s.square().sum() for s in self.singular_values]

    @property
    def entropies(self) -> list[float]:
        out = []
        for p in self.spectra:
            p = p[p > 0]
            out.append(float(-(p * p.log()).sum()))
        return out

    @property
    def num_params(self) -> int:
        return sum(c.numel() for c in self.cores)

    def to_dense(self) -> torch.Tensor:
        return tt_to_dense(self.cores)


def _check_matrix_modes(W: torch.Tensor, in_modes, out_modes):
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D weight (d_out, d_in), got shape {tuple(W.shape)}")
    d_out, d_in = W.shape
    in_modes = check_modes(in_modes, d_in, "in_modes")
    out_modes = check_modes(out_modes, d_out, "out_modes")
    if len(in_modes) != len(out_modes):
        raise ValueError(
            f"in_modes {in_modes} and out_modes {out_modes} must have the same number of modes"
        )
    return in_modes, out_modes


def _check_rank_arg(rank, n_bonds: int) -> tuple[int, ...] | None:
    if rank is None:
        return None
    ranks = (rank,) * n_bonds if isinstance(rank, int) else tuple(rank)
    if len(ranks) != n_bonds:
        raise ValueError(f"rank has {len(ranks)} entries but the train has {n_bonds} bonds")
    if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
        raise ValueError(f"ranks must be ints >= 1, got {rank!r}")
    return ranks


def tt_num_params(
    *, in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int]
) -> int:
    """Σ_k r_{k-1} n_k m_k r_k for internal ranks ``ranks`` (r_0 = r_K = 1).

    Example:
        >>> tt_num_params(in_modes=(4, 8), out_modes=(8, 8), ranks=(3,))
        288
    """
    r = (1, *ranks, 1)
    return sum(
        r[k] * n * m * r[k + 1] for k, (n, m) in enumerate(zip(out_modes, in_modes, strict=True))
    )


def _unfold_modes(W: torch.Tensor, out_modes, in_modes) -> torch.Tensor:
    """W (d_out, d_in) → tensor with modes (n_1 m_1, n_2 m_2, …, n_K m_K)."""
    K = len(out_modes)
    t = W.reshape(*out_modes, *in_modes)  # (n_1..n_K, m_1..m_K)
    perm = [i for k in range(K) for i in (k, K + k)]
    return t.permute(perm).reshape([n * m for n, m in zip(out_modes, in_modes, strict=True)])


def _truncation_rank(s: torch.Tensor, cap: int | None, delta: float | None) -> int:
    r = len(s)
    if delta is not None:
        # smallest r with sqrt(sum_{i >= r} s_i^2) <= delta
        tail = torch.cumsum(s.flip(0).square(), 0).flip(0)  # tail[i] = sum_{j >= i} s_j^2
        ok = (tail <= delta**2).nonzero()
        r = int(ok[0]) if len(ok) else r
        r = max(r, 1)
    if cap is not None:
        r = min(r, cap)
    return max(1, r)


def _tt_svd_ranks(W, out_modes, in_modes, ranks, delta):
    K = len(out_modes)
    t = _unfold_modes(W, out_modes, in_modes)
    cores, svals, discarded = [], [], 0.0
    c = t.reshape(t.shape[0], -1)
    r_prev = 1
    for k in range(K - 1):
        c = c.reshape(r_prev * out_modes[k] * in_modes[k], -1)
        u, s, vh = torch.linalg.svd(c, full_matrices=False)
        r = _truncation_rank(s, None if ranks is None else ranks[k], delta)
        discarded += float(s[r:].square().sum())
        svals.append(s.detach().clone())
        cores.append(u[:, :r].reshape(r_prev, out_modes[k], in_modes[k], r))
        c = s[:r, None] * vh[:r]
        r_prev = r
    cores.append(c.reshape(r_prev, out_modes[-1], in_modes[-1], 1))
    return cores, svals, discarded


def tt_svd(
    W: torch.Tensor,
    *,
    in_modes: Sequence[int],
    out_modes: Sequence[int],
    rank: int | Sequence[int] | None = None,
    max_params: int | None = None,
    tol: float | None = None,
) -> TTDecomposition:
    """TT-matrix (MPO) decomposition of ``W`` ``(d_out, d_in)`` by left-to-right truncated SVDs.

    Exactly one of:
      * ``rank``: an int (every bond) or one int per bond (capped by the exact TT ranks);
      * ``max_params``: the largest uniform rank cap whose parameter count fits;
      * ``tol``: each bond discards at most δ = tol/√(K−1)·‖W‖_F, so
        ‖W − W_TT‖_F ≤ tol·‖W‖_F (Oseledets 2011, Thm 2.2).
    With none of them the decomposition is exact (full TT ranks).

    Example:
        >>> import torch
        >>> W = torch.randn(64, 32, dtype=torch.float64)
        >>> tt = tt_svd(W, in_modes=(4, 8), out_modes=(8, 8), tol=0.3)
        >>> bool(torch.linalg.norm(W - tt.to_dense()) <= 0.3 * torch.linalg.norm(W))
        True
    """
    in_modes, out_modes = _check_matrix_modes(W, in_modes, out_modes)
    given = [a is not None for a in (rank, max_params, tol)]
    if sum(given) > 1:
        raise ValueError("give at most one of rank, max_params and tol")
    K = len(in_modes)
    ranks = _check_rank_arg(rank, K - 1)
    norm = float(torch.linalg.norm(W))
    delta = None
    if tol is not None:
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        delta = tol / math.sqrt(max(K - 1, 1)) * norm
    if max_params is not None:
        ranks = _ranks_for_budget(W, out_modes, in_modes, max_params)
    cores, svals, discarded = _tt_svd_ranks(W, out_modes, in_modes, ranks, delta)
    bound = math.sqrt(discarded) / norm if norm > 0 else 0.0
    return TTDecomposition(cores, out_modes, in_modes, svals, bound)


def _ranks_for_budget(W, out_modes, in_modes, max_params: int) -> tuple[int, ...]:
    K = len(out_modes)
    full = full_ranks(in_modes=in_modes, out_modes=out_modes)
    smallest = tt_num_params(in_modes=in_modes, out_modes=out_modes, ranks=(1,) * (K - 1))
    if smallest > max_params:
        raise ValueError(
            f"max_params={max_params} is below the smallest TT (rank 1) of this shape, "
            f"{smallest} parameters"
        )
    lo, hi = 1, max(full) if full else 1
    while lo < hi:  # largest uniform cap that fits
        mid = (lo + hi + 1) // 2
        cand = tuple(min(mid, f) for f in full)
        if tt_num_params(in_modes=in_modes, out_modes=out_modes, ranks=cand) <= max_params:
            lo = mid
        else:
            hi = mid - 1
    return tuple(min(lo, f) for f in full)


def full_ranks(*, in_modes: Sequence[int], out_modes: Sequence[int]) -> tuple[int, ...]:
    """Exact TT ranks of a generic matrix: min of the left and right unfolding sizes.

    Example:
        >>> full_ranks(in_modes=(4, 8), out_modes=(8, 8))
        (32,)
    """
    sizes = [n * m for n, m in zip(out_modes, in_modes, strict=True)]
    return tuple(
        min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)
    )


def tt_to_dense(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract TT-matrix cores ``(r_{k-1}, n_k, m_k, r_k)`` into W ``(Π n_k, Π m_k)``."""
    out = cores[0].reshape(cores[0].shape[1], cores[0].shape[2], -1)  # (N, M, r)
    for core in cores[1:]:
        N, M, _ = out.shape
        _, n, m, r = core.shape
        out = torch.einsum("NMr,rnms->NnMms", out, core).reshape(N * n, M * m, r)
    return out.squeeze(-1)


def tt_round(
    cores: Sequence[torch.Tensor],
    rank: int | Sequence[int] | None = None,
    tol: float | None = None,
) -> TTDecomposition:
    """Re-truncate an existing TT (QR right-to-left, then truncated SVDs left-to-right).

    Same guarantee as :func:`tt_svd`: with ``tol`` the result is within tol·‖W‖_F of the
    input train's matrix; with ``rank`` the bonds are capped.
    """
    if rank is not None and tol is not None:
        raise ValueError("give at most one of rank and tol")
    cores = [c.clone() for c in cores]
    K = len(cores)
    ranks = _check_rank_arg(rank, K - 1)
    out_modes = tuple(c.shape[1] for c in cores)
    in_modes = tuple(c.shape[2] for c in cores)
    # Right-to-left orthogonalisation: cores 2..K become right-orthonormal.
    for k in range(K - 1, 0, -1):
        r0, n, m, r1 = cores[k].shape
        q, rr = torch.linalg.qr(cores[k].reshape(r0, n * m * r1).mT)  # (nmr1, r0'), (r0', r0)
        cores[k] = q.mT.reshape(-1, n, m, r1)
        cores[k - 1] = torch.einsum("anmr,sr->anms", cores[k - 1], rr)
    norm = float(torch.linalg.norm(cores[0]))
    delta = None if tol is None else tol / math.sqrt(max(K - 1, 1)) * norm
    svals, discarded = [], 0.0
    for k in range(K - 1):
        r0, n, m, r1 = cores[k].shape
        u, s, vh = torch.linalg.svd(cores[k].reshape(r0 * n * m, r1), full_matrices=False)
        r = _truncation_rank(s, None if ranks is None else ranks[k], delta)
        discarded += float(s[r:].square().sum())
        svals.append(s.detach().clone())
        cores[k] = u[:, :r].reshape(r0, n, m, r)
        cores[k + 1] = torch.einsum("rs,snmt->rnmt", s[:r, None] * vh[:r], cores[k + 1])
    bound = math.sqrt(discarded) / norm if norm > 0 else 0.0
    return TTDecomposition(cores, out_modes, in_modes, svals, bound)


def tt_build_flops(*, in_modes: Sequence[int], out_modes: Sequence[int], ranks) -> int:
    """FLOPs of building W from the cores, left to right (as :func:`tt_to_dense` does)."""
    r = (1, *ranks, 1)
    flops, N, M = 0, out_modes[0], in_modes[0]
    for k in range(1, len(out_modes)):
        flops += 2 * N * M * r[k] * out_modes[k] * in_modes[k] * r[k + 1]
        N, M = N * out_modes[k], M * in_modes[k]
    return flops


def tt_dense_flops(*, in_modes: Sequence[int], out_modes: Sequence[int], ranks, batch: int) -> int:
    """FLOPs of materialise-then-GEMM: building W plus 2·B·d_in·d_out (padded dims)."""
    gemm = 2 * batch * math.prod(out_modes) * math.prod(in_modes)
    return tt_build_flops(in_modes=in_modes, out_modes=out_modes, ranks=ranks) + gemm


def tt_split_flops(*, in_modes: Sequence[int], out_modes: Sequence[int], ranks, batch: int) -> int:
    """FLOPs of the factorised path of the TT layers on a ``(batch, d_in)`` input: merge cores
    2..K into a block R (r_1, N', M'), then x·R (2·B·M·r_1·N') and G_1·(x·R) (2·B·m_1·r_1·N)."""
    r = (1, *ranks, 1)
    K = len(out_modes)
    if K == 1:
        return 2 * batch * out_modes[0] * in_modes[0]
    build, N, M = 0, out_modes[1], in_modes[1]
    for k in range(2, K):
        build += 2 * r[1] * N * M * r[k] * out_modes[k] * in_modes[k] * r[k + 1]
        N, M = N * out_modes[k], M * in_modes[k]
    return (
        build
        + 2 * batch * in_modes[0] * M * r[1] * N
        + 2 * batch * out_modes[0] * in_modes[0] * r[1] * N
    )
