"""Healing a compressed model by the trainer: it lowers the held-out loss, resumes exactly
after an interruption, stores tied weights once, and refuses bad settings clearly."""

from __future__ import annotations

import copy

import pytest
import torch

from qtensorformer.compress import (
    HealConfig,
    SVDConfig,
    TrainableLM,
    compress_,
    heal,
    load_compressed_model,
)
from qtensorformer.compress.heal import _split
from qtensorformer.files import read_json
from qtensorformer.io import load_state, save_model
from qtensorformer.train import Trainer

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

import tiny_hf  # noqa: E402

VOCAB = 60


def _stream(n: int) -> torch.Tensor:
    """A learnable token stream: a random 23-token phrase repeated, with fresh noise tokens."""
    phrase = torch.randint(0, VOCAB, (23,))
    ids = phrase.repeat(n // 23 + 1)[:n].clone()
    noise = torch.rand(n) < 0.05
    ids[noise] = torch.randint(0, VOCAB, (int(noise.sum()),))
    return ids


def _compressed(tied: bool = True):
    torch.manual_seed(0)
    model = tiny_hf.llama(VOCAB, tie_word_embeddings=tied)
    report = compress_(model, SVDConfig(ratio=0.5))
    return model, report


def _cfg(**kw) -> HealConfig:
    return HealConfig(
        **{"steps": 8, "seq_len": 16, "batch_size": 2, "lr": 3e-3, **kw}, progress=False
    )


def test_tied_weights_are_stored_once_and_load_back_tied(tmp_path):
    model, _ = _compressed(tied=True)
    wrapped = TrainableLM(model)
    save_model(wrapped, tmp_path)
    state = load_state(tmp_path / "model.safetensors")
    emb, head = state["lm.model.embed_tokens.weight"], state["lm.lm_head.weight"]
    assert emb.data_ptr() == head.data_ptr()
    other = TrainableLM(copy.deepcopy(model))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    other.load_state_dict(state)  # strict: every key present
    ids = torch.randint(0, VOCAB, (2, 12))
    torch.testing.assert_close(other(ids).logits, wrapped(ids).logits, rtol=0, atol=0)


def test_trainable_lm_loss_is_next_token_cross_entropy():
    model, _ = _compressed()
    ids = torch.randint(0, VOCAB, (2, 10))
    out = TrainableLM(model)(ids, labels=ids)
    logits = model(input_ids=ids).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].flatten())
    torch.testing.assert_close(out.loss, ref)
    assert torch.equal(out.stats.lm_loss, out.loss.detach()) and out.stats.total_flops > 0


def test_heal_lowers_the_held_out_loss_and_keeps_the_compressed_layers(tmp_path):
    model, report = _compressed()
    types_before = {n: type(m).__name__ for n, m in model.named_modules()}
    res = heal(model, _stream(3000), _cfg(steps=12), tmp_path, report=report)
    assert res.status == "completed" and res.steps == 12
    assert res.valid_loss_after < res.valid_loss_before - 0.1
    assert {n: type(m).__name__ for n, m in model.named_modules()} == types_before
    assert read_json(tmp_path / "heal.json")["valid_loss_before"] == pytest.approx(
        res.valid_loss_before
    )
    # the trainer's best/ copy is a compressed-model folder that loads back
    back = load_compressed_model(tmp_path / "best").model
    ids = torch.randint(0, VOCAB, (1, 9))
    torch.testing.assert_close(back(input_ids=ids).logits, model(input_ids=ids).logits)


def test_interrupted_heal_resumes_exactly(tmp_path, monkeypatch):
    model0, report = _compressed()
    ids = _stream(3000)
    straight = copy.deepcopy(model0)
    ref = heal(straight, ids, _cfg(), tmp_path / "a", report=report)

    step = Trainer._train_step
    calls = {"n": 0}

    def dies_at_step_6(self, run, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return step(self, run, batch)

    monkeypatch.setattr(Trainer, "_train_step", dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        heal(copy.deepcopy(model0), ids, _cfg(), tmp_path / "b", report=report)
    monkeypatch.setattr(Trainer, "_train_step", step)
    resumed = copy.deepcopy(model0)
    res = heal(resumed, ids, _cfg(), tmp_path / "b", report=report, resume=True)
    assert res.steps == ref.steps == 8
    assert res.valid_loss_before == ref.valid_loss_before
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"valid_fraction": 1.0}, r"valid_fraction must lie in \(0, 1\)"),
        ({"seq_len": 1}, "seq_len must be an int >= 2"),
        ({"seq_len": 16, "valid_max_tokens": 16}, "valid_max_tokens must be an int >= 17"),
    ],
)
def test_bad_heal_config_is_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        HealConfig(**fields)


def test_too_little_text_names_the_fix(tmp_path):
    model, report = _compressed()
    with pytest.raises(ValueError, match=r"healing needs at least .* give more calibration text"):
        heal(model, torch.randint(0, VOCAB, (40,)), _cfg(), tmp_path, report=report)


@pytest.mark.parametrize(
    ("n", "cap", "held"),
    [(10_000, None, 1_000), (10_000, 300, 300), (10_000, 17, 17), (200, 100, 20), (100, None, 17)],
)
def test_held_out_tail_is_the_fraction_capped_at_valid_max_tokens(n, cap, held):
    """The held-out tail: valid_fraction of the stream, at most valid_max_tokens, at least one
    window plus one token; the training head is the rest, in order."""
    cfg = _cfg(valid_max_tokens=cap)
    ids = torch.randint(0, VOCAB, (n,))
    head, tail = _split(ids, cfg)
    want = max(cfg.seq_len + 1, held)
    assert tail.numel() == want and head.numel() == n - want
    torch.testing.assert_close(torch.cat([head, tail]), ids, rtol=0, atol=0)


def test_balance_keeps_every_weight_and_equalises_each_rank_component():
    """float64: A·B unchanged to rounding, ‖A[:, i]‖ = ‖B[i, :]‖ for every i, a zero
    component left alone."""
    from qtensorformer.tensor import LowRankLinear

    A = torch.randn(24, 5, dtype=torch.float64) * torch.logspace(-3, 3, 5, dtype=torch.float64)
    B = torch.randn(5, 16, dtype=torch.float64) / 50
    A[:, 2] = 0.0
    layer = LowRankLinear.from_factors(A, B, torch.randn(24, dtype=torch.float64))
    W, bias = layer.to_dense().clone(), layer.bias.clone()
    layer.balance_()
    torch.testing.assert_close(layer.to_dense(), W, rtol=1e-13, atol=1e-15)
    assert torch.equal(layer.bias, bias)
    a, b = layer.up.weight.norm(dim=0), layer.down.weight.norm(dim=1)
    keep = torch.arange(5) != 2
    torch.testing.assert_close(a[keep], b[keep], rtol=1e-12, atol=0)
    assert a[2] == 0 and torch.equal(layer.down.weight[2], B[2])


def test_heal_with_balance_starts_from_the_same_model(tmp_path):
    """balance=True changes the factors, not the function: the held-out loss before healing
    is the same as without it, and healing still lowers it."""
    ids = _stream(3000)
    losses = {}
    for balance in (False, True):
        model, report = _compressed()
        res = heal(model, ids, _cfg(balance=balance), tmp_path / str(balance), report=report)
        losses[balance] = res
    assert losses[True].valid_loss_before == pytest.approx(
        losses[False].valid_loss_before, rel=1e-5
    )
    assert losses[True].valid_loss_after < losses[True].valid_loss_before
