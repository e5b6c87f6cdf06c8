"""The ``qtf`` command line."""

from __future__ import annotations

import math
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._version import __version__

app = typer.Typer(
    name="qtf",
    help="Q-TensorFormer: tensor-network language models with simulated quantum-circuit features.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"qtensorformer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Q-TensorFormer command line."""


@app.command()
def info() -> None:
    """Print versions, threads and devices."""
    import torch

    t = Table(title="qtensorformer environment")
    t.add_column("item")
    t.add_column("value")
    t.add_row("qtensorformer", __version__)
    t.add_row("torch", torch.__version__)
    t.add_row("torch threads", str(torch.get_num_threads()))
    t.add_row("CUDA", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    try:
        import pennylane

        t.add_row("pennylane", pennylane.__version__)
    except ImportError:
        t.add_row("pennylane", "not installed (pip install 'qtensorformer[pennylane]')")
    console.print(t)


@app.command()
def demo(
    n_qubits: int = typer.Option(4, help="Qubits of the feature circuit."),
    steps: int = typer.Option(150, help="Training steps of the toy fit."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Quick demonstration on an embedded default (runs in seconds on a CPU).

    Builds a quantum feature encoder, prints the entanglement entropy of known states,
    fits the encoder to a toy target and reports its loss, entropy range and speed.
    """
    import torch

    from .quantum import (
        QuantumFeatureEncoder,
        angle_encode,
        apply_ansatz,
        von_neumann_entropy,
    )

    torch.manual_seed(seed)
    t = Table(title="Entanglement entropy of known states (nats; log 2 = 0.6931)")
    t.add_column("state")
    t.add_column("S(ρ_A), A = first half", justify="right")
    bell = apply_ansatz(
        angle_encode(torch.tensor([math.pi / 2, 0.0], dtype=torch.float64)),
        torch.zeros(1, 2, dtype=torch.float64),
        "real",
    )
    ghz = torch.zeros(2**n_qubits, dtype=torch.float64)
    ghz[0] = ghz[-1] = 2**-0.5
    prod = angle_encode(torch.rand(n_qubits, dtype=torch.float64))
    for name, s in (
        ("Bell pair (RY(π/2), CNOT)", bell),
        (f"GHZ, {n_qubits} qubits", ghz),
        (f"product, {n_qubits} qubits", prod),
    ):
        t.add_row(name, f"{von_neumann_entropy(s).item():.4f}")
    console.print(t)

    enc = QuantumFeatureEncoder(d_in=8, n_qubits=n_qubits, n_layers=2, ansatz="strong")
    x = torch.randn(512, 8)
    y = torch.tanh(x[:, :4] * x[:, 4:])  # a product the circuit's Z-features must model
    y = torch.cat([y, -y], -1)
    opt = torch.optim.Adam(enc.parameters(), lr=0.03)
    start = time.perf_counter()
    losses = []
    for _ in range(steps):
        out = enc(x)
        loss = (out.features - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    dt = time.perf_counter() - start
    with torch.no_grad():
        ent = enc(x).entropy
    r = Table(title=f"Toy fit of a {n_qubits}-qubit encoder (strong ansatz, 2 layers)")
    r.add_column("metric")
    r.add_column("value", justify="right")
    r.add_row("loss: first step", f"{losses[0]:.4f}")
    r.add_row(f"loss: step {steps}", f"{losses[-1]:.4f}")
    r.add_row(
        "token entropy: min / mean / max (nats)",
        f"{ent.min():.3f} / {ent.mean():.3f} / {ent.max():.3f}",
    )
    r.add_row("S_max of the cut (nats)", f"{enc.config.max_entropy:.3f}")
    r.add_row("circuits / s (forward + backward)", f"{steps * x.shape[0] / dt:,.0f}")
    console.print(r)
    console.print("[dim]Placeholder demo: the language-model comparison arrives with the model.[/]")


@app.command()
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
    import torch

    from .config import PRESETS, ModelConfig, count_parameters
    from .model import QTensorFormer

    names = preset or list(PRESETS)
    for n in names:
        if n not in PRESETS:
            raise typer.BadParameter(f"unknown preset {n!r}; choose from {sorted(PRESETS)}")
    t = Table(
        title=f"Parameters (vocab_size={vocab_size:,}, TT rank {tt_rank})",
        caption="compressed = the default ModelConfig: TT embedding, attention and FFN at the "
        "TT rank, quantum encoder on; built = counted on the model, formula = "
        "count_parameters(config)",
    )
    for col in ("preset", "d / layers", "model", "built", "formula", "dense / this"):
        t.add_column(col, justify="left" if col in ("preset", "model") else "right")
    details = []
    for n in names:
        dense_cfg = ModelConfig.dense(n, vocab_size=vocab_size)
        for label, cfg in (
            ("dense", dense_cfg),
            ("compressed", ModelConfig.preset(n, vocab_size=vocab_size, tt_rank=tt_rank)),
        ):
            with torch.device("meta"):  # count without allocating weights
                model = QTensorFormer(cfg)
            built = model.parameter_table()
            formula = count_parameters(cfg)
            if built != formula:
                raise RuntimeError(
                    f"parameter count mismatch for {n}/{label}: {built} vs {formula}"
                )
            ratio = count_parameters(dense_cfg)["total"] / built["total"]
            t.add_row(
                n,
                f"{cfg.d_model} / {cfg.n_layers}",
                label,
                f"{built['total']:,}",
                f"{formula['total']:,}",
                f"{ratio:.2f}×",
            )
            details.append((n, label, built))
    console.print(t)
    if per_component:
        keys = list(details[0][2])
        d = Table(title="Parameters per component (D = dense, C = compressed)")
        d.add_column("component")
        for n, label, _ in details:
            d.add_column(f"{n}/{label[0].upper()}", justify="right")
        for k in keys:
            d.add_row(k, *(f"{built[k]:,}" for _, _, built in details))
        console.print(d)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
