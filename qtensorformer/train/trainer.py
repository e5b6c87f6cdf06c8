"""Trainer: AdamW, warm-up + cosine schedule, clipping, auxiliary losses, evaluation, early
stopping, time/token limits, JSONL metrics, atomic checkpoints and exact resume.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from torch import nn

from ..data.batching import num_windows, train_batches
from ..energy import EnergyEstimator, measure_latency_ms
from ..files import TOKENIZER_DIR, CheckpointError, RunDir, read_json, write_json
from ..io import load_state
from ..nn.params import param_groups
from ..nn.stats import ForwardStats
from .budget import BudgetController
from .checkpoint import (
    latest_checkpoint,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .evaluate import PROTOCOL, EvalResult, evaluate
from .pareto import ParetoPoint, ParetoTracker
from .signals import StopSignals
from .timebudget import plan_steps

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "lr_factor", "resolve_device"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where and what was non-finite."""


def dist_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the ``torchrun`` environment (1, 0, 0 alone)."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` (this process's GPU when there is one, else the CPU) or a torch device."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_env()[2] if dist_env()[0] > 1 else 0)
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return dev


#: Forward statistics of the last step logged under names that do not shadow the window's
#: running totals and means (``tokens``: tokens trained so far; ``lm_loss``: window mean).
_LAST_STEP_KEYS = {"tokens": "batch_tokens", "lm_loss": "step_lm_loss"}


#: Steps timed before a run under ``max_minutes`` sizes its schedule (the first is dropped).
_PROBE_STEPS = 6
#: Most budget steps one evaluation takes toward an energy limit (0.8^10 ≈ 0.11 of rank α).
SETTLE_STEPS = 10
#: Most of ``max_minutes`` the final evaluation may take (see :mod:`.timebudget`).
_FINAL_SHARE = 0.2


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps: linear warm-up over
    ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """What a run did. ``status``: ``"completed"``, ``"early_stopped"``, ``"time_limit"``,
    ``"diverged"`` or ``"interrupted"`` (SIGINT/SIGTERM: checkpointed, not evaluated);
    ``losses``: the training loss of every step of this call."""

    status: str
    steps: int
    tokens: int
    train_seconds: float
    tokens_per_second: float
    best_valid_ppl: float | None
    valid: EvalResult | None
    test: EvalResult | None
    last_checkpoint: Path | None
    run_dir: Path
    message: str = ""
    losses: list[float] = field(default_factory=list)


@dataclass
class FitState:
    """The counters of a run, saved in every checkpoint (``"state"``) and restored on resume:
    optimiser steps, data position (epoch, batch within it), target tokens, training seconds,
    the best validation loss so far and the evaluations since it, and for a run under
    ``max_minutes`` the schedule length and final-evaluation size that fit its budget."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    best_valid: float | None = None
    bad_evals: int = 0
    schedule_steps: int | None = None  # the schedule's length once sized to max_minutes
    final_eval_tokens: int | None = None  # tokens per split of a time-limited final evaluation
    final_reserve_s: float = 0.0  # seconds of max_minutes kept for the final evaluation

    def advance(self, tokens: int, seconds: float) -> None:
        """Count one optimiser step on the next batch."""
        self.step += 1
        self.batch_in_epoch += 1
        self.tokens += tokens
        self.train_seconds += seconds


@dataclass
class StepResult:
    """One optimiser step: ``loss`` as every process saw it (the mean over processes), the
    language-model loss alone, the gradient norm before clipping, the forward's statistics and
    the step's wall time."""

    loss: float
    lm_loss: float
    grad_norm: float
    stats: ForwardStats
    seconds: float


@dataclass
class LogWindow:
    """Training steps since the last ``train`` log line (their mean LM loss and throughput)."""

    lm_loss: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    steps: int = 0

    def add(self, lm_loss: float, tokens: int, seconds: float) -> None:
        self.lm_loss += lm_loss
        self.tokens += tokens
        self.seconds += seconds
        self.steps += 1

    def mean_lm_loss(self) -> float:
        return self.lm_loss / self.steps

    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


@dataclass
class FitRun:
    """What one call of :meth:`Trainer.fit` works with: the model (and its DDP wrapper, or the
    model itself, in ``forward``), optimiser, schedule, counters, losses, progress bar and the
    last checkpoint written."""

    model: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    state: FitState
    progress: Progress
    task: TaskID
    started: float
    last_checkpoint: Path | None = None
    saved_at: int = -1  # step of the last checkpoint written
    saved_clock: float = 0.0  # perf_counter() when it was written
    start_step: int = 0  # step this call started from
    losses: list[float] = field(default_factory=list)
    window: LogWindow = field(default_factory=LogWindow)


