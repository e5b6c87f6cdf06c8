"""The qtf command line: one test per command (export, explain and report are tested with
their libraries in test_export.py, test_explain.py and test_report.py)."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from qtensorformer import PRESETS, ModelConfig, QTensorFormer, __version__, count_parameters
from qtensorformer.cli import app
from qtensorformer.data import load_tokenizer
from qtensorformer.energy import PROFILES
from qtensorformer.files import RunDir

runner = CliRunner()

#: The tiny run every checkpoint test reads: every pillar, one layer, three steps.
TINY = [
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
    "--set",
    "n_layers=1",
]


def flat(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def table_rows(output: str) -> list[list[str]]:
    """The cells of every body row of the rich tables in ``output``."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[RunDir, str]:
    """A run trained by ``qtf train`` once for this module, and what the command printed."""
    run = RunDir(tmp_path_factory.mktemp("cli") / "run")
    args = ["train", "--variant", "all", "--max-steps", "3", *TINY, "--out", str(run.path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return run, r.output


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"qtensorformer {__version__}"


def test_help_lists_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in (
        "info",
        "train",
        "eval",
        "generate",
        "compare",
        "demo",
        "export",
        "explain",
        "report",
        "energy",
        "params",
    ):
        assert f"│ {name} " in r.output, name


def test_info_prints_versions_and_threads():
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0, r.output
    rows = {cells[0]: cells[1] for cells in table_rows(r.output)}
    assert rows["qtensorformer"] == __version__
    assert rows["torch"] == torch.__version__
    assert rows["torch threads"] == str(torch.get_num_threads())
    assert rows["CUDA"] == "none" or torch.cuda.is_available()
    assert rows["pennylane"][0].isdigit() or rows["pennylane"].startswith("not installed")


def test_install_hints_keep_their_brackets(monkeypatch):
    """Rich reads ``[pennylane]`` as markup; printed hints must keep it."""
    import builtins

    real_import = builtins.__import__

    def no_pennylane(name, *a, **kw):
        if name == "pennylane":
            raise ImportError("no pennylane here")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pennylane)
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0, r.output
    assert "pip install 'qtensorformer[pennylane]'" in r.output


def test_params_prints_every_preset_checked_against_the_formula():
    r = runner.invoke(app, ["params", "--per-component"])
    assert r.exit_code == 0, r.output
    rows = {(c[0], c[2]): c for c in table_rows(r.output) if len(c) == 6}
    for name in PRESETS:
        dense = count_parameters(ModelConfig.dense(name, vocab_size=10000))["total"]
        comp_cfg = ModelConfig.preset(name, vocab_size=10000, tt_rank=8)
        comp = count_parameters(comp_cfg)["total"]
        for label, total in (("dense", dense), ("compressed", comp)):
            cells = rows[(name, label)]
            assert cells[1] == f"{comp_cfg.d_model} / {comp_cfg.n_layers}"
            assert cells[3] == cells[4] == f"{total:,}"
            assert cells[5] == f"{dense / total:.2f}×"
    assert "Parameters per component" in r.output
    r = runner.invoke(app, ["params", "--preset", "huge"])
    assert r.exit_code != 0 and "unknown preset" in r.output


def test_train_writes_the_run(trained):
    run, output = trained
    assert "test perplexity" in output
    info = run.read_info()
    assert info["model_config"]["use_qkan"] and info["data"] == "synthetic"
    assert info["model_config"]["n_layers"] == 1 and info["train_config"]["max_steps"] == 3
    summary = run.read_summary()
    assert summary["steps"] == 3 and math.isfinite(summary["test_ppl"])
    assert run.has_best() and any(e.get("event") == "eval" for e in run.read_metrics())


def test_train_errors_are_clear(tmp_path):
    args = ["train", "--data", "my-corpus", "--data-dir", str(tmp_path), "--out", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert "not found" in r.output and "--data-dir" in r.output and "../shared/data" in r.output
    r = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "nothing to resume" in r.output
    r = runner.invoke(
        app, ["train", "--data", "synthetic", "--set", "n_layer=3", "--out", str(tmp_path / "y")]
    )
    assert r.exit_code == 2 and "not a ModelConfig field; did you mean n_layers" in r.output


def test_train_resume_continues_a_longer_schedule(trained, tmp_path):
    run = RunDir(tmp_path / "run")
    shutil.copytree(trained[0].path, run.path)
    info = run.read_info()
    info["train_config"]["max_steps"] = 6  # the saved schedule, now longer
    run.info.write_text(json.dumps(info))
    r = runner.invoke(app, ["train", "--resume", "--out", str(run.path)])
    assert r.exit_code == 0, r.output
    assert "Resumed" in r.output and run.read_summary()["steps"] == 6


def test_eval_matches_the_runs_validation_perplexity(trained):
    run, _ = trained
    r = runner.invoke(app, ["eval", str(run.path), "--split", "valid"])
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    rows = {c[0]: c[1] for c in table_rows(r.output) if len(c) == 2}
    assert rows["perplexity"] == f"{run.read_summary()['valid_ppl']:.2f}"
    assert "windows of 32 tokens" in text
    r = runner.invoke(app, ["eval", str(run.path), "--split", "train"])
    assert r.exit_code == 2 and "valid or test" in r.output


def test_eval_refuses_a_folder_without_a_model(tmp_path):
    r = runner.invoke(app, ["eval", str(tmp_path)])
    assert r.exit_code == 2 and "neither a model folder" in r.output
    r = runner.invoke(app, ["eval", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no such file or folder" in r.output


def test_generate_continues_the_prompt(trained):
    run, _ = trained
    args = ["generate", str(run.path), "--prompt", "the bank", "--max-new-tokens", "5"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    printed, timing = flat(r.output).rsplit(" 5 tokens in ", 1)
    assert "key/value cache on" in timing
    assert printed.startswith("the bank ")
    continuation = printed.removeprefix("the bank ")
    # the same sampling through the library: five new tokens, printed after the prompt
    tok = load_tokenizer(run.best / "tokenizer")
    ids = tok.encode("the bank")
    out = QTensorFormer.from_pretrained(run.best).generate(
        torch.tensor([ids]), 5, 0.8, 40, torch.Generator().manual_seed(0)
    )
    assert out.shape[1] == len(ids) + 5
    expected = flat(tok.decode(out[0, len(ids) :].tolist()))
    assert expected and continuation == expected
    r = runner.invoke(app, [*args[:-1], "0"])
    assert r.exit_code == 0 and flat(r.output).startswith("the bank 0 tokens in ")
    r = runner.invoke(app, [*args, "--no-cache"])  # the same text without the cache
    assert r.exit_code == 0 and flat(r.output).rsplit(" 5 tokens in ", 1)[0] == printed
    r = runner.invoke(app, [*args, "--top-p", "1.5"])
    assert r.exit_code != 0 and "top_p must be in (0, 1]" in flat(r.output)


def test_energy_of_a_run(trained, tmp_path):
    run, _ = trained
    est = tmp_path / "energy.json"
    r = runner.invoke(app, ["energy", str(run.path), "--seq-len", "32", "--json", str(est)])
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "ESTIMATES" in text and "Measured latency on this machine" in text
    payload = json.loads(est.read_text())
    assert payload["seq_len"] == 32 and payload["measured_latency_ms"] > 0
    # every profile, in the registry's order (test_energy pins the registry's names)
    assert [e["hardware"] for e in payload["estimates"]] == list(PROFILES)
    assert all(e["energy_uj"] > 0 for e in payload["estimates"])
    assert payload["flops"]["encoder_circuits"] == run.read_info()["model_config"]["n_layers"] * 32
    shown = {c[0]: c for c in table_rows(r.output) if len(c) == 6}
    assert shown["cpu_xeon"][5] == "-"
    assert shown["ibm_quantum"][5] == f"{payload['estimates'][-1]['qpu_circuits']:,}"
    r = runner.invoke(app, ["energy", str(run.path), "--seq-len", "4096"])
    assert r.exit_code == 2 and "max_seq_len" in r.output


def test_energy_of_a_fresh_model_on_chosen_profiles():
    args = ["energy", "--variant", "dense", "--vocab-size", "50", "--seq-len", "8"]
    r = runner.invoke(app, [*args, "--hardware", "cpu_xeon, gpu_a100"])
    assert r.exit_code == 0, r.output
    assert [c[0] for c in table_rows(r.output) if len(c) == 6] == ["cpu_xeon", "gpu_a100"]
    assert "small/dense, vocabulary 50, untrained (seed 0)" in flat(r.output)
    r = runner.invoke(app, ["energy", "--hardware", "toaster"])
    assert r.exit_code == 2 and "unknown hardware profile" in r.output


def test_energy_at_the_floor_routes_nothing_and_costs_less(tmp_path):
    """--floor estimates the least a budget can reach (no routing, minimum ranks); a model
    without knobs is refused with the reason."""
    args = ["energy", "--variant", "all", "--vocab-size", "50", "--seq-len", "8"]
    out = {}
    for name, extra in (("now", []), ("floor", ["--floor"])):
        path = tmp_path / f"{name}.json"
        r = runner.invoke(app, [*args, "--hardware", "cpu_xeon", *extra, "--json", str(path)])
        assert r.exit_code == 0, r.output
        out[name] = json.loads(path.read_text())
    now, floor = out["now"], out["floor"]
    assert "at its floor" in floor["source"] and "at its floor" not in now["source"]
    assert floor["flops"]["kernel_pairs"] == 0 < now["flops"]["kernel_pairs"]
    assert floor["estimates"][0]["energy_uj"] < now["estimates"][0]["energy_uj"]
    r = runner.invoke(app, ["energy", "--variant", "dense", "--vocab-size", "50", "--floor"])
    assert r.exit_code == 2 and "no router or adaptive rank" in flat(r.output)


def test_compare_trains_each_variant_on_the_same_budget(tmp_path):
    args = ["compare", "--variants", "dense,tt", "--max-tokens", "256", "--out", str(tmp_path)]
    sizes = ["--data", "synthetic", "--batch-size", "4", "--seq-len", "32", "--eval-every", "9"]
    sizes += ["--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1"]
    r = runner.invoke(app, [*args, *sizes])
    assert r.exit_code == 0, r.output
    assert "dense baseline" in r.output and "TT compression only" in r.output
    assert "small: synthetic from synthetic:seed=0" in r.output  # the corpus's own source
    rows = json.loads(RunDir(tmp_path / "small").compare.read_text())["rows"]
    assert [x["variant"] for x in rows] == ["dense", "tt"]
    assert rows[0]["tokens"] == rows[1]["tokens"] and rows[1]["params"] < rows[0]["params"]
    assert RunDir(tmp_path / "small" / "tt").read_summary()["status"] == "completed"


def test_demo_runs_and_writes_runs(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(
        app,
        [
            "demo",
            "--no-compress",
            "--max-tokens",
            "3000",
            "--variants",
            "dense,tt",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "dense baseline" in r.output and "TT compression only" in r.output
    rows = json.loads(RunDir(out).compare.read_text())["rows"]
    assert [x["variant"] for x in rows] == ["dense", "tt"]
    assert all(math.isfinite(x["test_ppl"]) for x in rows)
    assert rows[1]["params"] < rows[0]["params"]
    assert RunDir(out / "dense").summary.is_file()


def test_entry_points_run_the_cli():
    from importlib.metadata import entry_points

    import qtensorformer.__main__ as module_main
    from qtensorformer.cli import main

    (script,) = entry_points(group="console_scripts", name="qtf")
    assert script.load() is main and module_main.main is main


def test_every_option_and_argument_has_help_text():
    from typer.main import get_command

    missing = [
        f"{name} {p.name}"
        for name, sub in get_command(app).commands.items()
        for p in sub.params
        if not getattr(p, "help", None)
    ]
    assert missing == []


def test_generate_names_prompt_words_read_as_unk(trained):
    run, _ = trained
    args = ["generate", str(run.path), "--prompt", "the zzyzx bank zzyzx", "--max-new-tokens", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "read as <unk>: zzyzx" in flat(r.output) and "bank," not in r.output
    quiet = runner.invoke(app, ["generate", str(run.path), "--prompt", "the bank"])
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_output_paths_are_checked_before_any_work(tmp_path):
    """A file in the way gets a one-line error before the data is even looked for."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    missing_data = ["--data", "wikitext-2", "--data-dir", str(tmp_path / "no-data")]
    r = runner.invoke(app, ["train", *missing_data, "--out", str(blocker / "run")])
    assert r.exit_code == 2
    assert "lies under" in r.output and "which is a file" in r.output
    assert "not found" not in r.output  # refused before loading data
    r = runner.invoke(app, ["train", *missing_data, "--out", str(blocker)])
    assert r.exit_code == 2 and "is a file, not a folder" in r.output
    r = runner.invoke(app, ["compress", "smollm2", "--out", str(blocker)])
    assert r.exit_code == 2 and "is a file, not a folder" in r.output
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        r = runner.invoke(app, ["train", *missing_data, "--out", str(locked / "run")])
        assert r.exit_code == 2 and "permission denied" in r.output


def test_checkpoint_every_reads_steps_or_minutes(tmp_path):
    from qtensorformer.cli.train import parse_checkpoint_every

    assert parse_checkpoint_every("200") == (200, None)
    assert parse_checkpoint_every("10m") == (None, 10.0)
    assert parse_checkpoint_every("2.5min") == (None, 2.5)
    assert parse_checkpoint_every(None) == (None, None)
    for bad in ("0", "-3", "ten", "0m", "5h"):
        r = runner.invoke(app, ["train", "--checkpoint-every", bad, "--out", str(tmp_path)])
        assert r.exit_code == 2, (bad, r.output)
        assert "neither a number of steps" in flat(r.output)
