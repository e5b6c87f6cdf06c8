"""Cost of each pillar: training and inference throughput of the small preset, side by side.

Every variant is the small preset (d=128, L=3, 4 heads, d_ff=512, vocab 10,000) on the same
random batch (16 × 128 tokens), timed round-robin in one process: a training step (forward,
backward, AdamW step) and an eval forward. Reported: parameters, circuits simulated per token,
forward FLOPs per token (the model's own count), medians and ratios to the dense baseline.

    python benchmarks/bench_model.py --write
"""

from __future__ import annotations

import argparse

import torch
from _common import ensure_malloc_env, interleaved_medians_ms, machine, write_section

from qtensorformer import ModelConfig, QTensorFormer

VARIANTS = {
    "dense baseline": {},
    "TT embedding + attention + FFN (rank 8)": dict(
        use_tt_embedding=True, use_tt_attention=True, use_tt_ffn=True
    ),
    "TT + quantum encoder (default config)": "default",
    "default + quantum attention, every token": dict(use_quantum_attention=True),
    "default + quantum attention, routed 20%": dict(
        use_quantum_attention=True, use_selective_routing=True
    ),
    "default + adaptive rank (r 2..8)": dict(use_adaptive_rank=True),
    "default + DARUAN FFN": dict(use_qkan=True),
    "every pillar": dict(
        use_quantum_attention=True,
        use_selective_routing=True,
        use_adaptive_rank=True,
        use_qkan=True,
    ),
}


def build(spec) -> QTensorFormer:
    base = dict(vocab_size=10000, dropout=0.0)
    if spec == "default":
        cfg = ModelConfig.preset("small", **base)
    elif spec and not spec.get("use_tt_ffn"):
        cfg = ModelConfig.preset("small", **base, **spec)
    else:
        cfg = ModelConfig.dense("small", **base, **spec)
    return QTensorFormer(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_env)
    torch.manual_seed(0)
    ids = torch.randint(0, 10000, (args.batch, args.seq))
    T = ids.numel()
    models, opts, info = {}, {}, {}
    for name, spec in VARIANTS.items():
        m = build(spec)
        models[name] = m
        opts[name] = torch.optim.AdamW(m.parameters(), lr=1e-4)
        m.train()
        _, _, st = m(ids, labels=ids)  # first batch (router initialisation)
        info[name] = (m.num_parameters(), st.circuits / T, st.total_flops / T)

    def train_step(name):
        m, o = models[name], opts[name]

        def fn():
            m.train()
            _, loss, _ = m(ids, labels=ids)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()

        return fn

    def eval_fwd(name):
        m = models[name]

        def fn():
            m.eval()
            with torch.no_grad():
                m(ids)

        return fn

    train = interleaved_medians_ms({n: train_step(n) for n in models}, args.repeats)
    infer = interleaved_medians_ms({n: eval_fwd(n) for n in models}, args.repeats)
    base = "dense baseline"
    lines = [
        f"Machine: {machine()}; allocator: {alloc}.",
        f"Command: `python benchmarks/bench_model.py --batch {args.batch} --seq {args.seq} "
        f"--repeats {args.repeats} --write` ({T} tokens per step; medians of {args.repeats} "
        "round-robin repeats after 2 warm-up runs).",
        "",
        "| variant | params | circuits / token | MFLOP / token (fwd) | train step ms "
        "| train tokens/s | speed vs dense | eval fwd ms | speed vs dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in models:
        p, circ, fl = info[name]
        lines.append(
            f"| {name} | {p:,} | {circ:.1f} | {fl / 1e6:.2f} | {train[name]:.0f} | "
            f"{T / train[name] * 1e3:,.0f} | {train[base] / train[name]:.2f} | "
            f"{infer[name]:.0f} | {infer[base] / infer[name]:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("bench_model", table)


if __name__ == "__main__":
    main()
