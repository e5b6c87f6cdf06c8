"""How many conjugate-gradient iterations and ALS sweeps the activation-aware tensor-train fit
needs: fit time against activation error for one real matrix.

One ``mlp.down_proj`` of SmolLM2-135M (576 × 1536, the slowest type: its middle core is
solved by CG) is fitted by ``tt-aware`` in the strict topology at 40% removed, with every
pair of ``cg_iters`` and ``sweeps`` from the lists; the error is the relative activation error
on the fitted and on held-out calibration sequences, and the low-rank SVD-LLM solution at the
same parameters is shown for reference. Statistics of the uncompressed model
(:func:`qtensorformer.compress.layer_statistics`).

    python benchmarks/bench_ttfit_cg.py --write
    python benchmarks/bench_ttfit_cg.py --iters 20 --sweeps 4,2,1 --section bench_ttfit_sweeps \
        --write
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, write_section

from qtensorformer.compress import CalibrationConfig, layer_statistics, load_causal_lm
from qtensorformer.compress.budget import param_budget
from qtensorformer.compress.calibrate import InputStats
from qtensorformer.compress.config import SVDLLMConfig, TTAwareConfig
from qtensorformer.compress.evaluate import calibration_ids
from qtensorformer.compress.linalg import activation_error
from qtensorformer.compress.methods import Target, compress_matrix


def _target(W, stats: InputStats, ratio: float) -> Target:
    n, m = W.shape
    budget = param_budget(n, m, ratio)
    return Target("m", W, None, torch.float32, torch.device("cpu"), stats, None, budget)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--kind", default="mlp.down_proj")
    ap.add_argument("--ratio", type=float, default=0.4)
    ap.add_argument("--iters", default="50,20,10,5")
    ap.add_argument("--sweeps", default="4", help="ALS sweeps (comma-separated)")
    ap.add_argument("--section", default="bench_ttfit_cg", help="docs/RESULTS.md section")
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--holdout", type=int, default=4)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    lm = load_causal_lm(args.model)
    ids = calibration_ids(lm.tokenizer, None, args.calib_samples + args.holdout, 1024)
    want = f".{args.layer}.{args.kind}"
    opts = CalibrationConfig(holdout=args.holdout, batch_size=4)
    stats = layer_statistics(lm.model, ids, lambda mod, name: name.endswith(want), opts)
    ((W, fit, held),) = stats.values()
    rows = []
    svd = compress_matrix(SVDLLMConfig(ratio=args.ratio), _target(W, fit, args.ratio))
    rows.append(("svd-llm (low rank)", None, svd.W_hat))
    for sw in [int(x) for x in args.sweeps.split(",")]:
        for it in [int(x) for x in args.iters.split(",")]:
            config = TTAwareConfig(ratio=args.ratio, topology="strict", cg_iters=it, sweeps=sw)
            t0 = time.perf_counter()
            result = compress_matrix(config, _target(W, fit, args.ratio))
            name = f"tt-aware strict, cg_iters={it}" + (f", sweeps={sw}" if sw != 4 else "")
            rows.append((name, time.perf_counter() - t0, result.W_hat))
    lines = [
        f"### {_title(args)} of the tt-aware fit ({args.kind}, layer "
        f"{args.layer} of {args.model}, {args.ratio:.0%} removed)",
        "",
        f"Command: `python benchmarks/bench_ttfit_cg.py --layer {args.layer} --kind "
        f"{args.kind} --ratio {args.ratio} --iters {args.iters}"
        + (f" --sweeps {args.sweeps}" if args.sweeps != "4" else "")
        + (f" --section {args.section}" if args.section != "bench_ttfit_cg" else "")
        + " --write`  ",
        f"Machine: {machine()}  ",
        f"Calibration: {args.calib_samples} × 1024 tokens of raw WikiText-2 valid, the next "
        f"{args.holdout} held out; statistics of the uncompressed model.",
        "",
        "| fit | seconds | activation error (fit) | activation error (held out) |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds, W_hat in rows:
        sec = "—" if seconds is None else f"{seconds:.1f}"
        e_fit, e_held = activation_error(W, W_hat, fit.gram), activation_error(W, W_hat, held.gram)
        lines.append(f"| {name} | {sec} | {e_fit:.4f} | {e_held:.4f} |")
        print(lines[-1], flush=True)
    if args.write:
        write_section(args.section, "\n".join(lines))


def _title(args: argparse.Namespace) -> str:
    return "ALS sweeps" if args.section != "bench_ttfit_cg" else "Conjugate-gradient iterations"


if __name__ == "__main__":
    main()
