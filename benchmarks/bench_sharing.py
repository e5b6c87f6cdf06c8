"""Does sharing structure across layers pay on a real LM? Per-layer activation errors at
equal parameter count, with no perplexity compounding.

For each matrix type (e.g. every ``self_attn.q_proj`` of SmolLM2-135M's 30 blocks) and each
ratio of its parameters removed, every layer's weight W_l is approximated by:

* **per layer (svd-llm)**: SVD of W_l S_l with the layer's own whitening (G_l = S_l S_lᵀ);
* **basis sharing, pairs**: one input basis per pair of adjacent layers from the SVD of
  the stacked weights whitened by the pair's summed Gram (arXiv:2410.03765, as
  ``--method basis-sharing``);
* **ttns, growth g**: the cross-layer tree of ``--method ttns`` at each growth (1: one
  basis for all layers; 2: one per layer under the type's shared whitening; between: real
  trees), coefficients as Basis Sharing (A_l = W_l S U_lᵀ) and refitted under each layer's
  own Gram (the default);
* **output basis, groups of g**: one *output* basis for g adjacent layers, the top left
  singular vectors of [W_1 S_1 | … | W_g S_g]; every layer keeps its own whitening, and this
  is the exact optimum of Σ_l ‖(W_l − Ŵ_l) S_l‖² among shared output bases.

Each cell is the root mean square over layers of the relative activation error
‖X_l (W_l − Ŵ_l)ᵀ‖ / ‖X_l W_lᵀ‖ on held-out calibration sequences (every layer counts
alike), and the worst layer. Statistics come from one pass over the uncompressed model
(:func:`qtensorformer.compress.layer_statistics`).

    python benchmarks/bench_sharing.py --model smollm2 --write
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _common import machine, write_section

from qtensorformer.compress import CalibrationConfig, layer_statistics, load_causal_lm
from qtensorformer.compress.budget import param_budget, shared_rank
from qtensorformer.compress.config import TTNSConfig
from qtensorformer.compress.evaluate import calibration_ids
from qtensorformer.compress.linalg import activation_error, shared_basis_factors, whitening
from qtensorformer.compress.ttns import fit_type

TYPES = "self_attn.q_proj,mlp.gate_proj,mlp.down_proj"
GROWTHS = (1.0, 1.5, 2.0)


def _cell(Ws, W_hats, held) -> tuple[float, float]:
    errors = [activation_error(W, Wh, H) for W, Wh, H in zip(Ws, W_hats, held, strict=True)]
    return math.sqrt(math.fsum(e * e for e in errors) / len(errors)), max(errors)


def per_layer(Ws, grams, ratio):
    n, m = Ws[0].shape
    r = max(1, param_budget(n, m, ratio) // (n + m))
    out = []
    for W, G in zip(Ws, grams, strict=True):
        pre = whitening(G)
        U, s, Vh = torch.linalg.svd(pre.apply(W), full_matrices=False)
        out.append(pre.unapply((U[:, :r] * s[:r]) @ Vh[:r]))
    return out


def basis_sharing_pairs(Ws, grams, ratio):
    n, m = Ws[0].shape
    out = []
    for i in range(0, len(Ws), 2):
        group = list(range(i, min(i + 2, len(Ws))))
        k = shared_rank(n, m, len(group), ratio)
        pre = whitening(sum(grams[j] for j in group))
        coefficients, B = shared_basis_factors([Ws[j] for j in group], pre, k)
        out += [A @ B for A in coefficients]
    return out


def output_groups(Ws, grams, ratio, size):
    n, m = Ws[0].shape
    Z = [whitening(G).apply(W) for W, G in zip(Ws, grams, strict=True)]
    out = []
    for i in range(0, len(Ws), size):
        group = list(range(i, min(i + size, len(Ws))))
        budget = param_budget(len(group) * n, m, ratio)
        k = max(1, min(n, budget // (n + len(group) * m)))
        U = torch.linalg.svd(torch.cat([Z[j] for j in group], 1), full_matrices=False)[0]
        U = U[:, :k]  # (n, k): Ŵ_l = U Uᵀ W_l, coefficients Uᵀ W_l (k × m) per layer
        out += [U @ (U.T @ Ws[j]) for j in group]
    return out


def ttns_variants(Ws, grams, ratio, growth):
    typed = fit_type(Ws, grams, TTNSConfig(ratio=ratio, growth=growth))
    pre, bases = typed.pre, typed.fit.layer_bases()
    shared = [pre.unapply(pre.apply(W) @ U.T @ U) for W, U in zip(Ws, bases, strict=True)]
    return shared, typed.weights()


def rows_for(kind, Ws, grams, held, ratio):
    rows = [("per layer (svd-llm)", per_layer(Ws, grams, ratio))]
    rows.append(("basis sharing, pairs", basis_sharing_pairs(Ws, grams, ratio)))
    for g in GROWTHS:
        shared, refit = ttns_variants(Ws, grams, ratio, g)
        rows.append((f"ttns growth {g:g}, shared coefficients", shared))
        rows.append((f"ttns growth {g:g}, refitted (default)", refit))
    for size in (2, 5, len(Ws)):
        rows.append((f"output basis, groups of {size}", output_groups(Ws, grams, ratio, size)))
    return [(name, *_cell(Ws, W_hats, held)) for name, W_hats in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--types", default=TYPES, help="comma-separated matrix types")
    ap.add_argument("--ratios", default="0.4,0.6")
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--holdout", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    lm = load_causal_lm(args.model)
    types = args.types.split(",")
    ratios = [float(r) for r in args.ratios.split(",")]
    ids = calibration_ids(lm.tokenizer, None, args.calib_samples + args.holdout, args.seq_len)
    opts = CalibrationConfig(holdout=args.holdout, batch_size=4)
    stats = layer_statistics(
        lm.model, ids, lambda mod, name: any(name.endswith("." + t) for t in types), opts
    )
    print(f"statistics: {time.perf_counter() - t0:.0f} s", flush=True)
    tables = []
    for kind in types:
        names = [x for x in stats if x.endswith("." + kind)]
        Ws = [stats[x][0] for x in names]
        grams = [stats[x][1].gram for x in names]
        held = [stats[x][2].gram for x in names]
        n, m = Ws[0].shape
        for ratio in ratios:
            t1 = time.perf_counter()
            rows = rows_for(kind, Ws, grams, held, ratio)
            print(f"{kind} {ratio:.0%}: {time.perf_counter() - t1:.0f} s", flush=True)
            for name, rms, worst in rows:
                print(f"  {name:42s} rms {rms:.4f} worst {worst:.4f}", flush=True)
            tables.append((kind, (n, m), len(Ws), ratio, rows))
    if args.write:
        write_section(f"bench_sharing_{args.model}", _markdown(args, tables, t0))


def _markdown(args, tables, t0) -> str:
    lines = [
        f"### Cross-layer sharing on {args.model}: per-layer activation errors at equal "
        "parameters (issue #15)",
        "",
        "Command: `python benchmarks/bench_sharing.py "
        f"--model {args.model} --types {args.types} --ratios {args.ratios} --write`  ",
        f"Machine: {machine()}  ",
        f"Calibration: {args.calib_samples} × {args.seq_len} tokens of raw WikiText-2 valid "
        f"(fit), the next {args.holdout} sequences held out; statistics of the uncompressed "
        f"model. Total {time.perf_counter() - t0:.0f} s.",
        "",
        "Cell: root mean square over layers of the held-out relative activation error, and "
        "the worst layer (lower is better). Every row of a type and ratio stores the same "
        "number of weight parameters or fewer.",
        "",
    ]
    for kind, (n, m), L, ratio, rows in tables:
        best = min(r[1] for r in rows)
        lines += [f"**{kind}** ({L} layers of {n} × {m}), {ratio:.0%} removed", ""]
        lines += ["| approximation | rms error | worst layer |", "|---|---:|---:|"]
        for name, rms, worst in rows:
            cell = f"**{rms:.4f}**" if rms == best else f"{rms:.4f}"
            lines.append(f"| {name} | {cell} | {worst:.4f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
