"""Parameter counts from a config alone (formulas, no model is built), and the TT rank that
fits a parameter budget. The tests hold the formulas to the built model's count.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ..config import ModelConfig
from ..quantum.ansatz import ansatz_weight_shape
from ..tensor.factorize import default_n_modes, factorize
from ..tensor.tt import full_ranks, tt_num_params

__all__ = ["count_parameters", "fit_rank_to_budget"]


def _tt_params(rows: int, cols: int, rank: int) -> int:
    """Parameters of a TT-matrix rows×cols at uniform rank, on the default mode layout."""
    k = default_n_modes(rows, cols)
    rm, cm = factorize(rows, k).modes, factorize(cols, k).modes
    ranks = tuple(min(rank, f) for f in full_ranks(out_modes=rm, in_modes=cm))
    return tt_num_params(out_modes=rm, in_modes=cm, ranks=ranks)


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameters by component, from the config alone (formulas, no model is built).

    Keys: ``embedding`` (tied with the LM head), ``positions``, ``encoder``, ``attention``,
    ``kernel_attention``, ``router``, ``rank_scheduler``, ``ffn``, ``activation``,
    ``norms``, and ``total``.

    Example:
        >>> count_parameters(ModelConfig.dense("small"))["embedding"]
        1280000
    """
    c = config
    d, f, L, h, q = c.d_model, c.d_ff, c.n_layers, c.n_heads, c.n_qubits
    lin = (lambda i, o: _tt_params(o, i, c.tt_rank) + o) if c.use_tt_attention else None
    out: dict[str, int] = {}
    out["embedding"] = (
        _tt_params(c.vocab_size, d, c.emb_rank) if c.use_tt_embedding else c.vocab_size * d
    )
    out["positions"] = c.max_seq_len * d
    circuit = math.prod(ansatz_weight_shape(c.ansatz, c.n_circuit_layers, q))
    # per block: proj d→q, circuit, proj q→d, own LayerNorm
    out["encoder"] = L * (d * q + q + circuit + q * d + d + 2 * d) if c.use_quantum_encoder else 0
    if c.use_tt_attention:
        att = lin(d, 3 * d) + lin(d, d)
    else:
        att = (d * 3 * d + 3 * d) + (d * d + d)
    out["attention"] = L * att
    # per head: q and k angle projections head_dim→q (+bias) and a temperature; one circuit
    out["kernel_attention"] = (
        L * (h * 2 * (c.head_dim * q + q) + h + circuit) if c.use_quantum_attention else 0
    )
    out["router"] = L if c.use_selective_routing else 0
    out["rank_scheduler"] = L if c.use_adaptive_rank else 0
    if c.use_tt_ffn:
        ffn = _tt_params(f, d, c.tt_rank) + f + _tt_params(d, f, c.tt_rank) + d
    else:
        ffn = d * f + f + f * d + d
    out["ffn"] = L * ffn
    if c.kan_grid is not None:  # distilled B-spline KAN: G + 3 coefficients per channel
        out["activation"] = L * f * (c.kan_grid + 3 + (1 if c.qkan_base else 0))
    elif c.use_qkan:  # DARUAN: θ (r+1, 2), w (r), b (r) per channel (+ β, a, c with the base)
        per = 2 * (c.qkan_reps + 1) + 2 * c.qkan_reps + (3 if c.qkan_base else 0)
        out["activation"] = L * f * per
    else:
        out["activation"] = 0
    out["norms"] = L * 4 * d + 2 * d
    out["total"] = sum(out.values())
    return out


def fit_rank_to_budget(config: ModelConfig) -> ModelConfig:
    """Resolve ``max_params``: the config with the largest ``tt_rank`` (and embedding rank)
    whose model fits the budget. Unchanged when ``max_params`` is None.

    Raises ValueError when even rank 1 does not fit, or when no TT pillar is on and the dense
    model is over budget.
    """
    c = config
    if c.max_params is None:
        return c
    tt_on = c.use_tt_ffn or c.use_tt_attention or c.use_tt_embedding
    if not tt_on:
        n = count_parameters(c)["total"]
        if n > c.max_params:
            raise ValueError(
                f"max_params={c.max_params:,} but the model without TT layers has {n:,} "
                "parameters; turn on a TT pillar (use_tt_ffn/attention/embedding) or raise "
                "the budget"
            )
        return c

    def at(r: int) -> ModelConfig:
        kw: dict[str, Any] = {"tt_rank": r, "embedding_rank": None}
        if c.use_adaptive_rank:
            kw["r_max"] = r
            kw["r_min"] = min(c.r_min, r)
        return replace(c, **kw)

    lo_n = count_parameters(at(1))["total"]
    if lo_n > c.max_params:
        raise ValueError(
            f"max_params={c.max_params:,} cannot be met: even TT rank 1 gives {lo_n:,} "
            "parameters; raise the budget, shrink d_model/vocab_size/max_seq_len, or turn on "
            "more TT pillars"
        )
    lo, hi = 1, 1
    while count_parameters(at(hi * 2))["total"] <= c.max_params and hi < 4096:
        hi *= 2
    hi *= 2
    while hi - lo > 1:  # largest r with count(at(r)) <= max_params
        mid = (lo + hi) // 2
        if count_parameters(at(mid))["total"] <= c.max_params:
            lo = mid
        else:
            hi = mid
    return at(lo)
