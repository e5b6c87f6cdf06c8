"""Audit trail: every routing and rank decision of a forward pass, per layer and token.

Index legend: b batch, n sequence (position t).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from ..files import write_json

__all__ = ["AuditTrail", "TokenDecision", "audit", "visible_token"]


@dataclass
class TokenDecision:
    """What one block decided for one token.

    ``entropy``: the score S_t (nats) from ``entropy_source``; ``hardness``: the number the
    router compared with ``threshold`` θ (S_t/S_max for the quantum score, the attention
    entropy over log(t+1) for the attention score); ``path``: ``"quantum"`` (kernel attention),
    ``"classical"`` (softmax attention); ``rank``: the TT-FFN rank used (``r_min``..``r_max``
    from r_min + round(α·S_t)); ``flops``: forward FLOPs of the block attributed to the token
    (its share of the encoder and classical attention, the quantum path's cost if it was
    routed, and the FFN at its rank).
    """

    layer: int
    batch: int
    position: int
    token_id: int
    token: str
    entropy: float | None
    hardness: float | None
    threshold: float | None
    path: str
    rank: int | None
    r_min: int | None
    r_max: int | None
    alpha: float | None
    flops: float


@dataclass
class AuditTrail:
    """The decisions of one forward pass (``records``) and the settings behind them."""

    records: list[TokenDecision]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "records": [dataclasses.asdict(r) for r in self.records]}

    def save(self, path: str | Path) -> Path:
        """Write the trail as JSON (atomically)."""
        write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> AuditTrail:
        d = json.loads(Path(path).read_text())
        return cls([TokenDecision(**r) for r in d["records"]], d.get("settings", {}))

    def layer(self, i: int, batch: int = 0) -> list[TokenDecision]:
        return [r for r in self.records if r.layer == i and r.batch == batch]

    @property
    def n_layers(self) -> int:
        return 1 + max((r.layer for r in self.records), default=-1)

    def table(self, layer: int = 0, batch: int = 0) -> Table:
        """A rich table of one layer's decisions for one sequence."""
        s = self.settings
        t = Table(
            title=f"Layer {layer}: decisions per token (score: {s.get('entropy_source')} "
            f"entropy, S_max {s.get('score_max', float('nan')):.3g} nats)"
        )
        for col in ("t", "token", "entropy", "hardness", "θ", "path", "rank", "kFLOPs"):
            t.add_column(col, justify="left" if col in ("token", "path") else "right")
        for r in self.layer(layer, batch):
            t.add_row(
                str(r.position),
                r.token,
                _fmt(r.entropy),
                _fmt(r.hardness),
                _fmt(r.threshold),
                r.path,
                "-" if r.rank is None else str(r.rank),
                f"{r.flops / 1e3:,.1f}",
            )
        return t


def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


#: What stands for the invisible characters of a token in tables, lists and figures.
VISIBLE = {"\n": "↵", "\r": "␍", "\t": "⇥"}


def visible_token(text: str) -> str:
    r"""A token's text with line breaks and tabs drawn (``↵``, ``␍``, ``⇥``), other control
    characters as ``\xNN``, and the empty token as ``∅``, so that it stays on one line and
    is never blank.

    Example:
        >>> visible_token("\n"), visible_token(" the"), visible_token("\x01"), visible_token("")
        ('↵', ' the', '\\x01', '∅')
    """
    if not text:
        return "∅"
    out = (VISIBLE.get(c) or (f"\\x{ord(c):02x}" if not c.isprintable() else c) for c in text)
    return "".join(out)


def _token_texts(ids: torch.Tensor, tokenizer) -> list[list[str]]:
    if tokenizer is None:
        return [[str(int(i)) for i in row] for row in ids]
    return [[visible_token(tokenizer.decode([int(i)])) for i in row] for row in ids]


@torch.no_grad()
def audit(model, input_ids: torch.Tensor, tokenizer=None) -> AuditTrail:
    """Run ``model`` (eval mode, restored afterwards) on ``input_ids`` ((n,) or (b, n)) and
    record, per layer and token, the entropy, threshold, path, rank and FLOPs.

    Example:
        >>> import torch
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> m = QTensorFormer(ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1,
        ...                               use_adaptive_rank=True, tt_rank=4))
        >>> trail = audit(m, torch.randint(0, 50, (6,)))
        >>> len(trail.records), trail.records[0].path
        (6, 'classical')
    """
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    c = model.config
    was = model.training
    model.eval()
    try:
        _, _, stats = model(input_ids.to(next(model.parameters()).device))
    finally:
        model.train(was)
    b, n = input_ids.shape
    texts = _token_texts(input_ids.cpu(), tokenizer)
    records = []
    for li, (blk, layer) in enumerate(zip(model.blocks, stats.layers, strict=True)):
        T = b * n
        f = layer.flops
        ent = layer.entropy.double().cpu() if layer.entropy is not None else None
        hard = layer.hardness.double().cpu() if layer.hardness is not None else None
        routed = layer.routed.cpu() if layer.routed is not None else None
        ranks = layer.rank.cpu() if layer.rank is not None else None
        # FLOPs: shared parts split evenly, the quantum path over the routed tokens, the FFN
        # in proportion to each token's cost at its rank
        shared = (f.get("encoder", 0) + f.get("encoder_circuits", 0) + f.get("attention", 0)) / T
        q_flops = f.get("attention_circuits", 0)
        if routed is not None:
            n_routed = int(routed.sum())
            q_tok = routed.double() * (q_flops / max(n_routed, 1))
        else:
            q_tok = torch.full((b, n), q_flops / T, dtype=torch.float64)
        if ranks is not None:
            values, inverse = ranks.unique(return_inverse=True)  # one FLOP count per rank
            cost = torch.tensor([blk.ffn.flops(1, int(r)) for r in values], dtype=torch.float64)
            w = cost[inverse]
        else:
            w = torch.ones(b, n, dtype=torch.float64)
        ffn_tok = w / w.sum() * f.get("ffn", 0)
        rank_mod = blk.rank
        all_quantum = c.use_quantum_attention and blk.attn.router is None
        for bi in range(b):
            for t in range(n):
                if routed is not None:
                    path = "quantum" if bool(routed[bi, t]) else "classical"
                else:
                    path = "quantum (every token)" if all_quantum else "classical"
                rank = int(ranks[bi, t]) if ranks is not None else layer.fixed_rank
                records.append(
                    TokenDecision(
                        layer=li,
                        batch=bi,
                        position=t,
                        token_id=int(input_ids[bi, t]),
                        token=texts[bi][t],
                        entropy=float(ent[bi, t]) if ent is not None else None,
                        hardness=float(hard[bi, t]) if hard is not None else None,
                        threshold=layer.threshold,
                        path=path,
                        rank=rank,
                        r_min=rank_mod.r_min if rank_mod is not None else None,
                        r_max=rank_mod.r_max if rank_mod is not None else None,
                        alpha=rank_mod.alpha if rank_mod is not None else None,
                        flops=float(shared + q_tok[bi, t] + ffn_tok[bi, t]),
                    )
                )
    settings = {
        "entropy_source": c.entropy_source,
        "score_max": c.score_max,
        "route_fraction": c.route_fraction,
        "pillars": c.pillars,
        "n_layers": c.n_layers,
        "tt_rank": c.tt_rank,
        "rank_step": c.rank_step,
        "targets": [
            blk.attn.router.route_fraction if blk.attn.router is not None else None
            for blk in model.blocks
        ],
        "total_flops": stats.total_flops,
    }
    return AuditTrail(records, settings)
