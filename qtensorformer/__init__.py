"""Q-TensorFormer: tensor-network language models with simulated quantum-circuit features.

Example:
    >>> import torch
    >>> from qtensorformer.quantum import QuantumFeatureEncoder
    >>> enc = QuantumFeatureEncoder(d_in=8, n_qubits=4)
    >>> feats, entropy = enc(torch.randn(3, 8))
"""

from ._version import __version__
from .quantum import QuantumFeatureEncoder

__all__ = ["QuantumFeatureEncoder", "__version__"]
