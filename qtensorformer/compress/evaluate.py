"""Perplexity on raw text with the protocol stated beside the number, forward throughput, and
calibration windows, for Hugging Face causal LMs and this library's QTensorFormer alike.

The reference protocol of :func:`raw_text_perplexity`: the text file is read verbatim and
tokenised in one call without special tokens (``tokenizer(text, add_special_tokens=False)``);
the first N non-overlapping windows of L tokens are each run through the model on their own;
the result is exp of the mean negative log-likelihood of next-token prediction over every
scored token (every token of a window but its first, which has no context).

Example:
    >>> import math
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.data import WordVocab
    >>> tok = WordVocab.build(["a b c d e f g h"])
    >>> cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2,
    ...                   max_seq_len=8)
    >>> model = QTensorFormer(cfg)
    >>> r = raw_text_perplexity(model, tok, "a b c d e f g h\\n" * 4, seq_len=8, windows=3,
    ...                         progress=False)
    >>> r.tokens_counted, r.windows, math.isclose(r.ppl, math.exp(r.nll))
    (21, 3, True)
    >>> print(r.protocol.replace(", ", ",\\n").replace("; ", ";\\n"))
    first 3 non-overlapping 8-token windows of the given text (64 characters),
    tokenised line by line with one end-of-line id per line;
    every token but the first of each window scored
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import TextColumn
from torch import nn

from ..data.corpus import DataNotFoundError, candidate_dirs
from ..data.tokenizers import Tokenizer
from ..model import QTensorFormer
from .progress import progress_bar

__all__ = [
    "PerplexityResult",
    "calibration_ids",
    "find_raw_text",
    "forward_logits",
    "ids_perplexity",
    "max_positions",
    "measure_tokens_per_second",
    "raw_text_perplexity",
    "text_token_ids",
    "tokenize_text",
]

RAW_CORPUS = "wikitext-2-raw"
RAW_SPLITS = ("valid", "test")


@dataclass
class PerplexityResult:
    """Perplexity ``ppl`` = exp(``nll``), the mean next-token NLL (nats) over
    ``tokens_counted`` scored tokens in ``windows`` windows of ``seq_len`` tokens started every
    ``stride`` tokens; ``protocol`` says all of it in words. ``text_tokens`` is the length of the
    whole tokenised text, ``seconds`` the wall time of the forwards."""

    ppl: float
    nll: float
    tokens_counted: int
    windows: int
    seq_len: int
    stride: int
    protocol: str
    text_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Tokens through the model per second of forward wall time."""
        return self.windows * self.seq_len / self.seconds if self.seconds > 0 else float("nan")

    def __str__(self) -> str:
        return f"perplexity {self.ppl:.3f} (nll {self.nll:.4f}) on {self.protocol}"


# ---------------------------------------------------------------------------- text and tokens
TEXT_SUFFIXES = (".txt", ".raw", ".tokens", ".text")


def _is_path(text_or_path: str | os.PathLike) -> bool:
    """Whether ``text_or_path`` names a file: a Path, or a one-line string naming an existing
    file or ending in a text-file suffix (so a mistyped path fails instead of being scored)."""
    if isinstance(text_or_path, os.PathLike):
        return True
    s = str(text_or_path)
    if "\n" in s or len(s) >= 4096:
        return False
    if s.lower().endswith(TEXT_SUFFIXES):
        return True
    try:
        return Path(s).is_file()
    except OSError:  # e.g. a line of text longer than a file name may be
        return False


