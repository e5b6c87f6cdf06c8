"""ONNX export: onnxruntime logits against torch, KAN-distilled models, clear refusals."""

from __future__ import annotations

import warnings

import pytest
import torch
from typer.testing import CliRunner

from qtensorformer import ModelConfig, QTensorFormer, distill_to_kan
from qtensorformer.cli import app
from qtensorformer.export import ExportError, check_exportable, export_onnx, onnx_session, run_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BASE = dict(vocab_size=120, d_model=32, n_heads=2, n_layers=2, tt_rank=4, max_seq_len=48)


def _compare(model, path, shapes=((1, 48), (3, 7))):
    sess = onnx_session(path)
    model.eval()
    worst = 0.0
    for shape in shapes:  # fresh tokens, shapes other than the traced one
        ids = torch.randint(0, model.config.vocab_size, shape)
        with torch.no_grad():
            ref = model(ids)[0]
        got = torch.from_numpy(run_onnx(sess, ids))
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
        worst = max(worst, float((got - ref).abs().max()))
    return worst


def test_cli_exports_every_exportable_pillar(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(**BASE, use_quantum_attention=True, use_qkan=True)  # + TT, encoder
    model = QTensorFormer(cfg)
    model.save_pretrained(tmp_path / "m")
    out = tmp_path / "out" / "m.onnx"
    r = CliRunner().invoke(app, ["export", str(tmp_path / "m"), "--onnx", str(out)])
    assert r.exit_code == 0, r.output
    assert "largest logit difference" in r.output
    assert out.is_file() and not list(out.parent.glob(".*.tmp"))
    _compare(QTensorFormer.from_pretrained(tmp_path / "m"), out)
    # the file keeps the TT cores, not the dense weights: its stored tensors hold about as many
    # numbers as the model's parameters, far fewer than the dense model's
    import numpy as np
    import onnx

    from qtensorformer import count_parameters

    stored = sum(int(np.prod(t.dims)) for t in onnx.load(out).graph.initializer)
    params = sum(p.numel() for p in model.parameters())
    assert params <= stored < 1.2 * params
    assert stored < 0.5 * count_parameters(ModelConfig.dense(**BASE))["total"]


@pytest.mark.parametrize("kind", ["dense", "kan"])
def test_export_api_dense_and_kan_distilled(tmp_path, kind):
    torch.manual_seed(1)
    if kind == "dense":
        model = QTensorFormer(ModelConfig.dense(**BASE))
    else:
        model = QTensorFormer(ModelConfig(**BASE, use_quantum_encoder=False, use_qkan=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = distill_to_kan(model)
        assert model.config.use_qkan is False or hasattr(model, "kan_report")
    model.train()  # export leaves the mode as it found it
    res = export_onnx(model, tmp_path / f"{kind}.onnx", seq_len=16)
    assert model.training
    assert res["max_abs_diff"] < 1e-4 and res["bytes"] > 0
    _compare(model, tmp_path / f"{kind}.onnx")


@pytest.mark.parametrize(
    "kw, piece",
    [
        (dict(ansatz="strong"), "ansatz='strong'"),
        (dict(use_quantum_attention=True, use_selective_routing=True), "use_selective_routing"),
        (dict(use_adaptive_rank=True), "use_adaptive_rank"),
    ],
)
def test_unsupported_pieces_are_named(tmp_path, kw, piece):
    model = QTensorFormer(ModelConfig(**{**BASE, **kw}))
    with pytest.raises(ExportError, match=piece):
        check_exportable(model)
    with pytest.raises(ExportError, match=piece):
        export_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    model.save_pretrained(tmp_path / "m")
    r = CliRunner().invoke(app, ["export", str(tmp_path / "m"), "--onnx", str(tmp_path / "y.onnx")])
    assert r.exit_code == 2 and piece in " ".join(r.output.split())
