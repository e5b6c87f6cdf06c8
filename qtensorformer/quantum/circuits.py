"""Whole feature circuits: encoding, ansatz layers (optionally re-uploading the data), and
their FLOP counts.

Index legend: ``...`` batch, L ansatz layers, q qubits, D = 2**q.
"""

from __future__ import annotations

import torch

from .ansatz import apply_ansatz
from .states import angle_encode, apply_encoding

__all__ = ["circuit_flops", "run_circuit"]


def run_circuit(
    x: torch.Tensor,
    weights: torch.Tensor,
    ansatz: str = "real",
    scheme: str = "ry",
    reupload: bool = False,
) -> torch.Tensor:
    """States ``(..., 2**q)`` of the feature circuit on inputs ``x`` ``(..., q)``.

    Without re-uploading: encode(x), then all ansatz layers fused into one operator (one GEMM).
    With re-uploading: for each layer l, encode(x) then ansatz layer l (one GEMM per layer).

    Example:
        >>> import torch
        >>> from qtensorformer.quantum import expval_z
        >>> psi = run_circuit(torch.rand(8, 4), torch.rand(2, 4), ansatz="real")
        >>> expval_z(psi).shape
        torch.Size([8, 4])
    """
    states = angle_encode(x, scheme)
    if not reupload:
        return apply_ansatz(states, weights, ansatz)
    for layer in range(weights.shape[0]):
        if layer > 0:
            states = apply_encoding(states, x, scheme)
        states = apply_ansatz(states, weights[layer : layer + 1], ansatz, first_layer=layer)
    return states


def circuit_flop_breakdown(
    n_qubits: int,
    batch: int,
    n_layers: int,
    ansatz: str = "real",
    scheme: str = "ry",
    reupload: bool = False,
    entropy: str | None = "von_neumann",
    subsystem_qubits: int | None = None,
) -> dict[str, int]:
    """Forward FLOPs of :func:`run_circuit` + ⟨Z⟩ (+ entropy), by part.

    Keys: ``encode``, ``build`` (Kronecker products), ``matmul`` (every GEMM: operator
    products, the batch GEMM(s), re-uploaded encoding gates, the ⟨Z⟩ GEMM, the Gram matrix),
    ``elementwise`` (|ψ|²), ``eigh`` (9 n³ per n×n symmetric eigendecomposition with vectors,
    ×4 when complex Hermitian), ``spectral_backward`` (V diag V† per matrix). A real
    multiply-add is 2 FLOPs, real × complex 4, complex 8.
    """
    q, b, L, D = n_qubits, batch, n_layers, 1 << n_qubits
    cplx = ansatz == "strong" or scheme == "ry_rz"
    mac = 8 if cplx else 2
    parts = dict.fromkeys(
        ("encode", "build", "matmul", "elementwise", "eigh", "spectral_backward"), 0
    )
    parts["encode"] = 2 * b * D * (4 if scheme == "ry_rz" else 1)
    parts["build"] = L * (4 * D * D // 3) * (6 if cplx else 1)
    if not reupload and L > 1:
        parts["matmul"] += (L - 1) * D**3 * mac  # combining the layers' operators
    first = b * D * D * (4 if (cplx and scheme == "ry") else mac)  # real states @ complex op
    parts["matmul"] += first + ((L - 1) * b * D * D * mac if reupload else 0)
    if reupload:  # per-sample 2×2 gates on every wire, run as small batched matmuls
        parts["matmul"] += (L - 1) * q * b * D * (16 if cplx else 4)
    width = 2 * D if cplx else D  # interleaved (re, im)
    parts["elementwise"] += b * width
    parts["matmul"] += 2 * b * width * q
    if entropy is not None and entropy != "none":
        qa = subsystem_qubits if subsystem_qubits is not None else q // 2
        n, m = 1 << min(qa, q - qa), 1 << max(qa, q - qa)
        parts["matmul"] += b * n * n * m * mac
        if entropy == "von_neumann":
            parts["eigh"] = b * 9 * n**3 * (4 if cplx else 1)
            parts["spectral_backward"] = b * n**3 * mac
        else:
            parts["elementwise"] += 2 * b * n * n
    return parts


def circuit_flops(
    n_qubits: int,
    batch: int,
    n_layers: int,
    ansatz: str = "real",
    scheme: str = "ry",
    reupload: bool = False,
    entropy: str | None = "von_neumann",
    subsystem_qubits: int | None = None,
    backward: bool = False,
) -> int:
    """Total FLOPs of :func:`run_circuit` + ⟨Z⟩ (+ entropy) on ``batch`` inputs.

    Forward as in :func:`circuit_flop_breakdown`; ``backward=True`` adds the backward pass:
    twice every forward part (gradients w.r.t. both operands of each product) except the
    eigendecomposition, whose gradient is the V diag V† product.

    Example:
        >>> circuit_flops(8, 8192, 2, "real", backward=True) > circuit_flops(8, 8192, 2, "real")
        True
    """
    p = circuit_flop_breakdown(
        n_qubits, batch, n_layers, ansatz, scheme, reupload, entropy, subsystem_qubits
    )
    fwd = sum(v for k, v in p.items() if k != "spectral_backward")
    if not backward:
        return fwd
    return fwd + 2 * (fwd - p["eigh"]) + p["spectral_backward"]
