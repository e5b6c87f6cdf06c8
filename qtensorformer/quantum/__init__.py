"""Batched state-vector simulation of small feature circuits in torch.

Wire 0 is the most significant bit of the state index (PennyLane's order). Everything is
batched over leading dimensions with no per-sample Python loops; real circuits run in real
arithmetic; float32/complex64 by default, float64/complex128 when the inputs are float64.
"""

from ._checks import MAX_QUBITS
from .ansatz import ANSATZE, ansatz_matrix, ansatz_weight_shape, apply_ansatz
from .circuits import circuit_flop_breakdown, circuit_flops, run_circuit
from .encoder import EncoderConfig, EncoderOutput, QuantumFeatureEncoder
from .entropy import entropy_bound, reduced_gram, renyi2_entropy, von_neumann_entropy
from .gates import apply_single_qubit, rot_matrix, ry_matrix, rz_matrix
from .kernel import fidelity_kernel
from .states import ENCODINGS, angle_encode, apply_encoding, expval_z, probabilities

__all__ = [
    "ANSATZE",
    "ENCODINGS",
    "MAX_QUBITS",
    "EncoderConfig",
    "EncoderOutput",
    "QuantumFeatureEncoder",
    "angle_encode",
    "ansatz_matrix",
    "ansatz_weight_shape",
    "apply_ansatz",
    "apply_encoding",
    "apply_single_qubit",
    "circuit_flop_breakdown",
    "circuit_flops",
    "entropy_bound",
    "expval_z",
    "fidelity_kernel",
    "probabilities",
    "reduced_gram",
    "renyi2_entropy",
    "rot_matrix",
    "run_circuit",
    "ry_matrix",
    "rz_matrix",
    "von_neumann_entropy",
]
