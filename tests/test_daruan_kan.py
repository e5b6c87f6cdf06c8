"""DARUAN against a state-vector reference and PennyLane; B-splines; distill_to_kan."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from qtensorformer import ModelConfig, QTensorFormer, distill_to_kan
from qtensorformer.nn import DARUAN, BSplineActivation, fit_bspline
from qtensorformer.nn.kernel_attention import QuantumKernelAttention
from qtensorformer.quantum import QuantumFeatureEncoder
from qtensorformer.quantum.gates import ry_matrix, rz_matrix


def _reference(act: DARUAN, x: torch.Tensor) -> torch.Tensor:
    """⟨Z⟩ of W_{r+1} Π RZ(w x + b) W_ℓ H|0> by 2×2 complex matrices, one element at a time."""
    out = torch.empty_like(x)
    plus = torch.tensor([1, 1], dtype=torch.complex128) / math.sqrt(2)
    z = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for idx in torch.cartesian_prod(*(torch.arange(s) for s in x.shape)).tolist():
        c = idx[-1]
        th, w, b = act.theta[c].detach(), act.w[c].detach(), act.b[c].detach()

        def W(ell, th=th):
            return ry_matrix(th[ell, 1]).to(torch.complex128) @ rz_matrix(th[ell, 0])

        psi = W(0) @ plus
        for ell in range(act.reps):
            psi = W(ell + 1) @ (rz_matrix(w[ell] * x[tuple(idx)] + b[ell]) @ psi)
        out[tuple(idx)] = (psi.abs() ** 2 * z).sum()
    return out


@pytest.mark.parametrize("reps", [1, 2, 4])
def test_daruan_matches_state_vector(reps):
    act = DARUAN(5, reps).double()
    with torch.no_grad():
        act.b.normal_()
        act.w.normal_()
    x = 2 * torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(act(x), _reference(act, x), rtol=0, atol=1e-12)


def test_daruan_matches_pennylane():
    qml = pytest.importorskip("pennylane")
    act = DARUAN(3, 2).double()
    dev = qml.device("default.qubit", wires=1)

    @qml.qnode(dev, interface="torch")
    def circuit(x, th, w, b):
        qml.Hadamard(0)
        qml.RZ(th[0, 0], 0)
        qml.RY(th[0, 1], 0)
        for ell in range(2):
            qml.RZ(w[ell] * x + b[ell], 0)
            qml.RZ(th[ell + 1, 0], 0)
            qml.RY(th[ell + 1, 1], 0)
        return qml.expval(qml.PauliZ(0))

    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = act(x)
    ref = torch.stack(
        [
            torch.stack([circuit(x[i, c], act.theta[c], act.w[c], act.b[c]) for c in range(3)])
            for i in range(4)
        ]
    )
    torch.testing.assert_close(y, ref.to(y.dtype), rtol=0, atol=1e-10)
    g = torch.autograd.grad(y.sum(), act.theta)[0]
    g_ref = torch.autograd.grad(ref.sum(), act.theta)[0]
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-8)


def test_daruan_gradcheck():
    act = DARUAN(2, 2).double()
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, t, w, b: _functional(act, x, t, w, b), (x, act.theta, act.w, act.b)
    )


def _functional(act, x, t, w, b):
    return torch.func.functional_call(act, {"theta": t, "w": w, "b": b}, (x,))


def test_bspline_reproduces_cubics_exactly():
    """Cubic B-splines span the cubics: a least-squares fit of a cubic is exact."""
    act = DARUAN(1, 1).double()
    spline = BSplineActivation(1, grid=8, lo=-2.0, hi=3.0).double()
    x = torch.linspace(-2, 3, 200, dtype=torch.float64)
    from qtensorformer.nn.distill import _design

    a = torch.randn(4, dtype=torch.float64)
    y = a[0] + a[1] * x + a[2] * x**2 + a[3] * x**3
    coef = torch.linalg.lstsq(_design(x, -2.0, 3.0, 8), y[:, None]).solution
    with torch.no_grad():
        spline.coef.copy_(coef.T)
    xt = torch.empty(50, 1, dtype=torch.float64).uniform_(-2, 3)
    yt = a[0] + a[1] * xt + a[2] * xt**2 + a[3] * xt**3
    torch.testing.assert_close(spline(xt), yt, rtol=1e-9, atol=1e-9)
    assert act.channels == 1


def test_fit_bspline_error_is_measured_and_small():
    act = DARUAN(16, 2)
    spline, err = fit_bspline(act, -3.0, 3.0, grid=32)
    x = torch.empty(500, 16).uniform_(-3, 3)
    measured = (spline(x) - act(x)).abs().max().item()
    assert err["max_abs_error"] < 5e-3 and measured < 2 * err["max_abs_error"] + 1e-5
    _, coarse = fit_bspline(act, -3.0, 3.0, grid=4)
    assert coarse["max_abs_error"] > err["max_abs_error"]


def _qkan_only(**kw):
    return ModelConfig.dense(
        vocab_size=80,
        d_model=32,
        n_layers=2,
        n_heads=2,
        max_seq_len=16,
        dropout=0.0,
        use_qkan=True,
        use_tt_ffn=True,
        **kw,
    )


def test_distill_to_kan_gives_a_classical_model_close_to_the_original(tmp_path):
    model = QTensorFormer(_qkan_only()).eval()
    ids = torch.randint(0, 80, (4, 16))
    kan = distill_to_kan(model, grid=48, calibration_ids=ids)
    rep = kan.kan_report
    assert rep.max_abs_error < 5e-3 and rep.mean_abs_error <= rep.max_abs_error
    assert rep.calib_max_abs_error is not None and rep.calib_max_abs_error < 5e-3
    assert rep.remaining_quantum == []
    quantum_types = (DARUAN, QuantumFeatureEncoder, QuantumKernelAttention)
    assert not any(isinstance(m, quantum_types) for m in kan.modules())
    assert any(isinstance(m, DARUAN) for m in model.modules())  # original untouched
    assert model.blocks[0].ffn.act.theta.dtype == torch.float32
    assert kan.blocks[0].ffn.act.coef.dtype == torch.float32
    with torch.no_grad():
        a, b = model(ids)[0], kan(ids)[0]
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    kan.save_pretrained(tmp_path / "kan")
    back = QTensorFormer.from_pretrained(tmp_path / "kan").eval()
    assert back.config.kan_grid == 48
    torch.testing.assert_close(back(ids)[0], kan(ids)[0])


def test_distill_warns_when_circuits_remain():
    model = QTensorFormer(_qkan_only(use_quantum_encoder=True))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kan = distill_to_kan(model, grid=16)
    assert kan.kan_report.remaining_quantum == ["blocks.0.encoder", "blocks.1.encoder"]
    assert any("still simulates" in str(x.message) for x in w)
    with pytest.raises(ValueError, match="no DARUAN"):
        distill_to_kan(QTensorFormer(ModelConfig.dense(vocab_size=20, d_model=16, n_heads=2)))


def test_daruan_base_branch_is_silu_plus_scaled_circuit():
    """QKAN's layer form: β·SiLU(x) + a·⟨Z⟩(x) + c, the circuit unchanged (state vectors)."""
    act = DARUAN(4, 2, base=True).double()
    with torch.no_grad():
        for p in (act.theta, act.w, act.b, act.base_weight, act.post_weight, act.post_bias):
            p.normal_()
    x = 2 * torch.randn(6, 4, dtype=torch.float64)
    z = _reference(act, x)
    torch.testing.assert_close(act.expval(x), z, rtol=0, atol=1e-12)
    want = act.base_weight * torch.nn.functional.silu(x) + act.post_weight * z + act.post_bias
    torch.testing.assert_close(act(x), want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: act(t), x[:2].clone().requires_grad_())
    # at initialisation the circuit part is small: the activation starts close to 0.5·SiLU
    fresh = DARUAN(256, 2, base=True).double()
    y = torch.randn(64, 256, dtype=torch.float64)
    dev = (fresh(y) - 0.5 * torch.nn.functional.silu(y)).abs().mean()
    assert float(dev) < 0.2  # (θ uniform in [-π, π], the plain DARUAN, gives about 0.5)


