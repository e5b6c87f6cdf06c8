"""FLOPs of one query, per module, at the ranks and routing a forward pass actually used.

The counts come from the model's own :class:`~qtensorformer.nn.ForwardStats` (each layer
records the FLOPs of the path it took: TT contraction or cached dense weight, the tokens it
routed, the ranks it chose, the circuits it simulated). Tests hold the classical entries within
5% of ``torch.utils.flop_counter``. A multiply-add is 2 FLOPs.

Index legend: b batch, n sequence, h heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..nn.stats import ForwardStats

__all__ = ["FlopsBreakdown", "model_flops", "torch_flop_count"]


@dataclass
class FlopsBreakdown:
    """FLOPs of a forward pass, split by module and by classical vs circuit simulation.

    ``by_module``: forward FLOPs per module type (``embedding``, ``encoder``,
    ``encoder_circuits``, ``attention``, ``attention_circuits``, ``ffn``, ``lm_head``);
    ``encoder_circuits``: encoder circuits run (one per token and layer);
    ``kernel_pairs``: (head, query, allowed key) overlaps the quantum-kernel attention computed,
    i.e. the compute-uncompute circuits a QPU would run; ``kernel_states``: states prepared
    for them in simulation; ``depth_*``: approximate circuit depths for QPU timing.
    """

    tokens: int
    by_module: dict[str, int] = field(default_factory=dict)
    encoder_circuits: int = 0
    kernel_states: int = 0
    kernel_pairs: int = 0
    n_qubits: int = 0
    encoder_depth_1q: int = 0
    encoder_depth_2q: int = 0
    kernel_depth_1q: int = 0
    kernel_depth_2q: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_module.values())

    @property
    def simulation(self) -> int:
        """FLOPs of the circuit simulation (state vectors, overlaps, entropies)."""
        return sum(v for k, v in self.by_module.items() if k.endswith("_circuits"))

    @property
    def classical(self) -> int:
        return self.total - self.simulation

    @property
    def per_token(self) -> float:
        return self.total / max(self.tokens, 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(total=self.total, simulation=self.simulation, classical=self.classical)
        return d

    @classmethod
    def from_stats(
        cls, stats: ForwardStats, model: torch.nn.Module, seq_len: int
    ) -> FlopsBreakdown:
        """Read a forward pass's stats (``model`` gives the circuit shapes)."""
        c = model.config
        out = cls(tokens=stats.tokens, by_module=dict(stats.flops), n_qubits=c.n_qubits)
        L = c.n_circuit_layers
        out.encoder_circuits = sum(s.circuits_encoder for s in stats.layers)
        out.kernel_states = sum(s.circuits_attention for s in stats.layers)
        # depths (approximate): ring of CNOTs per ansatz layer; up to 3 rotations per wire
        # per layer and per encoding; the kernel circuit is U(q) U(k)†, twice as deep
        out.encoder_depth_2q = L * c.n_qubits
        out.encoder_depth_1q = 3 * (L + 1)
        out.kernel_depth_2q = 2 * L * c.n_qubits
        out.kernel_depth_1q = 2 * 3 * (2 * L + 1)
        if c.use_quantum_attention:
            b = stats.tokens // seq_len
            keys = torch.arange(1, seq_len + 1)  # causal keys of query t: t + 1
            for s in stats.layers:
                if s.routed is not None:
                    pairs = int((s.routed.cpu().long() * keys).sum())
                else:  # every query row on the quantum path
                    pairs = b * int(keys.sum())
                out.kernel_pairs += c.n_heads * pairs
        return out


@torch.no_grad()
def model_flops(
    model: torch.nn.Module,
    seq_len: int = 128,
    batch_size: int = 1,
    input_ids: torch.Tensor | None = None,
    seed: int = 0,
) -> FlopsBreakdown:
    """FLOPs of one eval forward on ``batch_size`` sequences of ``seq_len`` tokens.

    ``input_ids`` (b, n) fixes the text (routing and adaptive ranks depend on it); otherwise
    tokens are drawn uniformly with ``seed``. A first forward builds the eval weight caches, as
    serving would, and the second is counted.

    Example:
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> m = QTensorFormer(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2))
        >>> f = model_flops(m, seq_len=16)
        >>> f.tokens, f.total > 0, f.simulation > 0
        (16, True, True)
    """
    if input_ids is None:
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
        g = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), generator=g)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
    dev = next(model.parameters()).device
    input_ids = input_ids.to(dev)
    was = model.training
    model.eval()
    try:
        model(input_ids)  # builds eval caches
        _, _, stats = model(input_ids)
    finally:
        model.train(was)
    return FlopsBreakdown.from_stats(stats, model, input_ids.shape[1])


def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


@torch.no_grad()
def torch_flop_count(model: torch.nn.Module, input_ids: torch.Tensor):
    """The reference count: ``torch.utils.flop_counter`` on an eval forward of ``input_ids``
    (after a warm-up forward, as :func:`model_flops` does). torch's counter has no formula for
    the CPU flash-attention kernel; it is given the SDPA one. Returns ``(stats, per_module,
    total)``: the counted forward's :class:`ForwardStats`, FLOPs per module name, and the total.
    """
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}
    was = model.training
    model.eval()
    try:
        model(input_ids)  # eval caches
        fc = FlopCounterMode(display=False, custom_mapping=mapping)
        with fc:
            _, _, stats = model(input_ids)
    finally:
        model.train(was)
    counts = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
    return stats, counts, fc.get_total_flops()
