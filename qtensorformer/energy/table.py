"""The energy table of one model: estimates per hardware profile, the query's FLOPs and the
latency measured on this machine (what ``qtf energy`` prints and writes).

Example:
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.energy import energy_table, make_estimators
    >>> m = QTensorFormer(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2))
    >>> t = energy_table(m, make_estimators("cpu_xeon,gpu_a100"), seq_len=16, source="tiny")
    >>> [r.estimate.hardware for r in t.rows], t.flops.tokens, t.measured_latency_ms > 0
    (['cpu_xeon', 'gpu_a100'], 16, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import model_config
from ..model import QTensorFormer
from .estimator import EnergyEstimate, EnergyEstimator
from .flops import FlopsBreakdown, model_flops
from .latency import measure_latency
from .profiles import DEFAULT_CARBON_G_PER_KWH, PROFILES

__all__ = [
    "EnergyRow",
    "EnergyTable",
    "energy_table",
    "hardware_names",
    "make_estimators",
    "untrained_model",
]


@dataclass
class EnergyRow:
    """One hardware profile's estimate; ``on_qpu``: whether its circuits run on a QPU."""

    estimate: EnergyEstimate
    on_qpu: bool


@dataclass
class EnergyTable:
    """Estimates of one query of ``seq_len`` tokens on each profile, with its FLOPs and the
    latency measured on this machine (the only measurement)."""

    source: str
    seq_len: int
    flops: FlopsBreakdown
    measured_latency_ms: float
    carbon_intensity: float
    pue: float
    rows: list[EnergyRow]

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload of ``qtf energy --json``."""
        return {
            "source": self.source,
            "seq_len": self.seq_len,
            "flops": self.flops.to_dict(),
            "measured_latency_ms": self.measured_latency_ms,
            "estimates": [r.estimate.to_dict() for r in self.rows],
        }


def hardware_names(spec: str) -> list[str]:
    """Profile names from ``"all"`` (every profile, in the registry's order) or a
    comma-separated list."""
    if spec == "all":
        return list(PROFILES)
    return [h.strip() for h in spec.split(",") if h.strip()]


def make_estimators(
    hardware: str = "all",
    carbon_intensity: float = DEFAULT_CARBON_G_PER_KWH,
    pue: float = 1.0,
    utilisation: float | None = None,
) -> list[EnergyEstimator]:
    """One estimator per profile named by ``hardware`` (see :func:`hardware_names`); raises
    ValueError on an unknown profile or an invalid carbon intensity, PUE or utilisation."""
    return [
        EnergyEstimator(n, carbon_intensity=carbon_intensity, pue=pue, utilisation=utilisation)
        for n in hardware_names(hardware)
    ]


def untrained_model(
    preset: str, variant: str, vocab_size: int, max_seq_len: int, seed: int = 0
) -> tuple[QTensorFormer, str]:
    """A freshly built (seeded, untrained) model of ``preset`` with ``variant``'s pillars, and a
    one-line description of it."""
    torch.manual_seed(seed)
    model = QTensorFormer(model_config(variant, preset, vocab_size, max_seq_len=max_seq_len))
    return model, f"{preset}/{variant}, vocabulary {vocab_size:,}, untrained (seed {seed})"


def energy_table(
    model: torch.nn.Module,
    estimators: list[EnergyEstimator],
    seq_len: int = 128,
    source: str = "",
    seed: int = 0,
) -> EnergyTable:
    """Count the FLOPs of one eval forward on ``seq_len`` random tokens (drawn with ``seed``),
    estimate them on every estimator, and measure the latency on this machine."""
    max_len = model.config.max_seq_len
    if seq_len > max_len:
        raise ValueError(
            f"seq_len {seq_len} exceeds the model's max_seq_len {max_len}; "
            f"use a query of at most {max_len} tokens"
        )
    if not estimators:
        raise ValueError("no hardware profile given; name at least one (or 'all')")
    flops = model_flops(model, seq_len, seed=seed)
    rows = [EnergyRow(est.estimate(flops), est.profile.kind == "qpu") for est in estimators]
    first = estimators[0]
    return EnergyTable(
        source=source,
        seq_len=seq_len,
        flops=flops,
        measured_latency_ms=measure_latency(model, seq_len),
        carbon_intensity=first.carbon_intensity,
        pue=first.pue,
        rows=rows,
    )