class Trainer:
    """Trains a :class:`~qtensorformer.QTensorFormer` on token streams.

    ``fit(resume=False)`` runs to the configured limit; ``resume=True`` continues from the
    run's latest checkpoint (``resume=PATH`` from a given one) exactly as if never interrupted:
    model, optimiser, schedule, data position and RNG states are restored.

    Outputs in ``run_dir`` (see :class:`~qtensorformer.files.RunDir`): ``metrics.jsonl`` (one
    JSON object per log line and evaluation), ``checkpoints/``, ``best/`` (the model with the
    best validation perplexity, when evaluations run), ``pareto.json``, ``summary.json``.

    ``energy_fn(model, seq_len) -> µJ per query`` estimates energy at each evaluation (default:
    an :class:`~qtensorformer.energy.EnergyEstimator` for ``config.energy_hardware`` when the
    model is this library's; required for ``max_energy_uj`` on any other model).

    Example:
        >>> import torch, tempfile
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> from qtensorformer.train import TrainConfig
        >>> model = QTensorFormer(ModelConfig.dense(vocab_size=50, d_model=16, n_heads=2,
        ...                                         n_layers=1, max_seq_len=16))
        >>> ids = torch.randint(0, 50, (2000,))
        >>> cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=5, eval_every=5,
        ...                   warmup_steps=1, progress=False)
        >>> res = Trainer(model, ids, ids[:300], cfg, tempfile.mkdtemp(), quiet=True).fit()
        >>> res.status, res.steps
        ('completed', 5)
    """

    def __init__(
        self,
        model: nn.Module,
        train_ids: torch.Tensor,
        valid_ids: torch.Tensor,
        config: TrainConfig,
        run_dir: str | Path,
        tokenizer=None,
        test_ids: torch.Tensor | None = None,
        words: dict[str, int] | None = None,
        extra_summary: dict[str, Any] | None = None,
        console: Console | None = None,
        quiet: bool = False,
        summary_table: bool = True,
        energy_fn=None,
    ) -> None:
        self.model, self.config, self.tokenizer = model, config, tokenizer
        self.train_ids, self.valid_ids, self.test_ids = train_ids, valid_ids, test_ids
        self.words = words or {}
        self.run = RunDir(run_dir)
        self.run_dir = self.run.path
        self.extra_summary = extra_summary or {}
        self.console = console or Console()
        self.quiet = quiet
        self.summary_table = summary_table
        self.energy_fn = self._energy_fn(energy_fn)  # (model, seq_len) -> µJ per query
        self.pareto = ParetoTracker()
        self.budget = self._budget_controller()
        self.world_size, self.rank, _ = dist_env()
        self.is_main = self.rank == 0
        self.device = resolve_device(config.device)
        self.autocast_dtype = self._autocast_dtype()
        self._check_shapes()
        self.steps_per_epoch = num_windows(train_ids.numel(), config.seq_len) // config.batch_size
        self.total_steps = self._total_steps()

    # ------------------------------------------------------------------ set-up
    def _energy_fn(self, energy_fn):
        """The given energy estimate, else the configured profile's for this library's models;
        an energy budget without any estimate is an error."""
        if energy_fn is None and hasattr(self.model, "blocks") and hasattr(self.model, "config"):
            energy_fn = EnergyEstimator(self.config.energy_hardware)
        if self.config.max_energy_uj is not None and energy_fn is None:
            raise ValueError(
                "max_energy_uj needs an energy estimate per query: pass energy_fn="
                "(model, seq_len) -> µJ per query to the Trainer for this model type"
            )
        return energy_fn

    def _budget_controller(self) -> BudgetController | None:
        """The latency/energy controller (None for a model without blocks to adjust)."""
        if not hasattr(self.model, "blocks"):
            return None
        c = self.config
        limits = {"latency_ms": c.max_latency_ms, "energy_uj": c.max_energy_uj}
        return BudgetController(self.model, limits)

    def _autocast_dtype(self) -> torch.dtype | None:
        """bf16 for ``amp="bf16"`` (and ``"auto"`` on a GPU); None runs in full precision."""
        amp = self.config.amp
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" else "none"
        return torch.bfloat16 if amp == "bf16" else None

    def _check_shapes(self) -> None:
        """The global batch splits over the processes, windows fit the model, and the training
        stream holds at least one batch."""
        c = self.config
        if c.batch_size % self.world_size:
            raise ValueError(
                f"batch_size={c.batch_size} (the global batch) must be divisible by the "
                f"{self.world_size} processes"
            )
        max_len = getattr(getattr(self.model, "config", None), "max_seq_len", None)
        if max_len is not None and c.seq_len > max_len:
            raise ValueError(
                f"seq_len={c.seq_len} exceeds the model's max_seq_len={max_len}; "
                "lower seq_len or build the model with a larger max_seq_len"
            )
        n = self.train_ids.numel()
        if num_windows(n, c.seq_len) // c.batch_size < 1:
            raise ValueError(
                f"the training stream ({n:,} tokens) holds less than one batch "
                f"of {c.batch_size} windows of {c.seq_len} tokens"
            )

    def _total_steps(self) -> int:
        """The run length: the smallest of ``max_steps``, ``max_tokens`` and ``epochs``."""
        c = self.config
        limits = []
        if c.max_steps is not None:
            limits.append(c.max_steps)
        if c.max_tokens is not None:
            limits.append(max(1, math.ceil(c.max_tokens / c.tokens_per_step)))
        if not limits:
            limits.append(max(1, round(c.epochs * self.steps_per_epoch)))
        return min(limits)

    # ------------------------------------------------------------------ small helpers
    def _log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl`` (main process only)."""
        if self.is_main:
            self.run.append_metrics(record)

    def _print(self, *a) -> None:
        if not self.quiet and self.is_main:
            self.console.print(*a)

    def _eval(self, ids: torch.Tensor, split: str, max_tokens: int | None) -> EvalResult:
        show = self.is_main and not self.quiet and self.config.progress
        return evaluate(
            self.model,
            ids,
            self.config.seq_len,
            self.config.eval_batch_size,
            max_tokens,
            self.words.get(split),
            self.device,
            self.autocast_dtype,
            progress=f"eval {split}" if show else None,
        )

    def _autocast(self) -> torch.autocast:
        """Mixed precision for the forward pass (disabled without AMP)."""
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
        )

    def _sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the processes (a copy), or ``t`` itself when training alone."""
        if self.world_size == 1:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t

    def _agree(self, flag: bool) -> bool:
        """True on every process when it is True on any (wall-clock decisions differ)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _checkpoint_due(self, run: FitRun) -> bool:
        """Whether ``checkpoint_every_steps`` or ``checkpoint_every_minutes`` has passed since
        the last checkpoint (or the start of this call), on any process."""
        c = self.config
        steps = c.checkpoint_every_steps
        by_steps = steps is not None and run.state.step - max(run.saved_at, run.start_step) >= steps
        minutes = c.checkpoint_every_minutes
        since = time.perf_counter() - max(run.saved_clock, run.started)
        return self._agree(by_steps or (minutes is not None and since >= minutes * 60))

    def _out_of_time(self, started: float, state: FitState) -> bool:
        """Whether training must stop to keep ``max_minutes`` (since ``started``), leaving the
        final evaluation its share (on any process)."""
        limit = self.config.max_minutes
        if limit is None:
            return False
        return self._agree(time.perf_counter() - started > limit * 60 - state.final_reserve_s)

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool | str | Path = False) -> TrainResult:
        """Train to the configured limit (``resume``: continue from a checkpoint, see the class
        docstring) and return what the run did."""
        run = self._prepare(resume)
        with StopSignals() as stop, run.progress:
            status, message = self._train_loop(run, stop)
            if status == "interrupted":  # still catching signals: a second Ctrl-C waits
                return self._report_interruption(run, message)
        if status == "diverged":
            return self._report_divergence(run, message)
        if run.saved_at != run.state.step:
            self._save_checkpoint(run)
        return self._final_evaluation(run, status, message)

    def _train_loop(self, run: FitRun, stop: StopSignals) -> tuple[str, str]:
        """Step until the run ends; returns its status and a message saying why it stopped."""
        c = self.config
        batches = self._batches(run.state)
        step_times: list[float] = []
        while run.state.step < self.total_steps:
            try:
                out = self._train_step(run, next(batches))
            except TrainingDiverged as e:
                return "diverged", str(e)
            self._record_step(run, out)
            if c.max_minutes is not None and run.state.schedule_steps is None:
                step_times.append(out.seconds)
                if len(step_times) == _PROBE_STEPS:
                    self._size_to_budget(run, step_times[1:])  # the first step warms caches
            total = self.total_steps
            if self._agree(stop.received is not None):
                return "interrupted", (
                    f"stopped by {stop.received or 'a signal'} at step {run.state.step} of {total}"
                )
            if run.state.step % c.eval_every == 0 or run.state.step >= total:
                if self._evaluate_and_checkpoint(run):
                    return "early_stopped", f"no validation improvement in {c.patience} evaluations"
            elif self._checkpoint_due(run):
                self._save_checkpoint(run)
            if run.state.step < total and self._out_of_time(run.started, run.state):
                return "time_limit", (
                    f"stopped by max_minutes={c.max_minutes} at step {run.state.step} of "
                    f"{total} (the schedule was cut short)"
                )
        return "completed", ""

    # ------------------------------------------------------------------ preparation
    def _prepare(self, resume: bool | str | Path) -> FitRun:
        """Model on the device (wrapped for DDP), seeded optimiser and schedule, the restored
        checkpoint when resuming (else a ``start`` log record), and the progress bar."""
        c = self.config
        model = self.model.to(self.device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        forward = self._distributed(model)
        torch.manual_seed(c.seed)
        optimizer = torch.optim.AdamW(
            param_groups(model, c.weight_decay), lr=c.lr, betas=(0.9, 0.95)
        )
        state = FitState()
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: lr_factor(s, self._warmup(state), self.total_steps, c.min_lr_ratio),
        )
        if resume:
            state = self._restore(resume, model, optimizer, scheduler)
            if state.schedule_steps is not None:
                self.total_steps = state.schedule_steps
        else:
            self._log({"event": "start", "config": c.to_dict(), **self.extra_summary})
        total = self.total_steps
        self._print(
            f"Training {total:,} steps ({c.tokens_per_step:,} tokens each, "
            f"{self.steps_per_epoch:,} steps per epoch) on {self.device}"
        )
        progress = self._progress_bar()
        run = FitRun(
            model=model,
            forward=forward,
            optimizer=optimizer,
            scheduler=scheduler,
            state=state,
            progress=progress,
            task=progress.add_task("train", total=total, completed=state.step, info=""),
            started=time.perf_counter(),
            last_checkpoint=latest_checkpoint(self.run_dir) if resume else None,
            saved_at=state.step if resume else -1,
            start_step=state.step,
        )
        self.losses_so_far = run.losses  # visible while fit runs (e.g. after an interruption)
        return run

    def _warmup(self, state: FitState) -> int:
        """Warm-up steps: the configured ones, at most a tenth of a schedule sized to a time
        budget (so that a short run leaves its warm-up)."""
        w = self.config.warmup_steps
        if state.schedule_steps is None:
            return w
        return min(w, max(1, state.schedule_steps // 10))

    def _size_to_budget(self, run: FitRun, step_times: list[float]) -> None:
        """Fit the schedule (and the final evaluation) to ``max_minutes`` from the measured
        step time and one timed evaluation batch; logged as a ``schedule`` record."""
        c, st = self.config, run.state
        t0 = time.perf_counter()
        probe = self._eval(self.valid_ids, "valid", c.eval_batch_size * c.seq_len)
        eval_spt = (time.perf_counter() - t0) / max(probe.tokens, 1)
        finals = [self.valid_ids.numel()]
        if self.test_ids is not None:
            finals.append(self.test_ids.numel())
        periodic = min(c.eval_max_tokens or self.valid_ids.numel(), self.valid_ids.numel())
        plan = plan_steps(
            budget_s=c.max_minutes * 60,
            elapsed_s=time.perf_counter() - run.started,
            step_now=st.step,
            total_steps=self.total_steps,
            step_s=statistics.median(step_times),
            eval_s_per_token=eval_spt,
            periodic_eval_tokens=periodic,
            eval_every=c.eval_every,
            final_tokens=finals,
            final_share=_FINAL_SHARE,
        )
        st.schedule_steps, st.final_eval_tokens = plan.steps, plan.final_eval_tokens
        st.final_reserve_s = plan.reserve_s
        self.total_steps = plan.steps
        run.progress.update(run.task, total=plan.steps)
        self._log({"event": "schedule", "step": st.step, **asdict(plan)})
        self._print(
            f"max_minutes={c.max_minutes}: schedule sized to {plan.steps:,} steps (warm-up "
            f"{self._warmup(st)})"
            + (
                f"; final evaluation on the first {plan.final_eval_tokens:,} tokens of each split"
                if plan.final_eval_tokens is not None
                else ""
            )
        )

    def _distributed(self, model: nn.Module) -> nn.Module:
        """Under ``torchrun``: join the process group and wrap ``model`` in DDP; alone: the
        model itself."""
        if self.world_size == 1:
            return model
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        # with routing, a process whose batch routes no token leaves the quantum path's
        # parameters without gradients in that step
        routed = bool(getattr(getattr(model, "config", None), "use_selective_routing", False))
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=routed,
        )

    def _restore(
        self,
        resume: bool | str | Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
    ) -> FitState:
        """Load the checkpoint to resume from (the latest for ``resume=True``) into the model,
        optimiser, schedule, RNGs and Pareto tracker; returns its counters."""
        ckpt = latest_checkpoint(self.run_dir) if resume is True else Path(resume)
        if ckpt is None:
            raise CheckpointError(f"nothing to resume: no checkpoint in {self.run_dir}")
        saved = load_trainer_state(ckpt)
        weights = load_state(ckpt / "model.safetensors", self.device)
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(f"{ckpt} does not fit this model (different config?): {e}") from e
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = replace(FitState(), **saved["state"])
        set_rng_state(saved["rng"])
        self._reload_pareto()
        self._print(f"[bold]Resumed[/] from {ckpt} at step {state.step}")
        return state

    def _reload_pareto(self) -> None:
        """The evaluations recorded before an interruption, back into the Pareto tracker."""
        for p in (read_json(self.run.pareto) or {}).get("points", []):
            self.pareto.add(ParetoPoint(**p))

    def _progress_bar(self) -> Progress:
        c = self.config
        return Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=self.quiet or not c.progress,
            transient=False,
        )

    # ------------------------------------------------------------------ one step
    def _batches(self, state: FitState) -> Iterator[torch.Tensor]:
        """Global training batches from the saved data position on, epoch after epoch (the
        position in ``state`` moves to the next epoch when one is used up)."""
        c = self.config
        while True:
            yield from train_batches(
                self.train_ids, c.batch_size, c.seq_len, c.seed, state.epoch, state.batch_in_epoch
            )
            state.epoch += 1
            state.batch_in_epoch = 0

    def _local_share(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's rows of the global batch (all of it when training alone)."""
        if self.world_size == 1:
            return batch
        per_rank = self.config.batch_size // self.world_size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def _train_step(self, run: FitRun, batch: torch.Tensor) -> StepResult:
        """Forward (AMP when on), backward, gradient clipping, optimiser and schedule step on
        one global batch. Raises :class:`TrainingDiverged` (before updating anything) when the
        loss on any process, or the gradient norm, is not finite."""
        t0 = time.perf_counter()
        batch = self._local_share(batch).to(self.device)
        run.model.train()
        with self._autocast():
            _, loss, stats = run.forward(batch, labels=batch)
        seen = self._sum_over_processes(loss.detach()) / self.world_size
        step = run.state.step + 1
        if not torch.isfinite(seen):  # a non-finite loss anywhere stops every process
            raise TrainingDiverged(self._diagnose(loss, stats, step))
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), self.config.grad_clip)
        if not torch.isfinite(grad_norm):
            raise TrainingDiverged(self._diagnose(loss, stats, step, grads=True))
        run.optimizer.step()
        run.scheduler.step()
        seconds = time.perf_counter() - t0
        return StepResult(float(seen), self._lm_loss(loss, stats), float(grad_norm), stats, seconds)

    def _lm_loss(self, loss: torch.Tensor, stats: ForwardStats) -> float:
        """The language-model loss of a step (the mean over processes), or the loss itself
        when the model does not report it."""
        if stats.lm_loss is None:
            return float(loss.detach())
        return float(self._sum_over_processes(stats.lm_loss.detach())) / self.world_size

    def _diagnose(self, loss, stats, step: int, grads: bool = False) -> str:
        """Where the run diverged: the losses, non-finite weights (and gradients) and a fix."""
        parts = [f"step {step}: loss = {float(loss.detach())}"]
        if stats is not None and stats.lm_loss is not None:
            parts.append(f"LM loss = {float(stats.lm_loss)}")
        if stats is not None:
            for k, v in stats.aux_losses.items():
                parts.append(f"aux {k} = {float(v)}")
        bad_w = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad_w:
            parts.append(f"non-finite weights in {bad_w[:5]}")
        if grads:
            bad_g = [
                n
                for n, p in self.model.named_parameters()
                if p.grad is not None and not torch.isfinite(p.grad).all()
            ]
            parts.append(f"non-finite gradients in {bad_g[:5]}")
        parts.append("try a lower learning rate (--lr) or a smaller grad_clip")
        return "; ".join(parts)

    # ------------------------------------------------------------------ logging
    def _record_step(self, run: FitRun, out: StepResult) -> None:
        """Count the step, keep its loss, and log the window every ``log_every`` steps (and at
        the last one)."""
        tokens = self.config.tokens_per_step
        run.state.advance(tokens, out.seconds)
        run.losses.append(out.loss)
        run.window.add(out.lm_loss, tokens, out.seconds)
        step = run.state.step
        if step % self.config.log_every == 0 or step == self.total_steps:
            self._log_window(run, out)
            run.window = LogWindow()
        run.progress.update(run.task, completed=step)

    def _log_window(self, run: FitRun, out: StepResult) -> None:
        """One ``train`` record: tokens trained so far, the window's mean LM loss and
        throughput, the last step's loss, learning rate, gradient norm and forward statistics
        (its token count as ``batch_tokens``); shown on the progress bar."""
        w = run.window
        last = {k: v for k, v in out.stats.summary().items() if v is not None}
        rec = {
            "event": "train",
            "step": run.state.step,
            **{_LAST_STEP_KEYS.get(k, k): v for k, v in last.items()},
            "tokens": run.state.tokens,
            "lm_loss": w.mean_lm_loss(),
            "ppl": math.exp(min(w.mean_lm_loss(), 700)),
            "loss": out.loss,
            "lr": run.scheduler.get_last_lr()[0],
            "grad_norm": out.grad_norm,
            "tokens_per_s": w.tokens_per_second(),
        }
        self._log(rec)
        run.progress.update(
            run.task,
            info=f"loss {rec['lm_loss']:.3f} ppl {rec['ppl']:.1f} {rec['tokens_per_s']:,.0f} tok/s",
        )

    # ------------------------------------------------------------------ evaluation
    def _evaluate_and_checkpoint(self, run: FitRun) -> bool:
        """Evaluate, track the Pareto front, budgets and ``best/``, then checkpoint; returns
        True when early stopping fires."""
        stop = self._evaluate_and_track(run.state)
        self._save_checkpoint(run)
        return stop

    def _evaluate_and_track(self, st: FitState) -> bool:
        """Validation estimate with its costs, logged and added to the Pareto front; budgets
        adjusted; keeps ``best/``; returns True when early stopping fires."""
        c = self.config
        t0 = time.perf_counter()
        ev = self._eval(self.valid_ids, "valid", c.eval_max_tokens)
        latency, flops_tok, energy = self._measure_costs()
        params = sum(p.numel() for p in self.model.parameters())
        self._log(
            {
                "event": "eval",
                "split": "valid",
                "step": st.step,
                "tokens": st.tokens,
                "loss": ev.loss,
                "ppl": ev.ppl,
                "eval_tokens": ev.tokens,
                "eval_seconds": time.perf_counter() - t0,
                "params": params,
                "flops_per_token": flops_tok,
                "latency_ms": latency,
                "energy_uj": energy,
            }
        )
        self._track_pareto(
            ParetoPoint(st.step, ev.ppl, params, flops_tok, latency, energy, st.tokens)
        )
        self._apply_budget(st.step, latency, energy)
        self._print(f"step {st.step:,}: valid ppl {ev.ppl:.2f} (first {ev.tokens:,} tokens)")
        return self._keep_best(st, ev.loss)

    def _measure_costs(self) -> tuple[float, float, float | None]:
        """Measured latency per query (ms; the mean over processes, so that every process acts
        on the same number), FLOPs per token, and the estimated energy per query (µJ)."""
        c = self.config
        latency, flops_tok = measure_latency_ms(self.model, c.seq_len, self.device)
        lat = torch.tensor([latency], device=self.device, dtype=torch.float64)
        latency = float(self._sum_over_processes(lat)) / self.world_size
        if self.energy_fn is None:
            return latency, flops_tok, None
        return latency, flops_tok, self._energy_now()

    def _track_pareto(self, point: ParetoPoint) -> None:
        """Add an evaluation to the Pareto tracker, save it and log whether it is on the
        front."""
        on_front = self.pareto.add(point)
        if self.is_main:
            self.pareto.save(self.run_dir)
        self._log(
            {
                "event": "pareto",
                "step": point.step,
                "on_front": on_front,
                "front_size": len(self.pareto.front),
            }
        )

    def _apply_budget(self, step: int, latency: float, energy: float | None) -> None:
        """Let the budget controller adjust routing and ranks; log and show what it did."""
        if self.budget is None:
            return
        actions = self.budget.update({"latency_ms": latency, "energy_uj": energy})
        for action in actions:
            self._log({"event": "budget", "step": step, **action})
            self._print(
                f"[magenta]budget[/] {action['metric']} {action['value']:.3g} > "
                f"{action['limit']:.3g}: {action['action']}"
            )
        if actions:
            self._check_floor(step)
        if actions and energy is not None and self.budget.reachable("energy_uj"):
            self._settle_energy(step)

    def _settle_energy(self, step: int) -> None:
        """Energy estimates are deterministic, so one evaluation can take several steps: step
        and re-estimate until under the limit (at most ``SETTLE_STEPS`` more); log the result."""
        lim, energy, n = self.budget.limits["energy_uj"], self._energy_now(), 0
        while energy > lim and n < SETTLE_STEPS:
            self.budget.update({"energy_uj": energy})
            energy, n = self._energy_now(), n + 1
        action = {
            "metric": "energy_uj",
            "value": energy,
            "limit": lim,
            "action": f"{n} more step(s) at this evaluation; estimate now {energy:.4g}",
        }
        self._log({"event": "budget", "step": step, **action})
        self._print(f"[magenta]budget[/] energy_uj: {action['action']}")

    def _energy_now(self) -> float:
        """The energy estimate per query as the model stands (seeded tokens, no timing)."""
        return float(self.energy_fn(self.model, self.config.seq_len))

    def _floor_costs(self) -> dict[str, float | None]:
        """Latency and energy per query as measured now (called with the knobs at the floor)."""
        latency, _, energy = self._measure_costs()
        return {"latency_ms": latency, "energy_uj": energy}

    def _check_floor(self, step: int) -> None:
        """At the first adjustment (the controller measures once): warn about each limit that
        no adjustment can meet."""
        for w in self.budget.check_floor(self._floor_costs):
            self._log({"event": "budget_unreachable", "step": step, **w})
            self._print(f"[yellow]budget[/] {w['message']}")

    def _keep_best(self, st: FitState, loss: float) -> bool:
        """Save the model (and tokenizer) to ``best/`` on a new best validation loss; count the
        evaluations without one and return True when they reach ``patience``."""
        if st.best_valid is None or loss < st.best_valid:
            st.best_valid, st.bad_evals = loss, 0
            if self.is_main:
                self.model.save_pretrained(self.run.best)
                if self.tokenizer is not None:
                    self.tokenizer.save(self.run.best / TOKENIZER_DIR)
            return False
        st.bad_evals += 1
        patience = self.config.patience
        return patience is not None and st.bad_evals >= patience

    # ------------------------------------------------------------------ checkpoints
    def _trainer_state(self, run: FitRun) -> dict[str, Any]:
        """Everything besides the model that an exact resume needs."""
        return {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "state": asdict(run.state),
            "rng": rng_state(),
            "train_config": self.config.to_dict(),
        }

    def _save_checkpoint(self, run: FitRun) -> Path:
        """Checkpoint the current step (main process only; the others wait) and return its
        folder."""
        step = run.state.step
        path = self.run.checkpoint(step)
        if self.is_main:
            path = save_checkpoint(
                self.run_dir,
                step,
                run.model,
                self.tokenizer,
                self._trainer_state(run),
                self.config.keep_last,
            )
        if self.world_size > 1:
            dist.barrier()
        run.last_checkpoint, run.saved_at, run.saved_clock = path, step, time.perf_counter()
        return path

    # ------------------------------------------------------------------ the end
    def _report_interruption(self, run: FitRun, message: str) -> TrainResult:
        """Checkpoint the current step (atomically), log it, and say how to resume; no final
        evaluation (the user asked to stop)."""
        if run.saved_at != run.state.step:
            self._save_checkpoint(run)
        self._log({"event": "interrupted", "step": run.state.step, "message": message})
        if self.is_main:
            self.console.print(
                f"[bold yellow]Interrupted:[/] {escape(message)}. Checkpoint: "
                f"{escape(str(run.last_checkpoint))}. Resume with: qtf train --resume --out "
                f"{escape(str(self.run_dir))} (or Trainer.fit(resume=True))"
            )
        return self._result(run, "interrupted", None, None, message)

    def _report_divergence(self, run: FitRun, message: str) -> TrainResult:
        """Log and show why the run diverged and which checkpoint is the last good one."""
        self._log({"event": "diverged", "step": run.state.step, "message": message})
        if self.is_main:
            self.console.print(f"[bold red]Training diverged:[/] {message}")
            if run.last_checkpoint is not None:
                self.console.print(f"The last good checkpoint is kept: {run.last_checkpoint}")
        return self._result(run, "diverged", None, None, message)

    def _final_evaluation(self, run: FitRun, status: str, message: str) -> TrainResult:
        """Full validation (and test) perplexity; writes ``summary.json``."""
        if message:
            self._print(f"[yellow]{message}[/]")
        timed, asked = run.state.final_eval_tokens, self.config.final_eval_max_tokens
        caps = [c for c in (timed, asked) if c is not None]
        cap = min(caps) if caps else None
        if cap is not None and cap == timed:
            self._print(
                f"Final evaluation on the first {cap:,} tokens of each split (the share of "
                f"max_minutes={self.config.max_minutes} left for it)"
            )
        elif cap is not None:
            self._print(f"Final evaluation on the first {cap:,} tokens of each split")
        valid = self._eval(self.valid_ids, "valid", cap)
        test = self._eval(self.test_ids, "test", cap) if self.test_ids is not None else None
        result = self._result(run, status, valid, test, message)
        self._summarise(result)
        return result

    def _result(
        self,
        run: FitRun,
        status: str,
        valid: EvalResult | None,
        test: EvalResult | None,
        message: str,
    ) -> TrainResult:
        st, best = run.state, run.state.best_valid
        return TrainResult(
            status=status,
            steps=st.step,
            tokens=st.tokens,
            train_seconds=st.train_seconds,
            tokens_per_second=st.tokens / max(st.train_seconds, 1e-9),
            best_valid_ppl=math.exp(min(best, 700.0)) if best is not None else None,
            valid=valid,
            test=test,
            last_checkpoint=run.last_checkpoint,
            run_dir=self.run_dir,
            message=message,
            losses=run.losses,
        )

    def _summarise(self, r: TrainResult) -> None:
        """Write ``summary.json``, log the ``end`` record and show the summary table."""
        summary = self._summary(r)
        if self.is_main:
            write_json(self.run.summary, summary)
        self._log({"event": "end", **{k: v for k, v in summary.items() if k != "train_config"}})
        if self.summary_table:
            self._print(self._summary_table(r, summary["params"]))
            self._print(f"[dim]Perplexity: {PROTOCOL.format(L=self.config.seq_len)}.[/]")

    def _summary(self, r: TrainResult) -> dict[str, Any]:
        c = self.config
        return {
            "status": r.status,
            "message": r.message,
            "steps": r.steps,
            "tokens": r.tokens,
            "train_seconds": r.train_seconds,
            "tokens_per_second": r.tokens_per_second,
            "params": sum(p.numel() for p in self.model.parameters()),
            "valid_ppl": r.valid.ppl if r.valid else None,
            "valid_word_ppl": r.valid.word_ppl if r.valid else None,
            "test_ppl": r.test.ppl if r.test else None,
            "test_word_ppl": r.test.word_ppl if r.test else None,
            "best_valid_ppl_estimate": r.best_valid_ppl,
            "valid_tokens": r.valid.tokens if r.valid else None,
            "test_tokens": r.test.tokens if r.test else None,
            "protocol": PROTOCOL.format(L=c.seq_len),
            "device": str(self.device),
            "train_config": c.to_dict(),
            "last_checkpoint": str(r.last_checkpoint) if r.last_checkpoint else None,
            **self.extra_summary,
        }

    def _summary_table(self, r: TrainResult, params: int) -> Table:
        t = Table(title=f"Run summary: {self.run_dir}")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_row("status", r.status)
        t.add_row("steps / tokens", f"{r.steps:,} / {r.tokens:,}")
        t.add_row("train time (s)", f"{r.train_seconds:,.1f}")
        t.add_row("tokens / s", f"{r.tokens_per_second:,.0f}")
        t.add_row("parameters", f"{params:,}")
        if r.valid:
            t.add_row("valid perplexity", f"{r.valid.ppl:.2f}")
        if r.test:
            t.add_row("test perplexity", f"{r.test.ppl:.2f}")
            if r.test.word_ppl is not None and self.tokenizer is not None:
                if getattr(self.tokenizer, "kind", "word") != "word":
                    t.add_row("test perplexity per word", f"{r.test.word_ppl:.2f}")
        return t
