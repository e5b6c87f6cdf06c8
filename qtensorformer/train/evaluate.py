"""Perplexity: exp of the mean NLL over every token of a split (see ``data.batching``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from ..data.batching import eval_windows

__all__ = ["PROTOCOL", "EvalResult", "evaluate"]

PROTOCOL = (
    "exp(mean NLL) over every token of the split after the first, windows of {L} tokens "
    "overlapping by one (each token predicted once, context from its own window only)"
)


@dataclass
class EvalResult:
    """Summed NLL (nats) over ``tokens`` predicted tokens; ``ppl`` per token, and
    ``word_ppl`` per word-level token when the word count of the evaluated text is known."""

    nll: float
    tokens: int
    words: int | None = None

    @property
    def loss(self) -> float:
        return self.nll / max(self.tokens, 1)

    @property
    def ppl(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def word_ppl(self) -> float | None:
        if self.words is None:
            return None
        return math.exp(min(self.nll / max(self.words, 1), 700.0))


@torch.no_grad()
def evaluate(
    model,
    ids: torch.Tensor,
    seq_len: int,
    batch_size: int = 16,
    max_tokens: int | None = None,
    words: int | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: str | None = None,
) -> EvalResult:
    """NLL of ``model`` on the stream ``ids`` (eval mode, restored afterwards).

    ``max_tokens`` evaluates only the first tokens (a quick validation estimate); ``words`` is
    the word-level token count of the whole stream (for per-word perplexity of subword
    tokenizers; ignored when ``max_tokens`` cuts the stream). ``progress``: a label for a
    progress bar with an ETA (on stderr, gone when done); None shows none.
    """
    if max_tokens is not None and ids.numel() > max_tokens + 1:
        ids, words = ids[: max_tokens + 1], None
    was = model.training
    model.eval()
    nll, n = 0.0, 0
    device = torch.device(device)
    with _bar(progress, max(ids.numel() - 1, 0)) as (bar, task):
        try:
            for batch in eval_windows(ids, seq_len, batch_size):
                batch = batch.to(device)
                nll += _window_nll(model, batch, autocast_dtype)
                n += batch[:, 1:].numel()
                bar.update(task, completed=n)
        finally:
            model.train(was)
    return EvalResult(nll, n, words)


@contextmanager
def _bar(label: str | None, total: int) -> Iterator[tuple[Progress, TaskID]]:
    """A transient progress bar over ``total`` predicted tokens (disabled without a label)."""
    bar = Progress(
        TextColumn(f"[bold]{escape(label or '')}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} tokens"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=label is None,
        transient=True,
    )
    with bar:
        yield bar, bar.add_task("eval", total=total)


def _window_nll(model, batch: torch.Tensor, autocast_dtype: torch.dtype | None) -> float:
    """Summed NLL (nats) of every token of ``batch`` after the first of its window."""
    with torch.autocast(
        batch.device.type,
        dtype=autocast_dtype or torch.bfloat16,
        enabled=autocast_dtype is not None,
    ):
        logits, _, _ = model(batch)
    loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        batch[:, 1:].reshape(-1),
        reduction="sum",
    )
    return float(loss)
