"""Energy model: FLOPs against torch's flop counter, profile arithmetic, QPU and simulator
costs, carbon, and the public entry points."""

from __future__ import annotations

import math

import pytest
import torch

from qtensorformer import ModelConfig, QTensorFormer
from qtensorformer.energy import (
    PROFILES,
    EnergyEstimator,
    FlopsBreakdown,
    HardwareProfile,
    QPUModel,
    estimate_model_energy,
    get_profile,
    measure_latency,
    model_flops,
    torch_flop_count,
)
from qtensorformer.nn.attention import SOFTMAX_FLOPS
from qtensorformer.nn.ffn import GELU_FLOPS

CLASSICAL = {
    "dense": dict(use_tt_embedding=False, use_tt_attention=False, use_tt_ffn=False),
    "tt": dict(use_tt_embedding=True, use_tt_attention=True, use_tt_ffn=True),
    "tt-adaptive-rank": dict(
        use_tt_embedding=True,
        use_tt_attention=True,
        use_tt_ffn=True,
        use_adaptive_rank=True,
        entropy_source="attention",
    ),
}


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_classical_flops_match_torch_flop_counter(name):
    torch.manual_seed(0)
    kw = CLASSICAL[name]
    cfg = ModelConfig(
        vocab_size=500,
        d_model=64,
        n_heads=4,
        n_layers=2,
        tt_rank=6,
        r_min=2,
        use_quantum_encoder=False,
        **kw,
    )
    model = QTensorFormer(cfg)
    b, n, d, f, h = 2, 48, cfg.d_model, cfg.d_ff, cfg.n_heads
    ids = torch.randint(0, 500, (b, n))
    stats, counts, total = torch_flop_count(model, ids)
    assert total > 0
    # torch counts the GEMMs; our counts add what it does not see, known exactly: the biases,
    # the softmax (SOFTMAX_FLOPS per score) and GELU (GELU_FLOPS per hidden element)
    T = b * n
    att_extra = T * 3 * d + T * d + SOFTMAX_FLOPS * b * h * n * n
    ffn_extra = T * f + T * d + GELU_FLOPS * T * f
    for i, layer in enumerate(stats.layers):
        assert layer.flops["attention"] - att_extra == counts[f"QTensorFormer.blocks.{i}.attn"]
        assert layer.flops["ffn"] - ffn_extra == counts[f"QTensorFormer.blocks.{i}.ffn"]
    blocks = sum(counts[f"QTensorFormer.blocks.{i}"] for i in range(cfg.n_layers))
    head = total - blocks - counts.get("QTensorFormer.embed", 0)
    assert stats.flops["lm_head"] == head
    assert stats.flops["embedding"] == counts.get("QTensorFormer.embed", 0)
    extra = cfg.n_layers * (att_extra + ffn_extra)
    assert stats.total_flops - extra == total


def _q_model(**kw):
    base = dict(
        vocab_size=200,
        d_model=32,
        n_heads=2,
        n_layers=2,
        tt_rank=4,
        use_quantum_encoder=True,
        use_quantum_attention=True,
    )
    return QTensorFormer(ModelConfig(**{**base, **kw}))


def test_breakdown_splits_simulation_and_counts_kernel_pairs():
    torch.manual_seed(1)
    b, n = 2, 24
    m = _q_model()  # every query on the quantum path
    f = model_flops(m, n, batch_size=b)
    h, L = m.config.n_heads, m.config.n_layers
    assert f.tokens == b * n
    assert f.encoder_circuits == L * b * n
    assert f.kernel_states == L * b * h * 2 * n  # queries and keys, every row
    assert f.kernel_pairs == L * h * b * n * (n + 1) // 2  # causal (query, key) pairs
    assert f.simulation == f.by_module["encoder_circuits"] + f.by_module["attention_circuits"]
    assert 0 < f.simulation < f.total and f.classical + f.simulation == f.total
    assert f.per_token == pytest.approx(f.total / (b * n))


