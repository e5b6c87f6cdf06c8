"""Calibration, block by block (as GPTQ does): find the repeated blocks, capture the first
block's inputs, and collect each block's input statistics.

Index legend: N calibration sequences, L tokens per sequence, b a batch of sequences,
d model width, m a linear's in_features, T tokens (b·L).

The model runs once up to its first block, whose inputs (positional arguments and keyword
arguments such as ``attention_mask`` / ``position_embeddings``) a forward pre-hook stores
before it stops the forward. Each block then runs on the stored inputs with pre-hooks on
its selected linears that accumulate, per distinct input tensor, the Gram matrix XᵀX (each
batch's product in the input's precision, summed in float64), Σ|x| and the token count —
q/k/v (and gate/up) read the same tensor, so they share one set of statistics. After its
linears are compressed the block runs again to give the next block's inputs. Peak memory:
the model plus one block's activations and Grams.

Example:
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb = nn.Embedding(10, 4)
    ...         self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
    ...     def forward(self, ids):
    ...         x = self.emb(ids)
    ...         for layer in self.layers:
    ...             x = layer(x)
    ...         return x
    >>> find_blocks(Net())[0]
    'layers'
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "BLOCK_PATHS",
    "BlockInputs",
    "InputStats",
    "StatsCollector",
    "block_output",
    "capture_block_inputs",
    "check_calibration",
    "find_blocks",
    "is_compressible",
    "linear_bias",
    "linear_weight",
]

#: Where known architectures keep their repeated blocks (model class name → dotted path).
BLOCK_PATHS: dict[str, str] = {
    "LlamaForCausalLM": "model.layers",
    "MistralForCausalLM": "model.layers",
    "Qwen2ForCausalLM": "model.layers",
    "GPT2LMHeadModel": "transformer.h",
    "GPTNeoXForCausalLM": "gpt_neox.layers",
    "OPTForCausalLM": "model.decoder.layers",
    "QTensorFormer": "blocks",
}


# ---------------------------------------------------------------------------- linears
def _is_conv1d(module: nn.Module) -> bool:
    """GPT-2's ``Conv1D``: a linear whose weight is stored transposed, (in, out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and module.weight.ndim == 2


def is_compressible(module: nn.Module, name: str = "") -> bool:
    """Whether ``module`` is a dense linear this package can compress (``nn.Linear`` or
    GPT-2's ``Conv1D``)."""
    return isinstance(module, nn.Linear) or _is_conv1d(module)


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The weight as (out_features, in_features), whatever the storage."""
    return module.weight.T if _is_conv1d(module) else module.weight


def linear_bias(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "bias", None)


# ---------------------------------------------------------------------------- blocks
def _get(model: nn.Module, path: str) -> nn.Module | None:
    obj: Any = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, nn.ModuleList) else None


def _generic_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The longest ``nn.ModuleList`` (of at least two) whose children share one class."""
    best = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    return best


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(dotted path, ModuleList) of the model's repeated blocks: from :data:`BLOCK_PATHS` by
    class name, else the longest ModuleList whose children share a class."""
    path = BLOCK_PATHS.get(type(model).__name__)
    if path is not None and _get(model, path) is not None:
        return path, _get(model, path)
    found = _generic_blocks(model)
    if found is None:
        raise ValueError(
            f"found no repeated blocks in {type(model).__name__}: no nn.ModuleList of two or "
            "more modules of one class. Add its path to qtensorformer.compress.BLOCK_PATHS"
        )
    return found


# ---------------------------------------------------------------------------- calibration data
def check_calibration(
    calibration: torch.Tensor, n_samples: int | None = None, seq_len: int | None = None
) -> torch.Tensor:
    """Validate token ids (N, L) and cut them to ``n_samples`` × ``seq_len`` when given."""
    if not isinstance(calibration, torch.Tensor) or calibration.ndim != 2:
        got = tuple(calibration.shape) if isinstance(calibration, torch.Tensor) else calibration
        raise ValueError(f"calibration must be a LongTensor of token ids (N, L), got {got!r}")
    if calibration.dtype not in (torch.int64, torch.int32) or calibration.numel() == 0:
        raise ValueError(
            f"calibration must be a non-empty integer tensor of token ids, got {calibration.dtype}"
        )
    N, L = calibration.shape
    if (n_samples is not None and N < n_samples) or (seq_len is not None and L < seq_len):
        raise ValueError(
            f"calibration is too short: {N} sequences of {L} tokens, but {n_samples or N} × "
            f"{seq_len or L} were asked for; give more calibration text or lower n_samples / "
            "seq_len"
        )
    return calibration[: n_samples or N, : seq_len or L].long()


# ---------------------------------------------------------------------------- block inputs
class _Stop(Exception):
    """Raised by the capture hook to end a forward at the first block."""


@dataclass
class BlockInputs:
    """One batch's inputs to a block: ``args`` (hidden states first) and ``kwargs``."""

    args: tuple
    kwargs: dict[str, Any]

    def with_hidden(self, hidden: torch.Tensor) -> BlockInputs:
        return BlockInputs((hidden, *self.args[1:]), self.kwargs)


