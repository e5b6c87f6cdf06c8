"""Post-training compression of a real pretrained LM: every method at equal parameter count.

Each (method, ratio, allocation) runs in its own process (``--one``), so its wall time and
peak memory are its own: load the model, calibrate block by block, compress, score raw
WikiText-2 test with the same protocol as the uncompressed model, time the forward. The
parent collects the rows into one table (docs/RESULTS.md with ``--write``).

    python benchmarks/bench_compress.py --model smollm2 --methods svd-llm,tt-aware \
        --ratios 0.2,0.4,0.6 --allocations uniform --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import machine, write_section

RAW_VALID = "raw WikiText-2 valid (the raw train split is not in the data folder)"
METHODS = ("svd", "asvd", "svd-llm", "tt", "tt-aware", "basis-sharing", "ttns")


def _one(args: argparse.Namespace) -> dict:
    """One configuration (or the uncompressed model with ``--method none``), as a dict."""
    from qtensorformer.compress import (
        find_raw_text,
        load_causal_lm,
        measure_tokens_per_second,
        raw_text_perplexity,
    )
    from qtensorformer.compress.memory import peak_rss_mib
    from qtensorformer.compress.pipeline import compress_model

    text = args.eval_data or find_raw_text("test")
    if args.method == "none":
        loaded = load_causal_lm(args.model)
        res = raw_text_perplexity(
            loaded.model, loaded.tokenizer, text, seq_len=args.seq_len, windows=args.windows
        )
        tps = measure_tokens_per_second(loaded.model, seq_len=args.seq_len)
        n = sum(p.numel() for p in loaded.model.parameters())
        return {
            "method": "uncompressed",
            "ppl": res.ppl,
            "protocol": res.protocol,
            "tokens_per_s": tps,
            "params": n,
            "peak_rss_mib": peak_rss_mib(),
        }
    sets = _options(args.set)
    options = {**({"topology": args.topology} if args.topology else {}), **sets} or None
    t0 = time.perf_counter()
    run = compress_model(
        args.model,
        args.method,
        ratio=args.ratio,
        allocation=args.allocation,
        method_options=options,
        calib_data=args.calib_data,
        calib_samples=args.calib_samples,
        seq_len=args.seq_len,
        eval_text=args.eval_data,
        eval_windows=args.windows,
        eval_before=False,
        heal_steps=args.heal_steps,
        heal_options={"balance": True} if args.heal_balance else None,
        sequential=not args.no_sequential,
        calib_batch_size=args.calib_batch_size,
        calib_holdout=args.calib_holdout,
        progress=False,
    )
    seconds = time.perf_counter() - t0
    return {
        **_row(run),
        "wall_s_with_load_and_eval": seconds,
        **({"options": sets} if sets else {}),
        **({"calib_batch_size": args.calib_batch_size} if args.calib_batch_size != 4 else {}),
        **({"heal_balance": True} if args.heal_balance else {}),
    }


def _options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` method options; values parsed as JSON where they can be (1 → int)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE (e.g. sweeps=1), got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _row(run) -> dict:
    rep = run.report
    topologies = sorted({m.topology for m in rep.modules.values()})
    return {
        "method": run.method,
        "ratio": run.config["ratio"],
        "allocation": run.config["allocation"],
        "topology": ",".join(topologies),
        "selected_ratio": rep.selected_ratio,
        "model_ratio": rep.model_ratio,
        "params": rep.model_params_after,
        "sequential": run.report.calibration.get("sequential") if run.report.calibration else None,
        "holdout": run.report.calibration.get("holdout") if run.report.calibration else None,
        "ppl": run.after.ppl,
        "healed_ppl": run.healed.ppl if run.healed is not None else None,
        "heal_s": run.heal_seconds,
        "protocol": run.after.protocol,
        "speed_vs_original": run.tokens_per_second_after / run.tokens_per_second_before,
        "compress_s": run.compress_seconds,
        "peak_rss_mib": run.peak_rss_mib,
        "rss_before_compress_mib": run.rss_before_compress_mib,
        "compress_peak_rss_mib": run.compress_peak_rss_mib,
        "model_mib": run.model_bytes_float32 / 2**20,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--ratios", default="0.2,0.4,0.6")
    p.add_argument("--allocations", default="uniform,spectrum")
    p.add_argument("--topology", default=None, help="TT methods: auto, strict or lowrank")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option, e.g. sweeps=1 (repeatable); the table names it beside the method",
    )
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--calib-batch-size", type=int, default=4, help="sequences per forward")
    p.add_argument(
        "--calib-holdout", type=int, default=None, help="sequences held out (default: by method)"
    )
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--heal-steps", type=int, default=0, help="healing steps after compression")
    p.add_argument(
        "--heal-balance",
        action="store_true",
        help="balance every low-rank layer's factors before healing",
    )
    p.add_argument("--log", default=None, help="append each row as JSON to this file")
    p.add_argument("--no-baseline", action="store_true", help="skip the uncompressed row")
    p.add_argument("--section", default="bench_compress", help="docs/RESULTS.md section")
    p.add_argument("--calib-data", default=None, help="calibration text (default raw WT-2 valid)")
    p.add_argument("--eval-data", default=None, help="scored text (default raw WT-2 test)")
    p.add_argument("--write", action="store_true")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", default="none", help=argparse.SUPPRESS)
    p.add_argument("--ratio", type=float, default=0.2, help=argparse.SUPPRESS)
    p.add_argument("--allocation", default="uniform", help=argparse.SUPPRESS)
    p.add_argument(
        "--no-sequential",
        action="store_true",
        help="calibrate every block on the uncompressed model's activations",
    )
    p.add_argument(
        "--from-log", default=None, help="build the table from rows logged by --log (no runs)"
    )
    args = p.parse_args()
    if args.one:
        print(json.dumps(_one(args)))
        return
    if args.from_log:
        _write_from_log(args)
        return
    rows = [{} if args.no_baseline else _child(args, "none", 0.0, "uniform")]
    for method in args.methods.split(","):
        for ratio in (float(r) for r in args.ratios.split(",")):
            for allocation in args.allocations.split(","):
                if method in ("basis-sharing", "ttns") and allocation != "uniform":
                    continue  # one rank per group: uniform allocation only
                rows.append(_child(args, method, ratio, allocation))
    body = _table(args, rows)
    print(body)
    if args.write:
        write_section(args.section, body)


def _write_from_log(args: argparse.Namespace) -> None:
    """The table of rows logged (each with the command options it ran under) by earlier
    invocations with ``--log``: the uncompressed row first, then the rest in logged order."""
    with open(args.from_log) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    base = next((r for r in rows if r.get("method") == "uncompressed"), {})
    body = _table(args, [base, *(r for r in rows if r is not base)])
    print(body)
    if args.write:
        write_section(args.section, body)


def _child(args: argparse.Namespace, method: str, ratio: float, allocation: str) -> dict:
    """Run one configuration in a fresh process; its JSON row (or the error it printed)."""
    cmd = [sys.executable, __file__, "--one", "--model", args.model, "--method", method]
    cmd += ["--ratio", str(ratio), "--allocation", allocation, "--seq-len", str(args.seq_len)]
    cmd += ["--windows", str(args.windows), "--calib-samples", str(args.calib_samples)]
    cmd += ["--heal-steps", str(args.heal_steps), "--calib-batch-size", str(args.calib_batch_size)]
    if args.no_sequential:
        cmd += ["--no-sequential"]
    if args.heal_balance:
        cmd += ["--heal-balance"]
    for flag, value in (("--calib-data", args.calib_data), ("--eval-data", args.eval_data)):
        if value:
            cmd += [flag, value]
    if args.topology:
        cmd += ["--topology", args.topology]
    for pair in args.set:
        cmd += ["--set", pair]
    if args.calib_holdout is not None:
        cmd += ["--calib-holdout", str(args.calib_holdout)]
    print(f"running {method} {ratio} {allocation}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["?"]
        return {"method": method, "ratio": ratio, "allocation": allocation, "error": tail[0]}
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {row}", file=sys.stderr, flush=True)
    if args.log:
        with open(args.log, "a") as f:
            f.write(json.dumps({**row, "heal_steps": args.heal_steps}) + "\n")
    return row


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def _healed(row: dict) -> str:
    """The healed perplexity and its steps, or a dash."""
    if row.get("healed_ppl") is None:
        return "—"
    return f"{row['healed_ppl']:,.2f} ({row.get('heal_steps') or '?'} steps)"


def row_label(r: dict) -> str:
    """A logged row's method with what sets it apart (statistics, held-out sequences, options)."""
    method = r["method"] + (
        " (statistics of the original model)" if r.get("sequential") is False else ""
    )
    if r.get("variant"):  # set in the log by hand, e.g. a row of an earlier version
        method += f" ({r['variant']})"
    if r.get("holdout"):
        method += f" ({r['holdout']} calibration sequences held out)"
    if r.get("calib_batch_size"):
        method += f" (calibration batch {r['calib_batch_size']})"
    if r.get("options"):
        method += " (" + ", ".join(f"{k}={v}" for k, v in r["options"].items()) + ")"
    if r.get("heal_balance"):
        method += " (factors balanced before healing)"
    return method


