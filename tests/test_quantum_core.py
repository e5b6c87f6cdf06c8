"""Entropies on known states, gradchecks, the fidelity kernel, dtype/shape handling, errors."""

from __future__ import annotations

import math

import pytest
import torch

from qtensorformer.quantum import (
    MAX_QUBITS,
    angle_encode,
    ansatz_matrix,
    apply_ansatz,
    apply_encoding,
    expval_z,
    fidelity_kernel,
    probabilities,
    renyi2_entropy,
    run_circuit,
    von_neumann_entropy,
)

F64, C128 = torch.float64, torch.complex128
LOG2 = math.log(2.0)


def ghz(q, dtype=F64):
    s = torch.zeros(2**q, dtype=dtype)
    s[0] = s[-1] = 2**-0.5
    return s


def test_bell_pair_entropy_is_log2():
    bell = torch.tensor([1, 0, 0, 1], dtype=F64) / 2**0.5
    assert von_neumann_entropy(bell).item() == pytest.approx(LOG2, abs=1e-12)
    assert renyi2_entropy(bell).item() == pytest.approx(LOG2, abs=1e-12)
    # The same state built from gates: H-like RY(π/2) on wire 0 then CNOT(0, 1).
    psi = apply_ansatz(
        angle_encode(torch.tensor([torch.pi / 2, 0.0], dtype=F64)),
        torch.zeros(1, 2, dtype=F64),
        "real",
    )
    torch.testing.assert_close(psi, bell)


@pytest.mark.parametrize("q", [2, 3, 4, 5, 6])
def test_ghz_entropy_is_log2_on_every_cut(q):
    s = ghz(q)
    for size in range(1, q):
        sub = tuple(torch.randperm(q)[:size].tolist())
        assert von_neumann_entropy(s, sub).item() == pytest.approx(LOG2, abs=1e-12), sub
        assert renyi2_entropy(s, sub).item() == pytest.approx(LOG2, abs=1e-12), sub


@pytest.mark.parametrize("q", [2, 3, 6])
def test_product_states_have_zero_entropy_and_finite_gradients(q):
    x = (torch.rand(5, q, dtype=F64) * 2 - 1).requires_grad_(True)
    psi = angle_encode(x)
    s = von_neumann_entropy(psi) + renyi2_entropy(psi)
    torch.testing.assert_close(s, torch.zeros(5, dtype=F64), atol=1e-12, rtol=0)
    s.sum().backward()
    assert torch.isfinite(x.grad).all()
    # float32 too: default dtype of the library.
    x32 = torch.rand(5, q).requires_grad_(True)
    von_neumann_entropy(angle_encode(x32, "ry_rz")).sum().backward()
    assert torch.isfinite(x32.grad).all()


def test_entropy_matches_closed_form_for_two_qubits():
    # cos a|00> + sin a|11> has Schmidt probabilities cos² a, sin² a.
    a = torch.rand(7, dtype=F64) * math.pi / 2
    s = torch.zeros(7, 4, dtype=F64)
    s[:, 0], s[:, 3] = torch.cos(a), torch.sin(a)
    p = torch.stack([torch.cos(a) ** 2, torch.sin(a) ** 2], -1)
    ref = -(p * torch.log(p)).sum(-1)
    torch.testing.assert_close(von_neumann_entropy(s), ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(renyi2_entropy(s), -torch.log((p**2).sum(-1)))


@pytest.mark.parametrize("complex_", [False, True])
def test_entropy_gradcheck(complex_):
    dtype = C128 if complex_ else F64
    v = torch.randn(2, 8, dtype=dtype, requires_grad=True)

    def f(v):
        s = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        return von_neumann_entropy(s, (0,)), von_neumann_entropy(s, (0, 2)), renyi2_entropy(s)

    assert torch.autograd.gradcheck(f, (v,))


def test_entropy_gradient_matches_eigvalsh_autograd():
    v = torch.randn(6, 16, dtype=C128)
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    a = v.clone().requires_grad_(True)
    von_neumann_entropy(a).sum().backward()
    b = v.clone().requires_grad_(True)
    m = b.reshape(6, 4, 4)
    lam = torch.linalg.eigvalsh(m @ m.mH)
    (-(lam * torch.log(lam)).sum()).backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=0)


