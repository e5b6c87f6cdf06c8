"""Q-TensorFormer: tensor-network language models with simulated quantum-circuit features.

Example:
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> model = QTensorFormer(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2))
    >>> logits, loss, stats = model(torch.randint(0, 100, (1, 8)))
    >>> logits.shape, loss is None
    (torch.Size([1, 8, 100]), True)
"""

from ._version import __version__
from .config import PRESETS, ModelConfig
from .generation import SamplingConfig
from .model import KVCache, ModelOutput, QTensorFormer
from .nn import ForwardStats, LayerStats, distill_to_kan
from .nn.sizing import count_parameters
from .quantum import QuantumFeatureEncoder

__all__ = [
    "PRESETS",
    "ForwardStats",
    "KVCache",
    "LayerStats",
    "ModelConfig",
    "ModelOutput",
    "QTensorFormer",
    "QuantumFeatureEncoder",
    "SamplingConfig",
    "__version__",
    "count_parameters",
    "distill_to_kan",
]