def _run_model(model: nn.Module, ids: torch.Tensor) -> None:
    params = inspect.signature(model.forward).parameters
    if "use_cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        if "input_ids" in params:
            model(input_ids=ids, use_cache=False)
            return
    model(ids)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, first_block: nn.Module, calibration: torch.Tensor, batch_size: int
) -> list[BlockInputs]:
    """The inputs of ``first_block`` for each batch of ``calibration`` (N, L)."""
    stored: list[BlockInputs] = []

    def hook(module, args, kwargs):
        stored.append(BlockInputs(tuple(args), dict(kwargs)))
        raise _Stop

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    device = _model_device(model)
    try:
        for ids in calibration.split(batch_size):
            with contextlib.suppress(_Stop):
                _run_model(model, ids.to(device))
    finally:
        handle.remove()
    if len(stored) != -(-calibration.shape[0] // batch_size):
        raise RuntimeError(
            "the model's forward did not reach its first block for every calibration batch"
        )
    return stored


def block_output(block: nn.Module, inputs: BlockInputs) -> torch.Tensor:
    """The block's hidden-state output (the first element when it returns a tuple)."""
    out = block(*inputs.args, **inputs.kwargs)
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the block returned {type(out).__name__}, not hidden states")
    return out


# ---------------------------------------------------------------------------- statistics
@dataclass
class InputStats:
    """Statistics of one linear input over the calibration tokens: ``gram`` XᵀX (m, m),
    ``abs_sum`` Σ|x| (m,), ``tokens`` T, and the modules that read it (``readers``)."""

    gram: torch.Tensor
    abs_sum: torch.Tensor
    tokens: int = 0
    readers: list[str] = field(default_factory=list)

    @property
    def abs_mean(self) -> torch.Tensor:
        return self.abs_sum / max(self.tokens, 1)

    def add(self, x: torch.Tensor) -> None:
        """Add one batch of inputs ``x`` (..., m): its product XᵀX is computed in the
        precision of ``x`` (one GEMM per batch, as SVD-LLM profiles) and summed into the
        ``gram`` dtype (float64 by default), so rounding does not grow with the token count;
        a float64 product takes about twice as long (docs/RESULTS.md, compression section)."""
        x2 = x.reshape(-1, x.shape[-1])  # (T, m)
        if x2.dtype == self.gram.dtype:
            self.gram.addmm_(x2.T, x2)
        else:
            self.gram.add_((x2.T @ x2).to(self.gram.dtype))
        self.abs_sum.add_(x2.abs().sum(0, dtype=self.abs_sum.dtype))
        self.tokens += x2.shape[0]


class StatsCollector:
    """Pre-hooks on named linears that accumulate :class:`InputStats`, one per distinct input
    tensor: linears fed the same tensor (same object in one forward) share statistics.

    Use as a context manager around the forwards; ``stats[name]`` afterwards.
    """

    def __init__(self, modules: dict[str, nn.Module], dtype: torch.dtype = torch.float64):
        self.modules, self.dtype = modules, dtype
        self.stats: dict[str, InputStats] = {}
        self._seen: dict[int, tuple[torch.Tensor, InputStats]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> StatsCollector:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._seen.clear()

    def end_forward(self) -> None:
        """Forget the tensors of the last forward (call between forwards)."""
        self._seen.clear()

    def _hook(self, name: str) -> Callable:
        def hook(module, args):
            if not args or not isinstance(args[0], torch.Tensor):
                raise TypeError(
                    f"{name} was called without a positional input tensor; calibration reads "
                    "the first positional argument of each selected linear"
                )
            x = args[0]
            hit = self._seen.get(id(x))
            if hit is not None and hit[0] is x:  # a sibling already counted this tensor
                self._share(name, hit[1])
                return
            st = self.stats.get(name)
            if st is None:
                m = x.shape[-1]
                st = InputStats(
                    torch.zeros(m, m, dtype=self.dtype, device=x.device),
                    torch.zeros(m, dtype=self.dtype, device=x.device),
                    readers=[name],
                )
                self.stats[name] = st
            st.add(x.detach())
            self._seen[id(x)] = (x, st)  # holding x keeps its id from being reused

        return hook

    def _share(self, name: str, st: InputStats) -> None:
        if name not in self.stats:
            self.stats[name] = st
            st.readers.append(name)
