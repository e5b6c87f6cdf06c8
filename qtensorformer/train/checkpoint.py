"""Training checkpoints: model + config + tokenizer + optimiser + scheduler + RNG states.

Each checkpoint is a folder ``checkpoints/step-NNNNNNN`` written under a temporary name and
renamed into place (a crash never leaves a half-written checkpoint); ``checkpoints/latest``
names the newest; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..io import CheckpointError, atomic_write, save_model

__all__ = ["latest_checkpoint", "load_trainer_state", "save_checkpoint"]

STATE_NAME = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
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
    """Write checkpoint ``step`` atomically; returns its folder."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:07d}-", dir=root))
    try:
        save_model(model, tmp)
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
        torch.save(trainer_state, tmp / STATE_NAME)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(root / "latest", lambda p: p.write_text(final.name + "\n"))
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (None when there is none)."""
    root = Path(run_dir) / "checkpoints"
    marker = root / "latest"
    if marker.is_file():
        p = root / marker.read_text().strip()
        if (p / STATE_NAME).is_file():
            return p
    done = sorted(p for p in root.glob("step-*") if (p / STATE_NAME).is_file())
    return done[-1] if done else None


def load_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"{checkpoint} is not a training checkpoint (no {STATE_NAME})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign pickle
        raise CheckpointError(f"{path} is corrupt or not a trainer state ({e})") from e


def write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda p: p.write_text(text))
