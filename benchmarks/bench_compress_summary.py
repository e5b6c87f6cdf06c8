"""The compression tables in one view: for each model and ratio, the best method before and
after healing, beside SVD-LLM (uniform) and the best strictly tensorized train, read from the
row logs that ``bench_compress.py --log`` wrote (no compression runs here).

    python benchmarks/bench_compress_summary.py --write

Rows of earlier code versions (marked ``variant`` in the logs) are left out; every other row
counts, whatever its allocation or options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import write_section
from bench_compress import row_label

LOGS = Path(__file__).resolve().parent / "logs"
MODELS = {
    "SmolLM2-135M (raw WikiText-2 test, 16 × 1024 tokens)": LOGS / "compress_smollm2.jsonl",
    "runs/wt2-small-dense-1ep (WikiText-2 test, 64 × 128 tokens)": LOGS / "compress_small.jsonl",
}
RATIOS = (0.2, 0.4, 0.6)


def read_rows(path: Path) -> tuple[dict, list[dict]]:
    """The uncompressed row and the current-code compressed rows of a log."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    base = next(r for r in rows if r.get("method") == "uncompressed")
    done = [r for r in rows if r is not base and "error" not in r and not r.get("variant")]
    return base, done


def is_strict_tt(r: dict) -> bool:
    """Every matrix a TT whose cores all carry input and output modes (no low-rank matrix)."""
    return r["method"].startswith("tt") and r["method"] != "ttns" and "lowrank" not in r["topology"]


def is_reference(r: dict) -> bool:
    """SVD-LLM, uniform allocation, block-by-block calibration, default options."""
    return (
        r["method"] == "svd-llm"
        and r["allocation"] == "uniform"
        and r.get("sequential", True)
        and not r.get("options")
        and not r.get("calib_batch_size")
    )


def best(rows: list[dict], key: str) -> dict | None:
    have = [r for r in rows if r.get(key) is not None]
    return min(have, key=lambda r: r[key]) if have else None


def cell(r: dict | None, key: str = "ppl", base: float | None = None) -> str:
    if r is None:
        return "—"
    label = f"{row_label(r)}, {r['allocation']}"
    times = f", {r[key] / base:.2f}×" if base else ""
    steps = f", {r['heal_steps']} steps" if key == "healed_ppl" else ""
    return f"{r[key]:,.2f} ({label}{steps}{times})"


def model_rows(name: str, path: Path) -> list[str]:
    base, rows = read_rows(path)
    out = []
    for ratio in RATIOS:
        at = [r for r in rows if abs(r["ratio"] - ratio) < 1e-9]
        ref = best([r for r in at if is_reference(r)], "ppl")
        out.append(
            f"| {name} | {ratio:.0%} | {base['ppl']:,.2f} | {cell(best(at, 'ppl'))} | "
            f"{cell(ref)} | {cell(best([r for r in at if is_strict_tt(r)], 'ppl'))} | "
            f"{cell(best(at, 'healed_ppl'), 'healed_ppl', base['ppl'])} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    lines = [
        "### Compression summary: the best method at each ratio (issue #17)",
        "",
        "Command: `python benchmarks/bench_compress_summary.py --write` (reads "
        "`benchmarks/logs/compress_*.jsonl`; the full tables and their commands follow). "
        "Perplexity of each model under its own protocol; `removed` is the share of the "
        "compressed linears' parameters. Best after healing: with the uncompressed perplexity's "
        "multiple beside it.",
        "",
        "| model | removed | uncompressed | best (method, allocation) | svd-llm, uniform | "
        "best strict TT (every core carries input and output modes) | best after healing |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for name, path in MODELS.items():
        if path.is_file():
            lines += model_rows(name, path)
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("bench_compress_summary", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
