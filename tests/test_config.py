"""ModelConfig: aliases, presets, dense(), JSON, validation; parameter counts by formula."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qtensorformer import PRESETS, ModelConfig, QTensorFormer, count_parameters
from qtensorformer.config import PILLARS
from qtensorformer.nn.sizing import fit_rank_to_budget


def test_hidden_dim_alias_and_defaults():
    cfg = ModelConfig(vocab_size=10000, hidden_dim=128, n_layers=3, tt_rank=4, n_qubits=4)
    assert cfg.d_model == cfg.hidden_dim == 128
    assert cfg.d_ff == 512 and cfg.r_max == 4
    assert ModelConfig(d_model=96, n_heads=4).hidden_dim == 96
    with pytest.raises(ValueError, match="hidden_dim=64 and d_model=128 disagree"):
        ModelConfig(d_model=128, hidden_dim=64)
    assert ModelConfig(d_model=64, hidden_dim=64).d_model == 64


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_and_dense(name):
    cfg = ModelConfig.preset(name, vocab_size=5000)
    for k, v in PRESETS[name].items():
        assert getattr(cfg, k) == v
    assert cfg.vocab_size == 5000
    dense = cfg.dense()
    assert not any(dense.pillars.values())
    assert (dense.d_model, dense.n_layers, dense.vocab_size) == (
        cfg.d_model,
        cfg.n_layers,
        cfg.vocab_size,
    )
    assert ModelConfig.dense(name, vocab_size=5000) == dense
    assert ModelConfig.dense(d_model=64, n_heads=2).d_model == 64
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        ModelConfig.preset("tiny")


def test_json_round_trip(tmp_path):
    cfg = ModelConfig(
        vocab_size=777,
        d_model=64,
        n_heads=2,
        use_quantum_attention=True,
        use_selective_routing=True,
        use_adaptive_rank=True,
        use_qkan=True,
        rank_alpha=1.5,
        kernel_norm="rowsum",
    )
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "c.json"
    cfg.to_json(path)
    assert ModelConfig.from_json(path) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_layer": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_json("{not json")
    with pytest.raises(FileNotFoundError):
        ModelConfig.from_json(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"use_adaptive_rank": True, "use_tt_ffn": False}, "use_tt_ffn=True"),
        ({"use_selective_routing": True}, "use_quantum_attention=True"),
        (
            {"use_adaptive_rank": True, "use_quantum_encoder": False},
            "use_quantum_encoder=True or entropy_source='attention'",
        ),
        ({"d_model": 100, "n_heads": 3}, "not divisible by n_heads"),
        ({"n_layers": 0}, "n_layers must be an int >= 1"),
        ({"vocab_size": 10.5}, "vocab_size must be an int"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"route_fraction": 0.0}, "route_fraction"),
        ({"ansatz": "hardware"}, "ansatz='hardware'"),
        ({"entropy_source": "logits"}, "entropy_source"),
        ({"kernel_norm": "l2"}, "kernel_norm"),
        ({"n_qubits": 13}, "n_qubits"),
        ({"use_adaptive_rank": True, "r_min": 5, "tt_rank": 4}, "r_min <= r_max <= tt_rank"),
        ({"use_qkan": False, "kan_grid": 16}, "use_qkan=True"),
        ({"use_tt_ffn": "yes"}, "use_tt_ffn must be True or False"),
        ({"rank_alpha": -1.0}, "rank_alpha must be > 0"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_attention_source_needs_no_encoder():
    cfg = ModelConfig(use_adaptive_rank=True, use_quantum_encoder=False, entropy_source="attention")
    assert cfg.score_max == pytest.approx(torch.log(torch.tensor(256.0)).item())
    assert cfg.alpha == pytest.approx((cfg.r_max - cfg.r_min) / cfg.score_max)


def _build_meta(cfg):
    with torch.device("meta"):
        return QTensorFormer(cfg)


ALL_ON = dict(
    use_quantum_attention=True,
    use_selective_routing=True,
    use_adaptive_rank=True,
    use_qkan=True,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("variant", ["dense", "default", "all", "strong-kan"])
def test_parameter_count_matches_formula(name, variant):
    if variant == "dense":
        cfg = ModelConfig.dense(name)
    elif variant == "default":
        cfg = ModelConfig.preset(name)
    elif variant == "all":
        cfg = ModelConfig.preset(name, **ALL_ON)
    else:
        cfg = ModelConfig.preset(name, **ALL_ON, ansatz="strong", kan_grid=20, tt_rank=5)
    model = _build_meta(cfg)
    table = model.parameter_table()
    assert table == count_parameters(cfg)
    assert table["total"] == model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_dense_small_count_by_hand():
    cfg = ModelConfig.dense("small", vocab_size=10000)
    d, f, L = 128, 512, 3
    per_block = (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    expected = 10000 * d + 256 * d + L * per_block + 2 * d
    assert count_parameters(cfg)["total"] == expected


def test_max_params_picks_largest_rank_that_fits():
    budget = 400_000
    cfg = fit_rank_to_budget(
        ModelConfig(vocab_size=10000, max_params=budget, use_adaptive_rank=True)
    )
    assert count_parameters(cfg)["total"] <= budget
    bigger = dataclasses.replace(cfg, tt_rank=cfg.tt_rank + 1, r_max=cfg.tt_rank + 1)
    assert count_parameters(bigger)["total"] > budget
    model = _build_meta(ModelConfig(vocab_size=10000, max_params=budget))
    assert model.num_parameters() <= budget
    with pytest.raises(ValueError, match="cannot be met"):
        fit_rank_to_budget(ModelConfig(vocab_size=10000, max_params=1000))
    with pytest.raises(ValueError, match="turn on a TT pillar"):
        fit_rank_to_budget(ModelConfig.dense("small", max_params=1000))


def test_pillar_switches_all_listed():
    assert set(PILLARS) == {
        f.name for f in dataclasses.fields(ModelConfig) if f.name.startswith("use_")
    }


def test_dense_keeps_explicit_switches():
    cfg = ModelConfig.dense("small", use_tt_ffn=True)
    assert cfg.use_tt_ffn and not cfg.use_quantum_encoder and not cfg.use_tt_embedding
