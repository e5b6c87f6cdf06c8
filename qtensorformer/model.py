"""QTensorFormer: the language model. The dense baseline is the same class with every pillar off.

Index legend: b batch, n sequence, d model width, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._tracing import tracing
from .config import ModelConfig
from .files import CheckpointError
from .generation import SamplingConfig, next_token
from .io import WEIGHTS_NAME, load_state, read_config, save_model
from .nn._flops import linear_flops
from .nn.attention import LayerCache
from .nn.block import QTensorFormerBlock
from .nn.sizing import fit_rank_to_budget
from .nn.stats import ForwardStats
from .tensor.layers import TTEmbedding, TTLinear, TTMatrix

__all__ = ["KVCache", "ModelOutput", "QTensorFormer"]


@dataclass
class KVCache:
    """The keys and values of every block for the positions seen so far (one
    :class:`~qtensorformer.nn.LayerCache` per block), as returned in
    :attr:`ModelOutput.past_key_values` and passed back to ``forward`` to process only the
    new tokens."""

    layers: list[LayerCache]

    @property
    def length(self) -> int:
        """Positions held."""
        return self.layers[0].length if self.layers else 0


@dataclass
class ModelOutput:
    """What :meth:`QTensorFormer.forward` computed: ``logits`` (b, n, V), ``loss`` (None
    without labels), ``stats`` (:class:`~qtensorformer.nn.ForwardStats`: decisions and
    costs) and ``past_key_values`` (a :class:`KVCache`, only with ``use_cache=True``).
    Unpacks like a tuple: ``logits, loss, stats = model(ids)``; ``out[0]`` is the logits."""

    logits: torch.Tensor
    loss: torch.Tensor | None
    stats: ForwardStats
    past_key_values: KVCache | None = None

    def _astuple(self) -> tuple[torch.Tensor, torch.Tensor | None, ForwardStats]:
        return (self.logits, self.loss, self.stats)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._astuple())

    def __getitem__(self, index: int) -> Any:
        return self._astuple()[index]

    def __len__(self) -> int:
        return 3


def _tt_lookup_flops(emb: TTEmbedding, tokens: int) -> int:
    """FLOPs of looking up ``tokens`` rows of a TT embedding (one small product per core)."""
    r = (1, *emb.max_ranks, 1)
    flops, width = 0, emb.col_modes[0]
    for k in range(1, len(emb.col_modes)):
        flops += 2 * tokens * width * r[k] * emb.col_modes[k] * r[k + 1]
        width *= emb.col_modes[k]
    return flops


class QTensorFormer(nn.Module):
    """Causal language model whose heavy matrices are tensor trains, whose tokens get features
    from simulated quantum circuits, whose hard tokens can take a quantum-kernel attention path
    and whose TT-FFN ranks can follow a per-token entanglement score.

    ``forward(input_ids, labels=None, past_key_values=None, use_cache=False) -> ModelOutput``
    (unpacks as ``logits, loss, stats``): ``labels`` are the input ids themselves (or with
    -100 where ignored); the model shifts them, as Hugging Face causal LMs do. ``loss`` = LM
    cross-entropy + the weighted auxiliary losses (None without labels); ``stats`` is a
    :class:`~qtensorformer.nn.ForwardStats`. With ``use_cache=True`` the output carries the
    keys and values (:class:`KVCache`); passing them back as ``past_key_values`` runs only
    the new tokens, at the positions after the cached ones, with the same logits as the
    whole sequence (:meth:`generate` does this).

    Example:
        >>> import torch
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> config = ModelConfig(vocab_size=100, hidden_dim=32, n_layers=2, n_heads=2,
        ...                      tt_rank=4, n_qubits=4, use_quantum_attention=True,
        ...                      use_adaptive_rank=True)
        >>> model = QTensorFormer(config)
        >>> ids = torch.randint(0, 100, (2, 12))
        >>> logits, loss, stats = model(ids, labels=ids)
        >>> logits.shape, len(stats.layers), stats.circuits > 0
        (torch.Size([2, 12, 100]), 2, True)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"QTensorFormer needs a ModelConfig, got {type(config).__name__}")
        config = fit_rank_to_budget(config)
        self.config = config
        d, V = config.d_model, config.vocab_size
        if config.use_tt_embedding:
            self.embed: nn.Module = TTEmbedding(V, d, config.emb_rank)
        else:
            self.embed = nn.Embedding(V, d)
        self.pos = nn.Embedding(config.max_seq_len, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(QTensorFormerBlock(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Embeddings, attention/FFN weights and the quantum encoder's output projection
        N(0, init_std²) (TT: the reconstructed W has that variance), biases zero; LayerNorms,
        circuits, the encoder's input projection and activations keep their own."""
        std = self.config.init_std
        with torch.no_grad():
            for name, m in self.named_modules():
                if isinstance(m, TTMatrix):
                    m.reset_cores(std)
                    if getattr(m, "bias", None) is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.Embedding):
                    m.weight.normal_(0.0, std)
                elif isinstance(m, nn.Linear) and (
                    ".attn." in name or ".ffn." in name or name.endswith(".encoder.proj_out")
                ):
                    # the encoder's output projection writes to the residual stream like the
                    # attention and FFN outputs do: same scale (nn.Linear's default, ±0.5 for
                    # 4 qubits, swamped the 0.02-scale embeddings at the start of training)
                    m.weight.normal_(0.0, std)
                    if m.bias is not None:
                        m.bias.zero_()

    # ------------------------------------------------------------------ checks
    def _check_ids(self, ids: torch.Tensor, name: str = "input_ids", past: int = 0) -> None:
        c = self.config
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"{name} must be an integer tensor of token ids, got {ids.dtype}")
        if ids.ndim != 2:
            raise ValueError(
                f"{name} must have shape (batch, seq_len), got {tuple(ids.shape)}; "
                "use ids.unsqueeze(0) for a single sequence"
            )
        if past + ids.shape[1] > c.max_seq_len:
            cached = f" after {past} cached positions" if past else ""
            raise ValueError(
                f"sequence length {past + ids.shape[1]}{cached} exceeds "
                f"max_seq_len={c.max_seq_len}; crop the input (and drop the cache) or build "
                "the model with a larger max_seq_len"
            )
        if not tracing() and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {c.vocab_size}) (vocab_size), got range "
                f"[{int(ids.min())}, {int(ids.max())}]; is the tokenizer's vocabulary larger "
                "than the model's?"
            )

    # ------------------------------------------------------------------ forward
    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Tied LM head: (…, d) → (…, V)."""
        if isinstance(self.embed, TTEmbedding):
            return self.embed.project(h)
        return F.linear(h, self.embed.weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> ModelOutput:
        past = past_key_values
        P = past.length if past is not None else 0
        self._check_ids(input_ids, past=P)
        if past is not None and len(past.layers) != len(self.blocks):
            raise ValueError(
                f"past_key_values holds {len(past.layers)} layers, the model has "
                f"{len(self.blocks)}; pass the cache this model returned"
            )
        b, n = input_ids.shape
        T = b * n
        c = self.config
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(
                f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
                f"{tuple(labels.shape)}"
            )
        ids = input_ids.long()
        x = self.embed(ids) + self.pos(torch.arange(P, P + n, device=ids.device))
        x = self.drop(x)
        stats = ForwardStats(tokens=T)
        flops = {"embedding": _tt_lookup_flops(self.embed, T) if c.use_tt_embedding else 0}
        aux_sum: dict[str, list[torch.Tensor]] = {}
        caches: list[LayerCache] = []
        for i, blk in enumerate(self.blocks):
            x, ls, aux, cache = blk(x, past.layers[i] if past is not None else None, use_cache)
            if cache is not None:
                caches.append(cache)
            stats.layers.append(ls)
            for k, v in ls.flops.items():
                flops[k] = flops.get(k, 0) + v
            for k, v in aux.items():
                aux_sum.setdefault(k, []).append(v)
        x = self.ln_f(x)
        logits = self.logits_from_hidden(x)
        if isinstance(self.embed, TTEmbedding):
            flops["lm_head"] = linear_flops(self.embed, T)
        else:
            flops["lm_head"] = 2 * T * c.d_model * c.vocab_size
        stats.flops = flops
        weights = {"route": c.route_loss_weight, "rank_cost": c.rank_cost_weight}
        stats.aux_losses = {k: weights[k] * torch.stack(v).mean() for k, v in aux_sum.items()}
        loss = None
        if labels is not None:
            # targets shifted left, the last position ignored: no copy of the logits
            target = F.pad(labels[:, 1:].long(), (0, 1), value=-100)
            lm = F.cross_entropy(
                logits.reshape(-1, c.vocab_size).float(), target.reshape(-1), ignore_index=-100
            )
            stats.lm_loss = lm.detach()
            loss = lm + sum(stats.aux_losses.values()) if stats.aux_losses else lm
        return ModelOutput(logits, loss, stats, KVCache(caches) if use_cache else None)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 50,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after ``input_ids`` (b, n) → (b, n + new).

        ``temperature=0`` is greedy; ``top_k``, ``top_p`` and ``repetition_penalty`` act as in
        Hugging Face ``generate`` (:class:`~qtensorformer.generation.SamplingConfig`). With
        ``use_cache`` (default) each step runs only the new token against the cached keys
        and values; once the sequence outgrows ``max_seq_len`` the context is cropped to the
        last ``max_seq_len`` tokens and, positions having shifted, re-run each step. Runs in
        eval mode (restored afterwards).

        Example:
            >>> import torch
            >>> from qtensorformer import ModelConfig, QTensorFormer
            >>> model = QTensorFormer(ModelConfig(vocab_size=50, hidden_dim=16, n_layers=1,
            ...                                   n_heads=2, max_seq_len=32))
            >>> model.generate(torch.tensor([[1, 2, 3]]), 5, temperature=0).shape
            torch.Size([1, 8])
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        sampling = SamplingConfig(temperature, top_k, top_p, repetition_penalty)
        L = self.config.max_seq_len
        self._check_ids(input_ids[:, -L:])
        was_training = self.training
        self.eval()
        ids, cache = input_ids.long(), None
        try:
            with torch.no_grad():
                for _ in range(max_new_tokens):
                    if cache is not None and cache.length < L:
                        out = self(ids[:, -1:], past_key_values=cache, use_cache=True)
                    else:  # first step, no cache, or the window is full: the whole context
                        out = self(ids[:, -L:], use_cache=use_cache and ids.shape[1] < L)
                    cache = out.past_key_values
                    nxt = next_token(out.logits[:, -1], ids, sampling, generator)
                    ids = torch.cat([ids, nxt], 1)
        finally:
            self.train(was_training)
        return ids

    # ------------------------------------------------------------------ parameters
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameters stored (the tied LM head counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _components(self) -> Iterator[tuple[str, nn.Module | None]]:
        yield "embedding", self.embed
        yield "positions", self.pos
        for i, blk in enumerate(self.blocks):
            yield f"blocks.{i}.encoder", nn.ModuleList([m for m in (blk.encoder, blk.ln_q) if m])
            qk = blk.attn.quantum
            yield f"blocks.{i}.attention", nn.ModuleList([blk.attn.qkv, blk.attn.out])
            yield f"blocks.{i}.kernel_attention", qk
            yield f"blocks.{i}.router", blk.attn.router
            yield f"blocks.{i}.rank_scheduler", blk.rank
            yield f"blocks.{i}.ffn", nn.ModuleList([blk.ffn.w1, blk.ffn.w2])
            yield f"blocks.{i}.activation", blk.ffn.act
            yield f"blocks.{i}.norms", nn.ModuleList([blk.ln1, blk.ln2])
        yield "final_norm", self.ln_f

    def parameter_table(self, per_layer: bool = False) -> dict[str, int]:
        """Parameters per component (``per_layer=False`` sums the blocks: the keys of
        :func:`~qtensorformer.nn.sizing.count_parameters`), plus ``total``."""
        out: dict[str, int] = {}
        for name, m in self._components():
            n = sum(p.numel() for p in m.parameters()) if m is not None else 0
            key = name if per_layer else name.split(".")[-1]
            if key == "final_norm" and not per_layer:
                key = "norms"
            out[key] = out.get(key, 0) + n
        out["total"] = sum(out.values())
        return out

    def tt_layers(self) -> dict[str, TTMatrix]:
        """Every tensor-train layer by module name."""
        return {n: m for n, m in self.named_modules() if isinstance(m, (TTLinear, TTEmbedding))}

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (atomically)."""
        return save_model(self, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, map_location: str | torch.device = "cpu"
    ) -> QTensorFormer:
        """Load a model saved by :meth:`save_pretrained`; refuses foreign or corrupt files
        (:class:`~qtensorformer.files.CheckpointError`)."""
        directory = Path(directory)
        config = read_config(directory)
        state = load_state(directory / WEIGHTS_NAME, map_location)
        with torch.device("meta"):
            model = cls(config)
        _check_state(model.state_dict(), state, config, directory / WEIGHTS_NAME)
        model.load_state_dict(state, assign=True)
        return model.to(map_location)


def _check_state(expected: dict, state: dict, config: ModelConfig, path: Path) -> None:
    """Refuse a weights file whose tensors do not match the model built from its config."""
    # files written before the router target became a buffer: it equals the config's value
    for k in expected:
        if k.endswith("router.target_fraction") and k not in state:
            state[k] = torch.tensor(float(config.route_fraction))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its config: missing "
            f"{missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    bad = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if bad:
        raise CheckpointError(f"tensor shapes do not match the config: {bad[:5]}")
