"""Text continuation with any loaded causal LM: a Hugging Face model (its ``generate``, with
its KV cache) or a QTensorFormer (compressed or not).

Example:
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.data import WordVocab
    >>> tok = WordVocab.build(["a b c d"])
    >>> model = QTensorFormer(ModelConfig.dense(vocab_size=tok.vocab_size, d_model=16, n_heads=2))
    >>> text = continue_text(model, tok, "a b", max_new_tokens=3, seed=0)
    >>> len(text.split()) <= 3
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..generation import SamplingConfig
from ..model import QTensorFormer

__all__ = ["continue_text"]


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` without special tokens (the BOS/EOS id for an empty prompt)."""
    try:
        ids = list(tokenizer.encode(prompt, add_special_tokens=False))
    except TypeError:  # this library's tokenizers take no keyword
        ids = list(tokenizer.encode(prompt))
    if ids:
        return ids
    for name in ("bos_token_id", "eos_token_id", "eos_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return [value]
    raise ValueError("the prompt is empty and the tokenizer has no BOS/EOS token: give a prompt")


def _decode(tokenizer: Any, ids: list[int]) -> str:
    try:
        return tokenizer.decode(ids, skip_special_tokens=True)
    except TypeError:
        return tokenizer.decode(ids)


@torch.inference_mode()
def continue_text(
    model: nn.Module,
    tokenizer: Any,
    prompt: str,
    *,
    max_new_tokens: int = 30,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    use_cache: bool = True,
) -> str:
    """The text ``model`` writes after ``prompt``. ``sampling`` (default temperature 0.8,
    top-k 40) is the same for both kinds of model; ``seed`` makes sampling repeatable;
    ``use_cache=False`` recomputes every position at every step (for timing the cache)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens == 0:
        return ""
    sampling = sampling or SamplingConfig(temperature=0.8, top_k=40)
    ids = _prompt_ids(tokenizer, prompt)
    x = torch.tensor([ids], device=next(model.parameters()).device)  # (1, n)
    torch.manual_seed(seed)
    if isinstance(model, QTensorFormer):
        gen = torch.Generator(device=x.device).manual_seed(seed)
        s = sampling
        out = model.generate(
            x, max_new_tokens, s.temperature, s.top_k, gen, s.top_p, s.repetition_penalty, use_cache
        )
    else:
        out = _hf_generate(model, tokenizer, x, max_new_tokens, sampling, use_cache)
    return _decode(tokenizer, out[0, len(ids) :].tolist())


def _hf_generate(
    model: nn.Module,
    tokenizer: Any,
    x: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig,
    use_cache: bool,
) -> torch.Tensor:
    """``model.generate`` with sampling settings spelled the Hugging Face way."""
    s = sampling
    kw: dict[str, Any] = {
        "do_sample": not s.greedy,
        "max_new_tokens": max_new_tokens,
        "use_cache": use_cache,
        "repetition_penalty": s.repetition_penalty,
    }
    if not s.greedy:
        kw.update(temperature=s.temperature, top_k=s.top_k or 0, top_p=s.top_p)
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    return model.generate(x, attention_mask=torch.ones_like(x), pad_token_id=pad, **kw)
