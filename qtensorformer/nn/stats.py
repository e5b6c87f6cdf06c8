"""Per-forward statistics: what each layer decided and spent, per token.

Index legend: b batch, n sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ForwardStats", "LayerStats"]


@dataclass
class LayerStats:
    """One block's record of a forward pass.

    ``entropy`` (b, n): the entanglement score S_t that drove the decisions (None when no
    score was computed); ``rank`` (b, n): the TT-FFN rank each token used (None: fixed rank,
    see ``fixed_rank``); ``routed`` (b, n) bool: tokens that took the quantum-kernel attention
    path (None when no routing); ``hardness`` (b, n): the scores the router compared with
    ``threshold``; ``circuits_encoder`` / ``circuits_attention``: circuit
    simulations actually run (one per state prepared); ``flops``: forward FLOPs actually spent
    by the block, per module; the keys ending in ``_circuits`` hold the state-vector simulation
    share (circuits, overlaps), the others the classical layers.
    """

    entropy: torch.Tensor | None = None
    rank: torch.Tensor | None = None
    routed: torch.Tensor | None = None
    hardness: torch.Tensor | None = None
    threshold: float | None = None
    fixed_rank: int | None = None
    circuits_encoder: int = 0
    circuits_attention: int = 0
    flops: dict[str, int] = field(default_factory=dict)

    @property
    def routed_fraction(self) -> float | None:
        return None if self.routed is None else float(self.routed.float().mean())

    @property
    def mean_rank(self) -> float | None:
        if self.rank is not None:
            return float(self.rank.float().mean())
        return None if self.fixed_rank is None else float(self.fixed_rank)


@dataclass
class ForwardStats:
    """Statistics of one :meth:`QTensorFormer.forward`.

    ``layers``: one :class:`LayerStats` per block; ``tokens``: tokens in the batch;
    ``aux_losses``: the auxiliary losses (already weighted) added to the LM loss;
    ``lm_loss``: the language-model loss alone (None without labels); ``flops``: forward FLOPs
    actually spent, per module type, summed over blocks (plus the embedding and LM head).
    """

    layers: list[LayerStats] = field(default_factory=list)
    tokens: int = 0
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    lm_loss: torch.Tensor | None = None
    flops: dict[str, int] = field(default_factory=dict)

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())

    @property
    def simulation_flops(self) -> int:
        """FLOPs spent simulating circuits (the ``*_circuits`` entries of ``flops``)."""
        return sum(v for k, v in self.flops.items() if k.endswith("_circuits"))

    @property
    def circuits(self) -> int:
        """Circuit simulations run in this forward (all blocks, encoder + attention)."""
        return sum(s.circuits_encoder + s.circuits_attention for s in self.layers)

    @property
    def routed_fraction(self) -> float | None:
        """Fraction of (layer, token) pairs routed to the quantum path (None: no routing)."""
        fr = [s.routed_fraction for s in self.layers if s.routed is not None]
        return sum(fr) / len(fr) if fr else None

    @property
    def mean_rank(self) -> float | None:
        r = [s.mean_rank for s in self.layers if s.mean_rank is not None]
        return sum(r) / len(r) if r else None

    def summary(self) -> dict[str, float | int | None]:
        """Plain numbers for logs: tokens, circuits, FLOPs, routed fraction, mean rank,
        entropy range and the auxiliary losses."""
        ent = [s.entropy for s in self.layers if s.entropy is not None]
        out: dict[str, float | int | None] = {
            "tokens": self.tokens,
            "circuits": self.circuits,
            "circuits_per_token": self.circuits / max(self.tokens, 1),
            "flops": self.total_flops,
            "flops_per_token": self.total_flops / max(self.tokens, 1),
            "routed_fraction": self.routed_fraction,
            "mean_rank": self.mean_rank,
            "entropy_min": min(float(e.min()) for e in ent) if ent else None,
            "entropy_max": max(float(e.max()) for e in ent) if ent else None,
        }
        for k, v in self.aux_losses.items():
            out[f"aux_{k}"] = float(v.detach())
        if self.lm_loss is not None:
            out["lm_loss"] = float(self.lm_loss)
        return out
