"""QuantumKernelAttention: attention scores from the fidelity of quantum-encoded queries and keys.

Index legend: b batch, h heads, R query rows, n keys, e head width, q qubits, D = 2**q.

Per head, queries and keys are projected to angles (π·tanh(x A + c), e→q), encoded with data
re-uploading (encode, U_1, encode, …, U_L, encode; the circuit weights U are shared by the
heads) and compared by the fidelity kernel K_ij = |⟨φ(q_i)|φ(k_j)⟩|² ∈ [0, 1] (one batched GEMM
of state matrices). The final encoding matters: a unitary applied last to both states would
cancel in the overlap. Scores are masked causally and normalised over j by

* ``"softmax"``: softmax_j(K_ij / τ_h) with a learnable temperature τ_h per head, or
* ``"rowsum"``: K_ij / Σ_j K_ij.

``benchmarks/bench_kernel_norm.py`` compares the two (docs/RESULTS.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..config import KERNEL_NORMS
from ..quantum.ansatz import ansatz_weight_shape
from ..quantum.circuits import circuit_flops, run_circuit
from ..quantum.kernel import fidelity_kernel
from ..quantum.states import apply_encoding

__all__ = ["KERNEL_NORMS", "KernelAttentionOutput", "QuantumKernelAttention"]


class KernelAttentionOutput(NamedTuple):
    """``y`` (b, h, R, e); what the call spent: ``flops`` (all of it), ``sim_flops`` (the
    state-vector simulation share: circuits, re-encoding, overlaps) and ``circuits``
    (states prepared: one per query row and per key not given in ``past_key_states``, per
    head); ``key_states`` (b, h, n, D): every key's encoded state, for a key/value cache."""

    y: torch.Tensor
    flops: int
    sim_flops: int
    circuits: int
    key_states: torch.Tensor | None = None


class QuantumKernelAttention(nn.Module):
    """Fidelity-kernel attention for a set of query rows against causal keys.

    ``forward(q, k, v, allowed, past_key_states=None)`` with q (b, h, R, e), k and v
    (b, h, n, e) and ``allowed`` (b, 1 or h, R, n) bool (True where query i may attend key j)
    → :class:`KernelAttentionOutput` (the output (b, h, R, e), what the call spent and the
    keys' states). Every allowed row must have at least one True. ``past_key_states``
    (b, h, P, D), the states of the first P keys from an earlier call (a key/value cache),
    are reused: a key's state depends on that key alone, so only the other n − P keys are
    simulated.

    Example:
        >>> import torch
        >>> att = QuantumKernelAttention(n_heads=2, head_dim=8, n_qubits=3)
        >>> q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
        >>> causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
        >>> att(q, k, v, causal).y.shape
        torch.Size([1, 2, 5, 8])
    """

    def __init__(
        self,
        n_heads: int,
        head_dim: int,
        n_qubits: int = 4,
        n_layers: int = 2,
        ansatz: str = "real",
        norm: str = "softmax",
        init_temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if norm not in KERNEL_NORMS:
            raise ValueError(f"norm must be one of {KERNEL_NORMS}, got {norm!r}")
        h, e, q = n_heads, head_dim, n_qubits
        self.n_heads, self.head_dim, self.n_qubits = h, e, q
        self.n_layers, self.ansatz, self.norm = n_layers, ansatz, norm
        bound = 1 / math.sqrt(e)
        self.q_proj = nn.Parameter(torch.empty(h, e, q).uniform_(-bound, bound))
        self.q_bias = nn.Parameter(torch.zeros(h, q))
        self.k_proj = nn.Parameter(torch.empty(h, e, q).uniform_(-bound, bound))
        self.k_bias = nn.Parameter(torch.zeros(h, q))
        self.weights = nn.Parameter(
            torch.rand(ansatz_weight_shape(ansatz, n_layers, q)) * (2 * math.pi)
        )
        self.log_temperature = nn.Parameter(torch.full((h,), math.log(init_temperature)))

    def states(self, x: torch.Tensor, proj: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Encoded states (b, h, m, D) of rows x (b, h, m, e)."""
        ang = torch.tanh(torch.einsum("bhme,heq->bhmq", x, proj.to(x.dtype)) + bias[:, None])
        ang = ang * math.pi
        psi = run_circuit(ang, self.weights.to(x.dtype), self.ansatz, "ry", reupload=True)
        return apply_encoding(psi, ang, "ry")

    def kernel(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Fidelity scores (b, h, R, n) of query rows against keys."""
        return fidelity_kernel(
            self.states(q, self.q_proj, self.q_bias), self.states(k, self.k_proj, self.k_bias)
        )

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        allowed: torch.Tensor,
        past_key_states: torch.Tensor | None = None,
    ) -> KernelAttentionOutput:
        b, h, R, e = q.shape
        n = k.shape[2]
        P = 0 if past_key_states is None else past_key_states.shape[2]
        if P > n:
            raise ValueError(f"past_key_states holds {P} keys but k only {n}")
        ks = self.states(k[:, :, P:], self.k_proj, self.k_bias)  # (b, h, n - P, D)
        if P:
            ks = torch.cat([past_key_states.to(ks.dtype), ks], 2)  # (b, h, n, D)
        K = fidelity_kernel(self.states(q, self.q_proj, self.q_bias), ks)  # (b, h, R, n)
        if self.norm == "softmax":
            tau = self.log_temperature.exp().to(K.dtype)[None, :, None, None]
            att = torch.softmax((K / tau).masked_fill(~allowed, float("-inf")), -1)
        else:
            Km = K.masked_fill(~allowed, 0.0)
            att = Km / Km.sum(-1, keepdim=True).clamp_min(torch.finfo(K.dtype).tiny)
        states = b * h * (R + n - P)
        sim = self.simulation_flops(b, R, n, n - P)
        flops = sim + 2 * states * e * self.n_qubits + 2 * b * h * R * n * e  # angles, att @ v
        return KernelAttentionOutput(att @ v, flops, sim, states, ks)

    def simulation_flops(self, b: int, R: int, n: int, new_keys: int | None = None) -> int:
        """State-vector simulation FLOPs of one call on ``b`` sequences, ``R`` query rows and
        ``n`` keys of which ``new_keys`` (default all) are simulated: circuits, the final
        re-encoding (2×2 gates on each wire), overlaps."""
        states = b * self.n_heads * (R + (n if new_keys is None else new_keys))
        D = 1 << self.n_qubits
        return (
            circuit_flops(self.n_qubits, states, self.n_layers, self.ansatz, "ry", True, None)
            + states * self.n_qubits * D * 4
            + 2 * b * self.n_heads * R * n * D
        )

    def extra_repr(self) -> str:
        return (
            f"n_heads={self.n_heads}, head_dim={self.head_dim}, n_qubits={self.n_qubits}, "
            f"n_layers={self.n_layers}, ansatz={self.ansatz!r}, norm={self.norm!r}"
        )
