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
    """Floating-point operations of :func:`run_circuit` + ⟨Z⟩ (+ entropy) on ``batch`` inputs.

    Counted as this simulator executes them (a complex multiply-add is 8 real FLOPs, a real
    one 2): encoding, the fused operator build, the batch GEMM(s), probabilities, the ⟨Z⟩ GEMM,
    and for the entropy the Gram matrix and its eigendecomposition (≈ 9 n³ for eigenvalues and
    vectors, the usual LAPACK estimate). ``backward=True`` adds the backward pass, taken as
    twice the forward GEMM work (gradients w.r.t. both operands) and 2 n³ for the spectral
    gradient.
    """
    q, b, L, D = n_qubits, batch, n_layers, 1 << n_qubits
    complex_op = ansatz == "strong" or scheme == "ry_rz"
    mac = 8 if complex_op else 2
    fwd = 0
    fwd += b * D * (2 if not complex_op else 8)  # product-state build
    n_gemm = L if reupload else 1
    build = L * (q * 4 * D * D + (D**3 * mac // 2 if L > 1 and not reupload else 0))
    fwd += build
    first_real_states = scheme == "ry" and complex_op  # real states @ complex operator
    gemm = b * D * D * mac
    fwd += (gemm // 2 if first_real_states else gemm) + (n_gemm - 1) * gemm
    if reupload:
        fwd += (L - 1) * q * b * D * 4 * (4 if complex_op else 1)
    fwd += b * D * (3 if complex_op else 1)  # probabilities
    fwd += 2 * b * D * q  # <Z> GEMM
    ent_bwd = 0
    if entropy is not None:
        qa = subsystem_qubits if subsystem_qubits is not None else q // 2
        n, m = 1 << min(qa, q - qa), 1 << max(qa, q - qa)
        gram = b * n * n * m * mac
        fwd += gram
        if entropy == "von_neumann":
            fwd += b * 9 * n**3
            ent_bwd = b * 2 * n**3 * (4 if complex_op else 1) + 2 * gram
        else:
            fwd += 2 * b * n * n
            ent_bwd = 2 * gram
    if not backward:
        return int(fwd)
    return int(fwd + 2 * (n_gemm * gemm + build) + 2 * b * D * q + ent_bwd + 4 * b * D)
