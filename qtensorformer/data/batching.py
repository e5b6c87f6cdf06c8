"""Windows of a token stream for training and evaluation.

Index legend: N stream length, L window length (``seq_len``), b batch.

A stream is cut into windows of L tokens that overlap by one token (stride L − 1): the model
predicts tokens 2..L of each window from the tokens before them in the same window, so every
token of the stream except the first is a target exactly once. Training shuffles the windows
per epoch with a generator seeded by (seed, epoch), so a run is reproducible and resumable
from (epoch, batch index) alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["eval_windows", "num_windows", "train_batches", "windows"]


def num_windows(n_tokens: int, seq_len: int) -> int:
    """Full windows of ``seq_len`` tokens (stride seq_len − 1) in a stream."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    return max(0, (n_tokens - 1) // (seq_len - 1)) if n_tokens >= seq_len else 0


def windows(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """All full windows (W, L) of the 1-D stream ``ids`` (a view, no copy)."""
    W = num_windows(ids.numel(), seq_len)
    return ids[: W * (seq_len - 1) + 1].unfold(0, seq_len, seq_len - 1)[:W]


def train_batches(
    ids: torch.Tensor,
    batch_size: int,
    seq_len: int,
    seed: int,
    epoch: int,
    start: int = 0,
) -> Iterator[torch.Tensor]:
    """Shuffled batches (b, L) of one epoch, from batch index ``start`` (for resuming).

    The last incomplete batch is dropped.
    """
    win = windows(ids, seq_len)
    if win.shape[0] < batch_size:
        raise ValueError(
            f"the training stream has {ids.numel():,} tokens: fewer than one batch of "
            f"{batch_size} windows of {seq_len}; lower batch_size or seq_len"
        )
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(win.shape[0], generator=g)
    n_batches = win.shape[0] // batch_size
    for i in range(start, n_batches):
        yield win[perm[i * batch_size : (i + 1) * batch_size]]


def eval_windows(ids: torch.Tensor, seq_len: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Every window in order, batched, then the last partial window (shorter) if any, so that
    every token after the first is predicted once."""
    win = windows(ids, seq_len)
    for i in range(0, win.shape[0], batch_size):
        yield win[i : i + batch_size]
    covered = win.shape[0] * (seq_len - 1) + 1 if win.shape[0] else 0
    if covered < ids.numel():
        start = max(covered - 1, 0)
        tail = ids[start:]
        if tail.numel() >= 2:
            yield tail[None]
