"""``qtf report``: a Markdown report and a self-contained HTML page of a run or comparison."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import DataDirOpt, console, user_errors


def report(
    run_dir: Annotated[
        str, typer.Argument(help="Run folder (qtf train) or comparison (qtf compare/demo).")
    ],
    out: Annotated[str | None, typer.Option(help="Output folder (default RUN_DIR/report).")] = None,
    text: Annotated[
        str | None,
        typer.Option(help="Sample text for the per-token figure (default: validation text)."),
    ] = None,
    data_dir: DataDirOpt = None,
    seq_len: Annotated[int, typer.Option(help="Query length of the energy estimates.")] = 128,
) -> None:
    """Write a Markdown report and a self-contained HTML page with training curves, Pareto
    front, per-token decisions, entropy/rank/routing per layer and estimated energy."""
    from ..report import write_report

    with user_errors():
        paths = write_report(run_dir, out, text=text, data_dir=data_dir, seq_len=seq_len)
    console.print(f"wrote {paths['markdown']} and {paths['html']}")
    figs = [p.name for k, p in paths.items() if k not in ("markdown", "html")]
    console.print(f"figures: {', '.join(figs)}")
