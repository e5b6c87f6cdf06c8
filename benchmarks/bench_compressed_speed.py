"""Inference speed of compressed models against the original, side by side in one process.

Speed depends only on the shapes a method leaves, not on how its factors were fitted, so the
layers here are produced by the data-free methods at the shapes of the calibrated ones:
``svd`` at a ratio gives exactly the ranks of ``svd-llm`` / ``asvd`` with uniform allocation
(the same rank rule), and ``tt`` with ``topology="strict"`` the cores of ``tt-aware`` strict
(the same modes and budget rule). Every variant is a deep copy of the loaded model, so all of
them and the original are timed in one process, interleaved in seeded random order (the
median of each over the rounds), which makes the ratios robust on a shared machine.

Workloads: ``prefill`` — one forward of 1 × ``--seq-len`` tokens (tokens/s), and ``decode``
— greedy generation of ``--new-tokens`` tokens after a 64-token prompt with the key/value
cache (new tokens/s), the batch-1 case that weight size dominates.

    python benchmarks/bench_compressed_speed.py --model smollm2 --ratios 0.2,0.4,0.6 --write
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import interleaved_medians_ms, machine, write_section

from qtensorformer import QTensorFormer
from qtensorformer.compress import SVDConfig, TTConfig, compress_, load_causal_lm
from qtensorformer.compress.evaluate import forward_logits

SECTION = "bench_compressed_speed"


def _variants(model, ratios: list[float], strict: bool) -> dict[str, tuple[torch.nn.Module, int]]:
    """name → (compressed deep copy, parameters); the original under ``"original"``."""
    out = {"original": (model, sum(p.numel() for p in model.parameters()))}
    configs = [("lowrank", SVDConfig)] + ([("strict TT", None)] if strict else [])
    for ratio in ratios:
        for label, cls in configs:
            cfg = cls(ratio=ratio) if cls else TTConfig(ratio=ratio, topology="strict")
            copy_ = copy.deepcopy(model)
            rep = compress_(copy_, cfg)
            out[f"{label}, {ratio:.0%} removed"] = (copy_.eval(), rep.model_params_after)
    return out


def _prefill(model, ids):
    return lambda: forward_logits(model, ids)


def _decode(model, prompt, new_tokens: int):
    def run():
        with torch.no_grad():
            if isinstance(model, QTensorFormer):  # no EOS stop: always new_tokens
                model.generate(prompt, max_new_tokens=new_tokens, temperature=0.0)
                return
            model.generate(
                prompt,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )

    return run


def measure(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    loaded = load_causal_lm(args.model)
    model = loaded.model.eval()
    variants = _variants(model, [float(r) for r in args.ratios.split(",")], not args.no_strict)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, args.seq_len), generator=gen)
    prompt = torch.randint(0, vocab, (1, 64), generator=gen)
    with torch.inference_mode():
        pre = interleaved_medians_ms(
            {k: _prefill(m, ids) for k, (m, _) in variants.items()}, args.repeats
        )
    dec = interleaved_medians_ms(
        {k: _decode(m, prompt, args.new_tokens) for k, (m, _) in variants.items()}, args.repeats
    )
    return _table(args, variants, pre, dec)


def _table(args, variants, pre: dict, dec: dict) -> str:
    base_pre = pre["original"]
    lines = [
        f"Command: `python benchmarks/bench_compressed_speed.py --model {args.model} "
        f"--ratios {args.ratios} --seq-len {args.seq_len} --new-tokens {args.new_tokens} "
        f"--repeats {args.repeats}"
        f"{' --no-strict' if args.no_strict else ''} --write`  ",
        f"Machine: {machine()}  ",
        f"Prefill: one forward of 1 × {args.seq_len} tokens. Decode: greedy generation of "
        f"{args.new_tokens} new tokens after a 64-token prompt, key/value cache on. Medians of "
        f"{args.repeats} interleaved rounds after 2 warm-up runs of each; every variant lives "
        "in the same process.",
        "",
        "| model | parameters | prefill tokens/s | vs original | decode tokens/s | vs original |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, (_, n) in variants.items():
        p_tps = args.seq_len / (pre[k] / 1e3)
        d_tps = args.new_tokens / (dec[k] / 1e3)
        decode = f"{d_tps:,.1f} | {dec['original'] / dec[k]:.2f}"
        lines.append(f"| {k} | {n:,} | {p_tps:,.0f} | {base_pre / pre[k]:.2f} | {decode} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--ratios", default="0.2,0.4,0.6")
    p.add_argument("--seq-len", type=int, default=512, help="prefill length (at most the model's)")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-strict", action="store_true", help="skip the strict TT variants")
    p.add_argument("--write", action="store_true", help="write the docs/RESULTS.md section")
    args = p.parse_args()
    body = measure(args)
    print(body)
    if args.write:
        title = f"### Inference speed of compressed {args.model} against the original (issue #14)"
        section = SECTION if args.model == "smollm2" else f"{SECTION}_small"
        write_section(section, f"{title}\n\n{body}")


if __name__ == "__main__":
    main()
