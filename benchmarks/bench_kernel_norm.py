"""Quantum-kernel attention: softmax-with-temperature vs row-sum normalisation, measured.

Task: associative recall that only attention can solve. Each sequence is 16 random tokens
followed by the same 16 tokens again; the loss is the cross-entropy on the second half (the
copy), where the right answer is always 16 positions back. A 2-layer model whose attention is
entirely the quantum-kernel path (no TT, no encoder, no router) is trained with each
normalisation for the same steps, seeds and data; classical softmax attention is the reference.
Reported: the held-out copy loss (nats; chance = log 32 = 3.47) at the end, mean ± spread
over seeds, and the training time per step.

    python benchmarks/bench_kernel_norm.py --write
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import ensure_malloc_env, machine, write_section

from qtensorformer import ModelConfig, QTensorFormer

VOCAB, HALF, BATCH = 32, 16, 32


def batch(gen: torch.Generator) -> torch.Tensor:
    first = torch.randint(0, VOCAB, (BATCH, HALF), generator=gen)
    return torch.cat([first, first], 1)


def copy_loss(model: QTensorFormer, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids)[0]
    # predictions of positions HALF+1 .. 2·HALF-1 (the first copied token is also known)
    pred = logits[:, HALF - 1 : -1]
    return torch.nn.functional.cross_entropy(pred.reshape(-1, VOCAB), ids[:, HALF:].reshape(-1))


def held_out(model: QTensorFormer) -> float:
    model.eval()
    with torch.no_grad():
        test = torch.Generator().manual_seed(99)
        out = statistics.mean(float(copy_loss(model, batch(test))) for _ in range(4))
    model.train()
    return out


def run(kind: str, seed: int, steps: int) -> tuple[list[float], float]:
    torch.manual_seed(seed)
    base = dict(
        vocab_size=VOCAB,
        d_model=64,
        n_layers=2,
        n_heads=4,
        max_seq_len=2 * HALF,
        dropout=0.0,
        n_qubits=4,
        n_circuit_layers=2,
    )
    if kind == "classical":
        cfg = ModelConfig.dense(**base)
    else:  # every pillar off but the quantum-kernel attention
        cfg = ModelConfig.dense(**base, use_quantum_attention=True, kernel_norm=kind)
    model = QTensorFormer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1000 + seed)
    curve, train_time = [], 0.0
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        loss = copy_loss(model, batch(gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_time += time.perf_counter() - t0
        if step in checkpoints(steps):
            curve.append(held_out(model))
    return curve, train_time / steps


def checkpoints(steps: int) -> tuple[int, ...]:
    return (steps // 8, steps // 4, steps // 2, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the table to docs/RESULTS.md")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_env)
    rows = []
    for kind in ("softmax", "rowsum", "classical"):
        curves, times = [], []
        for s in range(args.seeds):
            curve, dt = run(kind, s, args.steps)
            curves.append(curve)
            times.append(dt)
            print(f"{kind:9s} seed {s}: held-out copy loss {curve}, {dt * 1e3:.1f} ms/step")
        rows.append((kind, curves, statistics.median(times)))
    cps = checkpoints(args.steps)
    lines = [
        f"Machine: {machine()}; allocator: {alloc}.",
        f"Command: `python benchmarks/bench_kernel_norm.py --steps {args.steps} "
        f"--seeds {args.seeds} --write`",
        "",
        "Held-out copy loss (nats; chance log 32 = 3.47), mean over seeds [min–max], after "
        "each number of training steps:",
        "",
        "| attention | " + " | ".join(f"step {c}" for c in cps) + " | ms / training step |",
        "|---|" + "---:|" * (len(cps) + 1),
    ]
    names = {
        "softmax": "quantum kernel, softmax(K/τ), learnable τ",
        "rowsum": "quantum kernel, row sum K/ΣK",
        "classical": "classical softmax (reference)",
    }
    for kind, curves, dt in rows:
        cells = []
        for j in range(len(cps)):
            v = [c[j] for c in curves]
            cells.append(f"{statistics.mean(v):.3f} [{min(v):.3f}–{max(v):.3f}]")
        lines.append(f"| {names[kind]} | " + " | ".join(cells) + f" | {dt * 1e3:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("bench_kernel_norm", table)


if __name__ == "__main__":
    main()
