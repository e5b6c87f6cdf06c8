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
    """Real floating-point operations of :func:`run_circuit` + ⟨Z⟩ (+ entropy) on ``batch`` inputs.

    Counted the way this simulator executes them: a real multiply-add is 2 FLOPs, a real ×
    complex one 4, a complex one 8. Forward: product-state build, fused-operator build (Kronecker
    products and, for several layers, D×D products), the batch GEMM(s), |ψ|², the ⟨Z⟩ GEMM; for
    the entropy the Gram matrix and its eigendecomposition (9 n³ for eigenvalues and vectors of
    an n×n symmetric matrix, the usual estimate; ×4 when Hermitian complex). Backward (when
    ``backward=True``): twice every GEMM (both operands), the product-state contraction, and
    V diag V† for the spectral gradient.

    Example:
        >>> circuit_flops(8, 8192, 2, "real", backward=True) > circuit_flops(8, 8192, 2, "real")
        True
    """
    q, b, L, D = n_qubits, batch, n_layers, 1 << n_qubits
    cplx = ansatz == "strong" or scheme == "ry_rz"
    mac = 8 if cplx else 2
    # Forward
    encode = 2 * b * D * (4 if scheme == "ry_rz" else 1)
    n_ops = L if reupload else 1  # fused operators built
    build = L * (4 * D * D // 3) * (6 if cplx else 1)
    if not reupload and L > 1:
        build += (L - 1) * D**3 * mac // 2
    first_gemm = b * D * D * (4 if (cplx and scheme == "ry") else mac)
    gemms = first_gemm + (n_ops - 1) * b * D * D * mac
    reupload_enc = (L - 1) * q * b * D * (16 if cplx else 4) if reupload else 0
    width = 2 * D if cplx else D  # interleaved (re, im)
    measure = b * width + 2 * b * width * q
    fwd = encode + build + gemms + reupload_enc + measure
    bwd = 2 * (encode + build + gemms + reupload_enc + measure)
    if entropy is not None and entropy != "none":
        qa = subsystem_qubits if subsystem_qubits is not None else q // 2
        n, m = 1 << min(qa, q - qa), 1 << max(qa, q - qa)
        gram = b * n * n * m * mac
        fwd += gram
        bwd += 2 * gram
        if entropy == "von_neumann":
            fwd += b * 9 * n**3 * (4 if cplx else 1)
            bwd += b * n**3 * mac
        else:
            fwd += 2 * b * n * n
            bwd += 2 * b * n * n
    return int(fwd + bwd) if backward else int(fwd)
