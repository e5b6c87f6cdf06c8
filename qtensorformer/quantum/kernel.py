"""Fidelity kernel between two sets of states.

Index legend: ``...`` batch, n and m set sizes, D = 2**q amplitudes.
"""

from __future__ import annotations

import torch

from ._checks import complex_dtype_for, n_qubits_of

__all__ = ["fidelity_kernel"]


def fidelity_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """K_ij = |⟨a_i|b_j⟩|² for ``a`` ``(..., n, D)`` and ``b`` ``(..., m, D)`` → ``(..., n, m)``.

    One (batched) GEMM; real states stay in real arithmetic. Values lie in [0, 1] for
    normalised states.

    Example:
        >>> import torch
        >>> from qtensorformer.quantum import angle_encode
        >>> s = angle_encode(torch.rand(4, 3))
        >>> torch.allclose(fidelity_kernel(s, s).diagonal(), torch.ones(4))
        True
    """
    qa, qb = n_qubits_of(a, "a"), n_qubits_of(b, "b")
    if qa != qb:
        raise ValueError(f"a has {qa} qubits but b has {qb}; both sets must be on one register")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("a and b must have shape (..., n, 2**q) and (..., m, 2**q)")
    if not a.is_complex() and not b.is_complex():
        return (a @ b.mT).square()
    ctype = complex_dtype_for(torch.promote_types(a.dtype, b.dtype))
    overlap = a.to(ctype).conj() @ b.to(ctype).mT
    return torch.view_as_real(overlap).square().sum(-1)
