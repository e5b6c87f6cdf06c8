"""Fitting a tensor train (MPO) to one weight: topologies, budgets, DMRG and ALS sweeps.

Index legend: K cores, k core index, n_k output modes, m_k input modes, a = r_{k-1} and
b = r_k the bonds of core k, N = Π n_k = out_features, M = Π m_k = in_features; "<" and ">"
mark the modes left and right of core k (N< = Π_{l<k} n_l, M> = Π_{l>k} m_l, …).

Cores C_k have shape (a, n_k, m_k, b) and W[(i_1…i_K), (j_1…j_K)] = C_1[:, i_1, j_1, :] ⋯
C_K[:, i_K, j_K, :] (mode 1 most significant), as in :mod:`qtensorformer.tensor.tt`.
Around core k the train is W = L ×_a C_k ×_b R with the left environment L (N<, M<, a) and
the right environment R (b, N>, M>).

Two objectives:
  * weight error ‖W − W_TT‖_F² — :func:`dmrg_sweeps`: two-site updates with the environments
    orthonormal, each a truncated SVD of the projected pair (optimal for the pair), with the
    bond dimension chosen from the parameter budget;
  * activation error f = tr((W − W_TT) G (W − W_TT)ᵀ), G = XᵀX — :func:`als_sweeps`: one core
    at a time by its normal equations (I_{n_k} ⊗ H) vec C = rhs, where
        H[(a,j,b),(a',j',b')] = Σ P_L[J<,a,J'<,a'] G[(J<,j,J>),(J'<,j',J'>)] P_R[b,J>,b',J'>],
        P_L = Σ_{I<} L L,  P_R = Σ_{I>} R R,  rhs = L ×(W G)× R,
    a proximal Cholesky solve (small cores), an exact Kronecker solve (a core carrying every
    input mode, where H = P_L ⊗ G ⊗ P_R) or conjugate gradients from the current core (large
    ones). An update that would raise f is refused, so f never increases over a sweep.
    :func:`fit_activation` runs the sweeps on a damped Gram G + λI and returns the best of the
    result and its starts on the undamped objective.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> W = torch.randn(16, 16, dtype=torch.float64, generator=g)
    >>> topo = strict_topology(16, 16, 2)
    >>> topo.name
    'tt(out=4x4, in=4x4)'
    >>> fit = fit_weight(W, topo, max_params=200, sweeps=1)
    >>> fit.num_params <= 200, fit.history == sorted(fit.history, reverse=True)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..tensor import balanced_factors, default_n_modes, tt_num_params, tt_svd, tt_to_dense
from .linalg import damped_gram, thin_svd

__all__ = [
    "TTFit",
    "Topology",
    "activation_objective",
    "als_sweeps",
    "budget_ranks",
    "dmrg_sweeps",
    "fit_activation",
    "fit_weight",
    "lowrank_topology",
    "strict_topology",
]

F64 = torch.float64


@dataclass(frozen=True)
class Topology:
    """Mode assignment of a TT-matrix. ``kind`` is ``"strict"`` (every core carries input and
    output modes) or ``"lowrank"`` (two cores, the first taking every input mode: the
    low-rank form W = A·B)."""

    kind: str
    out_modes: tuple[int, ...]
    in_modes: tuple[int, ...]

    @property
    def name(self) -> str:
        if self.kind == "lowrank":
            return "lowrank"
        out = "x".join(map(str, self.out_modes))
        inp = "x".join(map(str, self.in_modes))
        return f"tt(out={out}, in={inp})"

    @property
    def full_ranks(self) -> tuple[int, ...]:
        """Exact TT ranks of a generic matrix: min of the left and right unfolding sizes."""
        sizes = [n * m for n, m in zip(self.out_modes, self.in_modes, strict=True)]
        return tuple(
            min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)
        )

    def num_params(self, ranks: Sequence[int]) -> int:
        return tt_num_params(in_modes=self.in_modes, out_modes=self.out_modes, ranks=ranks)


def strict_topology(out_features: int, in_features: int, n_cores: int | None = None) -> Topology:
    """Balanced exact modes of both dimensions, ``n_cores`` of them (default: one per factor of
    8 of the smaller dimension, at least 2).

    Example:
        >>> strict_topology(1536, 576, 3)
        Topology(kind='strict', out_modes=(16, 12, 8), in_modes=(12, 8, 6))
    """
    k = n_cores if n_cores is not None else default_n_modes(out_features, in_features)
    return Topology("strict", balanced_factors(out_features, k), balanced_factors(in_features, k))


def lowrank_topology(out_features: int, in_features: int) -> Topology:
    """Two cores (1, 1, m, r) and (r, n, 1, 1): W = A·B with A = C_2ᵀ, B = C_1ᵀ."""
    return Topology("lowrank", (1, out_features), (in_features, 1))


def budget_ranks(topo: Topology, max_params: int) -> tuple[int, ...]:
    """The largest uniform bond cap whose train fits ``max_params`` (each bond at most its
    full rank). Raises ValueError when not even rank 1 fits."""
    full = topo.full_ranks
    smallest = topo.num_params((1,) * len(full))
    if smallest > max_params:
        raise ValueError(
            f"a parameter budget of {max_params} is below the smallest TT of topology "
            f"{topo.name} ({smallest} parameters at rank 1): lower the ratio or use fewer cores"
        )
    lo, hi = 1, max(full, default=1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if topo.num_params(tuple(min(mid, f) for f in full)) <= max_params:
            lo = mid
        else:
            hi = mid - 1
    return tuple(min(lo, f) for f in full)


@dataclass
class TTFit:
    """A fitted train: ``cores``, its ``topology``, the objective after each update
    (``history``, first entry the start) and the final ``objective`` (default: the last
    entry of ``history``)."""

    cores: list[torch.Tensor]
    topology: Topology
    history: list[float] = field(default_factory=list)
    objective: float | None = None

    def __post_init__(self) -> None:
        if self.objective is None and self.history:
            self.objective = self.history[-1]

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(c.shape[-1] for c in self.cores[:-1])

    @property
    def num_params(self) -> int:
        return sum(c.numel() for c in self.cores)

    def to_dense(self) -> torch.Tensor:
        return tt_to_dense(self.cores)

    def lowrank_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A (n × r), B (r × m) of a low-rank-topology train."""
        if self.topology.kind != "lowrank":
            raise ValueError(f"topology {self.topology.name} is not the low-rank form")
        first, second = self.cores  # (1, 1, m, r), (r, n, 1, 1)
        return second[:, :, 0, 0].T, first[0, 0].T


