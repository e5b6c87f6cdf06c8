"""Energy per query on every hardware profile for trained checkpoints (estimates), with the
FLOPs checked against torch's flop counter and the latency measured on this machine.

    python benchmarks/bench_energy.py --write

Each checkpoint reads the first ``--seq-len`` tokens of the WikiText-2 test split (a real
query: routing and adaptive ranks depend on the text). The energy columns are estimates from
the profiles in ``qtensorformer/energy/profiles.py``; only the last column is measured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import ensure_malloc_env, machine, write_section
from bench_training import FULL

from qtensorformer.data import load_corpus, load_tokenizer
from qtensorformer.energy import (
    PROFILES,
    EnergyEstimator,
    measure_latency,
    model_flops,
    torch_flop_count,
)
from qtensorformer.model import QTensorFormer


def models_under(root: str) -> str:
    """``--models`` for seed 0 of bench_training's one-epoch dense, TT-only and every-pillar
    runs under ``root`` (its full or quick budget's folder)."""
    return ",".join(f"{v}={root}/1ep-{v}-seed0" for v in ("dense", "tt", "all"))


DEFAULT_MODELS = models_under(FULL.root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help="name=run_folder,... (each folder's best/ model is used; default: seed 0 of the "
        "one-epoch runs of bench_training's seeds and ablation tables)",
    )
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_env)
    torch.manual_seed(0)
    corpus = load_corpus("wikitext-2")
    rows, flop_rows = [], []
    for item in args.models.split(","):
        v, _, folder = item.partition("=")
        ck = Path(folder) / "best"
        model = QTensorFormer.from_pretrained(ck)
        tok = load_tokenizer(ck / "tokenizer")
        ids = tok.encode_lines(corpus.split("test"))[: args.seq_len][None]  # (1, n)
        f = model_flops(model, input_ids=ids)
        ms = measure_latency(model, args.seq_len, repeats=args.repeats)
        theirs = torch_flop_count(model, ids)[2] if f.simulation == 0 else None
        flop_rows.append((v, f, theirs))
        cells = [v, f"{model.num_parameters():,}", f"{f.per_token / 1e6:.2f}"]
        for name in PROFILES:
            cells.append(f"{EnergyEstimator(name).estimate(f).energy_uj:,.4g}")
        cells.append(f"{ms:.1f}")
        rows.append(cells)
        print(" | ".join(cells), flush=True)
    hdr = ["model", "params", "MFLOP/token", *[f"{p} µJ" for p in PROFILES], "measured ms"]
    lines = [
        "### Energy per query, by hardware profile (issue #6)",
        "",
        "Command: `python benchmarks/bench_energy.py --write`  ",
        f"Machine: {machine()}  ",
        f"Allocator: {alloc}  ",
        f"Query: the first {args.seq_len} tokens of the WikiText-2 test split, batch 1, eval mode, "
        f"the one-epoch runs of the training tables (`best/` of {args.models}).  ",
        "**Every µJ column is an estimate**: forward FLOPs at the ranks and routing this query "
        "used × J/FLOP of the profile (power / (peak × 0.3 utilisation); derivations in "
        "docs/ENERGY.md). `quantum_sim` charges circuit simulation at the slowdown "
        "bench_quantum measured; `ibm_quantum` runs every circuit on a QPU (1024 shots, 250 µs "
        "reset delay, 25 kW). The last column is measured: median wall time of one forward on "
        f"this machine over {args.repeats} runs.",
        "",
        "| " + " | ".join(hdr) + " |",
        "|---|" + "---:|" * (len(hdr) - 1),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "FLOPs of the same queries: ours (from the forward's stats) vs `torch.utils.flop_counter` "
        "(matmuls and attention only; counted only for models without circuits, whose "
        "simulation FLOPs include element-wise work the counter does not see).",
        "",
        "| model | ours, classical | ours, circuit simulation | flop_counter | ours / counter |",
        "|---|---:|---:|---:|---:|",
    ]
    for v, f, theirs in flop_rows:
        ratio = f"{f.classical / theirs:.3f}" if theirs else "-"
        lines.append(
            f"| {v} | {f.classical:,} | {f.simulation:,} | "
            f"{f'{theirs:,}' if theirs else '-'} | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("bench_energy", table)


if __name__ == "__main__":
    main()
