"""ONNX export of a QTensorFormer (logits only), checked in onnxruntime.

What exports: dense and TT layers (the graph keeps the TT cores and builds each weight from
them, unfolded, so the file is as small as the model; onnxruntime folds them when it loads
the file), the quantum feature encoder and the all-token
quantum-kernel attention with the ``"real"`` ansatz (real-arithmetic state vectors: GEMMs,
gathers and element-wise trigonometry), DARUAN activations and KAN-distilled B-splines.

What does not, and why (:class:`ExportError` names the piece):

- ``ansatz="strong"``: complex amplitudes; ONNX has no complex tensors in its operator set.
- ``use_selective_routing``: which tokens take which path, and therefore the shapes of the
  gathered sets, depend on the data; an ONNX graph has one fixed structure.
- ``use_adaptive_rank``: the same for the per-token rank groups.

Example:
    >>> import tempfile, torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> m = QTensorFormer(ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1))
    >>> check_exportable(m)  # raises ExportError when a piece cannot be exported
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ExportError", "check_exportable", "export_onnx", "onnx_session", "run_onnx"]


class ExportError(ValueError):
    """The model holds a piece that cannot be exported; the message names it and the fix."""


def _need(module: str, extra: str = "onnx"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs {module}: pip install 'qtensorformer[{extra}]' "
            "(onnx, onnxruntime, onnxscript)"
        ) from e


def check_exportable(model: nn.Module) -> None:
    """Raise :class:`ExportError` naming every piece of ``model`` that cannot go to ONNX."""
    c = model.config
    problems = []
    quantum = c.use_quantum_encoder or c.use_quantum_attention
    if quantum and c.ansatz != "real":
        problems.append(
            f"ansatz={c.ansatz!r}: its complex amplitudes have no ONNX type; train with "
            "ansatz='real'"
        )
    if c.use_selective_routing:
        problems.append(
            "use_selective_routing: the routed token sets (and their shapes) depend on the data; "
            "export a model trained without routing, or with use_quantum_attention alone"
        )
    if c.use_adaptive_rank:
        problems.append(
            "use_adaptive_rank: per-token rank groups depend on the data; export a model with "
            "fixed TT ranks"
        )
    if problems:
        raise ExportError("cannot export to ONNX: " + "; ".join(problems))


class _Logits(nn.Module):
    """input_ids (b, n) → logits (b, n, V): the model without loss and statistics."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    seq_len: int = 32,
    batch_size: int = 2,
    verify: bool = True,
    atol: float = 1e-4,
    opset: int | None = None,
) -> dict[str, Any]:
    """Write ``model`` as an ONNX graph ``input_ids (batch, seq) int64 → logits`` with dynamic
    batch and sequence length (up to ``max_seq_len``), atomically.

    ``seq_len``/``batch_size`` only shape the example used for tracing. With ``verify``, the
    file is run in onnxruntime on fresh random tokens at two shapes and compared with torch;
    a difference above ``atol`` raises. Returns ``{"path", "bytes", "max_abs_diff"}``.
    """
    check_exportable(model)
    onnx = _need("onnx")
    _need("onnxscript")
    path = Path(path)
    c = model.config
    n = min(seq_len, c.max_seq_len)
    if n < 2:
        raise ValueError(f"seq_len must be >= 2 for tracing, got {seq_len}")
    was = model.training
    model.eval()
    wrapper = _Logits(model).eval()
    ids = torch.randint(0, c.vocab_size, (batch_size, n))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", min=2, max=c.max_seq_len)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        kwargs: dict[str, Any] = {}
        if opset is not None:
            kwargs["opset_version"] = opset
        with torch.no_grad():
            prog = torch.onnx.export(
                wrapper,
                (ids,),
                dynamo=True,
                input_names=["input_ids"],
                output_names=["logits"],
                dynamic_shapes=(dims,),
                verbose=False,
                optimize=False,  # no constant folding: W stays factorised in the file
                **kwargs,
            )
        proto = prog.model_proto
        for node in proto.graph.node:  # per-node stack traces: most of the file otherwise
            del node.metadata_props[:]
            node.doc_string = ""
        onnx.save(proto, tmp)
        os.replace(tmp, path)
        out: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
        out["max_abs_diff"] = _verify(wrapper, path, n, batch_size) if verify else None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        model.train(was)
    if verify:
        diff = out["max_abs_diff"]
        if diff > atol:
            raise RuntimeError(
                f"ONNX logits differ from torch by {diff:.3g} > atol={atol:g}; the file was "
                f"written to {path} for inspection"
            )
    return out


@torch.no_grad()
def _verify(wrapper: nn.Module, path: Path, n: int, batch_size: int) -> float:
    """Largest |ONNX − torch| logit difference on fresh random tokens at two shapes."""
    sess = onnx_session(path)
    V = wrapper.model.config.vocab_size
    diff = 0.0
    for shape in ((1, n), (batch_size + 1, max(2, n // 2))):
        x = torch.randint(0, V, shape)
        got = torch.from_numpy(run_onnx(sess, x))
        diff = max(diff, float((got - wrapper(x)).abs().max()))
    return diff


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime ``InferenceSession`` on CPU for the file at ``path``."""
    ort = _need("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only (it warns about nodes it cannot pre-compute)
    if threads is not None:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, input_ids: torch.Tensor):
    """Logits (numpy) of ``input_ids`` (b, n) from an onnxruntime session."""
    return session.run(["logits"], {"input_ids": input_ids.to(torch.int64).numpy()})[0]