def test_kernel_pairs_follow_the_routing():
    torch.manual_seed(2)
    n = 20
    m = _q_model(use_selective_routing=True)
    ids = torch.randint(0, 200, (3, n))
    m.eval()
    with torch.no_grad():
        _, _, st = m(ids)
    f = model_flops(m, input_ids=ids)
    expect = 0
    for layer in st.layers:  # loop reference: query t has t + 1 allowed keys, per head
        for row in layer.routed.tolist():
            expect += sum(t + 1 for t, r in enumerate(row) if r) * m.config.n_heads
    assert f.kernel_pairs == expect
    with torch.no_grad():
        for blk in m.blocks:  # nothing routed: no pairs, no kernel circuits
            blk.attn.router.threshold.fill_(math.inf)
    f0 = model_flops(m, input_ids=ids)
    assert f0.kernel_pairs == 0 and f0.kernel_states == 0
    assert "attention_circuits" not in f0.by_module or f0.by_module["attention_circuits"] == 0


def _toy_profile(**kw):
    base = dict(
        name="toy", device="toy", peak_flops=1e12, power_w=100.0, source="test", utilisation=1.0
    )
    return HardwareProfile(**{**base, **kw})


def test_classical_estimate_by_hand():
    f = FlopsBreakdown(tokens=4, by_module={"ffn": 6 * 10**8, "attention": 4 * 10**8})
    e = EnergyEstimator(_toy_profile(), carbon_intensity=480.0).estimate(f)
    # 1e9 FLOPs × 100 W / 1e12 FLOP/s = 0.1 J = 1e5 µJ, in 1 ms; 0.1 J = 2.78e-8 kWh × 480 g
    assert e.energy_uj == pytest.approx(1e5)
    assert e.latency_ms == pytest.approx(1.0)
    assert e.carbon_ug == pytest.approx(0.1 / 3.6e6 * 480 * 1e6)
    half = EnergyEstimator(_toy_profile(utilisation=0.5), pue=1.5).estimate(f)
    assert half.energy_uj == pytest.approx(1e5 * 2 * 1.5) and half.latency_ms == pytest.approx(2.0)


def test_every_profile_derivation_is_its_arithmetic():
    assert set(PROFILES) == {
        "edge_mobile",
        "cpu_xeon",
        "apple_m2",
        "gpu_a100",
        "edge_tpu",
        "quantum_sim",
        "ibm_quantum",
    }
    for p in PROFILES.values():
        assert p.joules_per_flop == pytest.approx(p.power_w / (p.peak_flops * p.utilisation))
        assert f"{p.joules_per_flop * 1e12:.3g} pJ/FLOP" in p.derivation
        assert p.source and p.device
        # real devices: between 0.1 pJ and 1 nJ per FLOP (the seed's fJ figures are not used)
        assert 1e-13 < p.joules_per_flop < 1e-9
    xeon = get_profile("cpu_xeon")
    assert xeon.peak_flops == pytest.approx(40 * 2.3e9 * 64)
    assert get_profile("gpu_a100").joules_per_flop < xeon.joules_per_flop


def test_simulator_charges_the_measured_slowdown():
    p = get_profile("quantum_sim")
    assert p.slowdown(4) == pytest.approx(119.7) and p.slowdown(8) == pytest.approx(5.1)
    assert p.slowdown(2) == pytest.approx(119.7) and p.slowdown(12) == pytest.approx(5.1)
    assert p.slowdown(8) < p.slowdown(6) < p.slowdown(4)
    f = FlopsBreakdown(tokens=1, by_module={"ffn": 10**9, "encoder_circuits": 10**7}, n_qubits=4)
    sim = EnergyEstimator("quantum_sim").estimate(f)
    xeon = EnergyEstimator("cpu_xeon").estimate(f)
    j = get_profile("cpu_xeon").joules_per_flop
    assert sim.parts_uj["simulation"] == pytest.approx(10**7 * j * 119.7 * 1e6)
    assert sim.parts_uj["classical"] == pytest.approx(xeon.parts_uj["classical"])
    assert xeon.parts_uj["simulation"] == pytest.approx(10**7 * j * 1e6)


