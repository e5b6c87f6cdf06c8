"""One Q-TensorFormer block (pre-LayerNorm, residual):

    [x += QuantumFeatureEncoder(LN_q(x))  → score S_t]        (use_quantum_encoder)
    x += Attention(LN_1(x); router on S_t / S_max)            (quantum path: use_quantum_attention)
    x += FFN(LN_2(x); rank r_t = RankScheduler(S_t))          (TT: use_tt_ffn; DARUAN: use_qkan)

Index legend: b batch, n sequence, d model width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from ..quantum.circuits import circuit_flops
from ..quantum.encoder import QuantumFeatureEncoder
from .attention import CausalSelfAttention, LayerCache
from .ffn import FeedForward
from .kernel_attention import QuantumKernelAttention
from .rank import RankScheduler
from .router import SelectiveQuantumRouter
from .stats import LayerStats

__all__ = ["BlockOutput", "QTensorFormerBlock"]


class BlockOutput(NamedTuple):
    """``x`` (b, n, d) the block's output; ``stats``: what it decided and spent;
    ``aux``: its unweighted auxiliary losses by name; ``cache``: its attention's keys and
    values up to this call's last position (only with ``use_cache``)."""

    x: torch.Tensor
    stats: LayerStats
    aux: dict[str, torch.Tensor]
    cache: LayerCache | None = None


class QTensorFormerBlock(nn.Module):
    """A transformer block with every pillar behind a :class:`~qtensorformer.ModelConfig`
    switch. ``forward(x, past=None, use_cache=False)`` → :class:`BlockOutput`
    ``(x, stats, aux, cache)``; ``past`` is the attention's :class:`~qtensorformer.nn.LayerCache`
    of the earlier positions (every other part of the block works per token)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.needs_score = cfg.use_adaptive_rank or cfg.use_selective_routing
        self.quantum_score = self.needs_score and cfg.entropy_source == "quantum"
        if cfg.use_quantum_encoder:
            self.ln_q = nn.LayerNorm(d)
            self.encoder = QuantumFeatureEncoder(
                d,
                cfg.n_qubits,
                cfg.n_circuit_layers,
                cfg.ansatz,
                entropy="von_neumann" if self.quantum_score else "none",
            )
        else:
            self.ln_q = self.encoder = None
        quantum = (
            QuantumKernelAttention(
                cfg.n_heads,
                cfg.head_dim,
                cfg.n_qubits,
                cfg.n_circuit_layers,
                cfg.ansatz,
                cfg.kernel_norm,
            )
            if cfg.use_quantum_attention
            else None
        )
        router = (
            SelectiveQuantumRouter(cfg.route_fraction, cfg.router_tau)
            if cfg.use_selective_routing
            else None
        )
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(
            d, cfg.n_heads, cfg.tt_rank if cfg.use_tt_attention else None, quantum, router
        )
        self.ln2 = nn.LayerNorm(d)
        self.rank = (
            RankScheduler(cfg.r_min, cfg.r_max, cfg.alpha, step=cfg.rank_step)
            if cfg.use_adaptive_rank
            else None
        )
        act = "kan" if cfg.kan_grid is not None else ("daruan" if cfg.use_qkan else "gelu")
        self.ffn = FeedForward(
            d,
            cfg.d_ff,
            cfg.tt_rank if cfg.use_tt_ffn else None,
            act,
            cfg.qkan_reps,
            cfg.kan_grid or 32,
            cfg.qkan_base,
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, past: LayerCache | None = None, use_cache: bool = False
    ) -> BlockOutput:
        cfg = self.cfg
        b, n, _ = x.shape
        T = b * n
        stats = LayerStats()
        aux: dict[str, torch.Tensor] = {}
        score = None
        if self.encoder is not None:
            feats, ent = self.encoder(self.ln_q(x))
            x = x + self.drop(feats)
            self._record_encoder(stats, T)
            if self.quantum_score:
                score = ent
        hardness = None
        if score is not None and self.attn.router is not None:
            hardness = score / cfg.score_max
        need_att_entropy = self.needs_score and cfg.entropy_source == "attention"
        a = self.attn(self.ln1(x), hardness, need_att_entropy, past, use_cache)
        x = x + self.drop(a.y)
        stats.flops["attention"] = a.flops - a.sim_flops
        if self.attn.quantum is not None:
            stats.flops["attention_circuits"] = a.sim_flops
        stats.circuits_attention = a.circuits
        if need_att_entropy:
            score = a.entropy
        if a.route is not None:
            stats.routed = a.route.routed.detach()
            stats.hardness = a.route.hardness.detach()
            stats.threshold = float(self.attn.router.threshold.detach())
            aux["route"] = a.route.aux_loss
        stats.entropy = score.detach() if score is not None else None
        h2 = self.ln2(x)
        if self.rank is not None:
            dec = self.rank(score)
            stats.rank = dec.ranks
            aux["rank_cost"] = dec.cost
            f = self.ffn(h2, dec.ranks, dec.soft, self.rank.step)
        else:
            stats.fixed_rank = cfg.tt_rank if cfg.use_tt_ffn else None
            f = self.ffn(h2)
        stats.flops["ffn"] = f.flops
        return BlockOutput(x + self.drop(f.y), stats, aux, a.cache)

    def _record_encoder(self, stats: LayerStats, tokens: int) -> None:
        """The encoder's circuits and FLOPs on ``tokens`` tokens (fixed by its sizes)."""
        ec = self.encoder.config
        stats.circuits_encoder = tokens
        stats.flops["encoder"] = 4 * tokens * self.cfg.d_model * self.cfg.n_qubits  # 2 projections
        stats.flops["encoder_circuits"] = circuit_flops(
            self.cfg.n_qubits, tokens, ec.n_layers, ec.ansatz, ec.scheme, ec.reupload, ec.entropy
        )
