"""``qtf params``: parameter counts of every preset, dense and compressed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ._common import console

if TYPE_CHECKING:
    from ..config import ModelConfig

#: (preset, "dense" or "compressed", parameters per component) of each counted model.
Count = tuple[str, str, dict[str, int]]


def check_presets(names: list[str]) -> None:
    """Refuse a preset name that does not exist, naming the ones that do."""
    from ..config import PRESETS

    for n in names:
        if n not in PRESETS:
            raise typer.BadParameter(f"unknown preset {n!r}; choose from {sorted(PRESETS)}")


def counted(cfg: ModelConfig, what: str) -> tuple[dict[str, int], dict[str, int]]:
    """Parameters per component of the model ``cfg`` builds and by formula from ``cfg``;
    raises RuntimeError when they differ."""
    import torch

    from ..model import QTensorFormer
    from ..nn.sizing import count_parameters

    with torch.device("meta"):  # count without allocating weights
        model = QTensorFormer(cfg)
    built = model.parameter_table()
    formula = count_parameters(cfg)
    if built != formula:
        raise RuntimeError(f"parameter count mismatch for {what}: {built} vs {formula}")
    return built, formula


def totals_table(names: list[str], vocab_size: int, tt_rank: int) -> tuple[Table, list[Count]]:
    """One row per preset and model (dense, compressed), and the counts behind them."""
    from ..config import ModelConfig
    from ..nn.sizing import count_parameters

    t = Table(
        title=f"Parameters (vocab_size={vocab_size:,}, TT rank {tt_rank})",
        caption="compressed = the default ModelConfig: TT embedding, attention and FFN at the "
        "TT rank, quantum encoder on; built = counted on the model, formula = "
        "count_parameters(config)",
    )
    for col in ("preset", "d / layers", "model", "built", "formula", "dense / this"):
        t.add_column(col, justify="left" if col in ("preset", "model") else "right")
    counts: list[Count] = []
    for n in names:
        dense_cfg = ModelConfig.dense(n, vocab_size=vocab_size)
        comp_cfg = ModelConfig.preset(n, vocab_size=vocab_size, tt_rank=tt_rank)
        dense_total = count_parameters(dense_cfg)["total"]
        for label, cfg in (("dense", dense_cfg), ("compressed", comp_cfg)):
            built, formula = counted(cfg, f"{n}/{label}")
            t.add_row(
                n,
                f"{cfg.d_model} / {cfg.n_layers}",
                label,
                f"{built['total']:,}",
                f"{formula['total']:,}",
                f"{dense_total / built['total']:.2f}×",
            )
            counts.append((n, label, built))
    return t, counts


def components_table(counts: list[Count]) -> Table:
    """Parameters per component, one column per preset and model."""
    d = Table(title="Parameters per component (D = dense, C = compressed)")
    d.add_column("component")
    for n, label, _ in counts:
        d.add_column(f"{n}/{label[0].upper()}", justify="right")
    for k in counts[0][2]:
        d.add_row(k, *(f"{built[k]:,}" for _, _, built in counts))
    return d


def params(
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", "-p", help="Preset(s) to show (default: all of them)."),
    ] = None,
    vocab_size: int = typer.Option(10000, help="Vocabulary size."),
    tt_rank: int = typer.Option(8, help="TT rank of the compressed models."),
    per_component: bool = typer.Option(False, help="Also print the per-component table."),
) -> None:
    """Parameter counts of every preset, dense and compressed (TT embedding, attention and
    FFN, quantum encoder), counted on the built model and by formula from the config."""
    from ..config import PRESETS

    names = preset or list(PRESETS)
    check_presets(names)
    table, counts = totals_table(names, vocab_size, tt_rank)
    console.print(table)
    if per_component:
        console.print(components_table(counts))
