"""Variational ansätze, fused into one 2**q × 2**q operator per call.

Index legend: b batch (any leading shape ``...``), L ansatz layers, q qubits, D = 2**q.

Ansätze (wire 0 is the most significant bit, as in PennyLane):
  * ``"strong"``: PennyLane ``StronglyEntanglingLayers``: weights ``(L, q, 3)``; per layer a
    Rot(φ, θ, ω) on every wire, then CNOT(i, (i + r) mod q) for i = 0..q-1 with PennyLane's
    default range r = (layer mod (q−1)) + 1 (no CNOTs when q = 1). Complex.
  * ``"real"``: PennyLane ``BasicEntanglerLayers(rotation=RY)``: weights ``(L, q)``; per layer an
    RY on every wire, then a CNOT ring (one CNOT(0, 1) when q = 2, none when q = 1). Amplitudes
    stay real, so the whole batch runs in real arithmetic.

The weights do not depend on the input, so a stack of layers is one operator in row form
``R = U^T`` (``new_states = states @ R``): a batch of any size costs one GEMM.
"""

from __future__ import annotations

import torch

from .._tracing import tensor_cache
from ..config import ANSATZE
from ._checks import check_n_qubits, check_real, complex_dtype_for, n_qubits_of, real_dtype_for
from .gates import apply_single_qubit, ring_permutation, rot_matrix, ry_matrix

__all__ = [
    "ANSATZE",
    "ansatz_matrix",
    "ansatz_weight_shape",
    "apply_ansatz",
    "entangler_pairs",
    "strong_ranges",
]


# Above this many qubits, layers are combined gate by gate (q·D² work per layer) instead of by
# D×D matrix products (D³ per layer).
_MATMUL_COMBINE_MAX_QUBITS = 8


def ansatz_weight_shape(ansatz: str, n_layers: int, n_qubits: int) -> tuple[int, ...]:
    """Shape of the weights of ``n_layers`` layers: ``(L, q, 3)`` strong, ``(L, q)`` real."""
    _check_ansatz(ansatz)
    return (n_layers, n_qubits, 3) if ansatz == "strong" else (n_layers, n_qubits)


def strong_ranges(n_layers: int, n_qubits: int) -> tuple[int, ...]:
    """PennyLane's default CNOT ranges of ``StronglyEntanglingLayers``."""
    if n_qubits == 1:
        return (0,) * n_layers
    return tuple((k % (n_qubits - 1)) + 1 for k in range(n_layers))


def entangler_pairs(ansatz: str, layer: int, n_qubits: int) -> tuple[tuple[int, int], ...]:
    """(control, target) CNOT pairs of one layer, in application order.

    ``layer`` is the global layer index (it sets the CNOT range of the strong ansatz).
    """
    q = n_qubits
    if q == 1:
        return ()
    if ansatz == "strong":
        r = (layer % (q - 1)) + 1
        return tuple((i, (i + r) % q) for i in range(q))
    if q == 2:
        return ((0, 1),)
    return tuple((i, (i + 1) % q) for i in range(q))


def _check_ansatz(ansatz: str) -> None:
    if ansatz not in ANSATZE:
        raise ValueError(f"ansatz={ansatz!r} is not supported; choose one of {ANSATZE}")


def _check_weights(weights: torch.Tensor, ansatz: str, n_qubits: int) -> None:
    _check_ansatz(ansatz)
    check_real(weights, "weights")
    want = "(n_layers, n_qubits, 3)" if ansatz == "strong" else "(n_layers, n_qubits)"
    ndim = 3 if ansatz == "strong" else 2
    ok = weights.ndim == ndim and weights.shape[1] == n_qubits and weights.shape[0] >= 1
    if ok and ansatz == "strong":
        ok = weights.shape[2] == 3
    if not ok:
        raise ValueError(
            f"weights for the {ansatz!r} ansatz on {n_qubits} qubits must have shape {want} "
            f"with n_layers >= 1, got {tuple(weights.shape)}"
        )


