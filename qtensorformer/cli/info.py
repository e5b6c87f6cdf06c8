"""``qtf info``: versions, threads and devices."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from .._version import __version__
from ._common import console


def pennylane_version() -> str:
    """The installed PennyLane version, or how to install it."""
    try:
        import pennylane
    except ImportError:
        return "not installed (pip install 'qtensorformer[pennylane]')"
    return pennylane.__version__


def info() -> None:
    """Print versions, threads and devices."""
    import torch

    t = Table(title="qtensorformer environment")
    t.add_column("item")
    t.add_column("value")
    t.add_row("qtensorformer", __version__)
    t.add_row("torch", torch.__version__)
    t.add_row("torch threads", str(torch.get_num_threads()))
    t.add_row("CUDA", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    t.add_row("pennylane", escape(pennylane_version()))  # keep the [extra]'s brackets
    console.print(t)
