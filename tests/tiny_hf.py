"""Tiny Hugging Face causal LMs built from configs (offline), shared by the compression tests:
a grouped-query-attention Llama (4 query heads, 2 key/value heads) and a GPT-2 (Conv1D)."""

from __future__ import annotations

from typing import Any

from torch import nn

LLAMA = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
GPT2 = dict(n_embd=32, n_layer=2, n_head=4, n_positions=64)


def llama(vocab: int, **overrides: Any) -> nn.Module:
    """A two-layer GQA Llama in eval mode; ``overrides`` replace config fields."""
    import transformers

    cfg = transformers.LlamaConfig(**{**LLAMA, "vocab_size": vocab, **overrides})
    return transformers.LlamaForCausalLM(cfg).eval()


def gpt2(vocab: int, **overrides: Any) -> nn.Module:
    """A two-layer GPT-2 in eval mode; ``overrides`` replace config fields."""
    import transformers

    cfg = transformers.GPT2Config(**{**GPT2, "vocab_size": vocab, **overrides})
    return transformers.GPT2LMHeadModel(cfg).eval()
