"""benchmarks/bench_compress.py: its options reach each row's process, and ``--from-log``
rebuilds the RESULTS table from the committed log of measured rows (no runs here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
LOG = BENCH / "logs" / "compress_smollm2.jsonl"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_compress", BENCH / "bench_compress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_option_reaches_the_row_process(bench, monkeypatch, tmp_path, capsys):
    calls = []

    def fake_run(cmd, capture_output, text):
        calls.append(cmd)
        row = {"method": cmd[cmd.index("--method") + 1], "ppl": 1.0}
        return types.SimpleNamespace(returncode=0, stdout=json.dumps(row) + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(bench, "_table", lambda args, rows: f"{len(rows)} rows")
    log = tmp_path / "rows.jsonl"
    argv = ["bench_compress.py", "--model", "m", "--methods", "svd-llm,basis-sharing"]
    argv += ["--ratios", "0.2,0.6", "--allocations", "uniform,spectrum", "--no-sequential"]
    argv += ["--calib-data", "c.txt", "--eval-data", "t.txt", "--topology", "strict"]
    argv += ["--heal-steps", "7", "--seq-len", "64", "--windows", "3", "--log", str(log)]
    argv += ["--set", "sweeps=1", "--set", "damp=1e-4", "--calib-batch-size", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    # the uncompressed row, svd-llm at 2 ratios × 2 allocations, basis-sharing uniform only
    methods = [c[c.index("--method") + 1] for c in calls]
    assert methods == ["none"] + ["svd-llm"] * 4 + ["basis-sharing"] * 2
    for cmd in calls:
        for flag, value in [
            ("--model", "m"),
            ("--calib-data", "c.txt"),
            ("--eval-data", "t.txt"),
            ("--topology", "strict"),
            ("--heal-steps", "7"),
            ("--seq-len", "64"),
            ("--windows", "3"),
            ("--calib-batch-size", "2"),
        ]:
            assert cmd[cmd.index(flag) + 1] == value, (flag, cmd)
        assert "--no-sequential" in cmd and "--one" in cmd
        sets = [cmd[i + 1] for i, flag in enumerate(cmd) if flag == "--set"]
        assert sets == ["sweeps=1", "damp=1e-4"], cmd
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(logged) == 7 and all(r["heal_steps"] == 7 for r in logged)
    assert "7 rows" in capsys.readouterr().out


def test_the_table_is_rebuilt_from_the_committed_log(bench, monkeypatch, capsys):
    rows = [json.loads(line) for line in LOG.read_text().splitlines()]
    monkeypatch.setattr(sys, "argv", ["bench_compress.py", "--from-log", str(LOG)])
    bench.main()
    out = capsys.readouterr().out
    base = next(r for r in rows if r["method"] == "uncompressed")
    assert f"Uncompressed: perplexity {base['ppl']:.2f}" in out
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == len(rows)  # the header and one line per compressed row
    for r in rows:
        if r["method"] != "uncompressed":
            assert f"| {r['ppl']:,.2f} |" in out
        if r.get("healed_ppl") is not None:  # each healed row names its own steps
            assert f"| {r['healed_ppl']:,.2f} ({r['heal_steps']} steps) |" in out


def test_set_options_are_parsed_and_named_in_the_table(bench, monkeypatch):
    assert bench._options(["sweeps=1", "damp=1e-4", "topology=strict"]) == {
        "sweeps": 1,
        "damp": 1e-4,
        "topology": "strict",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        bench._options(["sweeps"])
    row = json.loads(LOG.read_text().splitlines()[1])
    monkeypatch.setattr(sys, "argv", ["bench_compress.py"])
    args = types.SimpleNamespace(model="m", heal_steps=0, calib_samples=1, seq_len=8)
    args.calib_data = args.from_log = None
    table = bench._table(args, [{}, {**row, "options": {"sweeps": 1}}])
    assert f"| {row['method']} (sweeps=1) |" in table
