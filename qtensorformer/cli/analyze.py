"""``qtf analyze``: the entanglement analysis of a trained LM's layers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ._common import CalibDataOpt, check_output_dir, console, user_errors
from .compress import MODEL_HELP


def analyze(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    out: Annotated[str, typer.Option(help="Folder for analysis.md/.html/.json and figures.")] = (
        "runs/analysis"
    ),
    ratio: Annotated[
        float, typer.Option(help="Fraction of each matrix's parameters removed (budget rank).")
    ] = 0.4,
    calib_data: CalibDataOpt = None,
    calib_samples: Annotated[int | None, typer.Option(help="Calibration sequences (32).")] = None,
    seq_len: Annotated[
        int | None, typer.Option(help="Tokens per calibration sequence and scored window (1024).")
    ] = None,
    eval_data: Annotated[
        str | None,
        typer.Option(help="Text scored for the sensitivity (default: raw WikiText-2 test)."),
    ] = None,
    windows: Annotated[
        int | None, typer.Option(help="Windows scored per sensitivity evaluation (8).")
    ] = None,
    sensitivity: Annotated[
        bool, typer.Option(help="Measure each layer's sensitivity (one evaluation per layer).")
    ] = True,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="8 calibration and 4 scored windows of 512 tokens (unless given)."
        ),
    ] = False,
) -> None:
    """Spectra, entropy, effective rank and sensitivity of every layer; their correlation."""
    from ..report.analysis import analyze_model

    check_output_dir(out)
    small = (8, 512, 4) if quick else (32, 1024, 8)
    with user_errors(ImportError):
        run = analyze_model(
            model,
            out,
            ratio=ratio,
            calib_data=calib_data,
            calib_samples=calib_samples or small[0],
            seq_len=seq_len or small[1],
            eval_data=eval_data,
            windows=windows or small[2],
            sensitivity=sensitivity,
        )
    rep = run.report
    for kind in ("entropy", "w_entropy"):
        v = rep.middle_verdict(kind)
        console.print(
            f"{kind}: peak at layer {v['peak_layer']} of {rep.n_layers}; middle third "
            f"{v['middle_mean']:.3f} vs outer {v['outer_mean']:.3f} ({v['difference']:+.1%}); "
            f"middle layers most entangled: {'yes' if v['middle_highest'] else 'no'}"
        )
    for measure, corrs in rep.correlations.items():
        for c in corrs:
            console.print(f"{measure} vs sensitivity: {escape(str(c))}")
    console.print(f"[dim]{rep.seconds:.0f} s. Wrote {escape(str(run.paths['md']))} and .html[/]")
