"""The qtf command line."""

from __future__ import annotations

from typer.testing import CliRunner

from qtensorformer import __version__
from qtensorformer.cli import app

runner = CliRunner()


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "demo" in r.output


def test_demo_runs_and_fits():
    r = runner.invoke(app, ["demo", "--steps", "40", "--n-qubits", "3"])
    assert r.exit_code == 0, r.output
    assert "0.6931" in r.output  # Bell pair / GHZ entropy = log 2
    first = float(r.output.split("loss: first step")[1].split()[1])
    last = float(r.output.split("loss: step 40")[1].split()[1])
    assert last < first


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
