"""Angle encoding and measurement of batched state vectors.

Index legend: ``...`` any batch shape, q qubits, D = 2**q amplitudes.
Wire 0 is the most significant bit of the state index (PennyLane's order).
"""

from __future__ import annotations

import torch

from .._tracing import tensor_cache
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


class _ProductState(torch.autograd.Function):
    """Kronecker product of per-wire 2-vectors ``v`` ``(B, q, 2)`` → ``(B, 2**q)``.

    Wire 0 is the most significant. The backward contracts the output gradient level by level
    with batched GEMMs (two per wire, sizes halving), instead of autograd's chain of broadcast
    multiplies and reductions over the full state (measured ~7× less backward time at q=8,
    b=8192 on the 2-core dev VM).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:
        prefixes = [v[:, 0]]  # P_i: product of wires 0..i, (B, 2^(i+1))
        for i in range(1, v.shape[1]):
            prefixes.append((prefixes[-1].unsqueeze(-1) * v[:, i].unsqueeze(-2)).flatten(-2))
        ctx.save_for_backward(v, *prefixes[:-1])
        return prefixes[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        v, *prefixes = ctx.saved_tensors
        q = v.shape[1]
        grad_v = torch.empty_like(v)
        g = grad  # gradient w.r.t. P_i, (B, 2^(i+1))
        for i in range(q - 1, 0, -1):
            g3 = g.reshape(g.shape[0], -1, 2)  # (B, 2^i, 2)
            # d/dv_i = P_{i-1}^* · G ; d/dP_{i-1} = G · v_i^*
            grad_v[:, i] = (prefixes[i - 1].conj().unsqueeze(-2) @ g3).squeeze(-2)
            g = (g3 @ v[:, i].conj().unsqueeze(-1)).squeeze(-1)
        grad_v[:, 0] = g
        return grad_v


def _product_state(v: torch.Tensor) -> torch.Tensor:
    """``v`` ``(..., q, 2)`` → ``(..., 2**q)`` Kronecker product over wires."""
    lead = v.shape[:-2]
    out = _ProductState.apply(v.reshape(-1, *v.shape[-2:]))  # (B, q, 2) -> (B, D)
    return out.reshape(*lead, out.shape[-1])


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
    if q == 1:
        return torch.stack([c[..., 0], s[..., 0]], -1)
    return _product_state(torch.stack([c, s], -1))  # (..., q, 2) -> (..., 2^q)


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


@tensor_cache
def _z_signs(n_qubits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    q = n_qubits
    signs = [[1 - 2 * ((k >> (q - 1 - i)) & 1) for i in range(q)] for k in range(1 << q)]
    return torch.tensor(signs, dtype=dtype, device=device)  # (D, q), column i = wire i


def expval_z(states: torch.Tensor) -> torch.Tensor:
    """⟨Z_i⟩ for every wire i, shape ``(..., q)``: one GEMM of the probabilities.

    Example:
        >>> import torch
        >>> expval_z(angle_encode(torch.tensor([0.0, torch.pi])))
        tensor([ 1., -1.])
    """
    q = n_qubits_of(states)
    if states.is_complex():
        # |ψ_k|² summed against the signs in one GEMM over interleaved (re, im) parts.
        ri = torch.view_as_real(states).flatten(-2)  # (..., D, 2) -> (..., 2D)
        signs = _z_signs(q, ri.dtype, ri.device).repeat_interleave(2, dim=0)  # (2D, q)
        return ri.square() @ signs
    return states.square() @ _z_signs(q, states.dtype, states.device)
