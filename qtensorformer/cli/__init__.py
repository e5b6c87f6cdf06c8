"""The ``qtf`` command line: one module per command, each a thin layer over the library.

``app`` is the typer application and ``main`` its entry point (``qtf`` and
``python -m qtensorformer``).
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from .._version import __version__
from ._common import console
from .analyze import analyze
from .compare import compare_cmd
from .compress import compress
from .demo import demo
from .energy import energy
from .evaluate import eval_
from .explain import explain
from .export import export_cmd
from .generate import generate
from .info import info
from .params import params
from .report import report
from .train import train

__all__ = ["app", "main"]

app = typer.Typer(
    name="qtf",
    help="Q-TensorFormer: tensor-network language models with simulated quantum-circuit features.",
    no_args_is_help=True,
    add_completion=False,
)

#: Every command by name, in the order ``qtf --help`` lists them.
COMMANDS: dict[str, Callable[..., None]] = {
    "info": info,
    "train": train,
    "eval": eval_,
    "generate": generate,
    "compare": compare_cmd,
    "compress": compress,
    "analyze": analyze,
    "demo": demo,
    "export": export_cmd,
    "explain": explain,
    "report": report,
    "energy": energy,
    "params": params,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"qtensorformer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Q-TensorFormer command line."""


def main() -> None:
    """Run the ``qtf`` command line."""
    app()