def test_threaded_eigh_path_matches_single_call(monkeypatch):
    from qtensorformer.quantum import entropy as ent

    v = torch.randn(2048, 16, dtype=F64)
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    monkeypatch.setattr(ent, "_THREADED_EIGH_MIN_BATCH", 10**9)
    single = von_neumann_entropy(v)
    monkeypatch.setattr(ent, "_THREADED_EIGH_MIN_BATCH", 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    threaded = von_neumann_entropy(v)
    torch.testing.assert_close(single, threaded, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("ansatz", "scheme", "reupload"),
    [
        ("real", "ry", False),
        ("strong", "ry", False),
        ("strong", "ry_rz", True),
        ("real", "ry_rz", True),
    ],
)
def test_whole_circuit_gradcheck(ansatz, scheme, reupload):
    q = 3
    x = (torch.rand(2, q, dtype=F64) * 1.8 - 0.9).requires_grad_(True)
    shape = (2, q, 3) if ansatz == "strong" else (2, q)
    w = torch.rand(shape, dtype=F64, requires_grad=True)

    def f(x, w):
        psi = run_circuit(x, w, ansatz, scheme, reupload)
        return expval_z(psi), von_neumann_entropy(psi), renyi2_entropy(psi, (2,))

    assert torch.autograd.gradcheck(f, (x, w))


def test_fidelity_kernel_against_explicit_overlaps():
    for dtype in (F64, C128):
        a = torch.randn(2, 5, 8, dtype=dtype)
        b = torch.randn(2, 4, 8, dtype=dtype)
        a = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True)
        b = b / torch.linalg.vector_norm(b, dim=-1, keepdim=True)
        k = fidelity_kernel(a, b)
        ref = torch.empty(2, 5, 4, dtype=F64)
        for t in range(2):
            for i in range(5):
                for j in range(4):
                    ref[t, i, j] = torch.vdot(a[t, i], b[t, j]).abs() ** 2
        torch.testing.assert_close(k, ref, atol=1e-12, rtol=0)
        assert (k >= 0).all() and (k <= 1 + 1e-12).all()
    # Mixed real/complex sets promote to complex.
    s = run_circuit(torch.rand(3, 3), torch.rand(1, 3, 3), "strong")
    r = angle_encode(torch.rand(2, 3))
    ref = (s.conj() @ r.to(s.dtype).mT).abs() ** 2
    torch.testing.assert_close(fidelity_kernel(s, r), ref)


def test_batch_shapes_and_default_dtypes():
    x = torch.rand(2, 3, 5, 4)
    psi = run_circuit(x, torch.rand(2, 4), "real")
    assert psi.shape == (2, 3, 5, 16) and psi.dtype == torch.float32
    psi_c = run_circuit(x, torch.rand(2, 4, 3), "strong")
    assert psi_c.dtype == torch.complex64
    assert run_circuit(x.double(), torch.rand(2, 4, 3, dtype=F64), "strong").dtype == C128
    torch.testing.assert_close(probabilities(psi_c).sum(-1), torch.ones(2, 3, 5))
    assert expval_z(psi).shape == (2, 3, 5, 4)
    assert von_neumann_entropy(psi).shape == (2, 3, 5)
    # Batched result equals per-sample results.
    w = torch.rand(2, 4)
    one = run_circuit(x[1, 2, 3], w, "real")
    many = run_circuit(x, w, "real")
    torch.testing.assert_close(many[1, 2, 3], one)


def test_reupload_with_encoding_on_zero_state_equals_encode():
    x = torch.rand(4, 3, dtype=F64)
    zero = torch.zeros(4, 8, dtype=F64)
    zero[:, 0] = 1
    for scheme in ("ry", "ry_rz"):
        torch.testing.assert_close(
            apply_encoding(zero, x, scheme).to(C128), angle_encode(x, scheme).to(C128)
        )


def test_ansatz_matrix_is_unitary():
    for ansatz, shape in (("strong", (3, 5, 3)), ("real", (3, 5))):
        R = ansatz_matrix(torch.rand(shape, dtype=F64), 5, ansatz)
        eye = torch.eye(32, dtype=R.dtype)
        torch.testing.assert_close(R @ R.mH, eye, atol=1e-12, rtol=0)


