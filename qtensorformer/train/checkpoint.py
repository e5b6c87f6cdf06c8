"""Training checkpoints: model + config + tokenizer + optimiser + scheduler + RNG states.

Each checkpoint is a folder ``checkpoints/step-NNNNNNN`` written under a temporary name and
renamed into place (a crash never leaves a half-written checkpoint); ``checkpoints/latest``
names the newest; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..files import TOKENIZER_DIR, CheckpointError, RunDir, atomic_write, write_json
from ..io import save_model

__all__ = ["latest_checkpoint", "load_trainer_state", "save_checkpoint", "write_json"]

STATE_NAME = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    """The torch, Python (and CUDA) random states, for an exact resume."""
    out: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model,
    tokenizer,
    trainer_state: dict[str, Any],
    keep_last: int = 3,
) -> Path:
    """Write checkpoint ``step`` atomically, mark it the latest and drop all but the last
    ``keep_last``; returns its folder."""
    run = RunDir(run_dir)
    root, final = run.checkpoints, run.checkpoint(step)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        _write_contents(tmp, model, tokenizer, trainer_state)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(run.latest_marker, lambda p: p.write_text(final.name + "\n"))
    _prune(root, keep_last)
    return final


def _write_contents(folder: Path, model, tokenizer, trainer_state: dict[str, Any]) -> None:
    """Model (config + weights), tokenizer and trainer state into ``folder``."""
    save_model(model, folder)
    if tokenizer is not None:
        tokenizer.save(folder / TOKENIZER_DIR)
    torch.save(trainer_state, folder / STATE_NAME)


def _step_folders(root: Path) -> list[Path]:
    """The checkpoint folders under ``root``, oldest first."""
    return sorted(p for p in root.glob("step-*") if p.is_dir())


def _prune(root: Path, keep_last: int) -> None:
    """Remove all but the newest ``keep_last`` checkpoints."""
    for old in _step_folders(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (None when there is none)."""
    return RunDir(run_dir).newest_checkpoint(complete=STATE_NAME)


def load_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    """The optimiser, schedule, counters and RNG states saved with ``checkpoint``."""
    path = Path(checkpoint) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"{checkpoint} is not a training checkpoint (no {STATE_NAME})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign pickle
        raise CheckpointError(f"{path} is corrupt or not a trainer state ({e})") from e
