"""TrainConfig: optimiser, schedule, limits, evaluation and checkpointing of a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..energy.profiles import PROFILES

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """How a model is trained; validates itself.

    The run length is the smallest of ``max_steps``, ``max_tokens`` (target tokens) and
    ``epochs`` (used only when neither of the others is given); the learning-rate schedule
    (linear warm-up, cosine decay to ``min_lr_ratio``·lr) spans it. ``max_minutes`` stops
    earlier on the wall clock (the schedule is then cut short, and the log says so).
    Validation estimates during training score ``eval_max_tokens`` tokens; the final
    evaluation scores every token of valid and test, or the first ``final_eval_max_tokens``.
    ``max_latency_ms`` (measured per query of ``seq_len`` tokens at each evaluation) and
    ``max_energy_uj`` (estimated per query on the ``energy_hardware`` profile of
    :mod:`qtensorformer.energy`; every evaluation logs that estimate) are held by a
    :class:`~qtensorformer.train.budget.BudgetController`.

    Checkpoints are written at every evaluation (``eval_every``), at the end, on SIGINT or
    SIGTERM, and between evaluations every ``checkpoint_every_steps`` steps and/or every
    ``checkpoint_every_minutes`` of wall clock (whichever comes first); ``keep_last`` of them
    are kept.

    Example:
        >>> TrainConfig(batch_size=8, seq_len=64, max_steps=100).tokens_per_step
        504
    """

    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    max_steps: int | None = None
    max_tokens: int | None = None
    epochs: float = 1.0
    max_minutes: float | None = None
    eval_every: int = 500
    eval_max_tokens: int | None = 100_000
    final_eval_max_tokens: int | None = None
    eval_batch_size: int = 32
    max_latency_ms: float | None = None
    max_energy_uj: float | None = None
    energy_hardware: str = "cpu_xeon"
    patience: int | None = None
    seed: int = 0
    keep_last: int = 3
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    log_every: int = 20
    device: str = "auto"
    amp: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"TrainConfig: {msg}")

        for name in ("batch_size", "eval_batch_size", "eval_every", "keep_last", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                fail(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or self.seq_len < 2:
            fail(f"seq_len must be an int >= 2, got {self.seq_len!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            fail(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        for name in (
            "max_steps",
            "max_tokens",
            "eval_max_tokens",
            "final_eval_max_tokens",
            "patience",
            "checkpoint_every_steps",
        ):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                fail(f"{name} must be a positive int or None, got {v!r}")
        if not self.lr > 0:
            fail(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            fail(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            fail("weight_decay must be >= 0 and grad_clip > 0")
        if not self.epochs > 0:
            fail(f"epochs must be > 0, got {self.epochs!r}")
        for name in ("max_minutes", "checkpoint_every_minutes"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not v > 0):
                fail(f"{name} must be > 0 or None, got {v!r}")
        for name in ("max_latency_ms", "max_energy_uj"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                fail(f"{name} must be > 0 or None, got {v!r}")
        if self.energy_hardware not in PROFILES:
            fail(
                f"energy_hardware must be one of {', '.join(PROFILES)}, "
                f"got {self.energy_hardware!r}"
            )
        if self.amp not in ("auto", "bf16", "none"):
            fail(f"amp must be 'auto', 'bf16' or 'none', got {self.amp!r}")
        if not isinstance(self.device, str) or not self.device:
            fail(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @property
    def tokens_per_step(self) -> int:
        """Target tokens per optimiser step: batch_size · (seq_len − 1)."""
        return self.batch_size * (self.seq_len - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}")
        return cls(**d)
