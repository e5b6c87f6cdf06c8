"""Healing: a short fine-tune of a compressed model on calibration text, by the trainer.

:func:`heal` wraps any causal LM (a Hugging Face model or a QTensorFormer, compressed or not)
in :class:`TrainableLM`, which speaks the trainer's protocol (``forward(ids, labels)`` returning
logits, loss and stats; ``config.to_dict()``; ``save_pretrained`` writing a compressed-model
folder), and runs :class:`~qtensorformer.train.Trainer` on it: the same progress bar, AdamW with
warm-up and cosine decay, atomic checkpoints and exact resume. Every parameter trains (the
factors of the compressed layers, the untouched layers, norms and embeddings).

Example:
    >>> import tempfile
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.compress import SVDConfig, compress_
    >>> torch.manual_seed(0) and None
    >>> model = QTensorFormer(ModelConfig.dense(vocab_size=40, d_model=16, n_heads=2,
    ...                                         n_layers=1, max_seq_len=32))
    >>> report = compress_(model, SVDConfig(ratio=0.5))
    >>> ids = torch.randint(0, 40, (3000,))
    >>> res = heal(model, ids, HealConfig(steps=4, seq_len=16, progress=False),
    ...            tempfile.mkdtemp(), report=report)
    >>> res.status, res.steps
    ('completed', 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..files import read_json, write_json
from ..model import ModelOutput
from ..nn import ForwardStats
from ..tensor import LowRankLinear
from ..train import TrainConfig, Trainer, evaluate
from .checkpoint import model_config_dict, save_compressed
from .evaluate import forward_logits, max_positions
from .summary import CompressionReport

__all__ = ["HEAL_FILE", "HealConfig", "HealResult", "TrainableLM", "heal"]

#: The file in a healing run folder that keeps the held-out loss measured before healing.
HEAL_FILE = "heal.json"


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"HealConfig: {name} must be an int >= {minimum}, got {value!r}")


@dataclass
class HealConfig:
    """The fine-tune: ``steps`` optimiser steps of ``batch_size`` windows of ``seq_len`` tokens
    at learning rate ``lr`` (linear warm-up over ``warmup_steps``, cosine decay to a tenth);
    ``valid_fraction`` of the text (at most ``valid_max_tokens`` tokens, None: no cap) is held
    out and scored before, every quarter of the run and after; ``balance`` first rescales every
    :class:`~qtensorformer.tensor.LowRankLinear` so that its two factors have equal norms per
    rank component (the weights are unchanged; off by default: it healed SmolLM2 worse,
    docs/RESULTS.md); ``seed`` fixes the window order; ``device``
    as the trainer takes it (``"auto"``: a GPU when there is one); ``progress`` shows the
    trainer's bar."""

    steps: int = 50
    lr: float = 5e-5
    batch_size: int = 4
    seq_len: int = 256
    warmup_steps: int = 5
    weight_decay: float = 0.0
    valid_fraction: float = 0.1
    valid_max_tokens: int | None = 16_384
    balance: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seq_len", self.seq_len, 2)
        _check_int("warmup_steps", self.warmup_steps, 0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"HealConfig: lr must be a finite number > 0, got {self.lr!r}")
        if self.valid_max_tokens is not None:
            _check_int("valid_max_tokens", self.valid_max_tokens, self.seq_len + 1)
        if not 0 < self.valid_fraction < 1:
            raise ValueError(
                f"HealConfig: valid_fraction must lie in (0, 1), got {self.valid_fraction!r}"
            )

    def train_config(self) -> TrainConfig:
        """The trainer's config: an evaluation and a checkpoint (for resume) every quarter of
        the run."""
        return TrainConfig(
            batch_size=self.batch_size,
            seq_len=self.seq_len,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_steps=min(self.warmup_steps, self.steps),
            max_steps=self.steps,
            eval_every=math.ceil(self.steps / 4),
            eval_max_tokens=None,
            eval_batch_size=self.batch_size,
            seed=self.seed,
            keep_last=1,
            log_every=min(10, self.steps),
            device=self.device,
            progress=self.progress,
        )


@dataclass
class _LMConfig:
    """The trainer-facing config of a wrapped model: its vocabulary and positions, and the
    wrapped model's own config as a dict (for the checkpoint's ``config.json``)."""

    vocab_size: int
    max_seq_len: int | None
    base: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"wrapped": True, "vocab_size": self.vocab_size, "base": self.base}


