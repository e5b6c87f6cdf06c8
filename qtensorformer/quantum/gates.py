"""Gate matrices and their application to batched state vectors.

Index legend: b batch (any leading shape ``...``), q qubits, D = 2**q amplitudes,
w the wire a gate acts on. Wire 0 is the most significant bit of the state index
(PennyLane's order).

States are row vectors ``(..., D)``; an operator is kept in *row form* ``R = U^T`` so that
applying it to a whole batch is one GEMM ``states @ R``.
"""

from __future__ import annotations

from functools import lru_cache

import torch

__all__ = [
    "apply_single_qubit",
    "cnot_permutation",
    "ring_permutation",
    "rot_matrix",
    "ry_matrix",
    "rz_matrix",
]


def ry_matrix(theta: torch.Tensor) -> torch.Tensor:
    """RY(θ) = [[cos θ/2, -sin θ/2], [sin θ/2, cos θ/2]], shape ``(..., 2, 2)``, real."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rz_matrix(phi: torch.Tensor) -> torch.Tensor:
    """RZ(φ) = diag(e^{-iφ/2}, e^{iφ/2}), shape ``(..., 2, 2)``, complex."""
    e = torch.polar(torch.ones_like(phi), -phi / 2)
    z = torch.zeros_like(e)
    return torch.stack([torch.stack([e, z], -1), torch.stack([z, e.conj()], -1)], -2)


def rot_matrix(phi: torch.Tensor, theta: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """PennyLane's Rot(φ, θ, ω) = RZ(ω) RY(θ) RZ(φ), shape ``(..., 2, 2)``, complex."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    one = torch.ones_like(theta)
    a = torch.polar(one, -(phi + omega) / 2)
    b = torch.polar(one, (phi - omega) / 2)
    row0 = torch.stack([a * c, -b * s], -1)
    row1 = torch.stack([b.conj() * s, a.conj() * c], -1)
    return torch.stack([row0, row1], -2)


def apply_single_qubit(
    states: torch.Tensor, gate: torch.Tensor, wire: int, n_qubits: int
) -> torch.Tensor:
    """Apply a 2×2 ``gate`` to ``wire`` of ``states`` ``(..., 2**n_qubits)``.

    ``gate`` is ``(2, 2)`` (shared) or ``(..., 2, 2)`` broadcastable against the batch dims
    (one gate per state, e.g. data-dependent encodings).
    """
    lead = states.shape[:-1]
    hi, lo = 1 << wire, 1 << (n_qubits - wire - 1)
    s = states.reshape(*lead, hi, 2, lo)  # (..., 2^w, 2, 2^(q-w-1))
    if gate.dtype != s.dtype:
        dtype = torch.promote_types(gate.dtype, s.dtype)
        gate, s = gate.to(dtype), s.to(dtype)
    out = gate.unsqueeze(-3) @ s  # (..., 1, 2, 2) @ (..., 2^w, 2, lo)
    return out.reshape(*lead, hi * 2 * lo)


@lru_cache(maxsize=256)
def _cnot_perm_tuple(control: int, target: int, n_qubits: int) -> tuple[int, ...]:
    cbit, tbit = 1 << (n_qubits - 1 - control), 1 << (n_qubits - 1 - target)
    return tuple(i ^ tbit if i & cbit else i for i in range(1 << n_qubits))


def cnot_permutation(control: int, target: int, n_qubits: int) -> tuple[int, ...]:
    """Index permutation ``p`` with ``CNOT·ψ == ψ[..., p]`` (CNOT is an involution)."""
    if control == target:
        raise ValueError(f"CNOT control and target must differ, got wire {control} for both")
    return _cnot_perm_tuple(control, target, n_qubits)


@lru_cache(maxsize=256)
def ring_permutation(pairs: tuple[tuple[int, int], ...], n_qubits: int) -> tuple[int, ...]:
    """Composed index permutation of a sequence of CNOTs ``((control, target), ...)``.

    Applying the gates in order equals one gather ``ψ[..., p]``.
    """
    idx = list(range(1 << n_qubits))
    for c, t in pairs:
        p = cnot_permutation(c, t, n_qubits)
        idx = [idx[j] for j in p]
    return tuple(idx)
