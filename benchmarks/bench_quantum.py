"""Forward+backward time of the feature circuit: this package's simulator vs PennyLane.

The circuit on both sides: RY angle encoding of a (b, q) batch, 2 ansatz layers ("real":
BasicEntanglerLayers(RY); "strong": StronglyEntanglingLayers), ⟨Z⟩ on every wire, and the von
Neumann entropy of the first ⌊q/2⌋ wires; loss = Σ⟨Z⟩ + ΣS, backward to inputs and weights.

Sides, timed in one process: ours (torch, float32); PennyLane default.qubit (torch interface,
backprop, parameter broadcasting, float32 inputs); lightning.qubit (adjoint) without the
entropy, which adjoint differentiation does not support (compared with ours without entropy).
Medians after warm-up. The FLOP floor is qtensorformer.quantum.circuit_flops / the measured
float32 GEMM rate of the machine.

Run:  python benchmarks/bench_quantum.py            (full grid, writes docs/RESULTS.md)
      python benchmarks/bench_quantum.py --quick    (q=4 only, no lightning, prints only)
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import ensure_malloc_env, gemm_gflops, machine, median_ms, results_path, write_section

from qtensorformer.quantum import (
    ansatz_weight_shape,
    circuit_flop_breakdown,
    circuit_flops,
    expval_z,
    run_circuit,
    von_neumann_entropy,
)
from qtensorformer.quantum.entropy import _batched_eigh, reduced_gram
from qtensorformer.quantum.pennylane_backend import make_qnode

N_LAYERS = 2


def ours_step(x, w, ansatz, entropy=True):
    def step():
        x.grad = w.grad = None
        psi = run_circuit(x, w, ansatz)
        loss = expval_z(psi).sum()
        if entropy:
            loss = loss + von_neumann_entropy(psi).sum()
        loss.backward()

    return step


def pl_step(x, w, q, ansatz, device, diff_method, entropy, chunk):
    """One forward+backward through a PennyLane QNode, the batch split into chunks of at most
    ``chunk`` samples (default.qubit holds full density matrices for the entropy: at q=8 one
    8192-sample call needed more than the 24 GiB of the dev VM)."""
    ent = "von_neumann" if entropy else None
    qnode = make_qnode(q, N_LAYERS, ansatz, "ry", False, "expval", ent, None, device, diff_method)

    def step():
        x.grad = w.grad = None
        for xc in x.split(chunk):
            out = qnode(xc, w)
            torch.stack(list(out), -1).sum().backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qubits", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--batches", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("--ansatz", nargs="+", default=["real", "strong"])
    ap.add_argument("--repeats", type=int, default=15, help="timed runs of ours")
    ap.add_argument("--pl-repeats", type=int, default=3, help="timed runs of PennyLane")
    ap.add_argument(
        "--pl-chunk", type=int, default=2048, help="largest batch per default.qubit call (memory)"
    )
    ap.add_argument("--lightning-repeats", type=int, default=1)
    ap.add_argument("--no-lightning", action="store_true")
    ap.add_argument("--quick", action="store_true", help="q=4, no lightning, no file output")
    ap.add_argument("--no-malloc-tuning", action="store_true")
    ap.add_argument("--write", action="store_true", help="write the table to docs/RESULTS.md")
    args = ap.parse_args()
    alloc = ensure_malloc_env(not args.no_malloc_tuning)
    if args.quick:
        args.qubits, args.no_lightning = [4], True
    torch.manual_seed(0)
    rate = gemm_gflops()
    print(f"float32 GEMM rate: {rate:.1f} GFLOP/s", flush=True)

    rows = []
    t_start = time.time()
    for ansatz in args.ansatz:
        for q in args.qubits:
            for b in args.batches:
                x = (torch.rand(b, q) * 2 - 1).mul(torch.pi).requires_grad_(True)
                w = (torch.rand(ansatz_weight_shape(ansatz, N_LAYERS, q)) * 6.28).requires_grad_(
                    True
                )
                ours = median_ms(ours_step(x, w, ansatz), args.repeats, warmup=3)
                ours_z = median_ms(ours_step(x, w, ansatz, False), args.repeats, warmup=3)
                # the one step no implementation of the exact entropy can skip: the batched
                # eigendecomposition (with vectors, for the gradient), run as the entropy runs it
                with torch.no_grad():
                    rho = reduced_gram(run_circuit(x, w, ansatz))
                eig = median_ms(lambda rho=rho: _batched_eigh(rho, True), args.repeats, warmup=3)
                chunk = min(b, args.pl_chunk)
                pl = median_ms(
                    pl_step(x, w, q, ansatz, "default.qubit", "backprop", True, chunk),
                    args.pl_repeats,
                )
                light = None
                if not args.no_lightning:
                    # lightning splits a batch into single circuits (time linear in b): warm
                    # it up on 16 samples, then time one full batch.
                    pl_step(x[:16], w, q, ansatz, "lightning.qubit", "adjoint", False, 16)()
                    light = median_ms(
                        pl_step(x, w, q, ansatz, "lightning.qubit", "adjoint", False, b),
                        args.lightning_repeats,
                        warmup=0,
                    )
                flops = circuit_flops(q, b, N_LAYERS, ansatz, backward=True)
                floor = flops / (rate * 1e9) * 1e3
                # lower bound of any exact-entropy step that diagonalises with LAPACK: the
                # measured eigendecomposition plus every other FLOP at the peak GEMM rate
                eig_flops = circuit_flop_breakdown(q, b, N_LAYERS, ansatz)["eigh"]
                bound = eig + (flops - eig_flops) / (rate * 1e9) * 1e3
                row = dict(
                    ansatz=ansatz,
                    q=q,
                    b=b,
                    ours=ours,
                    ours_z=ours_z,
                    eig=eig,
                    pl=pl,
                    light=light,
                    floor=floor,
                    bound=bound,
                )
                rows.append(row)
                print(
                    f"{ansatz:6s} q={q} b={b:5d}  ours {ours:8.2f} ms  (Z only {ours_z:7.2f})  "
                    f"default.qubit {pl:9.1f} ms  x{pl / ours:6.1f}  "
                    + (f"lightning(Z) {light:9.1f} ms x{light / ours_z:6.1f}  " if light else "")
                    + f"floor {floor:6.2f} ms  ours/floor {ours / floor:5.1f}  "
                    f"eigh {eig:7.2f} ms, bound {bound:7.2f} ms vs 50x budget {pl / 50:7.2f} ms",
                    flush=True,
                )

    head = (
        "| ansatz | q | batch | ours (ms) | default.qubit (ms) | speed-up | ours, ⟨Z⟩ only (ms) "
        "| lightning adjoint, ⟨Z⟩ only (ms) | speed-up | FLOP floor (ms) | ours / floor "
        "| 50× budget: default.qubit / 50 (ms) | eigendecomposition alone (ms) "
        "| lower bound: eigendecomposition + the rest at the floor (ms) | 50× reachable? |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
    )
    lines = [head]
    for r in rows:
        lt = f"{r['light']:.1f}" if r["light"] else "—"
        ls = f"{r['light'] / r['ours_z']:.0f}×" if r["light"] else "—"
        lines.append(
            f"| {r['ansatz']} | {r['q']} | {r['b']} | {r['ours']:.2f} | {r['pl']:.1f} | "
            f"{r['pl'] / r['ours']:.1f}× | {r['ours_z']:.2f} | {lt} | {ls} | "
            f"{r['floor']:.2f} | {r['ours'] / r['floor']:.1f}× | {r['pl'] / 50:.2f} | "
            f"{r['eig']:.2f} | {r['bound']:.2f} | "
            f"{'no' if r['bound'] > r['pl'] / 50 else 'yes'} |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"total {time.time() - t_start:.0f} s")
    if args.write and not args.quick:
        body = (
            "### Quantum circuit simulation: forward + backward vs PennyLane\n\n"
            "Command: `python benchmarks/bench_quantum.py --write`  \n"
            f"Machine: {machine()}  \n"
            f"Allocator: {alloc}  \n"
            f"Float32 GEMM rate (best of 10, 2048³): {rate:.1f} GFLOP/s. "
            f"Medians: ours over {args.repeats} "
            f"runs after 3 warm-ups, default.qubit over {args.pl_repeats} after 1 (batches "
            f"split into calls of at most {args.pl_chunk} samples: one call of 8192 at q=8 "
            f"ran out of the machine's 24 GiB), lightning.qubit {args.lightning_repeats} run "
            "after a 16-sample warm-up.  \n"
            "Circuit: RY encoding, 2 ansatz layers, ⟨Z⟩ on all wires, von Neumann entropy of the "
            "first ⌊q/2⌋ wires; loss = Σ⟨Z⟩ + ΣS; gradients w.r.t. inputs and weights; float32 "
            "inputs. lightning.qubit's adjoint method cannot differentiate the entropy, so it "
            'runs ⟨Z⟩ only and is compared with ours ⟨Z⟩ only. "Eigendecomposition alone" '
            "times only the batched `eigh` (with eigenvectors, as the entropy's gradient needs) "
            "of the step's reduced density matrices, split over threads as the entropy runs it. "
            '"Lower bound" adds every other FLOP of the step (`circuit_flops` less the '
            "eigendecomposition's) at the peak GEMM rate: no implementation that computes the "
            "exact entropy with LAPACK's `eigh` can be faster on this machine, so where the "
            'bound exceeds the 50× budget ("50× reachable?" = no) that target is out of '
            "reach.\n\n" + table
        )
        write_section("bench_quantum", body)
        print(f"wrote {results_path()}")


if __name__ == "__main__":
    main()
