"""Resuming an interrupted calibrated compression from its last finished block.

Index legend: b a batch of calibration sequences, L tokens per sequence, d model width.

With a resume folder, every finished block leaves ``block-NNNN.safetensors`` (the tensors of
its compressed modules), ``inputs-NNNN.safetensors`` (the next block's hidden states, one
(b, L, d) tensor per batch) and ``progress.json`` (a format tag, a fingerprint of the run,
the blocks done, the layer specs and the module records), each written atomically, the
progress last. A rerun with the same model, config, selection and calibration rebuilds the
finished blocks' layers, reloads their tensors and hidden states, and goes on from the next
block; a folder of another run is a :class:`~qtensorformer.files.CheckpointError`. The other
block inputs (attention masks, rotary tables) are captured again: only the embeddings run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..files import CheckpointError, atomic_write
from ..nn.replace import replace_modules
from .calibrate import BlockInputs
from .checkpoint import build_layer, layer_spec
from .config import CalibrationConfig
from .summary import ModuleReport

__all__ = ["PROGRESS", "Resume", "fingerprint"]

FORMAT = "qtensorformer.compress-progress"
PROGRESS = "progress.json"


def _normal(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (so fingerprints compare after a round trip)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def fingerprint(
    model: nn.Module,
    config: dict[str, Any],
    calibration: torch.Tensor,
    budgets: dict[str, Any],
    options: CalibrationConfig,
) -> dict[str, Any]:
    """What must match for a folder's progress to continue: model class, method config,
    the selected modules and their budgets, the calibration ids (SHA-256), batch size,
    held-out sequences and Gram dtype."""
    ids = calibration.detach().cpu().long().contiguous()
    digest = hashlib.sha256(ids.numpy().tobytes() + str(tuple(ids.shape)).encode()).hexdigest()
    return _normal(
        {
            "model_class": type(model).__name__,
            "config": config,
            "budgets": {n: list(b) for n, b in budgets.items()},
            "calibration_sha256": digest,
            "batch_size": options.batch_size,
            "holdout": options.holdout,
            "sequential": options.sequential,
            "gram_dtype": str(options.dtype),
        }
    )


class Resume:
    """Per-block progress of one run in ``directory`` (see the module docstring);
    ``records`` is the run's dict of module records, filled on restore."""

    def __init__(
        self, directory: str | Path, print_: dict[str, Any], records: dict[str, ModuleReport]
    ) -> None:
        self.directory = Path(directory)
        self.print = print_
        self.records = records
        self.specs: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ reading
    def _progress(self) -> dict[str, Any] | None:
        path = self.directory / PROGRESS
        if not path.is_file():
            return None
        try:
            progress = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path} is corrupt: delete the folder to start over") from None
        if not isinstance(progress, dict) or progress.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a compression progress file (foreign)")
        if progress.get("fingerprint") != self.print:
            raise CheckpointError(
                f"{self.directory} holds the progress of another run (model, config, selection "
                "or calibration differ): use a new folder or delete it"
            )
        return progress

    def restore(self, model: nn.Module, inputs: list[BlockInputs]) -> tuple[int, list]:
        """Blocks already done (0 for a fresh folder) and the inputs of the next block."""
        progress = self._progress()
        if progress is None:
            return 0, inputs
        done = int(progress["blocks_done"])
        self.specs = dict(progress["modules"])
        specs = self.specs
        replace_modules(model, lambda m, n: build_layer(n, specs[n], m), lambda m, n: n in specs)
        self._load_modules(model, done)
        self.records.update({n: ModuleReport.from_dict(r) for n, r in progress["records"].items()})
        if progress.get("complete"):
            return done, inputs
        hidden = load_file(str(self.directory / f"inputs-{done:04d}.safetensors"))
        if len(hidden) != len(inputs):
            raise CheckpointError(f"{self.directory}: the saved hidden states do not fit the run")
        return done, [inp.with_hidden(hidden[f"batch_{j}"]) for j, inp in enumerate(inputs)]

    def _load_modules(self, model: nn.Module, done: int) -> None:
        mods = dict(model.named_modules())
        for i in range(done):
            path = self.directory / f"block-{i:04d}.safetensors"
            if not path.is_file():
                continue  # a block without selected modules
            tensors = load_file(str(path))  # "module::param" → tensor
            by_module: dict[str, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                name, _, param = key.partition("::")
                by_module.setdefault(name, {})[param] = value
            for name, state in by_module.items():
                mods[name].load_state_dict(state)

    # ------------------------------------------------------------------ writing
    def block_done(
        self,
        index: int,
        model: nn.Module,
        names: list[str],
        inputs: list[BlockInputs],
        n_blocks: int,
    ) -> None:
        """Record block ``index`` finished: its modules, the next block's hidden states, the
        progress (last), then drop the previous hidden states."""
        mods = dict(model.named_modules())
        if names:
            tensors = {
                f"{n}::{k}": v.detach().contiguous()
                for n in names
                for k, v in mods[n].state_dict().items()
            }
            atomic_write(
                self.directory / f"block-{index:04d}.safetensors",
                lambda p: save_file(tensors, str(p)),
            )
        complete = index + 1 == n_blocks
        if not complete:
            hidden = {
                f"batch_{j}": inp.args[0].detach().contiguous() for j, inp in enumerate(inputs)
            }
            atomic_write(
                self.directory / f"inputs-{index + 1:04d}.safetensors",
                lambda p: save_file(hidden, str(p)),
            )
        self.specs.update({n: layer_spec(mods[n]) for n in names})
        progress = {
            "format": FORMAT,
            "fingerprint": self.print,
            "blocks_done": index + 1,
            "complete": complete,
            "modules": self.specs,
            "records": {n: r.to_dict() for n, r in self.records.items()},
        }
        text = json.dumps(progress, indent=1, sort_keys=True, default=str) + "\n"
        atomic_write(self.directory / PROGRESS, lambda p: p.write_text(text))
        (self.directory / f"inputs-{index:04d}.safetensors").unlink(missing_ok=True)
