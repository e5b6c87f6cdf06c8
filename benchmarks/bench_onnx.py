"""onnxruntime vs torch CPU latency of exported models, small preset, same process.

    python benchmarks/bench_onnx.py --write

Each model is exported with ``qtensorformer.export.export_onnx`` (checked against torch),
then the eval forward of torch and the onnxruntime session are timed interleaved on the same
random tokens, with the same thread count. Models: dense, TT only, every exportable pillar
(TT + quantum encoder + quantum-kernel attention on every token + DARUAN; routing and
adaptive ranks cannot be exported) and that model after KAN distillation; ``--models``
picks some of them (``dense,tt,all,kan``).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch
from _common import ensure_malloc_env, interleaved_medians_ms, machine, write_section

from qtensorformer import ModelConfig, QTensorFormer, distill_to_kan
from qtensorformer.export import export_onnx, onnx_session, run_onnx

#: key -> (row label, preset overrides); "kan" is the "all" model after KAN distillation.
SPECS = {
    "dense": ("dense", dict(use_tt_embedding=False, use_tt_attention=False, use_tt_ffn=False)),
    "tt": ("TT only", dict(use_quantum_encoder=False)),
    "all": (
        "TT + encoder + quantum attention + DARUAN",
        dict(use_quantum_attention=True, use_qkan=True),
    ),
}
LABELS = {**{k: label for k, (label, _) in SPECS.items()}, "kan": "same, KAN-distilled"}


def build(keys: list[str], vocab_size: int) -> dict[str, QTensorFormer]:
    """The models named by ``keys`` (see :data:`LABELS`), in eval mode, by row label."""
    models = {}
    for key in keys:
        _, kw = SPECS["all" if key == "kan" else key]
        cfg = ModelConfig.preset("small", vocab_size=vocab_size, max_seq_len=128, **kw)
        model = QTensorFormer(cfg).eval()
        if key == "kan":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = distill_to_kan(model).eval()
        models[LABELS[key]] = model
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocab-size", type=int, default=10000)
    ap.add_argument("--shapes", default="1x128,16x128", help="batch x seq_len, comma-separated")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--models", default=",".join(LABELS), help=f"some of {','.join(LABELS)}")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in LABELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {','.join(LABELS)}")
    alloc = ensure_malloc_env(not args.no_malloc_env)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    models = build(keys, args.vocab_size)
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for name, model in models.items():
        res = export_onnx(model, tmp / "m.onnx")
        sess = onnx_session(tmp / "m.onnx", threads=threads)
        params = sum(p.numel() for p in model.parameters())
        for b, n in shapes:
            ids = torch.randint(0, args.vocab_size, (b, n))

            def torch_fwd(ids=ids, model=model):
                with torch.no_grad():
                    model(ids)

            def ort_fwd(ids=ids, sess=sess):
                run_onnx(sess, ids)

            t = interleaved_medians_ms({"torch": torch_fwd, "ort": ort_fwd}, args.repeats)
            row = [
                name,
                f"{params:,}",
                f"{res['bytes'] / 1e6:.2f}",
                f"{b}×{n}",
                f"{t['torch']:.2f}",
                f"{t['ort']:.2f}",
                f"{t['torch'] / t['ort']:.2f}×",
                f"{res['max_abs_diff']:.1e}",
            ]
            rows.append(row)
            print(" | ".join(row), flush=True)
    lines = [
        "### ONNX export: onnxruntime vs torch on CPU, small preset (issue #6)",
        "",
        "Command: `python benchmarks/bench_onnx.py --write`  ",
        f"Machine: {machine()}; onnxruntime with {threads} intra-op threads  ",
        f"Allocator: {alloc}  ",
        f"Small preset, vocabulary {args.vocab_size:,}, untrained weights (timing does not depend "
        "on them), eval forward to logits; medians of "
        f"{args.repeats} interleaved runs after warm-up. The file keeps the TT cores unfolded "
        "(onnxruntime folds them when it loads the session). Max diff: largest |logit| "
        "difference onnxruntime vs torch on fresh tokens at two shapes.",
        "",
        "| model | params | file MB | batch×len | torch ms | onnxruntime ms | "
        "torch / ort | max diff |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
        *["| " + " | ".join(r) + " |" for r in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("bench_onnx", table)


if __name__ == "__main__":
    main()
