"""``qtf compare``: the dense baseline and Q-TensorFormer variants, trained the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    BatchOpt,
    DataDirOpt,
    DataOpt,
    DeviceOpt,
    EvalEveryOpt,
    LrOpt,
    SeedOpt,
    SeqLenOpt,
    SetOpt,
    TokOpt,
    WarmupOpt,
    check_output_dir,
    console,
    model_overrides,
    split_names,
    train_config,
    user_errors,
)


def compare_cmd(
    presets: Annotated[list[str] | None, typer.Option("--presets", help="Preset(s).")] = None,
    variants: Annotated[
        str, typer.Option(help="Comma-separated: dense,tt,default,all.")
    ] = "dense,tt,all",
    data: DataOpt = "wikitext-2",
    data_dir: DataDirOpt = None,
    tokenizer: TokOpt = "word",
    budget_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock limit per model.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Token budget per model.")] = None,
    batch_size: BatchOpt = 16,
    seq_len: SeqLenOpt = 128,
    lr: LrOpt = 3e-3,
    warmup: WarmupOpt = 100,
    eval_every: EvalEveryOpt = 1000,
    seed: SeedOpt = 0,
    set_: SetOpt = None,
    out: Annotated[str, typer.Option(help="Output folder.")] = "runs/compare",
    device: DeviceOpt = "auto",
) -> None:
    """Dense baseline vs Q-TensorFormer variants, trained the same way; one table."""
    from ..train.run import compare, prepare_data

    names = split_names(variants)
    check_output_dir(out)
    with user_errors():
        prepared = prepare_data(data, data_dir, tokenizer)
        overrides = model_overrides(set_, seq_len)
        tcfg = train_config(
            batch_size=batch_size,
            seq_len=seq_len,
            lr=lr,
            warmup_steps=warmup,
            max_tokens=max_tokens,
            max_minutes=budget_minutes,
            eval_every=eval_every,
            seed=seed,
            device=device,
        )
        for p in presets or ["small"]:
            compare(names, p, prepared, tcfg, Path(out) / p, console=console, **overrides)
