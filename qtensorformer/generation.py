"""Choosing the next token from a model's logits, with the sampling options of Hugging Face
``generate``: temperature, top-k, top-p (nucleus) and a repetition penalty.

Index legend: b batch, V vocabulary, n tokens so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SamplingConfig", "next_token"]


@dataclass(frozen=True)
class SamplingConfig:
    """How :func:`next_token` picks a token.

    ``temperature``: 0 is greedy (argmax), otherwise logits are divided by it before sampling;
    ``top_k``: sample among the k most likely tokens (None: all); ``top_p``: among the
    smallest set whose probability reaches p (1.0: all); ``repetition_penalty``: the logits of
    tokens already in the sequence are divided by it when positive and multiplied when
    negative (1.0: off; the CTRL rule Hugging Face uses).

    Example:
        >>> SamplingConfig(temperature=0.7, top_p=0.9).greedy
        False
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(
                f"repetition_penalty must be > 0 (1.0: off), got {self.repetition_penalty}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _penalise_repeats(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Logits (b, V) with every token of ids (b, n) made less likely by ``penalty``."""
    seen = logits.gather(1, ids)  # (b, n)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, ids, seen)


def _keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits (b, V) with every token outside the nucleus of mass ``p`` set to −inf; the most
    likely token always stays."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    mass_before = torch.softmax(sorted_logits, -1).cumsum(-1) - torch.softmax(sorted_logits, -1)
    drop_sorted = mass_before >= p  # the tokens after the nucleus is full
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: torch.Tensor,
    ids: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The next token (b, 1) after ``ids`` (b, n), from the last position's ``logits`` (b, V).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[0.1, 3.0, 0.2]])
        >>> next_token(logits, torch.tensor([[0]]), SamplingConfig(temperature=0)).tolist()
        [[1]]
    """
    logits = logits.float()
    if config.repetition_penalty != 1.0:
        logits = _penalise_repeats(logits, ids.long(), config.repetition_penalty)
    if config.greedy:
        return logits.argmax(-1, keepdim=True)
    logits = logits / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        logits = _keep_top_p(logits, config.top_p)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
