"""Causal self-attention with classical, quantum-kernel, or routed (mixed) score paths.

Index legend: b batch, n sequence, h heads, e head width, d = h·e model width, R gathered rows.

* no quantum path: softmax(q kᵀ/√e) (torch's fused SDPA unless the attention entropy is
  needed, then an explicit softmax);
* quantum path without a router: every query uses :class:`QuantumKernelAttention`;
* with a :class:`SelectiveQuantumRouter`: routed query rows are *gathered* (per sequence, padded
  to the longest set) and only they run the quantum path; the other rows run softmax
  attention; outputs are scattered back. With ``entropy_source="attention"`` the routing score
  is the entropy of each row's softmax distribution, so the softmax runs for every row first
  and the routed rows are then replaced.

With a key/value cache (:class:`LayerCache`: ``past`` in, ``AttentionOutput.cache`` out) the
call handles only the n new positions P … P+n−1 against all P+n keys; every path above is
per query row, so the outputs equal those of the full sequence. The quantum path's key states
are cached too (a key's state depends on that key alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..tensor.layers import TTLinear
from ._flops import linear_flops
from .kernel_attention import KernelAttentionOutput, QuantumKernelAttention
from .router import RouterOutput, SelectiveQuantumRouter

__all__ = ["AttentionOutput", "CausalSelfAttention", "LayerCache"]

#: FLOPs per score of the softmax (max, subtract, exp, sum, divide).
SOFTMAX_FLOPS = 5


@dataclass
class LayerCache:
    """One attention layer's key/value cache: ``k`` and ``v`` (b, h, P, e) of the P positions
    seen so far; ``key_states`` (b, h, P', D), P' ≤ P, the quantum path's encoded states of
    the first P' keys (None before that path first ran)."""

    k: torch.Tensor
    v: torch.Tensor
    key_states: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.k.shape[2]


class AttentionOutput(NamedTuple):
    """``y`` (b, n, d); ``entropy`` (b, n) mean-over-heads entropy of the softmax rows (nats;
    only when requested); ``route``: the router's decision (None without a router); what the
    call spent: ``flops`` (all of it), ``sim_flops`` (the circuit-simulation share of the
    quantum path) and ``circuits`` (states prepared); ``cache``: the keys and values up to
    this call's last position (only with ``use_cache``)."""

    y: torch.Tensor
    entropy: torch.Tensor | None
    route: RouterOutput | None
    flops: int = 0
    sim_flops: int = 0
    circuits: int = 0
    cache: LayerCache | None = None


def _causal_mask(n: int, P: int, device: torch.device) -> torch.Tensor:
    """(n, P + n) bool: query row i (position P + i) may attend key j when j <= P + i."""
    keys = torch.arange(P + n, device=device)
    return keys[None] <= (P + torch.arange(n, device=device))[:, None]


def _spent(flops: int, kq: KernelAttentionOutput) -> tuple[int, int, int, torch.Tensor | None]:
    """After a quantum-kernel call: total FLOPs, its simulation FLOPs and circuits, and the
    key states it leaves for the cache."""
    return flops + kq.flops, kq.sim_flops, kq.circuits, kq.key_states


def _gather_rows(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the True entries of ``sel`` (b, n), per row, padded: idx (b, R), valid."""
    counts = sel.sum(1)
    R = int(counts.max()) if sel.numel() else 0
    order = torch.argsort((~sel).to(torch.int8), dim=1, stable=True)  # selected first, in order
    idx = order[:, :R]
    valid = torch.arange(R, device=sel.device)[None] < counts[:, None]
    return idx, valid


def _gather_queries(
    q: torch.Tensor, rows: torch.Tensor, past: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query rows (b, h, R, e) at rows ``rows`` (b, R) of q (b, h, n, e), and their causal
    mask (b, 1, R, past + n): key j is allowed for row i (position past + i) when
    j <= past + i."""
    b, h, n, e = q.shape
    qg = q.gather(2, rows[:, None, :, None].expand(b, h, rows.shape[1], e))
    pos = torch.arange(past + n, device=q.device)
    return qg, (pos[None, None, :] <= (past + rows)[:, :, None])[:, None]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; see the module docstring for the paths.

    ``forward(x, hardness=None, need_entropy=False, past=None, use_cache=False)`` →
    :class:`AttentionOutput`. ``hardness`` (b, n) in [0, 1] feeds the router (quantum-score
    routing); without it a router routes on the attention entropy normalised by log(number of
    keys). The output carries the call's FLOPs and circuits. ``past`` (a :class:`LayerCache`)
    holds the earlier positions' keys and values; ``use_cache`` returns the updated cache.

    Example:
        >>> import torch
        >>> att = CausalSelfAttention(32, 4)
        >>> att(torch.randn(2, 6, 32)).y.shape
        torch.Size([2, 6, 32])
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        tt_rank: int | None = None,
        quantum: QuantumKernelAttention | None = None,
        router: SelectiveQuantumRouter | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if router is not None and quantum is None:
            raise ValueError("a router needs the quantum-kernel path to route to")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        if tt_rank is None:
            self.qkv: nn.Module = nn.Linear(d_model, 3 * d_model)
            self.out: nn.Module = nn.Linear(d_model, d_model)
        else:
            self.qkv = TTLinear(d_model, 3 * d_model, tt_rank)
            self.out = TTLinear(d_model, d_model, tt_rank)
        self.quantum = quantum
        self.router = router

    def _softmax_full(self, q, k, v):
        """Explicit causal softmax attention of the n query rows (the last n positions)
        against every key: output (b, h, n, e), probabilities (b, h, n, N)."""
        n, N = q.shape[2], k.shape[2]
        causal = _causal_mask(n, N - n, q.device)
        scores = (q @ k.mT) * (1.0 / math.sqrt(self.head_dim))
        p = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)
        return p @ v, p

    def _softmax_fused(self, q, k, v):
        """Causal softmax attention of the last n positions by torch's fused SDPA."""
        n, N = q.shape[2], k.shape[2]
        if n == N:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(n, N - n, q.device))

    def forward(
        self,
        x: torch.Tensor,
        hardness: torch.Tensor | None = None,
        need_entropy: bool = False,
        past: LayerCache | None = None,
        use_cache: bool = False,
    ) -> AttentionOutput:
        b, n, d = x.shape
        h, e = self.n_heads, self.head_dim
        T = b * n
        q, k, v = self.qkv(x).view(b, n, 3, h, e).permute(2, 0, 3, 1, 4)  # 3 × (b, h, n, e)
        P = 0 if past is None else past.length
        if past is not None:
            k, v = torch.cat([past.k, k], 2), torch.cat([past.v, v], 2)  # (b, h, P + n, e)
        N = P + n
        ks = None if past is None else past.key_states  # quantum path's key states
        flops = linear_flops(self.qkv, T) + linear_flops(self.out, T)
        score_flops = (4 * e + SOFTMAX_FLOPS) * b * h  # per (query row, key) pair
        circuits = sim = 0
        entropy = route = None
        pos = torch.arange(P, N, device=x.device)  # the rows' positions
        all_rows = torch.arange(n, device=x.device).expand(b, n)  # every row, ungathered
        want_entropy = need_entropy or (self.router is not None and hardness is None)

        if want_entropy or (self.quantum is None):
            if want_entropy:
                yc, p = self._softmax_full(q, k, v)
                ent = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)
                entropy = ent.mean(1)  # (b, n)
            else:
                yc = self._softmax_fused(q, k, v)
            flops += score_flops * n * N
            y = yc.transpose(1, 2).reshape(T, d)  # (b·n, d)
            if self.router is not None:
                if hardness is None:
                    hardness = entropy / torch.log(pos + 1.0).clamp_min(1e-12)
                route = self.router(hardness)
                qrows, qvalid = _gather_rows(route.routed)
                if qrows.shape[1]:
                    yq, kq = self._quantum_rows(q, k, v, qrows, ks)
                    flops, sim, circuits, ks = _spent(flops, kq)
                    y = y * (1 - route.gate).reshape(T, 1)
                    flat = (torch.arange(b, device=x.device)[:, None] * n + qrows)[qvalid]
                    gq = route.gate.gather(1, qrows)[qvalid][:, None]
                    y = y.index_copy(0, flat, yq[qvalid] * gq)
            elif self.quantum is not None:  # entropy requested, every row on the quantum path
                y, kq = self._quantum_rows(q, k, v, all_rows, ks)
                y, (flops, sim, circuits, ks) = y.reshape(T, d), _spent(flops, kq)
        elif self.router is None:  # every row on the quantum path
            y, kq = self._quantum_rows(q, k, v, all_rows, ks)
            y, (flops, sim, circuits, ks) = y.reshape(T, d), _spent(flops, kq)
        else:  # routed by an external score: gather each set, run its path only
            route = self.router(hardness)
            parts_idx, parts_val = [], []
            arange_b = torch.arange(b, device=x.device)[:, None]
            qrows, qvalid = _gather_rows(route.routed)
            if qrows.shape[1]:
                yq, kq = self._quantum_rows(q, k, v, qrows, ks)
                flops, sim, circuits, ks = _spent(flops, kq)
                gq = route.gate.gather(1, qrows)[qvalid][:, None]
                parts_idx.append((arange_b * n + qrows)[qvalid])
                parts_val.append(yq[qvalid] * gq)
            crows, cvalid = _gather_rows(~route.routed)
            if crows.shape[1]:
                R = crows.shape[1]
                qc, allowed = _gather_queries(q, crows, P)
                yc = F.scaled_dot_product_attention(qc, k, v, attn_mask=allowed)
                flops += score_flops * R * N
                gc = (1 - route.gate).gather(1, crows)[cvalid][:, None]
                parts_idx.append((arange_b * n + crows)[cvalid])
                parts_val.append(yc.transpose(1, 2).reshape(b, R, d)[cvalid] * gc)
            vals = torch.cat(parts_val)
            y = vals.new_zeros(T, d).index_copy(0, torch.cat(parts_idx), vals)
        cache = LayerCache(k, v, ks) if use_cache else None
        out = self.out(y.view(b, n, d))
        return AttentionOutput(out, entropy, route, flops, sim, circuits, cache)

    def _quantum_rows(
        self, q, k, v, rows, key_states=None
    ) -> tuple[torch.Tensor, KernelAttentionOutput]:
        """Quantum-kernel outputs (b, R, d) for gathered query rows ``rows`` (b, R) of the
        last q.shape[2] positions, and the kernel call's output (its costs and key states;
        ``key_states``: those of the first keys, already computed)."""
        b, h, n, e = q.shape
        R = rows.shape[1]
        qg, allowed = _gather_queries(q, rows, k.shape[2] - n)
        out = self.quantum(qg, k, v, allowed, key_states)  # y: (b, h, R, e)
        return out.y.transpose(1, 2).reshape(b, R, h * e), out
