"""The qtf command line."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from qtensorformer import __version__
from qtensorformer.cli import app
from qtensorformer.energy import PROFILES

runner = CliRunner()


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "demo" in r.output


def test_demo_runs_and_writes_runs(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(
        app, ["demo", "--max-tokens", "3000", "--variants", "dense,tt", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "dense baseline" in r.output and "TT compression only" in r.output
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [x["variant"] for x in rows] == ["dense", "tt"]
    assert all(math.isfinite(x["test_ppl"]) for x in rows)
    assert rows[1]["params"] < rows[0]["params"]
    assert (out / "dense" / "summary.json").is_file()


def test_train_eval_generate_resume(tmp_path):
    run = tmp_path / "run"
    common = [
        "--data",
        "synthetic",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--eval-every",
        "3",
        "--eval-max-tokens",
        "500",
        "--set",
        "d_model=32",
        "--set",
        "n_heads=2",
        "--out",
        str(run),
    ]
    r = runner.invoke(app, ["train", "--variant", "all", "--max-steps", "3", *common])
    assert r.exit_code == 0, r.output
    assert "test perplexity" in r.output
    info = json.loads((run / "run.json").read_text())
    assert info["model_config"]["use_qkan"] and info["data"] == "synthetic"
    r = runner.invoke(app, ["eval", str(run), "--split", "valid"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "perplexity" in text and "windows of 32 tokens" in text
    r = runner.invoke(app, ["generate", str(run), "--prompt", "the bank", "--max-new-tokens", "5"])
    assert r.exit_code == 0, r.output
    assert "the bank" in r.output
    est = tmp_path / "energy.json"
    r = runner.invoke(app, ["energy", str(run), "--seq-len", "32", "--json", str(est)])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "ESTIMATES" in text and "Measured latency on this machine" in text
    payload = json.loads(est.read_text())
    # every profile, in the registry's order (test_energy pins the registry's names)
    assert [e["hardware"] for e in payload["estimates"]] == list(PROFILES)
    assert all(e["energy_uj"] > 0 for e in payload["estimates"])
    assert payload["flops"]["encoder_circuits"] == info["model_config"]["n_layers"] * 32
    r = runner.invoke(app, ["energy", str(run), "--seq-len", "4096"])
    assert r.exit_code == 2 and "max_seq_len" in r.output
    # resume a run whose schedule is longer: edit its saved config to 6 steps
    info["train_config"]["max_steps"] = 6
    (run / "run.json").write_text(json.dumps(info))
    r = runner.invoke(app, ["train", "--resume", "--out", str(run)])
    assert r.exit_code == 0, r.output
    assert "Resumed" in r.output and json.loads((run / "summary.json").read_text())["steps"] == 6


def test_cli_errors_are_clear(tmp_path):
    r = runner.invoke(
        app,
        ["train", "--data", "my-corpus", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")],
    )
    assert r.exit_code == 2
    assert "not found" in r.output and "--data-dir" in r.output and "../shared/data" in r.output
    r = runner.invoke(app, ["eval", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "neither a model folder" in r.output
    r = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "nothing to resume" in r.output
    r = runner.invoke(
        app, ["train", "--data", "synthetic", "--set", "n_layer=3", "--out", str(tmp_path / "y")]
    )
    assert r.exit_code == 2 and "not a ModelConfig field" in r.output
    r = runner.invoke(app, ["energy", "--hardware", "toaster"])
    assert r.exit_code == 2 and "unknown hardware profile" in r.output


def test_info_runs():
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0 and "torch" in r.output


def test_params_prints_every_preset_checked_against_the_formula():
    from qtensorformer import PRESETS, ModelConfig, count_parameters

    r = runner.invoke(app, ["params", "--per-component"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for name in PRESETS:
        dense = count_parameters(ModelConfig.dense(name, vocab_size=10000))["total"]
        comp = count_parameters(ModelConfig.preset(name, vocab_size=10000, tt_rank=8))["total"]
        assert f"{dense:,}" in r.output and f"{comp:,}" in r.output
    assert "Parameters per component" in r.output
    r = runner.invoke(app, ["params", "--preset", "huge"])
    assert r.exit_code != 0 and "unknown preset" in r.output
