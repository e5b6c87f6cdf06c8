"""save_pretrained / from_pretrained: round trip, atomic files, refusal of foreign or corrupt
checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from qtensorformer import ModelConfig, QTensorFormer
from qtensorformer.io import CheckpointError

ALL_ON = dict(
    use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True, use_qkan=True
)


def _model(**kw):
    base = dict(vocab_size=90, d_model=32, n_layers=2, n_heads=2, max_seq_len=16, tt_rank=5)
    cfg = ModelConfig(**{**base, **kw})
    return QTensorFormer(cfg)


@pytest.mark.parametrize("kw", [{}, ALL_ON, {"use_tt_embedding": False, "ansatz": "strong"}])
def test_round_trip(tmp_path, kw):
    model = _model(**kw).train()
    ids = torch.randint(0, 90, (2, 12))
    model(ids, labels=ids)  # first training batch initialises router thresholds
    model.eval()
    path = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    back = QTensorFormer.from_pretrained(path).eval()
    assert back.config == model.config
    torch.testing.assert_close(back(ids)[0], model(ids)[0], rtol=0, atol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_refuses_foreign_and_corrupt(tmp_path):
    model = _model()
    path = model.save_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no model directory"):
        QTensorFormer.from_pretrained(tmp_path / "nowhere")
    # a Hugging Face-style config
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
    with pytest.raises(CheckpointError, match="Hugging Face"):
        QTensorFormer.from_pretrained(hf)
    # corrupt JSON
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        QTensorFormer.from_pretrained(bad)
    # truncated weights
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        QTensorFormer.from_pretrained(path)


def test_refuses_weights_of_another_config(tmp_path):
    a = _model().save_pretrained(tmp_path / "a")
    b = _model(use_qkan=True).save_pretrained(tmp_path / "b")
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match its config"):
        QTensorFormer.from_pretrained(a)
    c = _model(tt_rank=3).save_pretrained(tmp_path / "c")
    (a / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="shapes do not match"):
        QTensorFormer.from_pretrained(a)


def test_refuses_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = _model().save_pretrained(tmp_path / "m")
    save_file({"w": torch.randn(3)}, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not a qtensorformer one"):
        QTensorFormer.from_pretrained(path)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model = _model()
    path = model.save_pretrained(tmp_path / "m")
    before = (path / "model.safetensors").read_bytes()
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(path)
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_loads_files_written_before_the_router_target_was_a_buffer(tmp_path):
    from safetensors.torch import load_file, save_file

    from qtensorformer.io import FORMAT, FORMAT_VERSION

    cfg = ModelConfig(
        vocab_size=40,
        d_model=16,
        n_heads=2,
        n_layers=2,
        tt_rank=4,
        use_quantum_attention=True,
        use_selective_routing=True,
        route_fraction=0.3,
    )
    model = QTensorFormer(cfg)
    model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    state = {k: v for k, v in load_file(path).items() if not k.endswith("target_fraction")}
    assert len(state) < len(model.state_dict())
    save_file(state, path, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    back = QTensorFormer.from_pretrained(tmp_path)
    assert all(b.attn.router.route_fraction == pytest.approx(0.3) for b in back.blocks)
    ids = torch.randint(0, 40, (2, 12))
    model.eval(), back.eval()
    torch.testing.assert_close(back(ids)[0], model(ids)[0])


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    import os

    from qtensorformer.files import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.txt", lambda p: p.write_text("x"))
        plain = tmp_path / "b.txt"
        plain.write_text("x")
        assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
