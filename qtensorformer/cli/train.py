"""``qtf train``: train one model on a corpus (or resume a run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..files import RunDir
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
    fail,
    model_overrides,
    tokenizer_dir,
    train_config,
    user_errors,
)

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..train import TrainConfig
    from ..train.run import PreparedData


def resume_inputs(
    run: RunDir, data_dir: str | None
) -> tuple[ModelConfig, TrainConfig, PreparedData]:
    """The saved model and training configs of ``run`` and its data, tokenised with the
    tokenizer of its latest checkpoint; exits with an error when there is nothing to resume."""
    from ..config import ModelConfig
    from ..data import load_tokenizer
    from ..train import latest_checkpoint
    from ..train.run import prepare_data

    info = run.read_info()
    ckpt = latest_checkpoint(run.path)
    if info is None or ckpt is None:
        fail(
            f"nothing to resume in {run.path} (no {run.info.name} or no checkpoint); "
            "train without --resume first"
        )
    cfg = ModelConfig.from_dict(info["model_config"])
    tcfg = train_config(**info["train_config"])
    prepared = prepare_data(info["data"], data_dir, load_tokenizer(tokenizer_dir(ckpt)))
    return cfg, tcfg, prepared


def parse_checkpoint_every(text: str | None) -> tuple[int | None, float | None]:
    """``--checkpoint-every``: ``"200"`` → (200 steps, None); ``"10m"`` or ``"2.5min"`` →
    (None, minutes); None → (None, None)."""
    if text is None:
        return None, None
    t = text.strip().lower()
    for suffix in ("minutes", "min", "m"):
        if t.endswith(suffix):
            try:
                minutes = float(t.removesuffix(suffix))
            except ValueError:
                break
            if minutes > 0:
                return None, minutes
            break
    else:
        if t.isdigit() and int(t) > 0:
            return int(t), None
    fail(
        f"--checkpoint-every {text!r} is neither a number of steps (e.g. 200) nor of minutes "
        "(e.g. 10m)"
    )


def train(
    preset: Annotated[str, typer.Option(help="Model size: small, medium, large, xl.")] = "small",
    variant: Annotated[
        str, typer.Option(help="Pillars: dense, tt, default (TT + quantum encoder), all.")
    ] = "default",
    dense: Annotated[bool, typer.Option("--dense", help="Same as --variant dense.")] = False,
    data: DataOpt = "wikitext-2",
    data_dir: DataDirOpt = None,
    tokenizer: TokOpt = "word",
    batch_size: BatchOpt = 16,
    seq_len: SeqLenOpt = 128,
    lr: LrOpt = 3e-3,
    warmup: WarmupOpt = 100,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Stop after this many training tokens.")
    ] = None,
    epochs: Annotated[
        float, typer.Option(help="Passes over the training split (without max-steps/tokens).")
    ] = 1.0,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop training after this many minutes.")
    ] = None,
    eval_every: EvalEveryOpt = 500,
    checkpoint_every: Annotated[
        str | None,
        typer.Option(
            help="Also checkpoint between evaluations: every N steps ('200') or minutes ('10m')."
        ),
    ] = None,
    eval_max_tokens: Annotated[
        int | None, typer.Option(help="Tokens of each validation estimate (the final one is full).")
    ] = 100_000,
    final_eval_max_tokens: Annotated[
        int | None,
        typer.Option(help="Tokens of each split in the final evaluation (default: all of them)."),
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop after this many estimates without improvement.")
    ] = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(help="Latency budget per query (measured at each evaluation)."),
    ] = None,
    max_energy_uj: Annotated[
        float | None,
        typer.Option(help="Energy budget per query, µJ (estimated on --energy-hardware)."),
    ] = None,
    energy_hardware: Annotated[
        str, typer.Option(help="Hardware profile of the logged energy estimates.")
    ] = "cpu_xeon",
    seed: SeedOpt = 0,
    set_: SetOpt = None,
    out: Annotated[
        str | None, typer.Option(help="Run folder (default runs/<preset>-<variant>-<data>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Train a model on a corpus and report validation and test perplexity."""
    from ..config import model_config
    from ..train.run import prepare_data, train_one

    variant = "dense" if dense else variant
    every_steps, every_minutes = parse_checkpoint_every(checkpoint_every)
    run = RunDir(check_output_dir(out or f"runs/{preset}-{variant}-{data}"))
    with user_errors():
        if resume:
            cfg, tcfg, prepared = resume_inputs(run, data_dir)
            console.print(f"Resuming {run.path} (its saved configs; other options are ignored)")
        else:
            prepared = prepare_data(data, data_dir, tokenizer)
            overrides = model_overrides(set_, seq_len)
            cfg = model_config(variant, preset, prepared.tokenizer.vocab_size, **overrides)
            tcfg = train_config(
                batch_size=batch_size,
                seq_len=seq_len,
                lr=lr,
                warmup_steps=warmup,
                max_steps=max_steps,
                max_tokens=max_tokens,
                epochs=epochs,
                max_minutes=max_minutes,
                eval_every=eval_every,
                checkpoint_every_steps=every_steps,
                checkpoint_every_minutes=every_minutes,
                eval_max_tokens=eval_max_tokens,
                final_eval_max_tokens=final_eval_max_tokens,
                patience=patience,
                max_latency_ms=max_latency_ms,
                max_energy_uj=max_energy_uj,
                energy_hardware=energy_hardware,
                seed=seed,
                device=device,
            )
        console.print(f"Data: {prepared.source} ({prepared.tokenizer.describe()})")
        _, res = train_one(cfg, prepared, tcfg, run.path, resume=resume, console=console)
    if res.status == "diverged":
        raise typer.Exit(1)
    if res.status == "interrupted":
        raise typer.Exit(130)  # the shell's code for Ctrl-C; the checkpoint is written
