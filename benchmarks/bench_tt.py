"""TTLinear vs nn.Linear vs tensorly-torch BlockTT: parameters and time, side by side.

Shapes 128→512, 512→2048 and 768→3072 at 4096 tokens; ranks giving about 2×, 8× and 32× fewer
parameters than the dense layer, plus ranks 4 and 2 (same modes on both TT sides). Timed:
forward in eval mode (no_grad) and forward+backward in training mode, for nn.Linear, our
TTLinear (auto path, and each path forced) and tltorch.FactorizedLinear(factorization="blocktt").
Also per-token adaptive ranks: 20% of tokens at the 8× rank and 80% at rank 2, against all
tokens at the 8× rank (eval forward, auto path). Medians after warm-up, variants timed
round-robin; ratios are against nn.Linear measured in the same process.

Run:  python benchmarks/bench_tt.py --write
"""

from __future__ import annotations

import argparse

import torch
from _common import ensure_malloc_env, interleaved_medians_ms, machine, results_path, write_section
from torch import nn

from qtensorformer.tensor import TTLinear, default_n_modes, factorize, full_ranks, tt_num_params

SHAPES = [(128, 512), (512, 2048), (768, 3072)]
COMPRESSIONS = [2, 8, 32]
PATHS = ("auto", "dense", "tt")
#: Extra low ranks, where the factorised FLOPs fall well under the dense ones.
LOW_RANKS = [4, 2]