def _table(args: argparse.Namespace, rows: list[dict]) -> str:
    base = rows[0]
    steps = args.heal_steps or max([r.get("heal_steps") or 0 for r in rows[1:]], default=0)
    heal = (
        " Healing (rows with a number in its column, its steps beside it): steps of 4 × 256 "
        "tokens of the calibration text (AdamW, lr 5e-5, every parameter)."
        if steps
        else ""
    )
    cmd = " ".join(["benchmarks/bench_compress.py", *sys.argv[1:]])
    lines = [
        f"### Post-training compression of {args.model}: every method at equal parameter count",
        "",
        (
            "Rows: one `bench_compress.py ... --log FILE` run each (the commands are listed "
            "under the table), collected by `--from-log`.  "
            if args.from_log
            else f"Command: `python {cmd}`  "
        ),
        f"Machine: {machine()}  ",
        f"Model: {args.model}"
        + (f" ({base['params']:,} parameters, float32)" if base else "")
        + f". Perplexity: {base.get('protocol') or rows[-1].get('protocol', '?')}. "
        f"Calibration: {args.calib_samples} × {args.seq_len} tokens "
        f"of {args.calib_data or RAW_VALID}. Every "
        "nn.Linear of the decoder blocks is compressed; `removed` is the fraction of their "
        "weight parameters removed (and of the whole model's). Each row runs in its own "
        "process: compression time includes calibration; memory is the process's resident "
        "memory before compressing (after the model load) and its peak "
        "during the compression; process peak covers the whole run (load, evaluation and "
        "healing included); speed is forward tokens/s after / before in that process." + heal,
        "",
        (
            f"Uncompressed: perplexity {base['ppl']:.2f}, {base['tokens_per_s']:.0f} tokens/s, "
            f"peak memory {base['peak_rss_mib']:,.0f} MiB."
            if base
            else "Uncompressed: not run here (--no-baseline); the same protocol as above."
        ),
        "",
        "| method | allocation | topology | removed (linears / model) | perplexity | after "
        "healing | speed vs original | compression s | MiB: before → peak during compression | "
        "process peak MiB (float32 model) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows[1:]:
        if "error" in r:
            lines.append(
                f"| {r['method']} | {r['allocation']} | — | {r['ratio']:.0%} | failed: "
                f"{r['error']} | | | | | |"
            )
            continue
        method = row_label(r)
        lines.append(
            f"| {method} | {r['allocation']} | {r['topology']} | "
            f"{r['selected_ratio']:.1%} / {r['model_ratio']:.1%} | {_fmt(r['ppl'], ',.2f')} | "
            f"{_healed(r)} | {_fmt(r['speed_vs_original'], '.2f')} | "
            f"{r['compress_s']:.0f} | {r['rss_before_compress_mib']:,.0f} → "
            f"{_fmt(r['compress_peak_rss_mib'], ',.0f')} | "
            f"{r['peak_rss_mib']:,.0f} ({r['model_mib']:,.0f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
