"""The torch simulator against PennyLane default.qubit: states, ⟨Z⟩, entropies, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from qtensorformer.quantum import (
    ansatz_weight_shape,
    expval_z,
    renyi2_entropy,
    run_circuit,
    von_neumann_entropy,
)
from qtensorformer.quantum.pennylane_backend import make_qnode

qml = pytest.importorskip("pennylane")

F64 = torch.float64
CASES = list(itertools.product(range(1, 9), ("strong", "real"), ("ry", "ry_rz"), (False, True)))


def _inputs(q: int, scheme: str, batch: int = 3):
    if scheme == "ry":
        x = (torch.rand(batch, q, dtype=F64) * 2 - 1) * torch.pi
    else:
        x = torch.rand(batch, q, dtype=F64) * 1.9 - 0.95
    return x


@pytest.mark.parametrize(("q", "ansatz", "scheme", "reupload"), CASES)
def test_states_and_expvals_match_pennylane(q, ansatz, scheme, reupload):
    n_layers = 3
    x = _inputs(q, scheme)
    w = torch.rand(ansatz_weight_shape(ansatz, n_layers, q), dtype=F64) * 2 * torch.pi
    ours = run_circuit(x, w, ansatz, scheme, reupload).to(torch.complex128)
    state_qnode = make_qnode(q, n_layers, ansatz, scheme, reupload, measure="state")
    ref = state_qnode(x, w)
    assert ref.shape == ours.shape
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    ent = None if q == 1 else "von_neumann"
    ev_qnode = make_qnode(q, n_layers, ansatz, scheme, reupload, entropy=ent)
    ref_out = torch.stack(ev_qnode(x, w), -1)
    psi = run_circuit(x, w, ansatz, scheme, reupload)
    torch.testing.assert_close(expval_z(psi), ref_out[:, :q], atol=1e-10, rtol=0)
    if q > 1:
        torch.testing.assert_close(von_neumann_entropy(psi), ref_out[:, q], atol=1e-8, rtol=0)


@pytest.mark.parametrize(
    ("q", "ansatz", "scheme", "reupload"), [c for c in CASES if c[0] in (1, 2, 3, 5, 8)]
)
def test_gradients_match_pennylane(q, ansatz, scheme, reupload):
    n_layers = 2
    x0 = _inputs(q, scheme, batch=4)
    w0 = torch.rand(ansatz_weight_shape(ansatz, n_layers, q), dtype=F64) * 2 * torch.pi
    coef = torch.randn(4, q + (q > 1), dtype=F64)
    ent = None if q == 1 else "von_neumann"

    def loss_ours(x, w):
        psi = run_circuit(x, w, ansatz, scheme, reupload)
        out = expval_z(psi)
        if q > 1:
            out = torch.cat([out, von_neumann_entropy(psi).unsqueeze(-1)], -1)
        return (out * coef).sum()

    qnode = make_qnode(q, n_layers, ansatz, scheme, reupload, entropy=ent)

    def loss_pl(x, w):
        return (torch.stack(qnode(x, w), -1) * coef).sum()

    grads = []
    for fn in (loss_ours, loss_pl):
        x = x0.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        fn(x, w).backward()
        grads.append((x.grad, w.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("ansatz", ["strong", "real"])
def test_ten_qubits_gate_by_gate_path(ansatz):
    # q > 8 combines layers gate by gate instead of by matrix products.
    q, n_layers = 10, 3
    x = _inputs(q, "ry", batch=2)
    w = torch.rand(ansatz_weight_shape(ansatz, n_layers, q), dtype=F64) * 2 * torch.pi
    ours = run_circuit(x, w, ansatz).to(torch.complex128)
    ref = make_qnode(q, n_layers, ansatz, measure="state")(x, w)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)


def _random_states(batch, q, complex_=True):
    if complex_:
        s = torch.randn(batch, 2**q, dtype=torch.complex128)
    else:
        s = torch.randn(batch, 2**q, dtype=F64)
    return s / torch.linalg.vector_norm(s, dim=-1, keepdim=True)


@pytest.mark.parametrize("q", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("complex_", [True, False])
def test_von_neumann_matches_qml_math(q, complex_):
    states = _random_states(4, q, complex_)
    cuts = [tuple(range(q // 2)), (q - 1,), tuple(range(0, q, 2))]
    for sub in cuts:
        if not 0 < len(sub) < q:
            continue
        ours = von_neumann_entropy(states, sub)
        ref = torch.stack(
            [
                torch.as_tensor(
                    qml.math.vn_entropy(
                        qml.math.dm_from_state_vector(s.to(torch.complex128)), indices=list(sub)
                    )
                )
                for s in states
            ]
        )
        torch.testing.assert_close(ours, ref.to(ours.dtype), atol=1e-10, rtol=0)


@pytest.mark.parametrize("q", [2, 3, 4, 6])
def test_renyi2_matches_reduced_density_matrix(q):
    states = _random_states(3, q)
    for sub in [tuple(range(q // 2)), (q - 1,), (0, q - 1) if q > 2 else (1,)]:
        ours = renyi2_entropy(states, sub)
        rhos = [torch.as_tensor(qml.math.reduce_statevector(s, indices=list(sub))) for s in states]
        ref = torch.stack([-torch.log(torch.trace(r @ r).real) for r in rhos])
        torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