def rank_for(d_in, d_out, compression, in_modes, out_modes) -> int:
    full = full_ranks(in_modes=in_modes, out_modes=out_modes)
    best = 1
    for r in range(1, max(full) + 1):
        if tt_num_params(
            in_modes=in_modes, out_modes=out_modes, ranks=tuple(min(r, f) for f in full)
        ) * compression <= (d_in * d_out):
            best = r
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--seconds", type=float, default=1.5, help="time each variant about this long (≤ 60 runs)"
    )
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-malloc-tuning", action="store_true")
    ap.add_argument("--no-tltorch", action="store_true")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_tuning)
    torch.manual_seed(0)
    tltorch = None
    if not args.no_tltorch:
        import tltorch
    B = args.tokens
    rows, mix_rows = [], []
    for d_in, d_out in SHAPES:
        k = default_n_modes(d_in, d_out)
        im, om = factorize(d_in, k).modes, factorize(d_out, k).modes
        x = torch.randn(B, d_in, requires_grad=True)
        lin = nn.Linear(d_in, d_out)
        lin_aa = nn.Linear(d_in, d_out)  # A/A control: the same op timed as another variant
        # Short calls are noisier: repeat until each variant has run --seconds in training.
        t0 = interleaved_medians_ms({"l": lambda lin=lin, x=x: lin(x).sum().backward()}, 3)["l"]
        reps = max(args.repeats, min(60, int(1000 * args.seconds / max(t0, 1e-3))))
        ranks_to_run = [rank_for(d_in, d_out, c, im, om) for c in COMPRESSIONS]
        ranks_to_run += [r for r in LOW_RANKS if r < min(ranks_to_run)]
        for r in ranks_to_run:
            tts = {p: TTLinear(d_in, d_out, r, in_modes=im, out_modes=om) for p in PATHS}
            for p, m in tts.items():
                m.path = p
            mods = {"linear": lin, "linear_aa": lin_aa, **tts}
            if tltorch is not None:
                mods["tltorch"] = tltorch.FactorizedLinear(
                    im, om, factorization="blocktt", rank=(1, *tts["auto"].max_ranks, 1)
                )
            for m in mods.values():
                m.eval()
            with torch.no_grad():
                ev = interleaved_medians_ms(
                    {n: (lambda m=m, x=x: m(x)) for n, m in mods.items()}, reps, warmup=3
                )
                chosen_eval = tts["auto"].choose_path(B)  # without autograd, as timed
            for m in mods.values():
                m.train()
            tr = interleaved_medians_ms(
                {n: (lambda m=m, x=x: m(x).sum().backward()) for n, m in mods.items()},
                reps,
                warmup=3,
            )
            tt = tts["auto"]
            flops = tt.path_flops(B)
            row = dict(
                shape=f"{d_in}→{d_out}",
                modes=f"{im}→{om}",
                rank=r,
                params=tt.num_params(),
                dense_params=d_in * d_out,
                ev=ev,
                tr=tr,
                chosen=(chosen_eval, tt.choose_path(B)),
                flop_ratio=flops["tt"] / (2 * B * d_in * d_out),
            )
            rows.append(row)
            print(row, flush=True)
        # adaptive ranks: 20% at the 8x rank, 80% at rank 2 (eval forward, auto path)
        hi = rank_for(d_in, d_out, 8, im, om)
        tt = TTLinear(d_in, d_out, hi, in_modes=im, out_modes=om).eval()
        ranks = torch.full((B,), 2, dtype=torch.long)
        ranks[torch.randperm(B)[: B // 5]] = hi
        lin.eval()
        with torch.no_grad():
            t = interleaved_medians_ms(
                {
                    "all_hi": lambda tt=tt, x=x: tt(x),
                    "mix": lambda tt=tt, x=x, ranks=ranks: tt(x, rank=ranks),
                    "all_lo": lambda tt=tt, x=x: tt(x, rank=2),
                    "linear": lambda lin=lin, x=x: lin(x),
                },
                reps,
                warmup=3,
            )
        mix_rows.append((f"{d_in}→{d_out}", hi, t["all_hi"], t["mix"], t["all_lo"], t["linear"]))
        print(mix_rows[-1], flush=True)

    lines = [
        "| layer | modes | rank | params (dense) | TT FLOPs / dense | auto path (eval, train) "
        "| eval fwd: auto / dense / tt / tltorch | train fwd+bwd: auto / dense / tt / tltorch "
        "| A/A: 2nd nn.Linear (eval, train) |",
        "|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        be, bt = r["ev"]["linear"], r["tr"]["linear"]
        tl_e = f"{r['ev']['tltorch'] / be:.2f}" if "tltorch" in r["ev"] else "—"
        tl_t = f"{r['tr']['tltorch'] / bt:.2f}" if "tltorch" in r["tr"] else "—"
        ev = " / ".join(f"{r['ev'][p] / be:.2f}" for p in PATHS)
        tr = " / ".join(f"{r['tr'][p] / bt:.2f}" for p in PATHS)
        lines.append(
            f"| {r['shape']} | {r['modes']} | {r['rank']} | {r['params']:,} ({r['dense_params']:,},"
            f" {r['dense_params'] / r['params']:.1f}×) | {r['flop_ratio']:.2f} | "
            f"{r['chosen'][0]}, {r['chosen'][1]} | {ev} / {tl_e} | {tr} / {tl_t} | "
            f"{r['ev']['linear_aa'] / be:.2f}, {r['tr']['linear_aa'] / bt:.2f} |"
        )
    table = "\n".join(lines)
    base_lines = [
        "| layer | nn.Linear eval fwd (ms) | nn.Linear train fwd+bwd (ms) |",
        "|---|---:|---:|",
    ]
    seen = set()
    for r in rows:
        if r["shape"] not in seen:
            seen.add(r["shape"])
            base_lines.append(
                f"| {r['shape']} | {r['ev']['linear']:.1f} | {r['tr']['linear']:.1f} |"
            )
    mix_lines = [
        "| layer | high rank | all tokens at high rank (ms) | 20% high / 80% rank 2 (ms) "
        "| mix / all-high | all tokens at rank 2 (ms) | no-overhead mix: (0.2·all-high + "
        "0.8·all-rank-2) / all-high | nn.Linear (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, hi, a, m, lo, b in mix_rows:
        ideal = (0.2 * a + 0.8 * lo) / a
        mix_lines.append(
            f"| {name} | {hi} | {a:.1f} | {m:.1f} | {m / a:.2f} | {lo:.1f} | {ideal:.2f} "
            f"| {b:.1f} |"
        )
    out = "\n".join([table, "", "\n".join(base_lines), "", "\n".join(mix_lines)])
    print(out)
    if args.write:
        body = (
            "### Tensor-train linear layers vs nn.Linear and tensorly-torch\n\n"
            "Command: `python benchmarks/bench_tt.py --write`  \n"
            f"Machine: {machine()}  \nAllocator: {alloc}  \n"
            f"{B} tokens, float32; medians of at least {args.repeats} runs (more for small layers, "
            f"up to 60, about {args.seconds:g} s per variant) after 3 warm-ups, the variants "
            "timed in rounds, each round in a fresh random order. "
            "Times are "
            "ratios to nn.Linear of the same shape in the same process (< 1 is faster). "
            "Eval = forward under no_grad in eval mode (our dense path uses its cached weight); "
            "train = forward + backward in training mode. tltorch = "
            "`tltorch.FactorizedLinear(factorization='blocktt')` with the same modes and ranks. "
            "A/A = a second nn.Linear of the same shape timed as one more variant: its spread "
            "around 1.00 is the measurement noise of every ratio in its row. The mix table's "
            "no-overhead column is what the mix would cost if each group ran at its all-token "
            "speed with no grouping cost: where it is above 0.5, the 0.5 target is out of reach "
            "for the layer's best paths.\n\n" + out
        )
        write_section("bench_tt", body)
        print(f"wrote {results_path()}")


if __name__ == "__main__":
    main()
