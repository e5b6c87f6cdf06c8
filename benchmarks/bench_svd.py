"""Thin SVD of a wide matrix: LAPACK on M vs on Mᵀ (what ``compress.linalg.thin_svd`` does).

Every low-rank method factors W·P (out × in, float64); for SmolLM2-135M's ``down_proj``
(576 × 1536) that matrix is wider than tall. The same factors come from the SVD of its
transpose, which LAPACK computes faster here. Shapes: SmolLM2-135M's four matrix shapes
(``q_proj``/``o_proj`` 576 × 576 for reference, ``k_proj``/``v_proj`` 192 × 576,
``down_proj`` 576 × 1536) and the wide 192 × 1536. Medians of interleaved runs after warm-up,
random float64 matrices (the time does not depend on their values).

    python benchmarks/bench_svd.py --write
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved_medians_ms, machine, write_section

from qtensorformer.compress.linalg import thin_svd

SHAPES = ((576, 576), (192, 576), (576, 1536), (192, 1536))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for n, m in SHAPES:
        M = torch.randn(n, m, dtype=torch.float64)
        fns = {
            "svd": lambda M=M: torch.linalg.svd(M, full_matrices=False),
            "thin": lambda M=M: thin_svd(M),
        }
        t = interleaved_medians_ms(fns, args.repeats)
        rows.append(
            f"| {n} × {m} | {t['svd']:.1f} | {t['thin']:.1f} | {t['svd'] / t['thin']:.2f}× |"
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            "### SVD of wide matrices: LAPACK on M vs on Mᵀ (float64)",
            "",
            "Command: `python benchmarks/bench_svd.py --write`  ",
            f"Machine: {machine()}  ",
            f"Medians of {args.repeats} interleaved runs after warm-up. `thin_svd` transposes "
            "a matrix wider than tall and returns the same factors (tested against "
            "`torch.linalg.svd`); square and tall matrices go straight to LAPACK.",
            "",
            "| W·P (out × in) | torch.linalg.svd ms | thin_svd ms | speed-up |",
            "|---|---:|---:|---:|",
            *rows,
        ]
    )
    print(body)
    if args.write:
        write_section("bench_svd", body, before="bench_compress")


if __name__ == "__main__":
    main()
