"""QuantumFeatureEncoder: token features through a simulated quantum circuit.

Index legend: ``...`` batch (e.g. b, n), d feature width, q qubits.

x (..., d) → angles = π·tanh(W_in x) (``"ry"``) or tanh(W_in x) (``"ry_rz"``) (..., q)
→ circuit state ψ → ⟨Z_i⟩ (..., q) → W_out (..., d_out); and the entanglement entropy of ψ
across the configured cut (..., ), the per-token score the router and rank scheduler use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from ._checks import MAX_QUBITS, check_finite, check_wires
from .ansatz import ANSATZE, ansatz_weight_shape
from .circuits import run_circuit
from .entropy import entropy_bound, renyi2_entropy, von_neumann_entropy
from .states import ENCODINGS, expval_z

__all__ = ["ENTROPIES", "EncoderConfig", "EncoderOutput", "QuantumFeatureEncoder"]

ENTROPIES = ("von_neumann", "renyi2", "none")
BACKENDS = ("torch", "pennylane")


@dataclass
class EncoderConfig:
    """Configuration of a :class:`QuantumFeatureEncoder`; validates itself on creation."""

    d_in: int
    n_qubits: int = 4
    n_layers: int = 2
    ansatz: str = "real"
    backend: str = "torch"
    scheme: str = "ry"
    reupload: bool = False
    entropy: str = "von_neumann"
    subsystem: tuple[int, ...] | None = None
    d_out: int | None = None
    pennylane_device: str = "default.qubit"

    def __post_init__(self) -> None:
        for name in ("d_in", "n_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"EncoderConfig.{name} must be a positive int, got {v!r}")
        if self.d_out is not None and (not isinstance(self.d_out, int) or self.d_out < 1):
            raise ValueError(
                f"EncoderConfig.d_out must be a positive int or None, got {self.d_out!r}"
            )
        q = self.n_qubits
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= MAX_QUBITS:
            raise ValueError(f"EncoderConfig.n_qubits must be an int in 1..{MAX_QUBITS}, got {q!r}")
        choices = {
            "ansatz": ANSATZE,
            "backend": BACKENDS,
            "scheme": ENCODINGS,
            "entropy": ENTROPIES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"EncoderConfig.{name}={getattr(self, name)!r} is not one of {allowed}"
                )
        if self.entropy != "none":
            if q < 2:
                raise ValueError(
                    "EncoderConfig: an entanglement entropy needs n_qubits >= 2; "
                    "set entropy='none' for a 1-qubit encoder"
                )
            sub = self.subsystem if self.subsystem is not None else tuple(range(q // 2))
            sub = check_wires(sub, q, "EncoderConfig.subsystem")
            if not 0 < len(sub) < q:
                raise ValueError(
                    f"EncoderConfig.subsystem={sub} must be a non-empty proper subset of the "
                    f"{q} wires"
                )
            self.subsystem = sub

    @property
    def max_entropy(self) -> float:
        """S_max of the configured cut (natural log); 0 when ``entropy='none'``."""
        if self.entropy == "none":
            return 0.0
        return entropy_bound(self.n_qubits, self.subsystem)

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderOutput(NamedTuple):
    """``features`` ``(..., d_out)`` and per-token ``entropy`` ``(...)`` (None if disabled)."""

    features: torch.Tensor
    entropy: torch.Tensor | None


class _TorchCircuit(nn.Module):
    """The feature circuit on the batched torch simulator; one parameter ``weights``."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        shape = ansatz_weight_shape(cfg.ansatz, cfg.n_layers, cfg.n_qubits)
        # Same initialisation as qml.qnn.TorchLayer: uniform in [0, 2π).
        self.weights = nn.Parameter(torch.rand(shape) * (2 * math.pi))

    def forward(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.cfg
        psi = run_circuit(angles, self.weights.to(angles.dtype), c.ansatz, c.scheme, c.reupload)
        z = expval_z(psi)
        if c.entropy == "von_neumann":
            return z, von_neumann_entropy(psi, c.subsystem)
        if c.entropy == "renyi2":
            return z, renyi2_entropy(psi, c.subsystem)
        return z, None


class QuantumFeatureEncoder(nn.Module):
    """Projection d→q, angle encoding, variational circuit, ⟨Z⟩, projection q→d_out.

    Returns :class:`EncoderOutput` ``(features, entropy)``; ``entropy`` is the per-token
    entanglement entropy of the circuit's state across ``subsystem`` (default the first
    ⌊q/2⌋ wires), in nats, with maximum ``self.config.max_entropy``.

    ``backend="torch"`` runs the batched simulator of this package; ``backend="pennylane"``
    runs the same circuit through ``qml.qnn.TorchLayer`` (``pip install
    'qtensorformer[pennylane]'``). Both hold the circuit parameters as ``circuit.weights``,
    so their state dicts are interchangeable.

    Example:
        >>> import torch
        >>> enc = QuantumFeatureEncoder(d_in=16, n_qubits=4, n_layers=2, ansatz="real")
        >>> feats, ent = enc(torch.randn(2, 5, 16))
        >>> feats.shape, ent.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 5]))
    """

    def __init__(
        self,
        d_in: int,
        n_qubits: int = 4,
        n_layers: int = 2,
        ansatz: str = "real",
        backend: str = "torch",
        *,
        scheme: str = "ry",
        reupload: bool = False,
        entropy: str = "von_neumann",
        subsystem: tuple[int, ...] | None = None,
        d_out: int | None = None,
        pennylane_device: str = "default.qubit",
    ) -> None:
        super().__init__()
        cfg = EncoderConfig(
            d_in,
            n_qubits,
            n_layers,
            ansatz,
            backend,
            scheme,
            reupload,
            entropy,
            None if subsystem is None else tuple(subsystem),
            d_out,
            pennylane_device,
        )
        self.config = cfg
        self.proj_in = nn.Linear(cfg.d_in, cfg.n_qubits)
        self.proj_out = nn.Linear(cfg.n_qubits, cfg.d_out or cfg.d_in)
        if cfg.backend == "torch":
            self.circuit: nn.Module = _TorchCircuit(cfg)
        else:
            from .pennylane_backend import make_torch_layer

            ent = None if cfg.entropy == "none" else cfg.entropy
            self.circuit = make_torch_layer(
                cfg.n_qubits,
                cfg.n_layers,
                cfg.ansatz,
                cfg.scheme,
                cfg.reupload,
                ent,
                cfg.subsystem,
                cfg.pennylane_device,
            )

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> QuantumFeatureEncoder:
        """Build an encoder from a config (its fields are the constructor's arguments)."""
        return cls(**cfg.to_dict())

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding angles ``(..., q)`` of features ``x`` ``(..., d_in)``."""
        a = torch.tanh(self.proj_in(x))
        return a * math.pi if self.config.scheme == "ry" else a

    def circuit_outputs(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """⟨Z⟩ ``(..., q)`` and entropy ``(...)`` of the circuit on ``angles``."""
        cfg = self.config
        if cfg.backend == "torch":
            return self.circuit(angles)
        out = self.circuit(angles).to(angles.dtype)
        z = out[..., : cfg.n_qubits]
        if cfg.entropy == "none":
            return z, None
        s = out[..., cfg.n_qubits]
        return z, (-torch.log(s) if cfg.entropy == "renyi2" else s)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        if x.shape[-1] != self.config.d_in:
            raise ValueError(
                f"x has last dimension {x.shape[-1]} but the encoder expects d_in="
                f"{self.config.d_in}"
            )
        check_finite(x, "x")
        z, s = self.circuit_outputs(self.angles(x))
        return EncoderOutput(self.proj_out(z), s)
