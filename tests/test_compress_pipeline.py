"""One compression run end to end (library and ``qtf compress``): load, calibrate, compress,
measure, save; the saved folder loads back as the same model."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from qtensorformer.cli import app
from qtensorformer.compress import compress_model, load_causal_lm, raw_text_perplexity

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import tiny_hf  # noqa: E402

WORDS = "the a of tensor train quantum circuit model layer rank token loss window".split()


def _text(n_words: int) -> str:
    idx = torch.randint(0, len(WORDS), (n_words,)).tolist()
    return "\n".join(" ".join(WORDS[i] for i in idx[j : j + 9]) for j in range(0, n_words, 9))


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    """A tiny GQA Llama with a byte-level BPE tokenizer, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama")
    tiny_hf.llama(len(hf_tok)).save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return folder


@pytest.fixture()
def texts(tmp_path):
    calib, test = tmp_path / "calib.txt", tmp_path / "test.txt"
    calib.write_text(_text(400))
    test.write_text(_text(400))
    return calib, test


def test_compress_model_saves_a_folder_that_loads_back_identically(llama_folder, texts, tmp_path):
    calib, test = texts
    out = tmp_path / "out"
    run = compress_model(
        llama_folder,
        "svd-llm",
        ratio=0.4,
        calib_data=calib,
        calib_samples=4,
        seq_len=16,
        eval_text=test,
        eval_windows=3,
        measure_speed=False,
        out=out,
        progress=False,
    )
    rep = run.report
    assert run.kind == "hf" and run.before is not None and run.after is not None
    assert 0.35 < rep.selected_ratio < 0.45 and rep.model_params_after < rep.model_params_before
    assert "4 × 16 tokens" in run.calibration
    loaded = load_causal_lm(out)
    assert loaded.kind == "compressed" and loaded.tokenizer is not None
    assert sum(p.numel() for p in loaded.model.parameters()) == rep.model_params_after
    again = raw_text_perplexity(loaded.model, loaded.tokenizer, test, seq_len=16, windows=3)
    assert again.ppl == pytest.approx(run.after.ppl, rel=1e-6)
    saved = json.loads((out / "compress_run.json").read_text())
    assert saved["method"] == "svd-llm" and saved["after"]["ppl"] == pytest.approx(run.after.ppl)


def test_cli_compress_prints_the_cost_and_saves(llama_folder, texts, tmp_path):
    _, test = texts
    out = tmp_path / "cli"
    args = ["compress", str(llama_folder), "--method", "svd", "--ratio", "0.5"]
    args += ["--seq-len", "16", "--eval-data", str(test), "--eval-windows", "2"]
    r = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "removed" in r.output and "perplexity" in r.output
    assert (out / "compressed.json").is_file()
    bad = CliRunner().invoke(app, ["compress", str(llama_folder), "--ratio", "1.5"])
    assert bad.exit_code == 2 and "ratio must lie in (0, 1)" in bad.output
    missing = CliRunner().invoke(app, ["compress", str(tmp_path / "no[thing]")])
    assert missing.exit_code == 2 and "no model at" in missing.output
    assert "no[thing]" in missing.output  # brackets are text, not rich markup