class TrainableLM(nn.Module):
    """A causal LM behind the trainer's protocol: ``forward(ids, labels=None)`` returns a
    :class:`~qtensorformer.model.ModelOutput` (next-token cross-entropy as the loss, FLOPs
    estimated as 2 × parameters per token), and :meth:`save_pretrained` writes a
    compressed-model folder (the ``report``'s modules in its manifest)."""

    def __init__(self, model: nn.Module, report: CompressionReport | None = None) -> None:
        super().__init__()
        self.lm = model
        self.report = report
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if not isinstance(vocab, int):
            raise ValueError(f"{type(model).__name__} has no config.vocab_size: not a causal LM?")
        self.config = _LMConfig(vocab, max_positions(model), model_config_dict(model) or {})

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        logits = forward_logits(self.lm, ids)  # (b, n, V)
        b, n, v = logits.shape
        flops = 2 * sum(p.numel() for p in self.lm.parameters()) * b * n
        stats = ForwardStats(tokens=b * n, flops={"forward": flops})
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1))
            stats.lm_loss = loss.detach()
        return ModelOutput(logits, loss, stats)

    def save_pretrained(self, directory: str | Path) -> Path:
        """The wrapped model as a compressed-model folder (the report's modules listed)."""
        manifest = self.report if self.report is not None else {"modules": {}}
        save_compressed(self.lm, manifest, directory)
        return Path(directory)


@dataclass
class HealResult:
    """What :func:`heal` did: the trainer's status and steps, the held-out loss before and
    after (nats per token on the held-out tail of the text), tokens trained on and seconds."""

    status: str
    steps: int
    valid_loss_before: float
    valid_loss_after: float
    tokens: int
    seconds: float
    run_dir: Path

    @property
    def valid_ppl_before(self) -> float:
        return math.exp(min(self.valid_loss_before, 700.0))

    @property
    def valid_ppl_after(self) -> float:
        return math.exp(min(self.valid_loss_after, 700.0))


def _split(ids: torch.Tensor, config: HealConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training head and held-out tail of the token stream; a clear error when too short."""
    ids = ids.reshape(-1)
    n_valid = int(ids.numel() * config.valid_fraction)
    if config.valid_max_tokens is not None:
        n_valid = min(n_valid, config.valid_max_tokens)
    n_valid = max(config.seq_len + 1, n_valid)
    need = n_valid + config.batch_size * config.seq_len
    if ids.numel() < need:
        raise ValueError(
            f"healing needs at least {need:,} tokens ({config.batch_size} windows of "
            f"{config.seq_len} plus a held-out tail), got {ids.numel():,}: give more "
            "calibration text, or a smaller batch_size or seq_len"
        )
    return ids[:-n_valid], ids[-n_valid:]


def heal(
    model: nn.Module,
    ids: torch.Tensor,
    config: HealConfig,
    run_dir: str | Path,
    *,
    report: CompressionReport | None = None,
    resume: bool = False,
) -> HealResult:
    """Fine-tune ``model`` in place on the token stream ``ids`` (see the module docstring);
    checkpoints go to ``run_dir`` and ``resume=True`` continues an interrupted run there."""
    train_ids, valid_ids = _split(ids, config)
    if config.balance and not resume:
        for m in model.modules():
            if isinstance(m, LowRankLinear):
                m.balance_()
    wrapped = TrainableLM(model, report)
    train_config = config.train_config()
    trainer = Trainer(
        wrapped,
        train_ids,
        valid_ids,
        train_config,
        run_dir,
        quiet=not config.progress,
        summary_table=False,
    )
    before = _valid_loss_before(wrapped, valid_ids, trainer, resume)
    result = trainer.fit(resume=resume)
    model.eval()
    if result.status == "interrupted":  # checkpointed: the half-healed model is not a result
        raise KeyboardInterrupt(f"healing {result.message}; resume it to go on")
    return HealResult(
        result.status,
        result.steps,
        before,
        result.valid.loss if result.valid is not None else float("nan"),
        result.tokens,
        result.train_seconds,
        Path(run_dir),
    )


def _valid_loss_before(
    wrapped: TrainableLM, valid_ids: torch.Tensor, trainer: Trainer, resume: bool
) -> float:
    """The held-out loss before healing: measured now and kept in ``heal.json``, or read from
    there when resuming (the model has already moved)."""
    path = trainer.run_dir / HEAL_FILE
    saved = read_json(path) if resume else None
    if saved is not None:
        return float(saved["valid_loss_before"])
    c = trainer.config
    ev = evaluate(
        wrapped.to(trainer.device),
        valid_ids,
        c.seq_len,
        c.eval_batch_size,
        None,
        None,
        trainer.device,
        trainer.autocast_dtype,
    )
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, {"valid_loss_before": ev.loss, "valid_tokens": ev.tokens})
    return ev.loss
