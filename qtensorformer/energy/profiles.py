"""Hardware profiles: energy per FLOP derived from published power and peak throughput.

Every number is an *estimate* built as

    joules per FLOP = power (W) / (peak throughput (FLOP/s) × utilisation)

from the vendor figures named next to it. ``utilisation`` is the fraction of peak a small
transformer reaches on one query; we assume 0.3 for every classical device (dense GEMMs of
a few hundred columns rarely reach more; override it per estimator). Energies are those of the
device's rated power over the estimated run time, so idle and memory-bound time is charged at
full power: a conservative (high) estimate, not a measurement.

Two profiles are not classical:

- ``quantum_sim``: the circuits are simulated by state vectors on the ``cpu_xeon`` host. The
  simulation's small GEMMs run far below the host's GEMM rate; the slowdown is the one
  ``benchmarks/bench_quantum.py`` measured for this package (docs/RESULTS.md: 119.7× the FLOP
  floor at 4 qubits, 5.1× at 8, real ansatz, batch 8192), interpolated log-linearly in qubits.
- ``ibm_quantum``: each circuit runs on a superconducting QPU, ``shots`` times; energy is
  circuits × shots × time per shot × system power. Classical layers run on the ``cpu_xeon``
  host. See :class:`QPUModel` for the circuit counts and timings.

The seed description's femtojoule-per-FLOP figures are about a thousand times below these
devices' rated power over their peak throughput and are not used.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

__all__ = [
    "CARBON_SOURCE",
    "DEFAULT_CARBON_G_PER_KWH",
    "PROFILES",
    "HardwareProfile",
    "QPUModel",
    "get_profile",
]

#: Global average carbon intensity of electricity generation, 2023: 480 gCO2/kWh
#: (Ember, "Global Electricity Review 2024").
DEFAULT_CARBON_G_PER_KWH = 480.0
CARBON_SOURCE = (
    "global average electricity 2023, 480 gCO2/kWh (Ember, Global Electricity Review 2024)"
)

#: Default utilisation of peak throughput assumed for one query on a classical device.
DEFAULT_UTILISATION = 0.3

#: Slowdown of this package's circuit simulation relative to the host's GEMM rate, measured by
#: ``benchmarks/bench_quantum.py`` (docs/RESULTS.md, real ansatz, batch 8192): qubits → ×.
SIMULATION_SLOWDOWN = {4: 119.7, 8: 5.1}


@dataclass(frozen=True)
class QPUModel:
    """Cost of running circuits on a superconducting QPU (IBM Eagle/Heron class).

    Time per shot = ``rep_delay_s`` (the reset delay between shots, IBM's default 250 µs)
    + ``readout_s`` + two-qubit depth × ``gate_2q_s`` + one-qubit depth × ``gate_1q_s``.
    Energy = circuits × shots × time per shot × ``power_w``. ``power_w`` = 25 kW is the order
    of magnitude reported for a superconducting system with its dilution refrigerator,
    compressors and control electronics (A. Auffèves, PRX Quantum 3, 020101 (2022), and
    IBM's public statements of a few tens of kW per system). ``shots`` = 1024 estimates a
    probability to about ±1.5% (one standard error).

    Circuits counted: one encoder circuit per token (all ⟨Z⟩ from the same shots), and for
    quantum-kernel attention one compute-uncompute circuit per (head, query, allowed key) pair,
    since an overlap |⟨φ(q)|φ(k)⟩|² is the probability of measuring all zeros after
    U(q) U(k)†. The entanglement entropy used as a routing score has no cheap hardware
    estimator (it needs randomised measurements) and is left out: a lower bound.
    """

    power_w: float = 25_000.0
    shots: int = 1024
    rep_delay_s: float = 250e-6
    readout_s: float = 2e-6
    gate_2q_s: float = 500e-9
    gate_1q_s: float = 50e-9

    def shot_seconds(self, depth_2q: int, depth_1q: int) -> float:
        gates = depth_2q * self.gate_2q_s + depth_1q * self.gate_1q_s
        return self.rep_delay_s + self.readout_s + gates


@dataclass(frozen=True)
class HardwareProfile:
    """One device: peak throughput, power, utilisation and where the numbers come from.

    Example:
        >>> p = get_profile("gpu_a100")
        >>> round(p.joules_per_flop * 1e12, 2)  # pJ per FLOP
        4.27
    """

    name: str
    device: str
    peak_flops: float  # FLOP/s (ops/s for int8 devices) at ``precision``
    power_w: float
    source: str
    precision: str = "fp32"
    utilisation: float = DEFAULT_UTILISATION
    kind: str = "classical"  # classical | simulator | qpu
    host: str | None = None  # the classical device beside a simulator or QPU
    qpu: QPUModel | None = None
    notes: str = ""
    simulation_slowdown: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.peak_flops <= 0 or self.power_w <= 0:
            raise ValueError(f"profile {self.name!r}: peak_flops and power_w must be > 0")
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"profile {self.name!r}: utilisation must be in (0, 1]")
        if self.kind not in ("classical", "simulator", "qpu"):
            raise ValueError(f"profile {self.name!r}: unknown kind {self.kind!r}")

    @property
    def joules_per_flop(self) -> float:
        """Energy per FLOP of the classical work: power / (peak × utilisation)."""
        return self.power_w / (self.peak_flops * self.utilisation)

    @property
    def flops_per_second(self) -> float:
        """Sustained rate assumed for latency estimates: peak × utilisation."""
        return self.peak_flops * self.utilisation

    def slowdown(self, n_qubits: int) -> float:
        """How much slower than the host's GEMM rate the circuit simulation runs (1 when the
        profile does not model it): log-linear in qubits between the measured points."""
        pts = sorted(self.simulation_slowdown.items())
        if not pts:
            return 1.0
        if n_qubits <= pts[0][0]:
            return pts[0][1]
        if n_qubits >= pts[-1][0]:
            return pts[-1][1]
        for (q0, s0), (q1, s1) in itertools.pairwise(pts):
            if q0 <= n_qubits <= q1:
                t = (n_qubits - q0) / (q1 - q0)
                return math.exp((1 - t) * math.log(s0) + t * math.log(s1))
        return 1.0  # unreachable

    @property
    def derivation(self) -> str:
        """One line: the arithmetic behind :attr:`joules_per_flop`."""
        return (
            f"{self.power_w:g} W / ({self.peak_flops / 1e12:g} TFLOP/s {self.precision} × "
            f"{self.utilisation:g} utilisation) = {self.joules_per_flop * 1e12:.3g} pJ/FLOP"
        )


_XEON = dict(
    device="Intel Xeon Platinum 8380 (Ice Lake-SP, 40 cores)",
    # 40 cores × 2.3 GHz base × 64 FP32 FLOP/cycle (2 AVX-512 FMA units × 16 lanes × 2)
    peak_flops=40 * 2.3e9 * 64,
    power_w=270.0,
    source="Intel ARK: 40 cores, 2.3 GHz base, 2 AVX-512 FMA units per core, TDP 270 W",
)

PROFILES: dict[str, HardwareProfile] = {
    "edge_mobile": HardwareProfile(
        name="edge_mobile",
        device="NVIDIA Jetson Orin Nano 8GB module (15 W mode)",
        # 1024 CUDA cores × 625 MHz × 2 FLOP per FMA
        peak_flops=1024 * 625e6 * 2,
        power_w=15.0,
        source="NVIDIA Jetson Orin Nano series data sheet: 1024-core Ampere GPU at 625 MHz, "
        "7-15 W module power",
    ),
    "cpu_xeon": HardwareProfile(name="cpu_xeon", **_XEON),
    "apple_m2": HardwareProfile(
        name="apple_m2",
        device="Apple M2, 10-core GPU",
        peak_flops=3.6e12,
        power_w=15.0,
        source="Apple M2 announcement (June 2022): 3.6 TFLOP/s FP32 GPU; Apple publishes no GPU "
        "power, about 15 W under sustained GPU load in public reviews (an assumption)",
    ),
    "gpu_a100": HardwareProfile(
        name="gpu_a100",
        device="NVIDIA A100 SXM4 80GB",
        peak_flops=312e12,
        power_w=400.0,
        precision="bf16",
        source="NVIDIA A100 data sheet: 312 TFLOP/s dense BF16 tensor core, 400 W TDP",
    ),
    "edge_tpu": HardwareProfile(
        name="edge_tpu",
        device="Google Coral Edge TPU",
        peak_flops=4e12,
        power_w=2.0,
        precision="int8",
        source="Coral Edge TPU documentation: 4 TOPS INT8 at 0.5 W per TOPS (2 W)",
        notes="assumes every operation runs as int8 on the TPU (a quantised model)",
    ),
    "quantum_sim": HardwareProfile(
        name="quantum_sim",
        kind="simulator",
        host="cpu_xeon",
        simulation_slowdown=dict(SIMULATION_SLOWDOWN),
        notes="classical layers at the host's rate; circuit simulation slower by the factor "
        "measured by benchmarks/bench_quantum.py",
        **{**_XEON, "device": "state-vector simulation on " + _XEON["device"]},
    ),
    "ibm_quantum": HardwareProfile(
        name="ibm_quantum",
        kind="qpu",
        host="cpu_xeon",
        qpu=QPUModel(),
        notes="circuits on a superconducting QPU (see QPUModel), classical layers on the "
        "cpu_xeon host",
        **{**_XEON, "device": "IBM superconducting QPU (Eagle/Heron class) + " + _XEON["device"]},
    ),
}


def get_profile(name: str | HardwareProfile) -> HardwareProfile:
    """The profile called ``name`` (a :class:`HardwareProfile` passes through)."""
    if isinstance(name, HardwareProfile):
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown hardware profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]
