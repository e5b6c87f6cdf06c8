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
    temperature: float = 0.8,
    top_k: int | None = 40,
    seed: int = 0,
) -> str:
    """The text ``model`` writes after ``prompt`` (``temperature=0``: greedy; ``top_k``: sample
    among the k most likely tokens; ``seed`` makes sampling repeatable)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    ids = _prompt_ids(tokenizer, prompt)
    x = torch.tensor([ids], device=next(model.parameters()).device)  # (1, n)
    torch.manual_seed(seed)
    if isinstance(model, QTensorFormer):
        gen = torch.Generator(device=x.device).manual_seed(seed)
        out = model.generate(x, max_new_tokens, temperature, top_k, gen)
    else:
        out = _hf_generate(model, tokenizer, x, max_new_tokens, temperature, top_k)
    return _decode(tokenizer, out[0, len(ids) :].tolist())


def _hf_generate(
    model: nn.Module,
    tokenizer: Any,
    x: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
) -> torch.Tensor:
    """``model.generate`` (KV cache on) with sampling settings spelled the Hugging Face way."""
    sample = temperature > 0
    kw: dict[str, Any] = {"do_sample": sample, "max_new_tokens": max_new_tokens}
    if sample:
        kw.update(temperature=temperature, top_k=top_k or 0)
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    return model.generate(x, attention_mask=torch.ones_like(x), pad_token_id=pad, **kw)
