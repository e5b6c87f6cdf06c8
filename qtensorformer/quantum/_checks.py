"""Argument checks shared by the quantum simulator (clear ``ValueError``s naming the argument)."""

from __future__ import annotations

import torch

from .._tracing import tracing

#: Largest register the state-vector simulator accepts (2**12 amplitudes per state).
MAX_QUBITS = 12


def check_n_qubits(n_qubits: int, name: str = "n_qubits") -> int:
    """Return ``n_qubits`` if it is an int in ``[1, MAX_QUBITS]``, else raise ``ValueError``."""
    if isinstance(n_qubits, bool) or not isinstance(n_qubits, int):
        raise ValueError(f"{name} must be an int, got {type(n_qubits).__name__}")
    if not 1 <= n_qubits <= MAX_QUBITS:
        raise ValueError(
            f"{name}={n_qubits} is out of range: the simulator supports 1 to {MAX_QUBITS} qubits"
        )
    return n_qubits


def n_qubits_of(states: torch.Tensor, name: str = "states") -> int:
    """Number of qubits of a batch of state vectors ``(..., 2**q)``; raises if not a power of 2."""
    if not isinstance(states, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(states).__name__}")
    if states.ndim < 1:
        raise ValueError(f"{name} must have a last dimension of size 2**n_qubits, got a scalar")
    dim = states.shape[-1]
    q = dim.bit_length() - 1
    if dim < 2 or (1 << q) != dim:
        raise ValueError(
            f"{name} has last dimension {dim}, which is not 2**n_qubits for n_qubits >= 1"
        )
    if q > MAX_QUBITS:
        raise ValueError(
            f"{name} has {q} qubits (last dimension {dim}); the simulator supports at most "
            f"{MAX_QUBITS}"
        )
    return q


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or inf (skipped while tracing for export)."""
    if tracing():
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values; circuit inputs must be finite")


def check_real(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")


def check_wires(wires, n_qubits: int, name: str = "subsystem") -> tuple[int, ...]:
    """Validate a set of wire indices of an ``n_qubits`` register; returns them as a tuple."""
    try:
        wires = tuple(int(w) for w in wires)
    except TypeError:
        raise ValueError(f"{name} must be an iterable of wire indices, got {wires!r}") from None
    if len(set(wires)) != len(wires):
        raise ValueError(f"{name}={wires} repeats a wire")
    bad = [w for w in wires if not 0 <= w < n_qubits]
    if bad:
        raise ValueError(f"{name}={wires} has wires {bad} outside 0..{n_qubits - 1}")
    return wires


def complex_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """complex64 for float32/16 inputs, complex128 for float64."""
    if dtype.is_complex:
        return dtype
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def real_dtype_for(dtype: torch.dtype) -> torch.dtype:
    if dtype == torch.complex128:
        return torch.float64
    if dtype == torch.complex64:
        return torch.float32
    return dtype
