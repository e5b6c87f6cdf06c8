"""benchmarks/bench_training.py and _training.py: run specs shared between tables agree, a
run is trained once, resumed when its summary is missing, measured from best/ and recorded
(a tiny synthetic run), a recorded run is read instead of trained, and the table cells are
computed from the right rows."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from qtensorformer.files import write_json

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def bt(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    _load("_training", monkeypatch)
    return _load("bench_training", monkeypatch)


@pytest.mark.parametrize("quick", [False, True])
def test_a_run_name_means_one_command_across_tables(bt, quick):
    """Tables share runs by name (trained once), so a name must always carry the same args."""
    b = bt.QUICK if quick else bt.FULL
    seen: dict[str, tuple] = {}
    for make in bt.SPECS.values():
        for s in make(b):
            assert seen.setdefault(s.name, s.args) == s.args, s.name
    shared = {s.name for s in bt.seed_specs(b)} & {s.name for s in bt.ablation_specs(b)}
    assert shared == {s.name for s in bt.seed_specs(b)}  # the ablation's ends are the seeds
    assert len({s.args for s in bt.ablation_specs(b)}) == len(bt.ablation_specs(b))


def test_ablation_rows_add_one_pillar_each(bt):
    """Each middle row of the ablation turns on what the row before it had, plus more."""
    from qtensorformer.config import model_config

    pillars = []
    for _, _, args in bt.ABLATION_MIDDLE:
        a = list(args)
        variant = a[a.index("--variant") + 1]
        sets = dict(v.split("=") for v in a if "=" in v)
        over = {k: v == "true" for k, v in sets.items() if v in ("true", "false")}
        cfg = model_config(variant, "small", 100, **over)
        pillars.append({k for k, on in cfg.pillars.items() if on})
    every = {k for k, on in model_config("all", "small", 100).pillars.items() if on}
    for before, after in zip(pillars, [*pillars[1:], every], strict=True):
        assert before < after


def test_spread_and_row_groups(bt):
    assert bt.spread([1.0, 2.0, 3.0]) == "2.00 ± 1.00 (1.00–3.00, n=3)"
    assert bt.spread([5.0]) == "5.00 (one seed)"
    specs = [bt.RunSpec(n, n, ()) for n in ("a-seed0", "a-seed1", "b-seed0", "c")]
    groups = [[s.name for s in g] for g in bt._rows(specs)]
    assert groups == [["a-seed0", "a-seed1"], ["b-seed0"], ["c"]]


def _metrics(bt, name, params, ppl, flops, ms=1.0, dense_ms=1.0):
    return bt.RunMetrics(
        name=name,
        label=name,
        status="completed",
        params=params,
        steps=10,
        best_step=5,
        test_ppl=ppl,
        test_word_ppl=ppl,
        test_tokens=100,
        tokenizer="word-level",
        flops_per_token=flops,
        circuits_per_token=0.0,
        routed_fraction=None,
        mean_rank=None,
        energy_uj=dict.fromkeys(bt.PROFILES, 1.0),
        ms_per_token=ms,
        dense_ms_per_token=dense_ms,
    )


def test_core_table_ratios_come_from_the_dense_row(bt):
    ms = {
        "w-dense": _metrics(bt, "w-dense", 400, 100.0, 2e6, ms=1.1, dense_ms=1.0),
        "w-all": _metrics(bt, "w-all", 100, 110.0, 3e6, ms=4.0, dense_ms=2.0),
    }
    ms["w-all"].valid_curve = [[3, 200.0], [6, 120.0], [9, 115.0], [12, 114.0]]
    rows = bt.core_table(ms, "w")
    cells = [c.strip() for c in rows[3].split("|")]
    assert cells[1:6] == ["w-all", "100", "4.00", "10 (5)", "completed"]
    assert cells[6:9] == ["-5.0%", "110.00", "+10.0%"]  # 120 (step 6 <= 12 * 2/3) -> 114
    assert cells[-3:] == ["4.000", "0.50", ""] and cells[10] == "3.00"
    dense_cells = [c.strip() for c in rows[2].split("|")]
    assert dense_cells[-3:] == ["1.100", "0.91", ""]  # its own dense twin: the timing noise
    assert dense_cells[6] == "—"  # no evaluations logged


def test_scale_rows_compare_each_preset_with_its_own_dense(bt):
    specs = [bt.RunSpec(n, n, ()) for n in ("s-dense", "s-all", "m-dense", "m-all")]
    ms = {
        "s-dense": _metrics(bt, "s-dense", 400, 100.0, 2e6, ms=1.0, dense_ms=1.0),
        "s-all": _metrics(bt, "s-all", 100, 90.0, 2e6, ms=2.0, dense_ms=1.0),
        "m-dense": _metrics(bt, "m-dense", 1000, 200.0, 5e6, ms=3.0, dense_ms=3.0),
        "m-all": _metrics(bt, "m-all", 500, 150.0, 5e6, ms=4.0, dense_ms=2.0),
    }
    rows = [[c.strip() for c in r.split("|")][1:-1] for r in bt.scale_rows(ms, specs)[2:]]
    assert rows[1] == ["s-all", "100 (4.00)", "90.00", "-10.0%", "0.50"]
    assert rows[2] == ["m-dense", "1,000 (1.00)", "200.00", "+0.0%", "1.00"]
    assert rows[3] == ["m-all", "500 (2.00)", "150.00", "-25.0%", "0.50"]


def test_tiny_run_is_trained_once_resumed_and_measured(bt, tmp_path, monkeypatch, capsys):
    tr = sys.modules["_training"]
    spec = tr.RunSpec(
        "tiny",
        "tiny",
        (
            "--data",
            "synthetic",
            "--preset",
            "small",
            "--variant",
            "all",
            "--set",
            "d_model=16",
            "--set",
            "n_heads=2",
            "--set",
            "n_layers=1",
            "--set",
            "tt_rank=4",
            "--seq-len",
            "32",
            "--batch-size",
            "4",
            "--max-steps",
            "6",
            "--eval-every",
            "3",
            "--eval-max-tokens",
            "500",
            "--final-eval-max-tokens",
            "500",
        ),
    )
    assert tr.train(spec, tmp_path) == "completed"
    (tmp_path / "tiny" / "summary.json").unlink()  # as if stopped before its summary
    assert tr.train(spec, tmp_path) == "completed"
    assert "--resume" in capsys.readouterr().out
    records = tmp_path / "records"
    assert tr.run_state(spec, tmp_path, records, 2000) == "completed, not yet recorded"
    m = tr.measure(spec, tmp_path, records, test_max_tokens=2000, repeats=2)
    assert tr.run_state(spec, tmp_path, records, 2000).startswith("recorded ")
    assert m.params > 0 and m.best_step in (3, 6) and m.test_tokens <= 2000
    assert [s for s, _ in m.valid_curve] == [3, 6] and m.late_valid_change() is not None
    assert math.isfinite(m.test_ppl) and 1 < m.test_ppl < 1e6
    assert 0 <= m.routed_fraction <= 1 and m.mean_rank >= 1 and m.circuits_per_token > 0
    assert set(m.energy_uj) == set(bt.PROFILES) and all(v > 0 for v in m.energy_uj.values())
    assert m.ms_per_token > 0 and m.dense_ms_per_token > 0 and m.args == list(spec.args)
    assert m.machine and m.measured and (records / "tiny.json").is_file()

    def boom(*a, **k):
        raise AssertionError("trained or measured again instead of reading the record")

    monkeypatch.setattr(tr, "evaluate", boom)
    assert tr.measure(spec, tmp_path, records, test_max_tokens=2000).test_ppl == m.test_ppl
    with pytest.raises(AssertionError, match="record"):
        tr.measure(spec, tmp_path, records)  # another test slice is another measurement
    other = tr.RunSpec("tiny", "tiny", (*spec.args, "--seed", "1"))
    assert tr.read_record(other, records, 2000) is None  # other arguments, another run


def test_a_recorded_run_is_read_not_trained(bt, tmp_path, monkeypatch):
    """The tables take a run from its record even when its folder is gone (another session)."""
    b = bt.Budget(
        converge=(),
        one_epoch=(),
        seeds=(0,),
        root="r",
        records=str(tmp_path / "rec"),
        latency_repeats=1,
    )
    spec = bt.RunSpec("x-seed0", "label now", ("--dense",))
    m = _metrics(bt, "x-seed0", 10, 50.0, 1e6)
    m.args, m.machine, m.measured = ["--dense"], "cpu A", "2026-12-04"
    write_json(tmp_path / "rec" / "x-seed0.json", asdict(m))

    def boom(*a, **k):
        raise AssertionError("trained or measured a recorded run")

    monkeypatch.setattr(bt, "train", boom)
    monkeypatch.setattr(bt, "measure", boom)
    got = bt.collect([spec], b, train_missing=True)
    assert got["x-seed0"].test_ppl == 50.0 and got["x-seed0"].label == "label now"
    lines = bt.header("T", "cmd", [spec], got, b)
    assert any("cpu A" in line and "2026-12-04" in line for line in lines)
    assert bt.collect([bt.RunSpec("y-seed0", "y", ())], b, train_missing=False) is None


def test_run_states_and_the_budget_run(bt, tmp_path, capsys):
    """--list states where each run stands; the energy-budget run exists once dense is
    recorded (its budget is the dense model's energy); --runs rejects unknown names."""
    b = bt.Budget(
        converge=(),
        one_epoch=("--max-tokens", "10"),
        seeds=(0,),
        root=str(tmp_path / "r"),
        records=str(tmp_path / "rec"),
        latency_repeats=1,
    )
    tr = sys.modules["_training"]
    spec = bt.one_epoch("dense", "dense", ("--dense",), b)
    assert tr.run_state(spec, tmp_path / "r", tmp_path / "rec", None) == "not started"
    (tmp_path / "r" / spec.name).mkdir(parents=True)
    assert "no checkpoint" in tr.run_state(spec, tmp_path / "r", tmp_path / "rec", None)
    assert not any("budget" in n for n in bt.all_specs(b))
    m = _metrics(bt, spec.name, 10, 50.0, 1e6)
    m.args, m.energy_uj = list(spec.args), dict.fromkeys(bt.PROFILES, 1234.4)
    write_json(tmp_path / "rec" / f"{spec.name}.json", asdict(m))
    budget = bt.all_specs(b)["1ep-all-budget-seed0"]
    assert budget.args[budget.args.index("--max-energy-uj") + 1] == "1234"
    bt.list_runs(["ablation"], b)
    out = capsys.readouterr().out
    assert "1ep-dense-seed0  # recorded" in out and "1ep-all-budget-seed0  # not started" in out
    assert bt.main(["--runs", "nope"]) == 2
    assert "unknown run(s) ['nope']" in capsys.readouterr().err


def test_the_machine_line_says_which_runs_ran_where(bt):
    """A table whose runs came from two kinds of CPU names each kind's runs; one kind gives
    one plain line (a run listed twice in a table is named once)."""
    specs = [bt.RunSpec(n, n, ()) for n in ("a-seed0", "b-seed0", "c-seed0", "a-seed0")]
    ms = {s.name: _metrics(bt, s.name, 10, 50.0, 1e6) for s in specs}
    for name, cpu in (("a-seed0", "cpu X"), ("b-seed0", "cpu Y"), ("c-seed0", "cpu X")):
        ms[name].machine = cpu
    assert bt.machine_line(specs, ms) == "Machines: cpu X: a-seed0, c-seed0; cpu Y: b-seed0"
    ms["b-seed0"].machine = "cpu X"
    assert bt.machine_line(specs, ms) == "Machine: cpu X"
