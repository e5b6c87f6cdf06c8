"""Generation speed with and without the key/value cache, side by side in one process.

Each variant is the small preset (d=128, L=3, 4 heads, vocab 33,278 as on word-level
WikiText-2, untrained: speed does not depend on the weights) writing ``--new`` tokens
greedily after a ``--prompt``-token prompt, batch 1, one thread per core as configured. With
the cache each step runs the new token only; without, every step re-runs the whole context.
Both write the same tokens (tested in tests/test_generation.py). Timed round-robin
(:func:`interleaved_medians_ms`), medians over ``--repeats`` after warm-up.

    python benchmarks/bench_generate.py --write
"""

from __future__ import annotations

import argparse

import torch
from _common import ensure_malloc_env, interleaved_medians_ms, machine, write_section

from qtensorformer import ModelConfig, QTensorFormer

VOCAB = 33278
VARIANTS = {
    "dense baseline": lambda: ModelConfig.dense("small", vocab_size=VOCAB, dropout=0.0),
    "TT + quantum encoder (default config)": lambda: ModelConfig.preset(
        "small", vocab_size=VOCAB, dropout=0.0
    ),
    "every pillar": lambda: ModelConfig.preset(
        "small",
        vocab_size=VOCAB,
        dropout=0.0,
        use_quantum_attention=True,
        use_selective_routing=True,
        use_adaptive_rank=True,
        use_qkan=True,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    ap.add_argument("--new", type=int, default=112, help="tokens written")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_env)
    torch.manual_seed(0)
    prompt = torch.randint(0, VOCAB, (1, args.prompt))
    fns, models = {}, {}
    for name, make in VARIANTS.items():
        models[name] = model = QTensorFormer(make()).eval()
        for cache in (True, False):
            fns[(name, cache)] = lambda m=model, c=cache: m.generate(
                prompt, args.new, temperature=0, use_cache=c
            )
        same = torch.equal(fns[(name, True)](), fns[(name, False)]())
        print(f"{name}: cached and uncached outputs equal: {same}", flush=True)
        assert same, name
    ms = interleaved_medians_ms(fns, args.repeats, warmup=1)
    lines = [
        "### Generation with and without the key/value cache",
        "",
        f"Command: `python benchmarks/bench_generate.py --prompt {args.prompt} --new {args.new} "
        f"--repeats {args.repeats}{' --write' if args.write else ''}`  ",
        f"Machine: {machine()}; allocator: {alloc}  ",
        f"Small preset, vocab {VOCAB:,}, batch 1, greedy: {args.new} tokens after a "
        f"{args.prompt}-token prompt (context {args.prompt + args.new} of max_seq_len 256). "
        "Medians over interleaved repeats; both columns write the same tokens.",
        "",
        "| model | parameters | tokens/s with cache | tokens/s without | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, model in models.items():
        with_c, without = (args.new / (ms[(name, c)] / 1e3) for c in (True, False))
        lines.append(
            f"| {name} | {model.num_parameters():,} | {with_c:,.0f} | {without:,.0f} | "
            f"{with_c / without:.2f}× |"
        )
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("bench_generate", body)


if __name__ == "__main__":
    main()
