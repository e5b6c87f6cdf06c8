"""``qtf export``: a saved model as ONNX, checked in onnxruntime against torch."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from ._common import CheckpointArg, console, resolve_checkpoint, user_errors


def export_summary(res: dict[str, Any], params: int, atol: float) -> list[str]:
    """What was written, and how far onnxruntime's logits are from torch's when verified."""
    lines = [
        f"wrote {res['path']} ({res['bytes'] / 1e6:.2f} MB; {params:,} parameters"
        f", {params * 4 / 1e6:.2f} MB in float32)"
    ]
    if res["max_abs_diff"] is not None:
        lines.append(
            f"onnxruntime vs torch: largest logit difference {res['max_abs_diff']:.2e} "
            f"(atol {atol:g}, two input shapes)"
        )
    return lines


def export_cmd(
    checkpoint: CheckpointArg,
    onnx: Annotated[str, typer.Option("--onnx", help="Output .onnx file.")],
    verify: Annotated[
        bool, typer.Option(help="Run the file in onnxruntime and compare logits with torch.")
    ] = True,
    atol: Annotated[float, typer.Option(help="Largest allowed logit difference.")] = 1e-4,
) -> None:
    """Export a model to ONNX (input_ids → logits, dynamic batch and length), checked in
    onnxruntime against torch."""
    from ..export import ExportError, export_onnx
    from ..model import QTensorFormer

    ckpt = resolve_checkpoint(checkpoint)
    with user_errors(ExportError, ImportError, RuntimeError):
        model = QTensorFormer.from_pretrained(ckpt)
        res = export_onnx(model, onnx, verify=verify, atol=atol)
    params = sum(p.numel() for p in model.parameters())
    for line in export_summary(res, params, atol):
        console.print(escape(line))
