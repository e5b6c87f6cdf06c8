"""``qtf eval``: perplexity of a saved model on a split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ._common import (
    BatchOpt,
    CheckpointArg,
    DataDirOpt,
    DeviceOpt,
    console,
    fail,
    is_causal_lm_spec,
    resolve_checkpoint,
    run_info,
    tokenizer_dir,
    user_errors,
)

if TYPE_CHECKING:
    from pathlib import Path

    from ..data import Tokenizer
    from ..model import QTensorFormer
    from ..train import EvalResult
    from ..train.run import PreparedData

SPLITS = ("valid", "test")


def result_table(
    ckpt: Path, prepared: PreparedData, split: str, res: EvalResult, model: QTensorFormer
) -> Table:
    """Perplexity (per word too, for a subword tokenizer), tokens and parameters."""
    tok: Tokenizer = prepared.tokenizer
    t = Table(title=f"{ckpt}: {prepared.name} {split}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("perplexity", f"{res.ppl:.2f}")
    if tok.kind != "word" and res.word_ppl is not None:  # None when --max-tokens cut the text
        t.add_row("perplexity per word", f"{res.word_ppl:.2f}")
    t.add_row("tokens", f"{res.tokens:,}")
    t.add_row("parameters", f"{model.num_parameters():,}")
    return t


def eval_(
    checkpoint: CheckpointArg,
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="Corpus (default: the run's); a raw text file for pretrained LMs."
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    seq_len: Annotated[
        int | None,
        typer.Option(help="Tokens per window (default: the run's; 1024 for pretrained LMs)."),
    ] = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    max_tokens: Annotated[
        int | None, typer.Option(help="This library's models: score only the first N tokens.")
    ] = None,
    windows: Annotated[
        int | None,
        typer.Option(help="Pretrained/compressed LMs: score only the first N windows of raw text."),
    ] = None,
) -> None:
    """Perplexity of a saved model on a split (protocol printed with the number). Pretrained
    and compressed LMs are scored on raw text (--data: a text file; default raw WikiText-2)
    in non-overlapping windows of --seq-len tokens (default 1024)."""
    if is_causal_lm_spec(checkpoint):
        _eval_causal_lm(checkpoint, split, data, data_dir, seq_len or 1024, windows)
        return
    from ..data import load_tokenizer
    from ..model import QTensorFormer
    from ..train import PROTOCOL, evaluate, resolve_device
    from ..train.run import prepare_data

    if split not in SPLITS:
        fail(f"split must be valid or test, got {split!r}")
    ckpt = resolve_checkpoint(checkpoint)
    info = run_info(ckpt)
    with user_errors():
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(tokenizer_dir(ckpt))
        prepared = prepare_data(data or info.get("data", "wikitext-2"), data_dir, tok)
    L = seq_len or info.get("train_config", {}).get("seq_len", model.config.max_seq_len)
    dev = resolve_device(device)
    res = evaluate(
        model.to(dev),
        prepared.ids[split],
        L,
        batch_size,
        max_tokens,
        prepared.words[split],
        dev,
        progress=f"eval {split}",
    )
    console.print(result_table(ckpt, prepared, split, res, model))
    console.print(f"[dim]{tok.describe()}; perplexity: {PROTOCOL.format(L=L)}.[/]")


def _eval_causal_lm(
    spec: str, split: str, data: str | None, data_dir: str | None, seq_len: int, windows: int | None
) -> None:
    """Raw-text perplexity of a pretrained or compressed LM, protocol printed beside it."""
    from pathlib import Path

    from ..compress import find_raw_text, load_causal_lm, raw_text_perplexity

    if split not in SPLITS:
        fail(f"split must be valid or test, got {split!r}")
    with user_errors(ImportError):
        loaded = load_causal_lm(spec)
        if loaded.tokenizer is None:
            fail(f"{loaded.source} has no tokenizer saved with it: perplexity needs one")
        text = Path(data) if data is not None else find_raw_text(split, data_dir)
        res = raw_text_perplexity(
            loaded.model, loaded.tokenizer, text, seq_len=seq_len, windows=windows
        )
    n = sum(p.numel() for p in loaded.model.parameters())
    t = Table(title=f"{loaded.description}: {split}" if data is None else loaded.description)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("perplexity", f"{res.ppl:.3f}")
    t.add_row("tokens scored", f"{res.tokens_counted:,}")
    t.add_row("parameters", f"{n:,}")
    console.print(t)
    console.print(f"[dim]perplexity: {res.protocol}.[/]")
