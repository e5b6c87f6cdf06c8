"""QuantumFeatureEncoder: both backends agree with shared weights; config validation."""

from __future__ import annotations

import pytest
import torch

from qtensorformer.quantum import EncoderConfig, QuantumFeatureEncoder

pytest.importorskip("pennylane")


@pytest.mark.parametrize(
    ("ansatz", "scheme", "reupload", "entropy", "subsystem"),
    [
        ("real", "ry", False, "von_neumann", None),
        ("strong", "ry", False, "von_neumann", (1, 3)),
        ("strong", "ry_rz", True, "renyi2", None),
        ("real", "ry_rz", True, "none", None),
    ],
)
def test_torch_and_pennylane_backends_agree(ansatz, scheme, reupload, entropy, subsystem):
    kw = dict(scheme=scheme, reupload=reupload, entropy=entropy, subsystem=subsystem)
    ours = QuantumFeatureEncoder(6, 4, 2, ansatz, "torch", **kw).double()
    ref = QuantumFeatureEncoder(6, 4, 2, ansatz, "pennylane", **kw).double()
    ref.load_state_dict(ours.state_dict())  # identical keys: proj_in, circuit.weights, proj_out
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    out_a, out_b = ours(x), ref(x)
    torch.testing.assert_close(out_a.features, out_b.features, atol=1e-10, rtol=0)
    if entropy == "none":
        assert out_a.entropy is None and out_b.entropy is None
    else:
        torch.testing.assert_close(out_a.entropy, out_b.entropy, atol=1e-8, rtol=0)
        assert (out_a.entropy <= ours.config.max_entropy + 1e-9).all()
    # Gradients with respect to every parameter agree too.
    coef = torch.randn_like(out_a.features)
    for out in (out_a, out_b):
        loss = (out.features * coef).sum()
        if out.entropy is not None:
            loss = loss + out.entropy.sum()
        loss.backward()
    for (name, pa), (_, pb) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-7, rtol=0, msg=name)


def test_encoder_trains_on_a_toy_target():
    torch.manual_seed(20261202)  # a convergence check: one fixed draw, not a fresh one
    enc = QuantumFeatureEncoder(4, n_qubits=3, n_layers=2, ansatz="strong")
    x = torch.randn(64, 4)
    y = torch.tanh(x[:, :1] * x[:, 1:2]).expand(64, 4)
    opt = torch.optim.Adam(enc.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss = (enc(x).features - y).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_encoder_config_errors_name_the_field():
    with pytest.raises(ValueError, match="n_qubits"):
        QuantumFeatureEncoder(8, n_qubits=13)
    with pytest.raises(ValueError, match="n_qubits"):
        EncoderConfig(d_in=8, n_qubits=0)
    with pytest.raises(ValueError, match="ansatz"):
        QuantumFeatureEncoder(8, ansatz="qaoa")
    with pytest.raises(ValueError, match="backend"):
        QuantumFeatureEncoder(8, backend="qiskit")
    with pytest.raises(ValueError, match="subsystem"):
        QuantumFeatureEncoder(8, n_qubits=3, subsystem=(0, 1, 2))
    with pytest.raises(ValueError, match="entropy='none'"):
        QuantumFeatureEncoder(8, n_qubits=1)
    with pytest.raises(ValueError, match="d_in"):
        QuantumFeatureEncoder(0)
    enc = QuantumFeatureEncoder(8)
    with pytest.raises(ValueError, match="d_in=8"):
        enc(torch.randn(2, 7))
    with pytest.raises(ValueError, match="x contains NaN"):
        enc(torch.full((2, 8), float("nan")))


def test_config_round_trip_and_one_qubit_without_entropy():
    cfg = EncoderConfig(d_in=5, n_qubits=4, subsystem=(2,), d_out=3)
    enc = QuantumFeatureEncoder.from_config(EncoderConfig(**cfg.to_dict()))
    assert enc.config == cfg
    feats, ent = enc(torch.randn(7, 5))
    assert feats.shape == (7, 3) and ent.shape == (7,)
    feats, ent = QuantumFeatureEncoder(5, n_qubits=1, entropy="none")(torch.randn(2, 5))
    assert ent is None and feats.shape == (2, 5)