@tensor_cache
def _index_tensor(perm: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(perm, dtype=torch.long, device=device)


def _layer_gates(weights: torch.Tensor, ansatz: str) -> torch.Tensor:
    """Single-qubit gates of every layer and wire, ``(L, q, 2, 2)``."""
    if ansatz == "strong":
        return rot_matrix(weights[..., 0], weights[..., 1], weights[..., 2])
    return ry_matrix(weights)


def _kron_rows(gates: torch.Tensor) -> torch.Tensor:
    """Row form of ⊗_i G_i for gates ``(L, q, 2, 2)`` → ``(L, D, D)``, wire 0 most significant."""
    g = gates.transpose(-1, -2)  # row form of each gate: G^T
    out = g[:, 0]
    for i in range(1, g.shape[1]):
        n = out.shape[-1]
        # (L, n, 1, n, 1) * (L, 1, 2, 1, 2) -> (L, 2n, 2n)
        out = (out[:, :, None, :, None] * g[:, i, None, :, None, :]).reshape(-1, 2 * n, 2 * n)
    return out


def ansatz_matrix(
    weights: torch.Tensor, n_qubits: int, ansatz: str = "strong", first_layer: int = 0
) -> torch.Tensor:
    """The fused operator of all layers in ``weights``, in row form ``R = U^T`` ``(D, D)``.

    ``states @ ansatz_matrix(w, q, a)`` equals running the circuit on each state.
    ``first_layer`` is the global index of ``weights[0]`` (it sets the strong ansatz's CNOT
    ranges when layers are applied one at a time, as in data re-uploading).

    Example:
        >>> import torch
        >>> R = ansatz_matrix(torch.zeros(1, 2), 2, "real")  # RY(0) then CNOT(0, 1)
        >>> R.T.abs()
        tensor([[1., 0., 0., 0.],
                [0., 1., 0., 0.],
                [0., 0., 0., 1.],
                [0., 0., 1., 0.]])
    """
    check_n_qubits(n_qubits)
    _check_weights(weights, ansatz, n_qubits)
    n_layers = weights.shape[0]
    gates = _layer_gates(weights, ansatz)  # (L, q, 2, 2)
    q = n_qubits
    pairs = [entangler_pairs(ansatz, first_layer + k, q) for k in range(n_layers)]

    def permute(m: torch.Tensor, k: int) -> torch.Tensor:
        if not pairs[k]:
            return m
        return m[..., _index_tensor(ring_permutation(pairs[k], q), m.device)]

    if q <= _MATMUL_COMBINE_MAX_QUBITS or n_layers == 1:
        layers = _kron_rows(gates)  # (L, D, D)
        out = permute(layers[0], 0)
        for k in range(1, n_layers):
            out = out @ permute(layers[k], k)
        return out
    # Large registers: first layer as a Kronecker product, later layers gate by gate on the rows.
    out = permute(_kron_rows(gates[:1])[0], 0)
    for k in range(1, n_layers):
        for i in range(q):
            out = apply_single_qubit(out, gates[k, i], i, q)
        out = permute(out, k)
    return out


def apply_ansatz(
    states: torch.Tensor, weights: torch.Tensor, ansatz: str = "strong", first_layer: int = 0
) -> torch.Tensor:
    """Run the ansatz layers ``weights`` on a batch of ``states`` ``(..., 2**q)``: one GEMM.

    Real states with the real ansatz stay real. Real states with a complex operator take one
    real GEMM against the interleaved real/imaginary parts (half the work of a complex GEMM).

    Example:
        >>> import torch
        >>> from qtensorformer.quantum import angle_encode, expval_z
        >>> psi = angle_encode(torch.rand(5, 3))
        >>> out = apply_ansatz(psi, torch.rand(2, 3, 3), "strong")
        >>> out.shape, out.dtype
        (torch.Size([5, 8]), torch.complex64)
    """
    q = n_qubits_of(states)
    _check_weights(weights, ansatz, q)
    R = ansatz_matrix(weights.to(real_dtype_for(states.dtype)), q, ansatz, first_layer)
    if R.is_complex() and not states.is_complex():
        D = 1 << q
        R_ri = torch.view_as_real(R).reshape(D, 2 * D)  # (D, D, 2) -> (D, 2D)
        out = states @ R_ri  # (..., 2D)
        return torch.view_as_complex(out.reshape(*out.shape[:-1], D, 2))
    if R.is_complex() != states.is_complex():
        ctype = complex_dtype_for(states.dtype)
        R, states = R.to(ctype), states.to(ctype)
    return states @ R
