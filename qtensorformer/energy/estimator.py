"""Energy, carbon and latency estimates of one query from its FLOPs and a hardware profile."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .flops import FlopsBreakdown, model_flops
from .profiles import CARBON_SOURCE, DEFAULT_CARBON_G_PER_KWH, HardwareProfile, get_profile

__all__ = ["EnergyEstimate", "EnergyEstimator", "estimate_model_energy"]

_J_PER_KWH = 3.6e6


@dataclass
class EnergyEstimate:
    """An estimate (not a measurement) for one query on one hardware profile.

    ``energy_uj`` at the wall (× PUE); ``parts_uj``: classical layers, circuit simulation and
    QPU time; ``latency_ms``: compute time at the assumed sustained rate plus QPU time.
    """

    hardware: str
    device: str
    energy_uj: float
    carbon_ug: float
    latency_ms: float
    flops: int
    classical_flops: int
    simulation_flops: int
    qpu_circuits: int
    qpu_seconds: float
    parts_uj: dict[str, float]
    joules_per_flop: float
    derivation: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class EnergyEstimator:
    """Energy per query on one hardware profile (see :mod:`qtensorformer.energy.profiles`).

    Args:
        hardware: profile name (``edge_mobile``, ``cpu_xeon``, ``apple_m2``, ``gpu_a100``,
            ``edge_tpu``, ``quantum_sim``, ``ibm_quantum``) or a :class:`HardwareProfile`.
        carbon_intensity: grid gCO2 per kWh (default: 2023 global average, 480).
        pue: power usage effectiveness of the facility (1.0: the device alone).
        utilisation: override the profile's assumed fraction of peak throughput.
        shots: override the QPU shots per circuit (``ibm_quantum``).

    Calling the estimator as ``est(model, seq_len)`` returns µJ per query,
    which is the ``energy_fn`` protocol of :class:`~qtensorformer.train.Trainer`.

    Example:
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> m = QTensorFormer(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2))
        >>> est = EnergyEstimator("gpu_a100")
        >>> e = est.estimate(model_flops(m, seq_len=16))
        >>> e.energy_uj > 0 and e.hardware == "gpu_a100"
        True
    """

    def __init__(
        self,
        hardware: str | HardwareProfile = "cpu_xeon",
        carbon_intensity: float = DEFAULT_CARBON_G_PER_KWH,
        pue: float = 1.0,
        utilisation: float | None = None,
        shots: int | None = None,
    ) -> None:
        profile = get_profile(hardware)
        if carbon_intensity < 0:
            raise ValueError(f"carbon_intensity must be >= 0 gCO2/kWh, got {carbon_intensity}")
        if pue < 1:
            raise ValueError(f"pue must be >= 1, got {pue}")
        if utilisation is not None:
            profile = dataclasses.replace(profile, utilisation=utilisation)
        if shots is not None:
            if profile.qpu is None:
                raise ValueError(f"shots only applies to a QPU profile, not {profile.name!r}")
            if shots < 1:
                raise ValueError(f"shots must be >= 1, got {shots}")
            profile = dataclasses.replace(
                profile, qpu=dataclasses.replace(profile.qpu, shots=shots)
            )
        self.profile = profile
        self.carbon_intensity = float(carbon_intensity)
        self.pue = float(pue)
        self.carbon_source = (
            CARBON_SOURCE if carbon_intensity == DEFAULT_CARBON_G_PER_KWH else "user-given"
        )

    @property
    def hardware(self) -> str:
        return self.profile.name

    def __repr__(self) -> str:
        return f"EnergyEstimator({self.profile.name!r}, {self.profile.derivation})"

    def estimate(self, flops: FlopsBreakdown) -> EnergyEstimate:
        """Energy, carbon and latency of the forward pass ``flops`` describes."""
        p = self.profile
        host = p
        if p.host is not None:  # same utilisation as this profile
            host = dataclasses.replace(get_profile(p.host), utilisation=p.utilisation)
        parts, qpu_s, circuits = {}, 0.0, 0
        seconds = flops.classical / host.flops_per_second
        parts["classical"] = flops.classical * host.joules_per_flop
        if p.kind == "qpu":
            q = p.qpu
            enc = (
                flops.encoder_circuits
                * q.shots
                * q.shot_seconds(flops.encoder_depth_2q, flops.encoder_depth_1q)
            )
            ker = (
                flops.kernel_pairs
                * q.shots
                * q.shot_seconds(flops.kernel_depth_2q, flops.kernel_depth_1q)
            )
            qpu_s, circuits = enc + ker, flops.encoder_circuits + flops.kernel_pairs
            parts["qpu"] = qpu_s * q.power_w
        else:
            slow = p.slowdown(flops.n_qubits) if p.kind == "simulator" else 1.0
            parts["simulation"] = flops.simulation * host.joules_per_flop * slow
            seconds += flops.simulation * slow / host.flops_per_second
        parts_uj = {k: v * self.pue * 1e6 for k, v in parts.items()}
        energy_uj = sum(parts_uj.values())
        return EnergyEstimate(
            hardware=p.name,
            device=p.device,
            energy_uj=energy_uj,
            carbon_ug=energy_uj * 1e-6 / _J_PER_KWH * self.carbon_intensity * 1e6,
            latency_ms=(seconds + qpu_s) * 1e3,
            flops=flops.total,
            classical_flops=flops.classical,
            simulation_flops=flops.simulation,
            qpu_circuits=circuits,
            qpu_seconds=qpu_s,
            parts_uj=parts_uj,
            joules_per_flop=host.joules_per_flop,
            derivation=host.derivation,
        )

    def __call__(self, model: torch.nn.Module, seq_len: int) -> float:
        """µJ per query of ``seq_len`` tokens, from the FLOPs and circuits one forward pass on
        seeded random tokens counts (:func:`model_flops`)."""
        return self.estimate(model_flops(model, seq_len)).energy_uj


def estimate_model_energy(
    model: torch.nn.Module,
    estimator: EnergyEstimator | str = "cpu_xeon",
    seq_len: int = 128,
    input_ids: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Estimated energy, carbon and latency of one query of ``seq_len`` tokens.

    Returns a dict with ``energy_uj``, ``carbon_per_query_ug``, ``latency_ms`` (estimated),
    ``flops``, ``hardware``, and the details (``estimate: True``, classical / simulation FLOPs,
    QPU circuits, energy by part, the J/FLOP derivation, the carbon source).

    Example:
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> m = QTensorFormer(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2))
        >>> r = estimate_model_energy(m, EnergyEstimator("edge_mobile"), seq_len=16)
        >>> sorted(k for k in r if k in ("energy_uj", "carbon_per_query_ug", "hardware"))
        ['carbon_per_query_ug', 'energy_uj', 'hardware']
    """
    est = estimator if isinstance(estimator, EnergyEstimator) else EnergyEstimator(estimator)
    f = model_flops(model, seq_len, input_ids=input_ids)
    e = est.estimate(f)
    return {
        "energy_uj": e.energy_uj,
        "carbon_per_query_ug": e.carbon_ug,
        "latency_ms": e.latency_ms,
        "flops": e.flops,
        "hardware": e.hardware,
        "estimate": True,
        "device": e.device,
        "seq_len": seq_len if input_ids is None else int(input_ids.shape[-1]),
        "classical_flops": e.classical_flops,
        "simulation_flops": e.simulation_flops,
        "qpu_circuits": e.qpu_circuits,
        "energy_parts_uj": e.parts_uj,
        "joules_per_flop": e.joules_per_flop,
        "derivation": e.derivation,
        "carbon_intensity_g_per_kwh": est.carbon_intensity,
        "carbon_source": est.carbon_source,
        "pue": est.pue,
    }