def test_distilled_base_daruan_keeps_the_silu_branch_exactly():
    act = DARUAN(8, 2, base=True)
    with torch.no_grad():
        act.theta.normal_()
        act.base_weight.uniform_(0.2, 1.0)
    spline, err = fit_bspline(act, -4.0, 4.0, grid=32)
    assert spline.base and err["max_abs_error"] < 2e-2
    torch.testing.assert_close(spline.base_weight, act.base_weight)
    x = torch.linspace(-4, 4, 101)[:, None].expand(-1, 8)
    assert float((spline(x) - act(x)).abs().max()) < 3e-2
    # outside the fitted interval only the bounded circuit part can be off: |a| + |c| + spline
    far = torch.full((3, 8), 9.0)
    bound = act.post_weight.abs() + act.post_bias.abs() + spline.coef.abs().max(1).values
    assert bool(((spline(far) - act(far)).abs() <= bound + 1e-5).all())


def test_qkan_base_config_default_and_old_configs():
    cfg = ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1, use_qkan=True)
    assert cfg.qkan_base and QTensorFormer(cfg).blocks[0].ffn.act.base
    old = cfg.to_dict()
    del old["qkan_base"]  # a config written before the field existed
    back = ModelConfig.from_dict(old)
    assert back.qkan_base is False and not QTensorFormer(back).blocks[0].ffn.act.base
    with pytest.raises(ValueError, match="qkan_base"):
        ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1, qkan_base="yes")