def test_max_qubits_runs():
    psi = run_circuit(torch.rand(2, MAX_QUBITS), torch.rand(2, MAX_QUBITS), "real")
    torch.testing.assert_close(psi.square().sum(-1), torch.ones(2), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- bad input


def test_too_many_qubits_is_a_clear_error():
    with pytest.raises(ValueError, match="n_qubits"):
        angle_encode(torch.rand(2, MAX_QUBITS + 1))
    with pytest.raises(ValueError, match="states"):
        expval_z(torch.rand(2, 2 ** (MAX_QUBITS + 1)))
    with pytest.raises(ValueError, match="n_qubits"):
        ansatz_matrix(torch.rand(1, 13), 13, "real")


def test_wrong_weight_shapes_are_clear_errors():
    psi = angle_encode(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"weights .*\(n_layers, n_qubits, 3\)"):
        apply_ansatz(psi, torch.rand(2, 3), "strong")
    with pytest.raises(ValueError, match=r"weights .*\(n_layers, n_qubits\)"):
        apply_ansatz(psi, torch.rand(2, 4), "real")
    with pytest.raises(ValueError, match="ansatz"):
        apply_ansatz(psi, torch.rand(2, 3), "hardware")


def test_non_finite_inputs_are_clear_errors():
    x = torch.rand(2, 3)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        angle_encode(x)
    x[1, 2] = float("inf")
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        run_circuit(x, torch.rand(1, 3), "real")


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="scheme"):
        angle_encode(torch.rand(3), "amplitude")
    with pytest.raises(ValueError, match="not 2\\*\\*n_qubits"):
        von_neumann_entropy(torch.rand(6))
    with pytest.raises(ValueError, match="subsystem"):
        von_neumann_entropy(ghz(3), (0, 3))
    with pytest.raises(ValueError, match="subsystem"):
        von_neumann_entropy(ghz(3), (0, 1, 2))
    with pytest.raises(ValueError, match="at least 2 qubits"):
        von_neumann_entropy(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="a has 2 qubits but b has 3"):
        fidelity_kernel(torch.rand(2, 4), torch.rand(2, 8))
    with pytest.raises(ValueError, match="real floating-point"):
        angle_encode(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.rand(64, 5, dtype=F64)
    w = torch.rand(2, 5, 3, dtype=F64)
    cpu = run_circuit(x, w, "strong")
    gpu = run_circuit(x.cuda(), w.cuda(), "strong")
    torch.testing.assert_close(gpu.cpu(), cpu)
    torch.testing.assert_close(von_neumann_entropy(gpu).cpu(), von_neumann_entropy(cpu))


@pytest.mark.parametrize(
    ("q", "n_layers", "reupload"), [(6, 2, False), (5, 3, True), (3, 1, False)]
)
def test_matmul_flops_match_torch_flop_counter(q, n_layers, reupload):
    from torch.utils.flop_counter import FlopCounterMode

    from qtensorformer.quantum import circuit_flop_breakdown

    b = 96
    x, w = torch.rand(b, q), torch.rand(n_layers, q)
    with FlopCounterMode(display=False) as fc:
        psi = run_circuit(x, w, "real", reupload=reupload)
        expval_z(psi)
        von_neumann_entropy(psi)
    parts = circuit_flop_breakdown(q, b, n_layers, "real", reupload=reupload)
    assert parts["matmul"] == fc.get_total_flops()


def test_constants_cached_under_inference_mode_still_train():
    """A first forward under torch.inference_mode (as generation runs) must not cache
    inference tensors that a later training step records."""
    from qtensorformer.quantum.ansatz import _index_tensor, ansatz_matrix

    _index_tensor.cache_clear()
    w = torch.randn(2, 3, 3, dtype=torch.float64)
    with torch.inference_mode():
        ref = ansatz_matrix(w, 3, "strong")
    w.requires_grad_(True)
    out = ansatz_matrix(w, 3, "strong")
    out.abs().sum().backward()
    torch.testing.assert_close(out.detach(), ref)
    assert w.grad is not None and torch.isfinite(w.grad).all()
