"""File helpers shared by every layer: atomic writes, JSON, and the run-folder layout.

This module sits at the bottom of the import order (it imports nothing from the library), so
the model, the trainer, the report and the CLI all use one spelling of each file name.

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.append_metrics({"event": "eval", "step": 10, "valid_ppl": 123.4})
    >>> [r["step"] for r in run.read_metrics()]
    [10]
    >>> run.metrics.name, run.best.name, run.is_run()
    ('metrics.jsonl', 'best', True)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TOKENIZER_DIR",
    "WEIGHTS_FILE",
    "CheckpointError",
    "RunDir",
    "atomic_write",
    "read_json",
    "write_json",
]

#: The folder, inside a saved model or checkpoint, that holds its tokenizer.
TOKENIZER_DIR = "tokenizer"
#: The weights file of a saved model (or checkpoint) folder.
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A model directory or file that cannot be loaded (foreign, corrupt or mismatched)."""


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``write(tmp_path)`` on a temporary file in the same directory,
    then rename it into place: readers never see a half-written file. The file gets the
    permissions a plain ``open(path, "w")`` would (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented, key-sorted JSON, written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | Path) -> Any:
    """The JSON in ``path``, or None when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class RunDir:
    """The layout of a training run folder, in one place.

    ``run.json`` (how the run was set up), ``metrics.jsonl`` (one JSON object per log line
    and evaluation), ``summary.json`` (the final result), ``pareto.json`` (the Pareto
    tracker), ``checkpoints/step-NNNNNNN`` (with ``checkpoints/latest`` naming the newest)
    and ``best/`` (the best model by validation perplexity); each model folder keeps its
    tokenizer in ``tokenizer/``. A comparison folder holds
    ``compare.json`` and one run folder per variant.
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def info(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def pareto(self) -> Path:
        return self.path / "pareto.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def compare(self) -> Path:
        return self.path / "compare.json"

    @property
    def latest_marker(self) -> Path:
        """The file naming the newest checkpoint folder."""
        return self.checkpoints / "latest"

    @property
    def pareto_plot(self) -> Path:
        return self.path / "pareto.png"

    @property
    def compare_markdown(self) -> Path:
        return self.path / "compare.md"

    def checkpoint(self, step: int) -> Path:
        """The folder of the checkpoint at ``step``."""
        return self.checkpoints / f"step-{step:07d}"

    def is_run(self) -> bool:
        """Whether the folder holds a training run (its metrics log exists)."""
        return self.metrics.is_file()

    def is_comparison(self) -> bool:
        return self.compare.is_file()

    def has_best(self) -> bool:
        return (self.best / WEIGHTS_FILE).is_file()

    def newest_checkpoint(self, complete: str = WEIGHTS_FILE) -> Path | None:
        """The newest checkpoint folder holding the file ``complete``: the one
        ``checkpoints/latest`` names, else the last ``step-*`` (None when there is none)."""
        if self.latest_marker.is_file():
            named = self.checkpoints / self.latest_marker.read_text().strip()
            if (named / complete).is_file():
                return named
        done = sorted(p for p in self.checkpoints.glob("step-*") if (p / complete).is_file())
        return done[-1] if done else None

    def model_dir(self) -> Path | None:
        """The run's model: ``best/``, else its newest checkpoint (None when it has neither)."""
        return self.best if self.has_best() else self.newest_checkpoint()

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl``."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl`` (empty when there is none; torn lines skipped)."""
        if not self.metrics.is_file():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def read_info(self) -> dict[str, Any] | None:
        return read_json(self.info)

    def read_summary(self) -> dict[str, Any] | None:
        return read_json(self.summary)