def test_qpu_energy_is_circuits_times_shots_times_shot_time_times_power():
    f = FlopsBreakdown(
        tokens=8,
        by_module={"ffn": 10**6, "encoder_circuits": 10**9},
        encoder_circuits=8,
        kernel_pairs=36,
        encoder_depth_2q=8,
        encoder_depth_1q=9,
        kernel_depth_2q=16,
        kernel_depth_1q=30,
    )
    q = QPUModel()
    est = EnergyEstimator("ibm_quantum", shots=100)
    e = est.estimate(f)
    t = 8 * 100 * q.shot_seconds(8, 9) + 36 * 100 * q.shot_seconds(16, 30)
    assert e.qpu_seconds == pytest.approx(t)
    assert e.qpu_circuits == 44
    assert e.parts_uj["qpu"] == pytest.approx(t * 25_000.0 * 1e6)
    # the simulation FLOPs are replaced by the QPU, the classical ones run on the host
    assert "simulation" not in e.parts_uj
    assert e.parts_uj["classical"] == pytest.approx(
        10**6 * get_profile("cpu_xeon").joules_per_flop * 1e6
    )
    assert e.latency_ms == pytest.approx(
        (t + 10**6 / get_profile("cpu_xeon").flops_per_second) * 1e3
    )
    assert q.shot_seconds(0, 0) == pytest.approx(252e-6)


def test_seed_snippet_and_model_entry_points():
    torch.manual_seed(3)
    config = ModelConfig(
        vocab_size=10000, d_model=128, n_layers=3, tt_rank=4, n_qubits=4, use_qkan=True
    )
    model = QTensorFormer(config)
    metrics = estimate_model_energy(model, EnergyEstimator("edge_mobile"), seq_len=128)
    for key in ("energy_uj", "carbon_per_query_ug", "latency_ms", "flops", "hardware"):
        assert key in metrics
    assert metrics["hardware"] == "edge_mobile" and metrics["estimate"] is True
    f = model_flops(model, 128)
    assert metrics["flops"] == f.total
    assert metrics["energy_uj"] == pytest.approx(
        f.total * get_profile("edge_mobile").joules_per_flop * 1e6
    )
    # more tokens, more energy; a cheaper device, less
    longer = estimate_model_energy(model, "edge_mobile", seq_len=256)
    assert longer["energy_uj"] > metrics["energy_uj"]
    assert estimate_model_energy(model, "gpu_a100", 128)["energy_uj"] < metrics["energy_uj"]
    ms = measure_latency(model, seq_len=32, repeats=2)
    assert ms > 0 and model.training  # left in the mode it was in


def test_energy_estimator_as_trainer_energy_fn():
    torch.manual_seed(4)
    m = _q_model(use_selective_routing=True)
    est = EnergyEstimator("cpu_xeon")
    uj = est(m, 16)
    assert uj == pytest.approx(est.estimate(model_flops(m, 16)).energy_uj)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"unknown hardware profile 'toaster'.*edge_mobile"):
        EnergyEstimator("toaster")
    with pytest.raises(ValueError, match="pue"):
        EnergyEstimator("cpu_xeon", pue=0.5)
    with pytest.raises(ValueError, match="carbon_intensity"):
        EnergyEstimator("cpu_xeon", carbon_intensity=-1)
    with pytest.raises(ValueError, match="shots only applies"):
        EnergyEstimator("cpu_xeon", shots=10)
    with pytest.raises(ValueError, match="utilisation"):
        _toy_profile(utilisation=1.5)
    m = _q_model()
    with pytest.raises(ValueError, match="input_ids must be"):
        model_flops(m, input_ids=torch.randint(0, 200, (8,)))
    with pytest.raises(ValueError, match="seq_len"):
        model_flops(m, seq_len=0)


def test_energy_doc_states_every_profile_derivation():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "ENERGY.md").read_text()
    for p in PROFILES.values():
        assert f"`{p.name}`" in doc
        if p.kind == "classical":
            assert p.derivation in doc, p.name
    assert "480 gCO2/kWh" in doc and "119.7" in doc and "5.1" in doc