def _read_text(text_or_path: str | os.PathLike) -> tuple[str, str]:
    """(text, where it came from). A file (see :func:`_is_path`) is read verbatim, with no
    newline translation; any other string is the text itself."""
    if not _is_path(text_or_path):
        return str(text_or_path), f"the given text ({len(str(text_or_path)):,} characters)"
    path = Path(text_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {path}; pass an existing file or the text itself")
    with open(path, encoding="utf-8", newline="") as f:
        return f.read(), str(path)


def tokenize_text(tokenizer: Any, text: str) -> tuple[torch.Tensor, str]:
    """(1-D int64 ids, how they were made) for ``text``.

    A Hugging Face tokenizer (callable) tokenises the whole text in one call without special
    tokens; this library's tokenizers encode it line by line with one end-of-line id per line,
    as their models were trained; any other object with ``encode(text) -> list[int]`` encodes
    the whole text in one call.
    """
    if isinstance(tokenizer, Tokenizer):
        ids = tokenizer.encode_lines(text.splitlines())
        return ids, "tokenised line by line with one end-of-line id per line"
    if callable(tokenizer):
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    elif callable(getattr(tokenizer, "encode", None)):
        ids = tokenizer.encode(text)
    else:
        raise TypeError(
            f"tokenizer must be a Hugging Face tokenizer, a qtensorformer Tokenizer or have "
            f"encode(text), got {type(tokenizer).__name__}"
        )
    return torch.tensor(ids, dtype=torch.int64), "tokenised in one call without special tokens"


# ---------------------------------------------------------------------------- model calls
def forward_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits (b, n, V) of a causal LM on ``ids`` (b, n): a QTensorFormer (whose forward returns
    ``(logits, loss, stats)``) or a Hugging Face model (``outputs.logits``, no KV cache)."""
    if isinstance(model, QTensorFormer):
        return model(ids)[0]
    out = model(input_ids=ids, use_cache=False)
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, (tuple, list)):
        logits = out[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{type(model).__name__} returned no logits (got {type(out).__name__})")
    return logits


@torch.no_grad()
def ids_perplexity(model: nn.Module, ids: torch.Tensor) -> float:
    """exp(mean NLL) of every token but the first of each row of ``ids`` (N, L), one row at
    a time (eval mode, restored).

    Example:
        >>> import torch
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> m = QTensorFormer(ModelConfig.dense(vocab_size=30, d_model=16, n_heads=2))
        >>> 1 < ids_perplexity(m, torch.randint(0, 30, (2, 12))) < 300
        True
    """
    was = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for row in ids.to(_device(model)):
            logits = forward_logits(model, row[None]).float()  # (1, L, V)
            nll = F.cross_entropy(logits[0, :-1], row[1:], reduction="sum")
            total, count = total + float(nll), count + row.numel() - 1
    finally:
        model.train(was)
    return math.exp(total / max(count, 1))


def max_positions(model: nn.Module) -> int | None:
    """The longest sequence the model accepts, when its config says."""
    cfg = getattr(model, "config", None)
    for name in ("max_seq_len", "max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    return None


def _check_seq_len(model: nn.Module, seq_len: int) -> None:
    limit = max_positions(model)
    if limit is not None and seq_len > limit:
        raise ValueError(
            f"seq_len {seq_len} exceeds the model's {limit} positions; pass seq_len <= {limit}"
        )


def _vocab_size(model: nn.Module) -> int:
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(value, int):
        raise ValueError(f"{type(model).__name__} has no config.vocab_size to draw token ids from")
    return value


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------- windows
def _window_starts(n_tokens: int, seq_len: int, stride: int, windows: int | None) -> list[int]:
    """Start of each window; a clear error when the text holds fewer than asked."""
    if seq_len < 2 or stride < 1:
        raise ValueError(f"seq_len must be >= 2 and stride >= 1, got {seq_len} and {stride}")
    fit = 0 if n_tokens < seq_len else (n_tokens - seq_len) // stride + 1
    if windows is not None and windows < 1:
        raise ValueError(f"windows must be >= 1 (or None for all), got {windows}")
    wanted = fit if windows is None else windows
    if fit == 0 or wanted > fit:
        raise ValueError(
            f"the text has {n_tokens:,} tokens: room for {fit} window(s) of {seq_len} tokens at "
            f"stride {stride}, but {wanted or 1} were asked; use a longer text, fewer windows or "
            "a shorter seq_len"
        )
    return [i * stride for i in range(wanted)]


def _scored_from(starts: list[int], seq_len: int) -> list[int]:
    """Per window, the first position (within it) whose token is scored: 1, or past the tokens
    an earlier window already scored, so every token is scored at most once."""
    out, covered = [], 0
    for s in starts:
        out.append(max(1, covered - s))
        covered = s + seq_len
    return out


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _window_nll(logits: torch.Tensor, ids: torch.Tensor, first: list[int]) -> tuple[float, int]:
    """(sum of NLL, count) of next-token prediction in a batch of windows, scoring each
    window's tokens from position ``first[i]`` on."""
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
    pos = torch.arange(1, ids.shape[1], device=ids.device)
    mask = pos[None, :] >= torch.tensor(first, device=ids.device)[:, None]
    return float(nll[mask].double().sum()), int(mask.sum())


def _protocol(n: int, seq_len: int, stride: int, source: str, how: str) -> str:
    if stride == seq_len:
        layout = f"first {n} non-overlapping {seq_len}-token windows of {source}"
        scored = "every token but the first of each window scored"
    else:
        layout = f"first {n} {seq_len}-token windows every {stride} tokens of {source}"
        scored = "each token scored once, by the first window that covers it (never its first)"
    return f"{layout}, {how}; {scored}"


# ---------------------------------------------------------------------------- perplexity
@torch.inference_mode()
def raw_text_perplexity(
    model: nn.Module,
    tokenizer: Any,
    text_or_path: str | os.PathLike,
    *,
    seq_len: int = 1024,
    windows: int | None = 16,
    stride: int | None = None,
    batch_size: int = 1,
    progress: bool = True,
) -> PerplexityResult:
    """Perplexity of ``model`` on raw text (a file, read verbatim, or the text itself).

    The text is tokenised once (see :func:`tokenize_text`); the first ``windows`` windows of
    ``seq_len`` tokens (all that fit when None), started every ``stride`` tokens (default
    ``seq_len``: non-overlapping), are run ``batch_size`` at a time; every token but a window's
    first is scored, and with overlapping windows only tokens no earlier window scored. Returns
    exp(mean NLL) with the protocol in words. The model is put in eval mode and restored.
    """
    text, source = _read_text(text_or_path)
    ids, how = tokenize_text(tokenizer, text)
    stride = seq_len if stride is None else stride
    _check_seq_len(model, seq_len)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = _window_starts(len(ids), seq_len, stride, windows)
    was_training = model.training
    model.eval()
    try:
        total, count, seconds = _score_windows(model, ids, starts, seq_len, batch_size, progress)
    finally:
        model.train(was_training)
    nll = total / count
    protocol = _protocol(len(starts), seq_len, stride, source, how)
    return PerplexityResult(
        math.exp(nll), nll, count, len(starts), seq_len, stride, protocol, len(ids), seconds
    )


def _score_windows(
    model: nn.Module,
    ids: torch.Tensor,
    starts: list[int],
    seq_len: int,
    batch_size: int,
    progress: bool,
) -> tuple[float, int, float]:
    """(sum of NLL, scored tokens, forward seconds) over the windows at ``starts``, run
    ``batch_size`` at a time behind a progress bar."""
    jobs = list(zip(starts, _scored_from(starts, seq_len), strict=True))
    total, count, seconds, device = 0.0, 0, 0.0, _device(model)
    fields = TextColumn("windows, ppl {task.fields[ppl]}")
    with progress_bar(progress, fields) as bar:
        task = bar.add_task("[bold]perplexity", total=len(jobs), ppl="-")
        for group in _batches(jobs, batch_size):
            batch = torch.stack([ids[s : s + seq_len] for s, _ in group]).to(device)
            t0 = time.perf_counter()
            logits = forward_logits(model, batch)
            s, c = _window_nll(logits, batch, [first for _, first in group])
            seconds += time.perf_counter() - t0
            total, count = total + s, count + c
            bar.update(task, advance=len(group), ppl=f"{math.exp(total / count):.3f}")
    return total, count, seconds


# ---------------------------------------------------------------------------- throughput
@torch.inference_mode()
def measure_tokens_per_second(
    model: nn.Module, seq_len: int = 1024, batch: int = 1, repeats: int = 3, warmup: int = 1
) -> float:
    """Eval-forward throughput in tokens per second: ``warmup`` untimed forwards on seeded random
    ids (``batch`` × ``seq_len``), then the median time of ``repeats`` timed ones.

    Example:
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)
        >>> measure_tokens_per_second(QTensorFormer(cfg), seq_len=8, repeats=2) > 0
        True
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    _check_seq_len(model, seq_len)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, _vocab_size(model), (batch, seq_len), generator=gen)
    ids = ids.to(_device(model))
    was_training = model.training
    model.eval()
    try:
        for _ in range(warmup):
            forward_logits(model, ids)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            forward_logits(model, ids)
            times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return batch * seq_len / statistics.median(times)


# ---------------------------------------------------------------------------- calibration
def find_raw_text(split: str = "valid", data_dir: str | os.PathLike | None = None) -> Path:
    """The raw WikiText-2 file of ``split`` (``valid`` or ``test``): ``wikitext-2-raw/<split>.txt``
    under ``data_dir``, ``$QTF_DATA_DIR``, ``./data`` or ``../shared/data``, in that order (the
    folder itself may also be the ``wikitext-2-raw`` folder).

    The raw train split is not available in the shared data folder (the file is too large for
    the snapshot store it came from), so calibration uses the raw valid split and evaluation the
    raw test split.
    """
    if split not in RAW_SPLITS:
        raise ValueError(
            f"raw split must be one of {RAW_SPLITS}, got {split!r} (raw train is not available)"
        )
    tried = []
    for origin, folder in candidate_dirs(data_dir):
        for cand in (folder / RAW_CORPUS / f"{split}.txt", folder / f"{split}.txt"):
            if cand.is_file() and cand.parent.name == RAW_CORPUS:
                return cand.resolve()
        tried.append(f"  {origin}: {folder.resolve()}/{RAW_CORPUS}/{split}.txt")
    fix = (
        f"Fix: pass data_dir=DIR (or set QTF_DATA_DIR=DIR) where DIR contains "
        f"{RAW_CORPUS}/{split}.txt (the file wiki.{split}.raw, verbatim)."
    )
    raise DataNotFoundError(
        "\n".join([f"raw WikiText-2 {split} split not found. Tried:", *tried, fix])
    )


def text_token_ids(
    tokenizer: Any,
    text_or_path: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, str]:
    """Every token id (int64, 1-D) of a text or text file, tokenised as in
    :func:`raw_text_perplexity` (default: the raw WikiText-2 valid split), and where it came
    from.

    Example:
        >>> from qtensorformer.data import WordVocab
        >>> tok = WordVocab.build(["a b c"])
        >>> text_token_ids(tok, "a b c\\n" * 2)[0].numel()
        8
    """
    source = find_raw_text("valid", data_dir) if text_or_path is None else text_or_path
    text, where = _read_text(source)
    ids, _ = tokenize_text(tokenizer, text)
    return ids, where


def calibration_ids(
    tokenizer: Any,
    text_or_path: str | os.PathLike | None = None,
    n_samples: int = 32,
    seq_len: int = 1024,
    *,
    data_dir: str | os.PathLike | None = None,
) -> torch.Tensor:
    """``n_samples`` consecutive non-overlapping windows of ``seq_len`` token ids (int64,
    ``(n_samples, seq_len)``) from the start of the text, tokenised as in
    :func:`raw_text_perplexity`. The default text is the raw WikiText-2 valid split
    (:func:`find_raw_text`; raw train is not available here).

    Example:
        >>> from qtensorformer.data import WordVocab
        >>> tok = WordVocab.build(["a b c"])
        >>> calibration_ids(tok, "a b c\\n" * 10, n_samples=3, seq_len=8).shape
        torch.Size([3, 8])
    """
    if n_samples < 1 or seq_len < 1:
        raise ValueError(f"n_samples and seq_len must be >= 1, got {n_samples} and {seq_len}")
    ids, where = text_token_ids(tokenizer, text_or_path, data_dir=data_dir)
    need = n_samples * seq_len
    if len(ids) < need:
        raise ValueError(
            f"{where} has {len(ids):,} tokens, fewer than the {need:,} asked "
            f"({n_samples} samples × {seq_len} tokens); use a longer text or ask for at most "
            f"{len(ids) // seq_len} samples of {seq_len} tokens"
        )
    return ids[:need].reshape(n_samples, seq_len).clone()
