"""Training throughput of the WikiText-2 variants, side by side in one process.

    python benchmarks/bench_train_speed.py --write

The models of the WikiText-2 table (small preset, full 33,278-word vocabulary, TT rank 64,
embedding rank 384): dense, TT only, every pillar, and every pillar with ranks on a grid of 8
(``rank_step=8``). Each step is forward + backward + AdamW on a 16 × 128 batch; the steps of
all models are interleaved (A, B, C, A, B, C, ...) and the median is taken after warm-up, so
drift on the noisy VM hits every model alike. Throughput = target tokens / median step time.
"""

from __future__ import annotations

import argparse

import torch
from _common import ensure_malloc_env, interleaved_medians_ms, machine, write_section

from qtensorformer import QTensorFormer
from qtensorformer.train.run import model_config

VARIANTS = {
    "dense baseline": ("dense", {}),
    "TT compression only": ("tt", {}),
    "every pillar": ("all", {}),
    "every pillar, rank_step=8": ("all", {"rank_step": 8}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-size", type=int, default=33278)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_env)
    torch.manual_seed(0)
    V = args.vocab_size
    ids = torch.randint(0, V, (args.batch, args.seq))
    fns, params = {}, {}
    for name, (variant, extra) in VARIANTS.items():
        cfg = model_config(
            variant, "small", V, embedding_rank=384, tt_rank=64, max_seq_len=args.seq, **extra
        )
        m = QTensorFormer(cfg).train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        params[name] = m.num_parameters()

        def step(m=m, opt=opt):
            _, loss, _ = m(ids, labels=ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        fns[name] = step
    ms = interleaved_medians_ms(fns, args.repeats)
    tokens = args.batch * (args.seq - 1)
    base = ms["dense baseline"]
    rows = []
    for name in VARIANTS:
        rows.append(
            f"| {name} | {params[name]:,} | {ms[name]:.0f} | {tokens / ms[name] * 1e3:,.0f} | "
            f"{base / ms[name]:.2f} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            "### Training throughput of the WikiText-2 models, side by side (issue #5)",
            "",
            "Command: `python benchmarks/bench_train_speed.py --write`  ",
            f"Machine: {machine()}  ",
            f"Allocator: {alloc}  ",
            f"Small preset, vocabulary {V:,}, TT rank 64, embedding rank 384 (the models of the "
            f"WikiText-2 table); one step = forward + backward + AdamW on {args.batch} × "
            f"{args.seq} tokens; medians of {args.repeats} interleaved steps after 2 warm-ups.",
            "",
            "| model | params | step ms | tokens/s | speed vs dense |",
            "|---|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    if args.write:
        write_section("bench_train_speed", table)


if __name__ == "__main__":
    main()
