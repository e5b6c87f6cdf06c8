"""``qtf demo``: dense vs Q-TensorFormer on the embedded synthetic corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    SeedOpt,
    check_output_dir,
    console,
    split_names,
    train_config,
    user_errors,
)


def demo(
    max_tokens: Annotated[int, typer.Option(help="Training tokens per model.")] = 250_000,
    variants: Annotated[str, typer.Option(help="Comma-separated variants.")] = "dense,tt,all",
    out: Annotated[str, typer.Option(help="Run folder.")] = "runs/demo",
    seed: SeedOpt = 0,
) -> None:
    """The main job on the embedded default: dense vs Q-TensorFormer on the synthetic corpus.

    Trains the small preset three ways (dense baseline, TT compression only, every pillar) on
    the same tokens, schedule and seed, then prints parameters, test perplexity and speed and
    writes every run into ``--out``. A few minutes on 2 CPU cores.
    """
    from ..files import RunDir
    from ..train.run import compare, prepare_data

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
    names = split_names(variants)
    check_output_dir(out)
    with user_errors():
        compare(names, "small", prepared, tcfg, Path(out), console=console, max_seq_len=64)
    run = RunDir(out)
    console.print(
        f"Runs written to {out}/ ({run.metrics.name}, {run.checkpoints.name}, "
        f"{run.summary.name} each)"
    )
