"""What every command shares: the console, error exits, option types and run-folder lookups."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..files import TOKENIZER_DIR, RunDir

if TYPE_CHECKING:
    from ..train import TrainConfig

# Wide tables even when the output is a pipe or a file (rich defaults to 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 120)

#: The errors a command reports as a user mistake (bad option, missing file, foreign model,
#: a missing optional dependency: the library's ImportErrors carry the install command).
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, ImportError)

CheckpointArg = Annotated[
    str,
    typer.Argument(
        help="Model folder, checkpoint or run folder of this library; a folder written by qtf "
        "compress; a local Hugging Face folder; a .gguf file; or smollm2."
    ),
]
DataOpt = Annotated[
    str, typer.Option("--data", help="Corpus: wikitext-2, wikitext-2-raw or synthetic.")
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help="Folder holding <data>/train.txt etc. (else $QTF_DATA_DIR, ./data, ../shared/data).",
    ),
]
TokOpt = Annotated[
    str,
    typer.Option(help="Tokenizer: word (full vocabulary), word:K (top K), bpe:N, hf:PATH."),
]
CalibDataOpt = Annotated[
    str | None,
    typer.Option(help="Calibration text file (default: raw WikiText-2 valid)."),
]
BatchOpt = Annotated[int, typer.Option(help="Windows per batch.")]
SeqLenOpt = Annotated[int, typer.Option(help="Tokens per window.")]
LrOpt = Annotated[float, typer.Option(help="Peak learning rate (AdamW).")]
WarmupOpt = Annotated[int, typer.Option(help="Linear warm-up steps before the cosine decay.")]
EvalEveryOpt = Annotated[int, typer.Option(help="Steps between validation estimates.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (recorded with the results).")]
DeviceOpt = Annotated[
    str, typer.Option(help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="ModelConfig override KEY=VALUE (repeatable), e.g. tt_rank=4."),
]


def fail(msg: str) -> NoReturn:
    """Print ``msg`` as an error and exit with status 2 (a usage error)."""
    console.print(f"[bold red]error:[/] {escape(msg)}")  # messages hold [extras] and paths
    raise typer.Exit(2)


@contextmanager
def user_errors(*extra: type[Exception]) -> Iterator[None]:
    """Report :data:`USER_ERRORS` (and ``extra``) raised in the block through :func:`fail`."""
    try:
        yield
    except typer.Exit:
        raise
    except (*USER_ERRORS, *extra) as e:
        fail(str(e))


def train_config(**kw: Any) -> TrainConfig:
    """A TrainConfig from the given options; None means the field's default."""
    from ..train import TrainConfig

    return TrainConfig(**{k: v for k, v in kw.items() if v is not None})


def model_overrides(pairs: list[str] | None, seq_len: int) -> dict[str, Any]:
    """ModelConfig overrides from ``--set KEY=VALUE`` pairs; ``max_seq_len`` defaults to
    ``--seq-len`` (at least 32)."""
    from ..train.run import overrides_from_pairs

    overrides = overrides_from_pairs(pairs or [])
    overrides.setdefault("max_seq_len", max(seq_len, 32))
    return overrides


def split_names(csv: str) -> list[str]:
    """``"dense, tt,all"`` → ``["dense", "tt", "all"]``."""
    return [v.strip() for v in csv.split(",") if v.strip()]


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` as an output folder that can be created and written, checked before any
    heavy work: exits with a one-line error when it is a file, lies under a file, or sits
    in a folder this user cannot write."""
    p = Path(path).expanduser()
    if p.is_file():
        fail(f"{option} {p} is a file, not a folder: choose a folder path")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if parent.is_file():
        fail(f"{option} {p} lies under {parent}, which is a file: choose a folder path")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{option} {p}: cannot write in {parent} (permission denied): choose another folder")
    return p


def is_causal_lm_spec(spec: str) -> bool:
    """Whether ``spec`` names a model that :func:`~qtensorformer.compress.load_causal_lm`
    reads and this library's own loader does not: ``smollm2``, a ``.gguf`` file, a Hugging
    Face folder or a folder written by ``qtf compress``."""
    from ..compress.models import detect_kind
    from ..files import CheckpointError

    p = Path(spec).expanduser()
    if not p.exists():
        return spec.lower() == "smollm2"
    try:
        return detect_kind(p) != "qtensorformer"
    except CheckpointError:
        return False  # the library's loader reports what is wrong


def resolve_checkpoint(path: str | Path) -> Path:
    """The model folder ``path`` names: itself, a run's ``best`` model, or its latest
    checkpoint; exits with an error when there is none."""
    from ..io import WEIGHTS_NAME

    p = Path(path)
    if not p.exists():
        fail(f"no such file or folder: {p}")
    if (p / WEIGHTS_NAME).is_file():
        return p
    model_dir = RunDir(p).model_dir()
    if model_dir is None:
        fail(f"{p} is neither a model folder nor a run folder with checkpoints")
    return model_dir


def find_run(model_dir: Path) -> RunDir | None:
    """The run folder a model folder belongs to: the folder itself, its parent (``best``) or
    its grandparent (``checkpoints/step-N``); None for a model saved on its own."""
    for d in (model_dir, model_dir.parent, model_dir.parent.parent):
        run = RunDir(d)
        if run.info.is_file() or run.is_run():
            return run
    return None


def run_info(model_dir: Path) -> dict[str, Any]:
    """The ``run.json`` of the run ``model_dir`` belongs to (empty when there is none)."""
    run = find_run(model_dir)
    return (run.read_info() or {}) if run is not None else {}


def tokenizer_dir(model_dir: Path) -> Path:
    """Where a model folder keeps its tokenizer."""
    return model_dir / TOKENIZER_DIR
