"""``qtf energy``: estimated energy, carbon and latency per query on each hardware profile."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ._common import (
    SeedOpt,
    console,
    resolve_checkpoint,
    user_errors,
)

if TYPE_CHECKING:
    from ..energy import EnergyTable, FlopsBreakdown
    from ..model import QTensorFormer

COLUMNS = (
    "hardware",
    "pJ/FLOP",
    "energy µJ (est.)",
    "carbon µg (est.)",
    "latency ms (est.)",
    "QPU circuits",
)


def estimates_table(res: EnergyTable) -> Table:
    """One row per hardware profile, captioned with how the estimates are made."""
    t = Table(
        title=f"Energy per query of {res.seq_len} tokens: {res.source}",
        caption="ESTIMATES: FLOPs × J/FLOP of each profile (power / (peak × utilisation); "
        "derivations in docs/ENERGY.md); carbon at "
        f"{res.carbon_intensity:g} gCO2/kWh, PUE {res.pue:g}. Measured latency on this "
        f"machine: {res.measured_latency_ms:.2f} ms.",
    )
    for col in COLUMNS:
        t.add_column(col, justify="left" if col == "hardware" else "right")
    for row in res.rows:
        e = row.estimate
        t.add_row(
            e.hardware,
            f"{e.joules_per_flop * 1e12:.3g}",
            f"{e.energy_uj:,.4g}",
            f"{e.carbon_ug:,.4g}",
            f"{e.latency_ms:,.4g}",
            f"{e.qpu_circuits:,}" if row.on_qpu else "-",
        )
    return t


def flops_table(flops: FlopsBreakdown) -> Table:
    """FLOPs of the query per module, with each module's share."""
    f = Table(title=f"FLOPs of the query (forward, {flops.per_token:,.0f} per token)")
    f.add_column("module")
    f.add_column("FLOPs", justify="right")
    f.add_column("share", justify="right")
    for k, v in flops.by_module.items():
        f.add_row(k, f"{v:,}", f"{v / max(flops.total, 1):.1%}")
    return f


def load_or_build(
    checkpoint: str | None, preset: str, variant: str, vocab_size: int, seq_len: int, seed: int
) -> tuple[QTensorFormer, str]:
    """The saved model ``checkpoint`` names, else a freshly built one; with a description."""
    from ..energy import untrained_model
    from ..model import QTensorFormer

    if checkpoint is None:
        return untrained_model(preset, variant, vocab_size, seq_len, seed)
    ckpt = resolve_checkpoint(checkpoint)
    return QTensorFormer.from_pretrained(ckpt), str(ckpt)


def _at_floor(model: QTensorFormer, source: str) -> AbstractContextManager[None]:
    """Every budget knob of ``model`` at its floor inside the block; an error for a model
    without knobs (it has no floor below its own cost)."""
    from ..train.budget import BudgetController

    knobs = BudgetController(model, {})
    if not knobs.has_knob:
        raise ValueError(
            f"--floor: {source} has no router or adaptive rank, so it has no floor below "
            "its own cost; run without --floor"
        )
    return knobs.floor()


def energy(
    checkpoint: Annotated[
        str | None,
        typer.Argument(help="Model folder, checkpoint or run folder (else --preset/--variant)."),
    ] = None,
    hardware: Annotated[
        str, typer.Option(help="Profile name(s), comma-separated, or 'all'.")
    ] = "all",
    preset: Annotated[str, typer.Option(help="Preset of a freshly built model.")] = "small",
    variant: Annotated[str, typer.Option(help="Pillars of a freshly built model.")] = "all",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary of a freshly built model.")] = 10000,
    seq_len: Annotated[int, typer.Option(help="Tokens per query.")] = 128,
    carbon_intensity: Annotated[
        float, typer.Option(help="Grid gCO2/kWh (default: 2023 global average).")
    ] = 480.0,
    pue: Annotated[float, typer.Option(help="Facility power usage effectiveness.")] = 1.0,
    utilisation: Annotated[
        float | None, typer.Option(help="Override the assumed fraction of peak throughput.")
    ] = None,
    seed: SeedOpt = 0,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the estimates to this JSON file.")
    ] = None,
    floor: Annotated[
        bool,
        typer.Option(
            help="Estimate with every budget knob at its floor (no token routed, every "
            "adaptive rank at its minimum): the least that --max-energy-uj can reach."
        ),
    ] = False,
) -> None:
    """Estimated energy, carbon and latency per query on each hardware profile, with the
    measured latency on this machine beside them (FLOPs from a forward pass on random tokens).

    Example: ``qtf energy runs/my-run --hardware cpu_xeon --floor``"""
    from ..energy import energy_table, make_estimators
    from ..files import write_json

    with user_errors():
        estimators = make_estimators(hardware, carbon_intensity, pue, utilisation)
        model, source = load_or_build(checkpoint, preset, variant, vocab_size, seq_len, seed)
        with _at_floor(model, source) if floor else nullcontext():
            label = f"{source}, at its floor (no token routed, minimum ranks)" if floor else source
            res = energy_table(model, estimators, seq_len, label, seed)
    console.print(estimates_table(res))
    console.print(flops_table(res.flops))
    if json_out:
        write_json(Path(json_out), res.to_dict())
        console.print(f"wrote {json_out}")
