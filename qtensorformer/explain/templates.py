"""Plain-language explanations generated from an audit trail by fixed templates (offline,
deterministic: the same trail always gives the same text)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .audit import AuditTrail, TokenDecision

__all__ = ["explain_budget", "explain_token", "explain_trail"]


def explain_token(r: TokenDecision, settings: dict[str, Any]) -> str:
    """Why this token got its rank and its attention path, in one or two sentences."""
    src = settings.get("entropy_source", "quantum")
    if src == "quantum":
        score = "the entanglement entropy of its encoded state"
    else:
        score = "the entropy of its attention distribution"
    who = f"'{r.token}' (position {r.position}, layer {r.layer})"
    parts = []
    if r.rank is not None and r.alpha is not None and r.entropy is not None:
        raw = r.r_min + r.alpha * r.entropy
        clip = ""
        if raw > r.r_max + 0.5:
            clip = f", capped at the maximum {r.r_max}"
        elif raw < r.r_min:
            clip = f", raised to the minimum {r.r_min}"
        step = settings.get("rank_step", 1)
        grid = f" to the grid {r.r_min} + {step}k" if step > 1 else ""
        parts.append(
            f"{who} got TT rank {r.rank} of {r.r_max}: {score} is {r.entropy:.3f} nats, and "
            f"r = r_min + α·S = {r.r_min} + {r.alpha:.3g}·{r.entropy:.3f} = {raw:.2f}, "
            f"rounded{grid}{clip}."
        )
    elif r.rank is not None:
        parts.append(f"{who} used the fixed TT rank {r.rank}.")
    else:
        parts.append(f"{who} used dense layers.")
    if r.hardness is not None and r.threshold is not None:
        if r.path == "quantum":
            parts.append(
                f"It was routed to the quantum-kernel attention path because its hardness "
                f"{r.hardness:.3f} exceeds the threshold θ = {r.threshold:.3f}."
            )
        else:
            parts.append(
                f"It stayed on classical softmax attention because its hardness "
                f"{r.hardness:.3f} does not exceed θ = {r.threshold:.3f}."
            )
    elif r.path.startswith("quantum"):
        parts.append("Every token takes the quantum-kernel attention path in this model.")
    parts.append(f"The block spent about {r.flops / 1e3:,.1f} kFLOPs on it.")
    return " ".join(parts)


def explain_trail(trail: AuditTrail, batch: int = 0, per_layer: int = 3) -> list[str]:
    """A summary per layer, then the ``per_layer`` most telling tokens of each layer: the
    highest and lowest rank, and the routed tokens closest to the threshold."""
    s = trail.settings
    out = []
    for li in range(trail.n_layers):
        recs = trail.layer(li, batch)
        if not recs:
            continue
        routed = [r for r in recs if r.path == "quantum"]
        line = f"Layer {li}: {len(recs)} tokens"
        if any(r.hardness is not None for r in recs):
            target = (s.get("targets") or [None] * (li + 1))[li]
            tgt = f" (training target {target:.0%})" if target is not None else ""
            line += f", {len(routed)} routed to quantum attention{tgt}"
        ranks = [r.rank for r in recs if r.rank is not None]
        if ranks and recs[0].alpha is not None:
            line += (
                f", TT-FFN ranks {min(ranks)}–{max(ranks)} (mean {sum(ranks) / len(ranks):.2f} "
                f"of at most {recs[0].r_max})"
            )
        elif ranks:
            line += f", fixed TT rank {ranks[0]}"
        line += f", {sum(r.flops for r in recs) / 1e6:,.2f} MFLOPs."
        out.append(line)
        picks: list[TokenDecision] = []
        if ranks and recs[0].alpha is not None:
            picks += [max(recs, key=lambda r: (r.rank, r.entropy or 0.0))]
            picks += [min(recs, key=lambda r: (r.rank, r.entropy or 0.0))]
        if routed:
            picks += sorted(routed, key=lambda r: (r.hardness or 0.0) - (r.threshold or 0.0))[:1]
        seen = set()
        for r in picks:
            if r.position in seen or len(seen) >= per_layer:
                continue
            seen.add(r.position)
            out.append("  " + explain_token(r, s))
    return out


def explain_budget(events: Iterable[dict[str, Any]]) -> list[str]:
    """One sentence per budget adjustment logged during training (``metrics.jsonl`` records
    with ``event == "budget"``)."""
    units = {"latency_ms": "ms measured latency", "energy_uj": "µJ estimated energy"}
    out = []
    for e in events:
        if e.get("event", "budget") != "budget":
            continue
        what = units.get(e.get("metric"), e.get("metric"))
        out.append(
            f"At step {e.get('step')}, the query cost {e.get('value', float('nan')):.3g} "
            f"{what}, over the budget of {e.get('limit', float('nan')):.3g}: {e.get('action')}."
        )
    return out
