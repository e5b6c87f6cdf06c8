"""Energy, carbon and FLOPs of a query: analytic FLOPs from a forward pass, hardware profiles
derived from published power and peak throughput, and measured latency beside them.

Every energy, carbon and latency number here is an estimate; :func:`measure_latency` is the
only measurement.

Example:
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.energy import EnergyEstimator, estimate_model_energy
    >>> model = QTensorFormer(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2))
    >>> r = estimate_model_energy(model, EnergyEstimator("edge_mobile"), seq_len=16)
    >>> r["hardware"], r["estimate"], r["energy_uj"] > 0
    ('edge_mobile', True, True)
"""

from .estimator import EnergyEstimate, EnergyEstimator, estimate_model_energy
from .flops import FlopsBreakdown, model_flops, torch_flop_count
from .latency import measure_latency, measure_latency_ms
from .profiles import (
    CARBON_SOURCE,
    DEFAULT_CARBON_G_PER_KWH,
    PROFILES,
    HardwareProfile,
    QPUModel,
    get_profile,
)
from .table import (
    EnergyRow,
    EnergyTable,
    energy_table,
    hardware_names,
    make_estimators,
    untrained_model,
)

__all__ = [
    "CARBON_SOURCE",
    "DEFAULT_CARBON_G_PER_KWH",
    "PROFILES",
    "EnergyEstimate",
    "EnergyEstimator",
    "EnergyRow",
    "EnergyTable",
    "FlopsBreakdown",
    "HardwareProfile",
    "QPUModel",
    "energy_table",
    "estimate_model_energy",
    "get_profile",
    "hardware_names",
    "make_estimators",
    "measure_latency",
    "measure_latency_ms",
    "model_flops",
    "torch_flop_count",
    "untrained_model",
]