# ---------------------------------------------------------------------------- environments
def _left_env(cores: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Cores 1..k-1 contracted: (N<, M<, a); (1, 1, 1) for k = 0."""
    ref = cores[0]
    out = torch.ones(1, 1, 1, dtype=ref.dtype, device=ref.device)
    for c in cores[:k]:
        N, M, _ = out.shape
        _, n, m, r = c.shape
        out = torch.einsum("NMa,anmr->NnMmr", out, c).reshape(N * n, M * m, r)
    return out


def _right_env(cores: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Cores k+1..K contracted: (b, N>, M>); (1, 1, 1) for the last core."""
    ref = cores[0]
    out = torch.ones(1, 1, 1, dtype=ref.dtype, device=ref.device)
    for c in reversed(cores[k + 1 :]):
        _, N, M = out.shape
        a, n, m, _ = c.shape
        out = torch.einsum("anmr,rNM->anNmM", c, out).reshape(a, n * N, m * M)
    return out


def _split(X: torch.Tensor, topo: Topology, k: int, span: int = 1) -> torch.Tensor:
    """X (N, M) → (N<, n_k…n_{k+span-1}, N>, M<, m_k…, M>) around cores k..k+span-1."""
    on, im = topo.out_modes, topo.in_modes
    rows = (math.prod(on[:k]), *on[k : k + span], math.prod(on[k + span :]))
    cols = (math.prod(im[:k]), *im[k : k + span], math.prod(im[k + span :]))
    return X.reshape(*rows, *cols)


def _project(X: torch.Tensor, L: torch.Tensor, R: torch.Tensor, topo: Topology, k: int):
    """Σ L[I<,J<,a] X[(I<,i,I>),(J<,j,J>)] R[b,I>,J>] → (a, n_k, m_k, b)."""
    X6 = _split(X, topo, k)  # (N<, n, N>, M<, m, M>)
    T = torch.einsum("IJa,IiPJjQ->aiPjQ", L, X6)
    return torch.einsum("aiPjQ,bPQ->aijb", T, R)


def _expand(C: torch.Tensor, L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """The matrix L ×_a C ×_b R: (N<·n·N>, M<·m·M>)."""
    T = torch.einsum("IJa,aijb->IiJjb", L, C)
    Nl, n, Ml, m, _ = T.shape
    out = torch.einsum("IiJjb,bPQ->IiPJjQ", T, R)
    return out.reshape(Nl * n * R.shape[1], Ml * m * R.shape[2])


# ---------------------------------------------------------------------------- gauge
def _left_orthogonalise(cores: list[torch.Tensor], k: int) -> None:
    """QR of core k's left unfolding; its R moves into core k+1 (the matrix is unchanged)."""
    a, n, m, b = cores[k].shape
    q, r = torch.linalg.qr(cores[k].reshape(a * n * m, b))  # (anm, b'), (b', b)
    cores[k] = q.reshape(a, n, m, q.shape[1])
    cores[k + 1] = torch.einsum("sb,bnmr->snmr", r, cores[k + 1])


def _right_orthogonalise(cores: list[torch.Tensor], k: int) -> None:
    """LQ of core k's right unfolding; its L moves into core k-1."""
    a, n, m, b = cores[k].shape
    q, r = torch.linalg.qr(cores[k].reshape(a, n * m * b).T)  # (nmb, a'), (a', a)
    cores[k] = q.T.reshape(q.shape[1], n, m, b)
    cores[k - 1] = torch.einsum("anmb,sb->anms", cores[k - 1], r)


def _right_canonical(cores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A copy with cores 2..K right-orthonormal (the norm in core 1)."""
    out = [c.clone() for c in cores]
    for k in range(len(out) - 1, 0, -1):
        _right_orthogonalise(out, k)
    return out


# ---------------------------------------------------------------------------- weight error
def _weight_objective(W: torch.Tensor, cores: Sequence[torch.Tensor]) -> float:
    return float(torch.linalg.norm(W - tt_to_dense(cores)) ** 2)


def _pair_rank(cores: list[torch.Tensor], k: int, s: torch.Tensor, max_params: int | None) -> int:
    """Bond k's new rank: every singular value above 1e-13·s_max that the budget allows."""
    keep = int((s > 1e-13 * float(s[0])).sum()) if s.numel() and float(s[0]) > 0 else 1
    if max_params is None:
        return max(1, min(keep, cores[k].shape[-1]))
    a, n, m, _ = cores[k].shape
    _, n2, m2, b = cores[k + 1].shape
    rest = sum(c.numel() for i, c in enumerate(cores) if i not in (k, k + 1))
    fit = (max_params - rest) // (a * n * m + n2 * m2 * b)
    return max(1, min(keep, fit))


def _two_site(W, cores, topo, k, max_params, left_to_right: bool) -> None:
    """Optimal update of cores k, k+1 (environments orthonormal) by a truncated SVD."""
    L, R = _left_env(cores, k), _right_env(cores, k + 1)
    X = _split(W, topo, k, span=2)  # (N<, n_k, n_k1, N>, M<, m_k, m_k1, M>)
    T = torch.einsum("IJa,IiuPJjvQ->aiuPjvQ", L, X)
    theta = torch.einsum("aiuPjvQ,bPQ->aijuvb", T, R)  # (a, n_k, m_k, n_k1, m_k1, b)
    a, n, m, n2, m2, b = theta.shape
    U, s, Vh = thin_svd(theta.reshape(a * n * m, n2 * m2 * b))
    r = _pair_rank(cores, k, s, max_params)
    if left_to_right:
        cores[k] = U[:, :r].reshape(a, n, m, r)
        cores[k + 1] = (s[:r, None] * Vh[:r]).reshape(r, n2, m2, b)
    else:
        cores[k] = (U[:, :r] * s[:r]).reshape(a, n, m, r)
        cores[k + 1] = Vh[:r].reshape(r, n2, m2, b)


def dmrg_sweeps(
    W: torch.Tensor,
    cores: Sequence[torch.Tensor],
    topo: Topology,
    sweeps: int,
    max_params: int | None = None,
) -> TTFit:
    """Two-site sweeps (left→right, then right→left) on ‖W − W_TT‖_F², bond dimensions
    adapted by SVD within ``max_params``. Stops at the first update that would raise the
    error (rounding) and returns the best train seen."""
    W = W.to(F64)
    cur = _right_canonical([c.to(F64) for c in cores])
    best, hist = [c.clone() for c in cur], [_weight_objective(W, cur)]
    K = len(cur)
    bonds = [(k, True) for k in range(K - 1)] + [(k, False) for k in range(K - 2, -1, -1)]
    for _ in range(sweeps if K > 1 else 0):
        for k, ltr in bonds:
            _two_site(W, cur, topo, k, max_params, ltr)
            f = _weight_objective(W, cur)
            if f > hist[-1]:  # only rounding can do this: keep the best train and stop
                return TTFit(best, topo, hist)
            hist.append(f)
            best = [c.clone() for c in cur]
    return TTFit(best, topo, hist)


def fit_weight(
    W: torch.Tensor,
    topo: Topology,
    max_params: int | None = None,
    ranks: Sequence[int] | None = None,
    sweeps: int = 2,
) -> TTFit:
    """TT-SVD of ``W`` at bond caps ``ranks`` (or the largest uniform cap within
    ``max_params``), then :func:`dmrg_sweeps`."""
    if ranks is None:
        if max_params is None:
            raise ValueError("give max_params or ranks")
        ranks = budget_ranks(topo, max_params)
    W = W.to(F64)
    dec = tt_svd(W, in_modes=topo.in_modes, out_modes=topo.out_modes, rank=tuple(ranks))
    limit = max_params if max_params is not None else sum(c.numel() for c in dec.cores)
    return dmrg_sweeps(W, dec.cores, topo, sweeps, limit)


# ---------------------------------------------------------------------------- activation error
def activation_objective(W: torch.Tensor, W_hat: torch.Tensor, G: torch.Tensor) -> float:
    """f = tr((W − Ŵ) G (W − Ŵ)ᵀ) (absolute, float64)."""
    D = W.to(F64) - W_hat.to(F64)
    return float(((D @ G.to(F64)) * D).sum())


@dataclass
class _Quadratic:
    """Core k's least-squares problem: its environments and right-hand side L ×(W G)× R."""

    L: torch.Tensor  # (N<, M<, a)
    R: torch.Tensor  # (b, N>, M>)
    rhs: torch.Tensor  # (a, n, m, b)


#: Largest intermediate (elements) of forming a core's H; beyond it the core is solved by
#: conjugate gradients, which needs only W-sized temporaries (1 << 26 float64 = 512 MiB).
_MAX_ELEMENTS = 1 << 26


def _side(options: dict[bool, tuple[int, int]]) -> bool | None:
    """Of the orders {gram?: (flops, peak elements)}, the cheapest that fits in memory."""
    fitting = [(f, g) for g, (f, peak) in options.items() if peak <= _MAX_ELEMENTS]
    return min(fitting)[1] if fitting else None


def _hessian_plan(L, R, m: int) -> tuple[bool, bool] | None:
    """Per side, whether to contract through the environment's Gram (P_L = Σ_{I<} L L)
    or straight into G: the fewer FLOPs among orders whose intermediates fit
    :data:`_MAX_ELEMENTS`; None when no order fits (then CG)."""
    Nl, Ml, a = L.shape
    b, Nr, Mr = R.shape
    T = (a * m * Mr) ** 2
    left = _side(
        {
            True: (Nl * Ml**2 * a**2 + Ml**2 * a**2 * (m * Mr) ** 2, max((Ml * a) ** 2, T)),
            False: (
                Nl * a * (Ml * m * Mr) ** 2 * (1 + a / Ml),
                max(Nl * a * Ml * (m * Mr) ** 2, T),
            ),
        }
    )
    H = (a * m * b) ** 2
    right = _side(
        {
            True: (Nr * Mr**2 * b**2 + (a * m * Mr * b) ** 2, max((b * Mr) ** 2, H)),
            False: ((a * m) ** 2 * Mr * b * Nr * (Mr + b), max((a * m) ** 2 * b * Mr * Nr, H)),
        }
    )
    return None if left is None or right is None else (left, right)


def _hessian(L, R, G, topo: Topology, k: int, order: str | None = None) -> torch.Tensor:
    """H (a·m·b, a·m·b), shared by the n_k output rows of core k.

    Each environment is contracted in the order :func:`_hessian_plan` picks: through its
    Gram P_L = Σ_{I<} L L (cost N<·M<²·a², then M<²·a²·(m·M>)² against G), or straight into
    G (cost N<·a·M², then N<·a²·M²/M<): the second wins when N< is small, as for the
    low-rank form's second core, where P_L would have M²·a² entries. ``order`` forces
    ``"gram"`` or ``"direct"`` on both sides (for tests).
    """
    m = topo.in_modes[k]
    _, Ml, a = L.shape  # (N<, M<, a)
    b, _, Mr = R.shape  # (b, N>, M>)
    G6 = G.reshape(Ml, m, Mr, Ml, m, Mr)  # (M<, m, M>, M<, m, M>)
    plan = _hessian_plan(L, R, m) if order is None else (order == "gram",) * 2
    if plan is None:
        raise ValueError("forming this core's H exceeds the memory limit: solve it by CG")
    left_gram, right_gram = plan
    if left_gram:
        PL = torch.einsum("IJa,IKc->JaKc", L, L)  # (M<, a, M<, a)
        T = torch.einsum("JaKc,JjPKkQ->ajPckQ", PL, G6)
    else:
        T1 = torch.einsum("IJa,JjPKkQ->IajPKkQ", L, G6)  # (N<, a, m, M>, M<, m, M>)
        T = torch.einsum("IajPKkQ,IKc->ajPckQ", T1, L)
    if right_gram:
        PR = torch.einsum("bIJ,dIK->bJdK", R, R)  # (b, M>, b, M>)
        H = torch.einsum("ajPckQ,bPdQ->ajbckd", T, PR)
    else:
        U = torch.einsum("ajPckQ,bIP->ajbckQI", T, R)  # (a, m, b, a, m, M>, N>)
        H = torch.einsum("ajbckQI,dIQ->ajbckd", U, R)
    return H.reshape(a * m * b, a * m * b)


def _takes_all_inputs(topo: Topology, k: int) -> bool:
    """Whether core k carries every input mode (M< = M> = 1): then H = P_L ⊗ G ⊗ P_R."""
    im = topo.in_modes
    return math.prod(im[:k]) == 1 and math.prod(im[k + 1 :]) == 1


def _solve_kron(q: _Quadratic, eig_G, C_old: torch.Tensor, ridge: float) -> torch.Tensor:
    """The proximal solve of :func:`_solve_direct` when H = P_L ⊗ G ⊗ P_R (a core with every
    input mode, as in the low-rank form), by the eigendecompositions of the three factors;
    ``eig_G`` = (eigenvalues, eigenvectors) of G."""
    PL = torch.einsum("IJa,IJc->ac", q.L, q.L)  # (a, a), M< = 1
    PR = torch.einsum("bIJ,dIJ->bd", q.R, q.R)  # (b, b), M> = 1
    (eL, QL), (eG, QG), (eR, QR) = torch.linalg.eigh(PL), eig_G, torch.linalg.eigh(PR)
    eL, eG, eR = eL.clamp_min(0), eG.clamp_min(0), eR.clamp_min(0)
    lam = ridge * float(eL.mean() * eG.mean() * eR.mean()) + 1e-300
    Y = q.rhs + lam * C_old  # (a, n, m, b)
    Yt = torch.einsum("anmb,aA,mM,bB->AnMB", Y, QL, QG, QR)
    denom = eL[:, None, None, None] * eG[None, None, :, None] * eR[None, None, None, :] + lam
    return torch.einsum("AnMB,aA,mM,bB->anmb", Yt / denom, QL, QG, QR)


def _apply_hessian(C, q: _Quadratic, G, topo: Topology, k: int) -> torch.Tensor:
    """𝓗 C matrix-free: project(expand(C) · G) → (a, n, m, b)."""
    return _project(_expand(C, q.L, q.R) @ G, q.L, q.R, topo, k)


def _solve_direct(q: _Quadratic, H: torch.Tensor, C_old: torch.Tensor, ridge: float):
    """argmin f(C) + λ‖C − C_old‖² (λ = ``ridge``·mean diag H) by one Cholesky, all rows at
    once: (H + λI) X = rhs + λ X_old. The proximal term pins directions H cannot see (a
    rank-deficient G or environment) at their current values."""
    a, n, m, b = q.rhs.shape
    p = a * m * b
    lam = ridge * float(H.diagonal().mean().clamp_min(0)) + 1e-300
    old = C_old.permute(0, 2, 3, 1).reshape(p, n)  # (a·m·b, n)
    rhs = q.rhs.permute(0, 2, 3, 1).reshape(p, n) + lam * old
    Hr = H + lam * torch.eye(p, dtype=H.dtype, device=H.device)
    chol, info = torch.linalg.cholesky_ex(Hr)
    if int(info) == 0:
        X = torch.cholesky_solve(rhs, chol)
    else:  # numerically indefinite: least squares on the symmetric system
        X = torch.linalg.lstsq(Hr, rhs).solution
    return X.reshape(a, m, b, n).permute(0, 3, 1, 2)  # (a, n, m, b)


def _solve_cg(q, C0, G, topo, k, iters: int) -> torch.Tensor:
    """Conjugate gradients on 𝓗 C = rhs from C0: each iterate lowers f (𝓗 is PSD), and the
    part of C0 in 𝓗's null space stays as it is."""
    C = C0.clone()
    res = q.rhs - _apply_hessian(C, q, G, topo, k)
    d = res.clone()
    rr = float((res * res).sum())
    tol = 1e-24 * max(float((q.rhs * q.rhs).sum()), 1e-300)
    for _ in range(iters):
        if rr <= tol:
            break
        Hd = _apply_hessian(d, q, G, topo, k)
        curv = float((d * Hd).sum())
        if curv <= 0:
            break
        alpha = rr / curv
        C = C + alpha * d
        res = res - alpha * Hd
        rr_new = float((res * res).sum())
        d = res + (rr_new / rr) * d
        rr = rr_new
    return C


def _als_update(W, WG, G, cores, topo, k, f_old, ridge, direct_limit, cg_iters, cache) -> float:
    """Replace core k by its least-squares optimum unless that raises f; returns f."""
    L, R = _left_env(cores, k), _right_env(cores, k)
    q = _Quadratic(L, R, _project(WG, L, R, topo, k))
    a, _, m, b = cores[k].shape
    if _takes_all_inputs(topo, k):
        if "eig_G" not in cache:
            cache["eig_G"] = torch.linalg.eigh(G)
        C_new = _solve_kron(q, cache["eig_G"], cores[k], ridge)
    elif a * m * b <= direct_limit and _hessian_plan(L, R, m) is not None:
        C_new = _solve_direct(q, _hessian(L, R, G, topo, k), cores[k], ridge)
    else:
        C_new = _solve_cg(q, cores[k], G, topo, k, cg_iters)
    f_new = activation_objective(W, _expand(C_new, L, R), G)
    if f_new <= f_old:
        cores[k] = C_new
        return f_new
    return f_old


def als_sweeps(
    W: torch.Tensor,
    G: torch.Tensor,
    cores: Sequence[torch.Tensor],
    topo: Topology,
    sweeps: int,
    ridge: float = 1e-10,
    direct_limit: int = 2048,
    cg_iters: int = 20,
) -> TTFit:
    """One-site ALS on f = tr((W − W_TT) G (W − W_TT)ᵀ), left→right then right→left per
    sweep, the gauge moved by QR between updates (which leaves the matrix unchanged).
    ``history`` holds f at the start and after every core update: it never increases."""
    W, G = W.to(F64), G.to(F64)
    WG = W @ G
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    cur = _right_canonical([c.to(F64) for c in cores])
    hist = [activation_objective(W, tt_to_dense(cur), G)]
    K = len(cur)
    order = list(range(K)) + list(range(K - 2, -1, -1))
    for _ in range(sweeps):
        for step, k in enumerate(order):
            hist.append(
                _als_update(W, WG, G, cur, topo, k, hist[-1], ridge, direct_limit, cg_iters, cache)
            )
            if step < K - 1:
                _left_orthogonalise(cur, k)
            elif k > 0:
                _right_orthogonalise(cur, k)
    return TTFit(cur, topo, hist)


def fit_activation(
    W: torch.Tensor,
    G: torch.Tensor,
    starts: Sequence[Sequence[torch.Tensor]],
    topo: Topology,
    sweeps: int,
    damp: float = 1e-6,
    ridge: float = 1e-10,
    direct_limit: int = 2048,
    cg_iters: int = 20,
) -> TTFit:
    """:func:`als_sweeps` on the damped Gram G + λI (see
    :func:`~qtensorformer.compress.linalg.damped_gram`) from the start (list of cores) of
    lowest objective. Returns the train of lowest undamped activation objective among the
    result and the starts (``objective``), so it is never worse than any start."""
    if not starts:
        raise ValueError("fit_activation needs at least one starting train")
    W64, G64 = W.to(F64), G.to(F64)
    Gd = damped_gram(G64, damp)
    damped = [activation_objective(W64, tt_to_dense(s), Gd) for s in starts]
    best = min(range(len(starts)), key=damped.__getitem__)
    fit = als_sweeps(W64, Gd, starts[best], topo, sweeps, ridge, direct_limit, cg_iters)
    fit.objective = activation_objective(W64, fit.to_dense(), G64)
    for s in starts:
        value = activation_objective(W64, tt_to_dense(s), G64)
        if value < fit.objective:
            fit = TTFit([c.to(F64) for c in s], topo, fit.history, value)
    return fit
