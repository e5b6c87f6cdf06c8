"""The key/value cache (every attention path) and the sampling options of ``generate``."""

from __future__ import annotations

import pytest
import torch

from qtensorformer import KVCache, ModelConfig, QTensorFormer, SamplingConfig
from qtensorformer.generation import _keep_top_p, _penalise_repeats, next_token

BASE = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=2, n_qubits=3, max_seq_len=24)
PATHS = {
    "classical": {},
    "quantum attention, every row": dict(use_quantum_attention=True),
    "routed by attention entropy": dict(use_quantum_attention=True, use_selective_routing=True),
    "routed by quantum score, adaptive TT rank": dict(
        use_quantum_encoder=True,
        use_quantum_attention=True,
        use_selective_routing=True,
        use_adaptive_rank=True,
        use_tt_ffn=True,
        tt_rank=4,
        entropy_source="quantum",
    ),
    "TT attention, adaptive rank on attention entropy": dict(
        use_tt_attention=True, use_adaptive_rank=True, use_tt_ffn=True, tt_rank=4
    ),
}


def _model(paths: dict) -> QTensorFormer:
    model = QTensorFormer(ModelConfig(**BASE, **paths)).double().eval()
    routers = [b.attn.router for b in model.blocks if b.attn.router is not None]
    if routers:  # θ at the median hardness of this input, so that both paths run
        ids = torch.randint(0, 61, (2, 20))
        with torch.no_grad():
            for blk, ls in zip(model.blocks, model(ids).stats.layers, strict=True):
                blk.attn.router.threshold.fill_(float(ls.hardness.median()))
    return model


def _in_pieces(model, ids, cuts):
    """Logits of ids (b, n) computed piece by piece through the cache, and the last cache."""
    parts, cache, start = [], None, 0
    for end in (*cuts, ids.shape[1]):
        out = model(ids[:, start:end], past_key_values=cache, use_cache=True)
        parts.append(out.logits)
        cache, start = out.past_key_values, end
    return torch.cat(parts, 1), cache


@pytest.mark.parametrize("name", list(PATHS))
def test_cached_forward_equals_the_whole_sequence(name):
    model = _model(PATHS[name])
    ids = torch.randint(0, 61, (2, 20))
    with torch.no_grad():
        full = model(ids)
        pieces, cache = _in_pieces(model, ids, (7, 8, 13))
    torch.testing.assert_close(pieces, full.logits, rtol=0, atol=1e-10)
    assert isinstance(cache, KVCache) and cache.length == 20
    routed = [ls.routed_fraction for ls in full.stats.layers if ls.routed is not None]
    assert all(0 < f < 1 for f in routed)  # both paths ran in the routed models
    assert full.past_key_values is None  # no cache unless asked


def test_the_quantum_paths_key_states_are_cached():
    model = _model(PATHS["quantum attention, every row"])
    ids = torch.randint(0, 61, (1, 10))
    with torch.no_grad():
        cache = model(ids[:, :9], use_cache=True).past_key_values
        assert cache.layers[0].key_states.shape == (1, 2, 9, 8)  # (b, h, keys, 2**3)
        step = model(ids[:, 9:], past_key_values=cache, use_cache=True)
        full = model(ids)
    h = BASE["n_heads"]
    # one query row and one new key simulated per head, instead of 10 rows and 10 keys
    assert [ls.circuits_attention for ls in step.stats.layers] == [2 * h, 2 * h]
    assert [ls.circuits_attention for ls in full.stats.layers] == [20 * h, 20 * h]
    assert step.past_key_values.layers[1].key_states.shape[2] == 10


@pytest.mark.parametrize("name", ["classical", "routed by attention entropy"])
def test_generate_with_the_cache_writes_what_it_writes_without(name):
    model = _model(PATHS[name])
    ids = torch.randint(0, 61, (2, 5))
    cached = model.generate(ids, 30, temperature=0)  # crosses max_seq_len=24
    assert torch.equal(cached, model.generate(ids, 30, temperature=0, use_cache=False))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    kw = dict(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.3)
    assert torch.equal(
        model.generate(ids, 12, generator=g1, **kw),
        model.generate(ids, 12, generator=g2, use_cache=False, **kw),
    )


def test_cache_errors_name_the_problem():
    model = _model({})
    ids = torch.randint(0, 61, (1, 20))
    cache = model(ids, use_cache=True).past_key_values
    with pytest.raises(ValueError, match="after 20 cached positions exceeds max_seq_len=24"):
        model(ids[:, :5], past_key_values=cache)
    other = QTensorFormer(ModelConfig(**{**BASE, "n_layers": 1})).double()
    with pytest.raises(ValueError, match="holds 2 layers, the model has 1"):
        other(ids[:, :1], past_key_values=cache)


def test_top_p_against_transformers():
    warpers = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(4, 50) * 3
    for p in (0.3, 0.8, 0.95):
        ours = _keep_top_p(logits, p)
        ref = warpers.TopPLogitsWarper(p)(None, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(ref)), p
        assert torch.isfinite(ours).sum(-1).min() >= 1


def test_repetition_penalty_against_transformers():
    warpers = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(3, 40)
    ids = torch.randint(0, 40, (3, 9))
    ref = warpers.RepetitionPenaltyLogitsProcessor(1.7)(ids, logits.clone())
    torch.testing.assert_close(_penalise_repeats(logits, ids, 1.7), ref)


def test_sampling_reaches_only_the_kept_tokens():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0, -2.0]]).repeat(2000, 1)
    ids = torch.zeros(2000, 1, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    picks = next_token(logits, ids, SamplingConfig(top_k=2), g)
    assert set(picks.flatten().tolist()) == {0, 1}
    # softmax([4, 3]) = [0.731, 0.269]; 2000 draws: 4 standard deviations is ±0.04
    assert abs(float((picks == 0).float().mean()) - 0.731) < 0.04
    assert next_token(logits[:1], ids[:1], SamplingConfig(temperature=0)).item() == 0
    # a repetition penalty large enough moves the greedy choice off a repeated token
    penalised = next_token(logits[:1], ids[:1], SamplingConfig(0, repetition_penalty=2.0))
    assert penalised.item() == 1


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(temperature=-1), "temperature must be >= 0"),
        (dict(top_k=0), "top_k must be >= 1"),
        (dict(top_p=0.0), "top_p must be in"),
        (dict(repetition_penalty=0), "repetition_penalty must be > 0"),
    ],
)
def test_bad_sampling_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kw)
