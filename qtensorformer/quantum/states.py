"""Angle encoding and measurement of batched state vectors.

Index legend: ``...`` any batch shape, q qubits, D = 2**q amplitudes.
Wire 0 is the most significant bit of the state index (PennyLane's order).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ._checks import check_finite, check_n_qubits, check_real, n_qubits_of
from .gates import apply_single_qubit, ry_matrix, rz_matrix

__all__ = ["ENCODINGS", "angle_encode", "apply_encoding", "expval_z", "probabilities"]

#: Supported angle-encoding schemes.
ENCODINGS = ("ry", "ry_rz")


def _check_inputs(x: torch.Tensor, scheme: str) -> int:
    check_real(x, "x")
    if x.ndim < 1:
        raise ValueError("x must have shape (..., n_qubits), got a scalar")
    if scheme not in ENCODINGS:
        raise ValueError(f"scheme={scheme!r} is not supported; choose one of {ENCODINGS}")
    q = check_n_qubits(x.shape[-1], "x.shape[-1] (n_qubits)")
    check_finite(x, "x")
    return q


def _ry_rz_angles(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clamp(-1.0, 1.0)
    return torch.arcsin(x), torch.arccos(x * x)


def angle_encode(x: torch.Tensor, scheme: str = "ry") -> torch.Tensor:
    """Encode features ``x`` ``(..., q)`` into product states ``(..., 2**q)``.

    Schemes:
      * ``"ry"``: RY(x_i)|0> on wire i; real amplitudes ``[cos(x/2), sin(x/2)]``, same dtype
        as ``x``.
      * ``"ry_rz"``: RY(arcsin x_i) then RZ(arccos x_i²); inputs are clamped to [-1, 1];
        complex amplitudes (complex64 for float32 inputs, complex128 for float64).

    Example:
        >>> import torch
        >>> psi = angle_encode(torch.tensor([[0.0, torch.pi]]))
        >>> psi.abs().round(decimals=6)  # |01>
        tensor([[0., 1., 0., 0.]])
    """
    q = _check_inputs(x, scheme)
    if scheme == "ry":
        half = x / 2
        c, s = torch.cos(half), torch.sin(half)
    else:
        a, phi = _ry_rz_angles(x)
        c, s = torch.cos(a / 2), torch.sin(a / 2)
        ph = torch.polar(torch.ones_like(phi), -phi / 2)  # e^{-iφ/2}
        c, s = c * ph, s * ph.conj()
    # Kronecker product over wires, wire 0 most significant.
    state = torch.stack([c[..., 0], s[..., 0]], -1)  # (..., 2)
    for i in range(1, q):
        v = torch.stack([c[..., i], s[..., i]], -1)  # (..., 2)
        state = (state.unsqueeze(-1) * v.unsqueeze(-2)).flatten(-2)  # (..., 2^(i+1))
    return state


def apply_encoding(states: torch.Tensor, x: torch.Tensor, scheme: str = "ry") -> torch.Tensor:
    """Apply the encoding gates of ``x`` ``(..., q)`` to existing ``states`` (data re-uploading).

    Equals :func:`angle_encode` when ``states`` is ``|0...0>``.
    """
    q = _check_inputs(x, scheme)
    if n_qubits_of(states) != q:
        raise ValueError(f"x has {q} features but states have {n_qubits_of(states)} qubits")
    if scheme == "ry":
        gates = ry_matrix(x)  # (..., q, 2, 2)
    else:
        a, phi = _ry_rz_angles(x)
        gates = rz_matrix(phi) @ ry_matrix(a).to(torch.promote_types(a.dtype, torch.complex64))
    for i in range(q):
        states = apply_single_qubit(states, gates[..., i, :, :], i, q)
    return states


def probabilities(states: torch.Tensor) -> torch.Tensor:
    """Computational-basis probabilities |ψ_k|², shape ``(..., 2**q)``, real."""
    n_qubits_of(states)
    if states.is_complex():
        return torch.view_as_real(states).square().sum(-1)
    return states.square()


@lru_cache(maxsize=64)
def _z_signs(n_qubits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    idx = torch.arange(1 << n_qubits, device=device)
    shifts = torch.arange(n_qubits - 1, -1, -1, device=device)
    bits = (idx.unsqueeze(-1) >> shifts) & 1  # (D, q), column i = bit of wire i
    return (1 - 2 * bits).to(dtype)


def expval_z(states: torch.Tensor) -> torch.Tensor:
    """⟨Z_i⟩ for every wire i, shape ``(..., q)``: one GEMM of the probabilities.

    Example:
        >>> import torch
        >>> expval_z(angle_encode(torch.tensor([0.0, torch.pi])))
        tensor([ 1., -1.])
    """
    q = n_qubits_of(states)
    p = probabilities(states)
    return p @ _z_signs(q, p.dtype, p.device)
