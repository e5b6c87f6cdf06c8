"""What the compression half of ``qtf demo`` can afford: svd-llm on SmolLM2-135M at a few
ratios and calibration sizes, and short healing runs, each timed, on one loaded model.

The model is loaded once; every variant compresses (and heals) its own deep copy. Perplexity:
the demo's protocol, the first ``--windows`` non-overlapping 1024-token windows of raw
WikiText-2 test. Healing (on the ``--heal-ratio`` model with ``--heal-samples`` calibration
sequences): steps of 4 × 256 tokens of raw valid, its held-out tail capped at 4,096 tokens.

    python benchmarks/bench_demo_settings.py --write
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

from _common import machine, write_section

from qtensorformer.compress import (
    CalibrationConfig,
    calibration_ids,
    compress_,
    find_raw_text,
    load_causal_lm,
    method_config,
    raw_text_perplexity,
    text_token_ids,
)
from qtensorformer.compress.heal import HealConfig, heal


def _floats(csv: str) -> list[float]:
    return [float(x) for x in csv.split(",") if x]


def _ints(csv: str) -> list[int]:
    return [int(x) for x in csv.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratios", default="0.1,0.2")
    ap.add_argument("--samples", default="8,16", help="calibration sequence counts")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--heal-ratio", type=float, default=0.2)
    ap.add_argument("--heal-samples", type=int, default=16)
    ap.add_argument("--heals", default="10:2e-4,20:2e-4,20:1e-4", help="steps:lr,... ('' for none)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    t = time.perf_counter()
    loaded = load_causal_lm("smollm2")
    model, tok = loaded.model, loaded.tokenizer
    load_s = time.perf_counter() - t
    test, valid = find_raw_text("test"), find_raw_text("valid")

    def score(m) -> float:
        return raw_text_perplexity(m, tok, test, seq_len=1024, windows=args.windows).ppl

    rows = [f"| uncompressed | — | — | {score(model):.2f} | — |"]
    kept = {}
    for ratio in _floats(args.ratios):
        for n in _ints(args.samples):
            m = copy.deepcopy(model)
            calib = calibration_ids(tok, valid, n_samples=n, seq_len=1024)
            t = time.perf_counter()
            compress_(m, method_config("svd-llm", ratio=ratio), calibration=calib,
                      options=CalibrationConfig())  # fmt: skip
            sec = time.perf_counter() - t
            rows.append(f"| svd-llm {ratio:.0%} | {n} | — | {score(m):.2f} | {sec:.0f} |")
            if ratio == args.heal_ratio and n == args.heal_samples:
                kept["base"] = m
            else:
                del m
    ids, _ = text_token_ids(tok, valid)
    for spec in [h for h in args.heals.split(",") if h]:
        steps, lr = spec.split(":")
        m = copy.deepcopy(kept["base"])
        cfg = HealConfig(steps=int(steps), lr=float(lr), valid_max_tokens=4096)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            heal(m, ids, cfg, d)
            sec = time.perf_counter() - t
        rows.append(
            f"| svd-llm {args.heal_ratio:.0%}, healed | {args.heal_samples} | {steps} steps, "
            f"lr {float(lr):g} | {score(m):.2f} | {sec:.0f} |"
        )
        del m
    body = "\n".join(
        [
            "### What the demo's compression half can afford (SmolLM2-135M, svd-llm)",
            "",
            "Command: `python benchmarks/bench_demo_settings.py --write`  ",
            f"Machine: {machine()}  ",
            f"Model load: {load_s:.0f} s. Perplexity: first {args.windows} non-overlapping "
            "1024-token windows of raw WikiText-2 test (the demo's protocol). Seconds: the "
            "compression (calibration included), or the healing (its evaluations and "
            "checkpoints included).",
            "",
            "| model | calibration sequences | healing | perplexity | seconds |",
            "|---|---:|---|---:|---:|",
            *rows,
        ]
    )
    print(body)
    if args.write:
        write_section("bench_demo_settings", body)


if __name__ == "__main__":
    main()
