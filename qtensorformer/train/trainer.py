"""Trainer: AdamW, warm-up + cosine schedule, clipping, auxiliary losses, evaluation, early
stopping, time/token limits, JSONL metrics, atomic checkpoints and exact resume.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from torch import nn

from ..data.batching import num_windows, train_batches
from ..io import CheckpointError, load_state
from ..tensor.layers import TTMatrix
from .budget import BudgetController
from .checkpoint import (
    latest_checkpoint,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from .config import TrainConfig
from .evaluate import PROTOCOL, EvalResult, evaluate
from .pareto import ParetoPoint, ParetoTracker, measure_latency_ms

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
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_env()[2] if dist_env()[0] > 1 else 0)
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return dev


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps: linear warm-up over
    ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the weights of linear, embedding and TT layers only (not on biases,
    norms, circuit angles, activations, router thresholds or rank scales)."""
    decay: list[nn.Parameter] = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            decay.append(m.weight)
        elif isinstance(m, TTMatrix):
            decay.extend(m.cores)
    seen = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in seen]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


@dataclass
class TrainResult:
    """What a run did. ``status``: ``"completed"``, ``"early_stopped"``, ``"time_limit"`` or
    ``"diverged"``; ``losses``: the training loss of every step of this call."""

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


class Trainer:
    """Trains a :class:`~qtensorformer.QTensorFormer` on token streams.

    ``fit(resume=False)`` runs to the configured limit; ``resume=True`` continues from the
    run's latest checkpoint (``resume=PATH`` from a given one) exactly as if never interrupted:
    model, optimiser, schedule, data position and RNG states are restored.

    Outputs in ``run_dir``: ``metrics.jsonl`` (one JSON object per log line and evaluation),
    ``checkpoints/``, ``best/`` (the model with the best validation perplexity, when
    evaluations run), ``summary.json``.

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
        self.run_dir = Path(run_dir)
        self.extra_summary = extra_summary or {}
        self.console = console or Console()
        self.quiet = quiet
        self.summary_table = summary_table
        if energy_fn is None and hasattr(model, "blocks") and hasattr(model, "config"):
            from ..energy import EnergyEstimator

            energy_fn = EnergyEstimator(config.energy_hardware)
        if config.max_energy_uj is not None and energy_fn is None:
            raise ValueError(
                "max_energy_uj needs an energy estimate per query: pass energy_fn="
                "(model, flops_per_token, seq_len) -> µJ to the Trainer for this model type"
            )
        self.energy_fn = energy_fn  # (model, flops_per_token, seq_len) -> µJ per query
        self.pareto = ParetoTracker()
        self.budget = (
            BudgetController(
                model, {"latency_ms": config.max_latency_ms, "energy_uj": config.max_energy_uj}
            )
            if hasattr(model, "blocks")
            else None
        )
        self.world_size, self.rank, _ = dist_env()
        self.is_main = self.rank == 0
        if config.batch_size % self.world_size:
            raise ValueError(
                f"batch_size={config.batch_size} (the global batch) must be divisible by the "
                f"{self.world_size} processes"
            )
        self.device = resolve_device(config.device)
        amp = config.amp
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" else "none"
        self.autocast_dtype = torch.bfloat16 if amp == "bf16" else None
        max_len = getattr(getattr(model, "config", None), "max_seq_len", None)
        if max_len is not None and config.seq_len > max_len:
            raise ValueError(
                f"seq_len={config.seq_len} exceeds the model's max_seq_len={max_len}; "
                "lower seq_len or build the model with a larger max_seq_len"
            )
        per_epoch = num_windows(train_ids.numel(), config.seq_len) // config.batch_size
        if per_epoch < 1:
            raise ValueError(
                f"the training stream ({train_ids.numel():,} tokens) holds less than one batch "
                f"of {config.batch_size} windows of {config.seq_len} tokens"
            )
        self.steps_per_epoch = per_epoch
        self.total_steps = self._total_steps()

    # ------------------------------------------------------------------ plan
    def _total_steps(self) -> int:
        c = self.config
        limits = []
        if c.max_steps is not None:
            limits.append(c.max_steps)
        if c.max_tokens is not None:
            limits.append(max(1, math.ceil(c.max_tokens / c.tokens_per_step)))
        if not limits:
            limits.append(max(1, round(c.epochs * self.steps_per_epoch)))
        return min(limits)

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def _print(self, *a) -> None:
        if not self.quiet and self.is_main:
            self.console.print(*a)

    def _eval(self, ids: torch.Tensor, split: str, max_tokens: int | None) -> EvalResult:
        return evaluate(
            self.model,
            ids,
            self.config.seq_len,
            self.config.eval_batch_size,
            max_tokens,
            self.words.get(split),
            self.device,
            self.autocast_dtype,
        )

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool | str | Path = False) -> TrainResult:
        c = self.config
        model = self.model.to(self.device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ddp = self.world_size > 1
        if ddp:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            # with routing, a process whose batch routes no token leaves the quantum path's
            # parameters without gradients in that step
            routed = bool(getattr(getattr(model, "config", None), "use_selective_routing", False))
            fwd = torch.nn.parallel.DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=routed,
            )
        else:
            fwd = model
        per_rank = c.batch_size // self.world_size
        torch.manual_seed(c.seed)
        opt = torch.optim.AdamW(param_groups(model, c.weight_decay), lr=c.lr, betas=(0.9, 0.95))
        total = self.total_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, c.warmup_steps, total, c.min_lr_ratio)
        )
        st = {
            "step": 0,
            "epoch": 0,
            "batch_in_epoch": 0,
            "tokens": 0,
            "train_seconds": 0.0,
            "best_valid": None,
            "bad_evals": 0,
        }
        if resume:
            ckpt = latest_checkpoint(self.run_dir) if resume is True else Path(resume)
            if ckpt is None:
                raise CheckpointError(f"nothing to resume: no checkpoint in {self.run_dir}")
            saved = load_trainer_state(ckpt)
            state = load_state(ckpt / "model.safetensors", self.device)
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise CheckpointError(
                    f"{ckpt} does not fit this model (different config?): {e}"
                ) from e
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            st.update(saved["state"])
            set_rng_state(saved["rng"])
            self._reload_pareto()
            self._print(f"[bold]Resumed[/] from {ckpt} at step {st['step']}")
        else:
            self._log({"event": "start", "config": c.to_dict(), **self.extra_summary})
        self._print(
            f"Training {total:,} steps ({c.tokens_per_step:,} tokens each, "
            f"{self.steps_per_epoch:,} steps per epoch) on {self.device}"
        )
        losses: list[float] = []
        self.losses_so_far = losses  # visible while fit runs (e.g. after an interruption)
        status, message = "completed", ""
        last_ckpt: Path | None = latest_checkpoint(self.run_dir) if resume else None
        saved_at = st["step"] if resume else -1
        start_wall = time.perf_counter()
        budget_s = c.max_minutes * 60 if c.max_minutes is not None else None

        def trainer_state() -> dict:
            return {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "state": dict(st),
                "rng": rng_state(),
                "train_config": c.to_dict(),
            }

        progress = Progress(
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
        window_loss, window_tokens, window_t, window_n = 0.0, 0, 0.0, 0
        with progress:
            task = progress.add_task("train", total=total, completed=st["step"], info="")
            while st["step"] < total and status == "completed":
                for batch in train_batches(
                    self.train_ids,
                    c.batch_size,
                    c.seq_len,
                    c.seed,
                    st["epoch"],
                    st["batch_in_epoch"],
                ):
                    t0 = time.perf_counter()
                    if ddp:  # this process's share of the global batch
                        batch = batch[self.rank * per_rank : (self.rank + 1) * per_rank]
                    batch = batch.to(self.device)
                    model.train()
                    with torch.autocast(
                        self.device.type,
                        dtype=self.autocast_dtype or torch.bfloat16,
                        enabled=self.autocast_dtype is not None,
                    ):
                        _, loss, stats = fwd(batch, labels=batch)
                    seen_loss = loss.detach()
                    if ddp:  # the global mean, and a non-finite loss anywhere stops every rank
                        seen_loss = seen_loss.clone()
                        dist.all_reduce(seen_loss)
                        seen_loss /= self.world_size
                    if not torch.isfinite(seen_loss):
                        status, message = "diverged", self._diagnose(loss, stats, st["step"] + 1)
                        break
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                    if not torch.isfinite(gnorm):
                        status = "diverged"
                        message = self._diagnose(loss, stats, st["step"] + 1, grads=True)
                        break
                    opt.step()
                    sched.step()
                    dt = time.perf_counter() - t0
                    st["step"] += 1
                    st["batch_in_epoch"] += 1
                    st["tokens"] += c.tokens_per_step
                    st["train_seconds"] += dt
                    lv = float(stats.lm_loss if stats.lm_loss is not None else loss.detach())
                    if ddp and stats.lm_loss is not None:
                        lm = stats.lm_loss.detach().clone()
                        dist.all_reduce(lm)
                        lv = float(lm) / self.world_size
                    losses.append(float(seen_loss))
                    window_loss += lv
                    window_n += 1
                    window_tokens += c.tokens_per_step
                    window_t += dt
                    if st["step"] % c.log_every == 0 or st["step"] == total:
                        n = window_n
                        rec = {
                            "event": "train",
                            "step": st["step"],
                            "tokens": st["tokens"],
                            "lm_loss": window_loss / n,
                            "ppl": math.exp(min(window_loss / n, 700)),
                            "loss": float(seen_loss),
                            "lr": sched.get_last_lr()[0],
                            "grad_norm": float(gnorm),
                            "tokens_per_s": window_tokens / max(window_t, 1e-9),
                            **{k: v for k, v in stats.summary().items() if v is not None},
                        }
                        self._log(rec)
                        progress.update(
                            task,
                            info=f"loss {rec['lm_loss']:.3f} ppl {rec['ppl']:.1f} "
                            f"{rec['tokens_per_s']:,.0f} tok/s",
                        )
                        window_loss, window_tokens, window_t, window_n = 0.0, 0, 0.0, 0
                    progress.update(task, completed=st["step"])
                    done = st["step"] >= total
                    if st["step"] % c.eval_every == 0 or done:
                        stop = self._evaluate_and_track(st)
                        last_ckpt = save_checkpoint(
                            self.run_dir,
                            st["step"],
                            model,
                            self.tokenizer,
                            trainer_state(),
                            c.keep_last,
                        )
                        saved_at = st["step"]
                        if stop:
                            status = "early_stopped"
                            message = f"no validation improvement in {c.patience} evaluations"
                            break
                    if done:
                        break
                    if budget_s is not None and self._agree(
                        time.perf_counter() - start_wall > budget_s
                    ):
                        status = "time_limit"
                        message = (
                            f"stopped by max_minutes={c.max_minutes} at step {st['step']} of "
                            f"{total} (the schedule was cut short)"
                        )
                        break
                else:
                    st["epoch"] += 1
                    st["batch_in_epoch"] = 0
                    continue
                break
        if status != "diverged" and saved_at != st["step"]:
            last_ckpt = self._checkpoint(st["step"], model, trainer_state)
        if status == "diverged":
            self._log({"event": "diverged", "step": st["step"], "message": message})
            if self.is_main:
                self.console.print(f"[bold red]Training diverged:[/] {message}")
                if last_ckpt is not None:
                    self.console.print(f"The last good checkpoint is kept: {last_ckpt}")
            return self._result(status, st, None, None, last_ckpt, message, losses)
        if message:
            self._print(f"[yellow]{message}[/]")
        valid = self._eval(self.valid_ids, "valid", None)
        test = self._eval(self.test_ids, "test", None) if self.test_ids is not None else None
        result = self._result(status, st, valid, test, last_ckpt, message, losses)
        self._summarise(result)
        return result

    # ------------------------------------------------------------------ helpers
    def _reload_pareto(self) -> None:
        path = self.run_dir / "pareto.json"
        if path.is_file():
            for p in json.loads(path.read_text()).get("points", []):
                self.pareto.add(ParetoPoint(**p))

    def _checkpoint(self, step: int, model: nn.Module, trainer_state) -> Path:
        """Save (main process only; the others wait) and return the checkpoint folder."""
        path = self.run_dir / "checkpoints" / f"step-{step:07d}"
        if self.is_main:
            path = save_checkpoint(
                self.run_dir, step, model, self.tokenizer, trainer_state(), self.config.keep_last
            )
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return path

    def _agree(self, flag: bool) -> bool:
        """True on every process when it is True on any (wall-clock decisions differ)."""
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _evaluate_and_track(self, st: dict) -> bool:
        """Validation estimate; keeps ``best/``; returns True when early stopping fires."""
        c = self.config
        t0 = time.perf_counter()
        ev = self._eval(self.valid_ids, "valid", c.eval_max_tokens)
        latency, flops_tok = measure_latency_ms(self.model, c.seq_len, self.device)
        if self.world_size > 1:  # every process acts on the same (mean) measurement
            import torch.distributed as dist

            lat = torch.tensor([latency], device=self.device, dtype=torch.float64)
            dist.all_reduce(lat)
            latency = float(lat) / self.world_size
        energy = self.energy_fn(self.model, flops_tok, c.seq_len) if self.energy_fn else None
        params = sum(p.numel() for p in self.model.parameters())
        rec = {
            "event": "eval",
            "split": "valid",
            "step": st["step"],
            "tokens": st["tokens"],
            "loss": ev.loss,
            "ppl": ev.ppl,
            "eval_tokens": ev.tokens,
            "eval_seconds": time.perf_counter() - t0,
            "params": params,
            "flops_per_token": flops_tok,
            "latency_ms": latency,
            "energy_uj": energy,
        }
        self._log(rec)
        on_front = self.pareto.add(
            ParetoPoint(st["step"], ev.ppl, params, flops_tok, latency, energy, st["tokens"])
        )
        if self.is_main:
            self.pareto.save(self.run_dir)
        self._log(
            {
                "event": "pareto",
                "step": st["step"],
                "on_front": on_front,
                "front_size": len(self.pareto.front),
            }
        )
        if self.budget is not None:
            for action in self.budget.update({"latency_ms": latency, "energy_uj": energy}):
                self._log({"event": "budget", "step": st["step"], **action})
                self._print(
                    f"[magenta]budget[/] {action['metric']} {action['value']:.3g} > "
                    f"{action['limit']:.3g}: {action['action']}"
                )
        self._print(f"step {st['step']:,}: valid ppl {ev.ppl:.2f} (first {ev.tokens:,} tokens)")
        best = st["best_valid"]
        if best is None or ev.loss < best:
            st["best_valid"], st["bad_evals"] = ev.loss, 0
            if self.is_main:
                self.model.save_pretrained(self.run_dir / "best")
                if self.tokenizer is not None:
                    self.tokenizer.save(self.run_dir / "best" / "tokenizer")
            return False
        st["bad_evals"] += 1
        return c.patience is not None and st["bad_evals"] >= c.patience

    def _diagnose(self, loss, stats, step: int, grads: bool = False) -> str:
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

    def _result(self, status, st, valid, test, ckpt, message, losses) -> TrainResult:
        best = st["best_valid"]
        return TrainResult(
            status=status,
            steps=st["step"],
            tokens=st["tokens"],
            train_seconds=st["train_seconds"],
            tokens_per_second=st["tokens"] / max(st["train_seconds"], 1e-9),
            best_valid_ppl=math.exp(min(best, 700.0)) if best is not None else None,
            valid=valid,
            test=test,
            last_checkpoint=ckpt,
            run_dir=self.run_dir,
            message=message,
            losses=losses,
        )

    def _summarise(self, r: TrainResult) -> None:
        c = self.config
        summary = {
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
            "protocol": PROTOCOL.format(L=c.seq_len),
            "device": str(self.device),
            "train_config": c.to_dict(),
            "last_checkpoint": str(r.last_checkpoint) if r.last_checkpoint else None,
            **self.extra_summary,
        }
        if self.is_main:
            write_json(self.run_dir / "summary.json", summary)
        self._log({"event": "end", **{k: v for k, v in summary.items() if k != "train_config"}})
        t = Table(title=f"Run summary: {self.run_dir}")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_row("status", r.status)
        t.add_row("steps / tokens", f"{r.steps:,} / {r.tokens:,}")
        t.add_row("train time (s)", f"{r.train_seconds:,.1f}")
        t.add_row("tokens / s", f"{r.tokens_per_second:,.0f}")
        t.add_row("parameters", f"{summary['params']:,}")
        if r.valid:
            t.add_row("valid perplexity", f"{r.valid.ppl:.2f}")
        if r.test:
            t.add_row("test perplexity", f"{r.test.ppl:.2f}")
            if r.test.word_ppl is not None and self.tokenizer is not None:
                if getattr(self.tokenizer, "kind", "word") != "word":
                    t.add_row("test perplexity per word", f"{r.test.word_ppl:.2f}")
        if self.summary_table:
            self._print(t)
            self._print(f"[dim]Perplexity: {PROTOCOL.format(L=c.seq_len)}.[/]")
