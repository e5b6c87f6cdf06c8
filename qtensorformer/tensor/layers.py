"""Tensor-train layers: TTLinear and TTEmbedding (with a tied output projection).

Index legend: B tokens (flattened batch), K cores, n_k output modes, m_k input modes,
r_k bond ranks, N = Π n_k (padded d_out), M = Π m_k (padded d_in).

Both layers hold a TT-matrix W (N × M) as cores G_k (r_{k-1}, n_k, m_k, r_k) and run y = x Wᵀ
by one of two paths with identical results:
  * ``"dense"``: materialise W, then one GEMM (cached in eval mode);
  * ``"tt"``: contract the input with the cores without building W (cores 2..K merged into a
    small block, then two GEMMs; without autograd, in cache-sized blocks of rows).
``path="auto"`` picks the path of lower estimated cost at the current batch size and rank:
FLOPs, the factorised ones weighted by the cost model :class:`TTCosts` (settable with
:func:`set_tt_costs`).

Ranks are *nested*: rank r uses the first r indices of every bond, so a trained layer can run
at any smaller rank; per-token ranks group the tokens so lower ranks cost fewer FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .._tracing import tracing
from .factorize import check_modes, default_n_modes, factorize
from .tt import full_ranks, tt_build_flops, tt_num_params, tt_split_flops, tt_svd, tt_to_dense

__all__ = [
    "TT_COSTS",
    "NestedRankSampler",
    "TTCosts",
    "TTEmbedding",
    "TTLinear",
    "TTMatrix",
    "set_tt_costs",
]

PATHS = ("auto", "dense", "tt")


@dataclass
class TTCosts:
    """How the TT layers price their two paths, in dense-GEMM FLOPs (hardware-dependent).

    ``flop``: one FLOP of the factorised contraction when the call records autograd (its GEMMs
    are skinnier than the dense one); ``element``: one element of the factorised path's
    intermediate T = x·R (written, then read back) when the call records autograd;
    ``blocked_flop``: one factorised FLOP without autograd (eval, inference), where the path
    runs in cache-sized row blocks and T never reaches memory. The defaults were measured on
    a 2-core AVX-512 VM (docs/RESULTS.md, "TT layer paths"; ``benchmarks/bench_tt.py``);
    on other hardware set your own with :func:`set_tt_costs`.
    """

    flop: float = 3.0
    element: float = 24.0
    blocked_flop: float = 1.5

    def __post_init__(self) -> None:
        for name in ("flop", "element", "blocked_flop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"TTCosts.{name} must be a number >= 0, got {v!r}")


#: The cost model every TT layer uses (change it with :func:`set_tt_costs`).
TT_COSTS = TTCosts()


def set_tt_costs(**costs: float) -> TTCosts:
    """Set fields of the TT layers' path-cost model (see :class:`TTCosts`); returns the old one.

    Example:
        >>> old = set_tt_costs(blocked_flop=1.2)
        >>> TT_COSTS.blocked_flop
        1.2
        >>> _ = set_tt_costs(**vars(old))
    """
    old = replace(TT_COSTS)
    new = replace(TT_COSTS, **costs)  # validates
    for name, value in vars(new).items():
        setattr(TT_COSTS, name, value)  # in place: every importer sees the new costs
    return old


#: Largest intermediate (elements) of the factorised path before the batch is chunked.
_MAX_INTERMEDIATE = 1 << 25

#: Without gradients the factorised path runs in blocks of rows whose intermediate T has
#: about this many elements (2 MiB in float32, at least :data:`_MIN_BLOCK_ROWS` rows), so T is
#: written and read back in cache (measured: docs/RESULTS.md, "TT layer paths").
_BLOCK_ELEMENTS = 1 << 19
_MIN_BLOCK_ROWS = 128

#: Materialised weights kept in eval mode, one per nested rank in use (per-token ranks).
_CACHE_RANKS = 16


def _n_modes(dims, row_modes, col_modes, n_modes) -> int:
    """Mode count: given, else that of the given modes, else the default for the dims."""
    if n_modes is not None:
        return n_modes
    if row_modes:
        return len(row_modes)
    if col_modes:
        return len(col_modes)
    return default_n_modes(*dims)


def _resolve_modes(dim, modes, n_modes, name):
    if modes is not None:
        return check_modes(modes, dim, name, allow_pad=True)
    return factorize(dim, n_modes).modes


class TTMatrix(nn.Module):
    """A trainable TT-matrix W (rows × cols) with nested ranks and two execution paths.

    Base of :class:`TTLinear` and :class:`TTEmbedding`; ``rows``/``cols`` are the logical
    sizes, the modes may multiply to more (zero padding, documented in ``factorize``).
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        rank: int | Sequence[int],
        *,
        row_modes: Sequence[int] | None = None,
        col_modes: Sequence[int] | None = None,
        n_modes: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        n_modes = _n_modes((rows, cols), row_modes, col_modes, n_modes)
        self.rows, self.cols = rows, cols
        self.row_modes = _resolve_modes(rows, row_modes, n_modes, "out_modes")
        self.col_modes = _resolve_modes(cols, col_modes, n_modes, "in_modes")
        if len(self.row_modes) != len(self.col_modes):
            raise ValueError(
                f"out_modes {self.row_modes} and in_modes {self.col_modes} must have the same "
                "number of modes"
            )
        K = len(self.row_modes)
        full = full_ranks(in_modes=self.col_modes, out_modes=self.row_modes)
        ranks = (rank,) * (K - 1) if isinstance(rank, int) else tuple(rank)
        if len(ranks) != K - 1:
            raise ValueError(f"rank has {len(ranks)} entries but the train has {K - 1} bonds")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
            raise ValueError(f"rank must be an int >= 1 (or one per bond), got {rank!r}")
        self.max_ranks = tuple(min(r, f) for r, f in zip(ranks, full, strict=True))
        r = (1, *self.max_ranks, 1)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(r[k], n, m, r[k + 1], device=device, dtype=dtype))
            for k, (n, m) in enumerate(zip(self.row_modes, self.col_modes, strict=True))
        )
        self.path = "auto"
        self._cache: dict[tuple[int, ...], tuple[tuple, torch.Tensor]] = {}
        self.reset_cores()

    # ------------------------------------------------------------------ init
    def reset_cores(self, target_std: float | None = None) -> None:
        """Random cores N(0, σ²) with Var(W_ij) = ``target_std``² (default 1/(3·cols): the
        variance of nn.Linear's default init): σ^(2K) · Π r_k = target variance."""
        var = target_std**2 if target_std is not None else 1.0 / (3 * self.cols)
        K = len(self.cores)
        sigma = (var / math.prod(self.max_ranks)) ** (1 / (2 * K))
        with torch.no_grad():
            for c in self.cores:
                c.normal_(0.0, sigma)

    def load_tt(self, cores: Sequence[torch.Tensor]) -> None:
        """Copy decomposed cores (e.g. from :func:`tt_svd`) into the layer, zero-filling bond
        indices beyond their ranks."""
        with torch.no_grad():
            for dst, src in zip(self.cores, cores, strict=True):
                if src.shape[1:3] != dst.shape[1:3]:
                    raise ValueError(f"core modes {tuple(src.shape)} do not fit {tuple(dst.shape)}")
                dst.zero_()
                a, b = min(src.shape[0], dst.shape[0]), min(src.shape[3], dst.shape[3])
                dst[:a, :, :, :b] = src[:a, :, :, :b]

    # ------------------------------------------------------------------ ranks
    def ranks_at(self, rank: int | None) -> tuple[int, ...]:
        """Per-bond ranks used at nested rank ``rank`` (None = full)."""
        if rank is None:
            return self.max_ranks
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be an int >= 1, got {rank!r}")
        return tuple(min(rank, r) for r in self.max_ranks)

    def _cores_at(self, ranks: tuple[int, ...]) -> list[torch.Tensor]:
        r = (1, *ranks, 1)
        return [c[: r[k], :, :, : r[k + 1]] for k, c in enumerate(self.cores)]

    def decayed_parameters(self) -> list[nn.Parameter]:
        """The parameters that take weight decay: the cores (not the bias)."""
        return list(self.cores)

    def num_params(self, rank: int | None = None) -> int:
        """Parameters of the train at nested rank ``rank`` (None: all stored)."""
        return tt_num_params(
            in_modes=self.col_modes, out_modes=self.row_modes, ranks=self.ranks_at(rank)
        )

    # ------------------------------------------------------------------ dense W
    def _can_cache(self) -> bool:
        if self.training or tracing():  # a traced call must build W from the cores
            return False
        return not (torch.is_grad_enabled() and any(c.requires_grad for c in self.cores))

    def _cache_key(self, ranks) -> tuple:
        # A core's _version counter moves on every in-place change (optimizer steps,
        # load_state_dict's copy_), and id() changes if a Parameter is replaced.
        return (ranks, *((id(c), c._version, c.dtype, c.device) for c in self.cores))

    def _materialise(self, ranks: tuple[int, ...]) -> torch.Tensor:
        """W (rows, cols) at per-bond ``ranks``, built from the cores (padding dropped)."""
        return tt_to_dense(self._cores_at(ranks))[: self.rows, : self.cols]

    def weight_at(self, ranks: tuple[int, ...]) -> torch.Tensor:
        """W (rows, cols) at the given per-bond ranks (cached per rank in eval mode)."""
        if not self._can_cache():
            return self._materialise(ranks)
        key = self._cache_key(ranks)
        hit = self._cache.get(ranks)
        if hit is not None and hit[0] == key:
            return hit[1]
        w = self._materialise(ranks)
        if len(self._cache) >= _CACHE_RANKS and ranks not in self._cache:
            self._cache.pop(next(iter(self._cache)))  # oldest rank out
        self._cache[ranks] = (key, w)
        return w

    def cached(self, ranks: tuple[int, ...]) -> bool:
        """Whether W at these ranks is cached and current."""
        hit = self._cache.get(ranks)
        return self._can_cache() and hit is not None and hit[0] == self._cache_key(ranks)

    # ------------------------------------------------------------------ FLOPs
    def path_flops(self, batch: int, rank: int | None = None) -> dict[str, int]:
        """FLOPs of each path for ``batch`` rows at nested rank ``rank``.

        In eval mode (no gradients to the cores) the dense path's weight is cached, so its
        one-off materialisation is left out: the cost is the GEMM alone.
        """
        ranks = self.ranks_at(rank)
        gemm = 2 * batch * self.rows * self.cols
        dense = gemm
        if not self._can_cache():
            dense += tt_build_flops(in_modes=self.col_modes, out_modes=self.row_modes, ranks=ranks)
        tt = tt_split_flops(
            in_modes=self.col_modes, out_modes=self.row_modes, ranks=ranks, batch=batch
        )
        return {"dense": dense, "tt": tt}

    def flops(self, tokens: int, rank: int | None = None) -> int:
        """Forward FLOPs on ``tokens`` rows at nested ``rank``: the GEMM(s) of the path the
        layer takes for that call (the dense path includes building W when it is not cached),
        plus the bias (a multiply-add is 2 FLOPs)."""
        if tokens <= 0:
            return 0
        f = self.path_flops(tokens, rank)[self.choose_path(tokens, rank)]
        return f + (tokens * self.rows if getattr(self, "bias", None) is not None else 0)

    def path_costs(
        self, batch: int, rank: int | None = None, graph: bool | None = None
    ) -> dict[str, float]:
        """Estimated cost of each path in dense-GEMM FLOPs: the dense path's FLOPs; the
        factorised path's FLOPs × ``TT_COSTS.flop`` plus ``TT_COSTS.element`` per element of its
        intermediate (``batch · m_1 · r_1 · N'``) when the call records autograd (``graph``;
        default: whether the cores need gradients now), else its FLOPs ×
        ``TT_COSTS.blocked_flop`` (see :class:`TTCosts`)."""
        f = self.path_flops(batch, rank)
        if graph is None:
            graph = self._needs_graph()
        costs = TT_COSTS
        if not graph:
            return {"dense": float(f["dense"]), "tt": costs.blocked_flop * f["tt"]}
        inter = batch * self._intermediate_per_row(self.ranks_at(rank))
        return {"dense": float(f["dense"]), "tt": costs.flop * f["tt"] + costs.element * inter}

    def _intermediate_per_row(self, ranks: tuple[int, ...]) -> int:
        """Entries per input row of the factorised path's intermediate T: m_1 · r_1 · N'
        (0 for a single core, which needs none)."""
        if not ranks:
            return 0
        return self.col_modes[0] * ranks[0] * math.prod(self.row_modes[1:])

    def choose_path(self, batch: int, rank: int | None = None, graph: bool | None = None) -> str:
        """The path for a call: ``self.path`` if forced, else the one of lower
        :meth:`path_costs`."""
        if self.path != "auto":
            return self.path
        c = self.path_costs(batch, rank, graph)
        return "tt" if c["tt"] < c["dense"] else "dense"

    # ------------------------------------------------------------------ matvec
    def _factors(self, ranks: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The factorised path's two operands at ``ranks``: G_1 as (n_1, m_1·r_1) and cores
        2..K contracted into R, laid out as (M', r_1·N') (N' = N/n_1, M' = M/m_1)."""
        cores = self._cores_at(ranks)
        n1, m1 = self.row_modes[0], self.col_modes[0]
        R = _right_block(cores[1:])  # (r_1, N', M')
        r1, Np, Mp = R.shape
        Rm = R.permute(2, 0, 1).reshape(Mp, r1 * Np)  # (M', r_1·N')
        G1 = cores[0][0].reshape(n1, m1 * r1)  # (n_1, m_1·r_1)
        return G1, Rm

    def _contract(self, x: torch.Tensor, ranks: tuple[int, ...]) -> torch.Tensor:
        """y = x Wᵀ without materialising W: x (B, M) → (B, N), differentiable.

        One GEMM and one broadcast batched matmul, with no permute of the activations:
            T = x.view(B·m_1, M') @ R → (B, m_1·r_1, N');
            y = G_1 (n_1, m_1·r_1) @ T → (B, n_1, N').
        Measured on the dev VM (4096 tokens, eval forward, time / dense GEMM time) against one
        opt_einsum-ordered einsum over the whole network: 512→2048 ranks 2/4/8: 0.34/0.54/0.87
        vs 0.49/1.31/2.12; 768→3072: 0.26/0.42/0.85 vs 0.58/1.26/3.37. The second product is
        left to ``torch.matmul``, which folds it into one GEMM when G_1 needs a gradient (an
        explicit ``bmm`` on the expanded G_1 ran 1.2–4× slower forward + backward).
        """
        if len(self.row_modes) == 1:
            return x @ self._cores_at(ranks)[0][0, :, :, 0].T
        n1, m1 = self.row_modes[0], self.col_modes[0]
        G1, Rm = self._factors(ranks)
        r1, Mp, Np = ranks[0], Rm.shape[0], Rm.shape[1] // ranks[0]
        # T has m_1·r_1·N' entries per row: at high ranks that is far more than the output, so
        # rows are processed in chunks that keep T under _MAX_INTERMEDIATE elements.
        step = max(1, _MAX_INTERMEDIATE // self._intermediate_per_row(ranks))
        out = []
        for xc in x.split(step):
            b = xc.shape[0]
            T = xc.reshape(b * m1, Mp) @ Rm  # (b·m_1, r_1·N')
            out.append(torch.matmul(G1, T.reshape(b, m1 * r1, Np)).reshape(b, n1 * Np))
        return out[0] if len(out) == 1 else torch.cat(out)

    def _contract_into(
        self,
        x: torch.Tensor,
        ranks: tuple[int, ...],
        out: torch.Tensor,
        index: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        """out[index] = x[index] Wᵀ (+ bias) by the factorised path, without autograd.

        x (B, cols) unpadded; out (B, rows); ``index`` the rows to compute (None: all). Rows run
        in blocks of about :data:`_BLOCK_ELEMENTS` entries of T: each block's rows are gathered,
        its T is used while still in cache, and its output is written (bias added) straight
        into its rows of ``out``, with no group- or output-sized temporary.
        """
        n1, m1 = self.row_modes[0], self.col_modes[0]
        N = math.prod(self.row_modes)
        G1, Rm = self._factors(ranks)
        r1, Mp, Np = ranks[0], Rm.shape[0], Rm.shape[1] // ranks[0]
        step = max(_MIN_BLOCK_ROWS, _BLOCK_ELEMENTS // self._intermediate_per_row(ranks))
        direct = index is None and N == self.rows  # out's rows are the blocks' own output
        buf = None if direct else out.new_empty(min(step, x.shape[0]), n1, Np)  # one block
        n_rows = x.shape[0] if index is None else index.numel()
        for i in range(0, n_rows, step):
            rows = None if index is None else index[i : i + step]
            xb = x[i : i + step] if rows is None else x.index_select(0, rows)  # (b, cols)
            xb = self._pad_input(xb)  # (b, M)
            b = xb.shape[0]
            T = xb.reshape(b * m1, Mp) @ Rm  # (b·m_1, r_1·N')
            yb = out[i : i + b].view(b, n1, Np) if direct else buf[:b]
            torch.bmm(G1.expand(b, n1, m1 * r1), T.view(b, m1 * r1, Np), out=yb)  # (b, n_1, N')
            y2 = yb.view(b, N)[:, : self.rows]  # (b, rows), padding dropped
            if bias is not None:
                y2.add_(bias)
            if rows is not None:
                out.index_copy_(0, rows, y2)
            elif not direct:
                out[i : i + b].copy_(y2)

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, cols) → (B, M): zero columns for the input modes' padding (none when
        the modes multiply to ``cols``)."""
        M = math.prod(self.col_modes)
        return x if M == self.cols else F.pad(x, (0, M - self.cols))

    def _blocked(self, graph: bool) -> bool:
        """Whether the factorised path runs blocked (:meth:`_contract_into`): no autograd to
        record, and at least two cores."""
        return not graph and len(self.row_modes) > 1

    def _needs_graph(self, x: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> bool:
        """Whether a call must record autograd (or is traced), so the blocked in-place
        factorised path cannot run (without ``x``: whether the cores need gradients now)."""
        if tracing():
            return True
        if not torch.is_grad_enabled():
            return False
        return (
            any(c.requires_grad for c in self.cores)
            or (x is not None and x.requires_grad)
            or (bias is not None and bias.requires_grad)
        )

    def matvec(
        self,
        x: torch.Tensor,
        rank: int | None = None,
        path: str | None = None,
        bias: torch.Tensor | None = None,
    ):
        """y = x Wᵀ (+ bias) for x (B, cols) at nested rank ``rank`` → (B, rows)."""
        ranks = self.ranks_at(rank)
        graph = self._needs_graph(x, bias)
        path = path or self.choose_path(x.shape[0], rank, graph)
        if path not in PATHS[1:]:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if path == "dense":
            return F.linear(x, self.weight_at(ranks), bias)  # bias fused into the GEMM
        if self._blocked(graph):
            out = x.new_empty(x.shape[0], self.rows)
            self._contract_into(x, ranks, out, bias=bias)
            return out
        y = self._contract(self._pad_input(x), ranks)
        y = y[:, : self.rows] if y.shape[1] != self.rows else y
        # in place: y is this call's own buffer, and saves a pass over a fresh output
        # (2–20% of the factorised path's time in eval, benchmarks/bench_tt.py shapes)
        return y if bias is None else y.add_(bias)

    def grouped_matvec(
        self, x: torch.Tensor, ranks: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-row nested ranks: rows with equal rank run together at that rank.

        Equals running every row alone at its rank; lower ranks cost fewer FLOPs on the
        ``"tt"`` path.
        """
        if ranks.shape != x.shape[:1]:
            raise ValueError(
                f"per-token ranks must have shape {tuple(x.shape[:1])}, got {tuple(ranks.shape)}"
            )
        values = torch.unique(ranks).tolist()  # sorted distinct ranks (one sync)
        if values and values[0] < 1:
            raise ValueError("per-token ranks must be >= 1")
        if len(values) <= 1:  # one rank, or no rows at all
            return self.matvec(x, int(values[0]) if values else None, bias=bias)
        graph = self._needs_graph(x, bias)
        out = None
        for r in values:
            idx = (ranks == r).nonzero().squeeze(1)
            path = self.choose_path(idx.numel(), int(r), graph)
            if path == "tt" and self._blocked(graph):
                if out is None:
                    out = x.new_empty(x.shape[0], self.rows)
                # gathers and scatters one cache-sized block of rows at a time
                self._contract_into(x, self.ranks_at(int(r)), out, idx, bias)
                continue
            y = self.matvec(x.index_select(0, idx), int(r), path, bias)
            if out is None:
                out = y.new_empty(x.shape[0], y.shape[1])
            # each group's rows go straight to their places: no concatenation pass
            out.index_copy_(0, idx, y)
        return out


def _right_block(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract cores (r_{k-1}, n_k, m_k, r_k), the last with r_K = 1, into (r_first, N', M')."""
    out = cores[0]  # (a, N, M, r)
    for c in cores[1:]:
        a, N, M, _ = out.shape
        _, n, m, s = c.shape
        out = torch.einsum("aNMr,rnms->aNnMms", out, c).reshape(a, N * n, M * m, s)
    return out[..., 0]


class TTLinear(TTMatrix):
    """Linear layer y = x Wᵀ + b with W (out_features × in_features) a tensor train.

    ``forward(x, rank=None | int | LongTensor)``: ``rank`` None runs at full rank; an int runs
    the nested truncation; a LongTensor of shape ``x.shape[:-1]`` gives each token its rank.

    Example:
        >>> import torch
        >>> layer = TTLinear(512, 2048, rank=16)
        >>> layer.in_modes, layer.out_modes
        ((8, 8, 8), (16, 16, 8))
        >>> y = layer(torch.randn(4, 10, 512), rank=8)
        >>> y.shape, layer.num_params() < 512 * 2048
        (torch.Size([4, 10, 2048]), True)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int | Sequence[int],
        bias: bool = True,
        *,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        n_modes: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            out_features,
            in_features,
            rank,
            row_modes=out_modes,
            col_modes=in_modes,
            n_modes=n_modes,
            device=device,
            dtype=dtype,
        )
        self.in_features, self.out_features = in_features, out_features
        if bias:
            bound = 1 / math.sqrt(in_features)
            self.bias = nn.Parameter(
                torch.empty(out_features, device=device, dtype=dtype).uniform_(-bound, bound)
            )
        else:
            self.register_parameter("bias", None)

    @property
    def in_modes(self) -> tuple[int, ...]:
        return self.col_modes

    @property
    def out_modes(self) -> tuple[int, ...]:
        return self.row_modes

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        rank: int | Sequence[int] | None = None,
        max_params: int | None = None,
        tol: float | None = None,
        *,
        in_modes: Sequence[int] | None = None,
        out_modes: Sequence[int] | None = None,
        n_modes: int | None = None,
    ) -> TTLinear:
        """TT-SVD of a trained ``nn.Linear`` (exactly one of ``rank``, ``max_params``, ``tol``;
        none = exact). The returned layer's stored ranks are the decomposition's ranks."""
        W = linear.weight.detach()
        d_out, d_in = W.shape
        k = _n_modes((d_in, d_out), out_modes, in_modes, n_modes)
        im = _resolve_modes(d_in, in_modes, k, "in_modes")
        om = _resolve_modes(d_out, out_modes, k, "out_modes")
        Wp = F.pad(W.double(), (0, math.prod(im) - d_in, 0, math.prod(om) - d_out))
        dec = tt_svd(Wp, in_modes=im, out_modes=om, rank=rank, max_params=max_params, tol=tol)
        layer = cls(
            d_in,
            d_out,
            dec.ranks,
            linear.bias is not None,
            in_modes=im,
            out_modes=om,
            device=W.device,
            dtype=W.dtype,
        )
        layer.load_tt([c.to(W.dtype) for c in dec.cores])
        layer.decomposition = dec
        if linear.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(linear.bias)
        return layer

    def to_dense(self, rank: int | None = None) -> torch.Tensor:
        """The weight (out_features, in_features) at nested rank ``rank``."""
        return self._materialise(self.ranks_at(rank))

    def forward(self, x: torch.Tensor, rank: int | torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, expected in_features={self.in_features}"
            )
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (B, d_in)
        if isinstance(rank, torch.Tensor):
            if rank.shape != lead:
                raise ValueError(
                    f"per-token ranks must have the input's leading shape {tuple(lead)}, got "
                    f"{tuple(rank.shape)}"
                )
            y = self.grouped_matvec(x2, rank.reshape(-1), self.bias)
        else:
            y = self.matvec(x2, rank, bias=self.bias)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"in_modes={self.in_modes}, out_modes={self.out_modes}, ranks={self.max_ranks}, "
            f"bias={self.bias is not None}"
        )


class TTEmbedding(TTMatrix):
    """Embedding table E (num_embeddings × embedding_dim) as a tensor train.

    Lookup contracts only the cores' slices of each token's index digits (never the full
    table); :meth:`project` gives tied output logits h Eᵀ through the same cores.

    Example:
        >>> import torch
        >>> emb = TTEmbedding(33278, 128, rank=16)
        >>> emb(torch.tensor([[0, 5, 33277]])).shape
        torch.Size([1, 3, 128])
        >>> emb.project(torch.randn(2, 128)).shape
        torch.Size([2, 33278])
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        rank: int | Sequence[int],
        *,
        vocab_modes: Sequence[int] | None = None,
        dim_modes: Sequence[int] | None = None,
        n_modes: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            num_embeddings,
            embedding_dim,
            rank,
            row_modes=vocab_modes,
            col_modes=dim_modes,
            n_modes=n_modes,
            device=device,
            dtype=dtype,
        )
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim

    def reset_cores(self, target_std: float | None = None) -> None:
        """Default: entries with variance 1 / embedding_dim (unit-norm rows on average)."""
        super().reset_cores(target_std if target_std is not None else self.cols**-0.5)

    def forward(self, ids: torch.Tensor, rank: int | None = None) -> torch.Tensor:
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor, got {ids.dtype}")
        if (
            not tracing()
            and ids.numel()
            and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings)
        ):
            raise ValueError(
                f"token ids must lie in [0, {self.num_embeddings}), got range "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        flat = ids.reshape(-1).long()
        cores = self._cores_at(self.ranks_at(rank))
        # digits of each id in the vocabulary's mixed radix (mode 1 most significant)
        digits = []
        rem = flat
        for v in reversed(self.row_modes):
            digits.append(rem % v)
            rem = rem // v
        digits.reverse()
        out = cores[0][0].index_select(0, digits[0])  # (T, d_1, r_1)
        for c, dgt in zip(cores[1:], digits[1:], strict=True):
            g = c.permute(1, 0, 2, 3).index_select(0, dgt)  # (T, r_{k-1}, d_k, r_k)
            T, D, r = out.shape
            out = torch.bmm(out, g.reshape(T, r, -1)).reshape(T, D * g.shape[2], g.shape[3])
        out = out.squeeze(-1)[:, : self.embedding_dim]
        return out.reshape(*ids.shape, self.embedding_dim)

    def project(self, h: torch.Tensor, rank: int | None = None) -> torch.Tensor:
        """Tied output projection: logits h Eᵀ, (..., embedding_dim) → (..., num_embeddings)."""
        if h.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"hidden states have last dimension {h.shape[-1]}, expected embedding_dim="
                f"{self.embedding_dim}"
            )
        lead = h.shape[:-1]
        y = self.matvec(h.reshape(-1, self.embedding_dim), rank)
        return y.reshape(*lead, self.num_embeddings)

    def to_dense(self, rank: int | None = None) -> torch.Tensor:
        """The full table (num_embeddings, embedding_dim) at nested ``rank``, materialised
        from the cores."""
        return self._materialise(self.ranks_at(rank))

    @property
    def weight(self) -> torch.Tensor:
        """The full table (num_embeddings, embedding_dim), as ``nn.Embedding.weight`` is;
        materialised from the cores on every access (differentiable, not a Parameter)."""
        return self.to_dense()


class NestedRankSampler:
    """Samples a training rank per step (nested dropout / DyLoRA style).

    With probability ``p_full`` the full rank, else uniform in [min_rank, max_rank]. Training
    at sampled truncations keeps every truncation a good model.

    Example:
        >>> s = NestedRankSampler(2, 16, seed=0)
        >>> all(2 <= s() <= 16 for _ in range(100))
        True
    """

    def __init__(self, min_rank: int, max_rank: int, p_full: float = 0.25, seed: int | None = None):
        if not 1 <= min_rank <= max_rank:
            raise ValueError(f"need 1 <= min_rank <= max_rank, got {min_rank}, {max_rank}")
        if not 0.0 <= p_full <= 1.0:
            raise ValueError(f"p_full must be in [0, 1], got {p_full}")
        self.min_rank, self.max_rank, self.p_full = min_rank, max_rank, p_full
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def __call__(self) -> int:
        if float(torch.rand((), generator=self._gen)) < self.p_full:
            return self.max_rank
        return int(torch.randint(self.min_rank, self.max_rank + 1, (), generator=self._gen))
