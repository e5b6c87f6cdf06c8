"""benchmarks/run_all.py: every results section has a job, the quick run writes elsewhere and
names its command, and the refresh report counts changed numbers (no benchmark runs here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def run_all(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_all", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_results_section_has_exactly_one_job(run_all):
    written = [s for job in run_all.JOBS for s in job.sections]
    assert len(written) == len(set(written))
    in_results = set(run_all.sections(run_all.RESULTS.read_text()))
    assert in_results == set(written)


def test_every_job_script_exists_and_its_options_parse(run_all):
    """Each script's --help lists every option its full and quick commands pass."""
    for job in run_all.JOBS:
        script = BENCH / job.script
        assert script.is_file(), job.script
        text = script.read_text()
        for args in (job.full, job.quick):
            for opt in (a for a in args.split() if a.startswith("--")):
                assert f'"{opt}"' in text, f"{job.script} has no option {opt}"


def test_sections_and_changed_numbers(run_all):
    text = "x\n<!-- a:start -->\n| 1.5 | 2,000 |\n<!-- a:end -->\n"
    text += "<!-- b:start -->\nq 3\n<!-- b:end -->"
    got = run_all.sections(text)
    assert got == {"a": "| 1.5 | 2,000 |", "b": "q 3"}
    assert run_all.changed_numbers(got["a"], "| 1.5 | 2,001 |") == 1
    assert run_all.changed_numbers(got["a"], "| 1.5 | 2,000 | 7 |") == 1
    assert run_all.changed_numbers(None, "| 1 | 2e-4 |") == 2
    assert run_all.changed_numbers(got["b"], "q 3") == 0


def test_quick_run_writes_the_quick_file_and_stamps_its_command(run_all, tmp_path, monkeypatch):
    """A job's process writes its section where $QTF_RESULTS says; the quick section then
    starts with the command; docs/RESULTS.md is not touched."""
    target = tmp_path / "quick.md"
    target.write_text("# Results\n\n<!-- bench_tt:start -->\nold 1 2\n<!-- bench_tt:end -->\n")
    seen = {}

    def fake_run(argv, cwd, env):
        seen["argv"], seen["env"] = argv, env["QTF_RESULTS"]
        sys.path.insert(0, str(BENCH))
        from _common import write_section

        monkeypatch.setenv("QTF_RESULTS", env["QTF_RESULTS"])
        write_section("bench_tt", "new 1 3")
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(run_all.subprocess, "run", fake_run)
    before = run_all.RESULTS.read_text()
    job = next(j for j in run_all.JOBS if j.name == "bench_tt")
    line = run_all.run_job(job, quick=True, target=target, dry_run=False)
    assert seen["env"] == str(target) and "--repeats" in seen["argv"]
    assert line.startswith("refreshed in") and "bench_tt: 1 numbers changed" in line
    body = run_all.sections(target.read_text())["bench_tt"]
    assert body.startswith(
        "> Quick run (`benchmarks/run_all.py --quick`): `python benchmarks/bench_tt.py"
    )
    assert body.endswith("new 1 3") and run_all.RESULTS.read_text() == before


def test_missing_inputs_skip_the_job_with_the_fix(run_all, monkeypatch):
    job = run_all.Job(
        "bench_x.py", ["bench_x"], "--write", "--write", lambda quick: "no model: do X"
    )
    line = run_all.run_job(job, quick=True, target=Path("unused"), dry_run=False)
    assert line == "skipped bench_x: no model: do X"


def test_unknown_job_names_the_known_ones(run_all):
    with pytest.raises(SystemExit, match=r"unknown job.*bench_tt"):
        run_all.select("bench_nope")


@pytest.mark.parametrize(
    ("name", "tables"),
    [("bench_entropy", "--tables seeds"), ("bench_energy", "--tables seeds,ablation")],
)
def test_training_readers_need_the_runs_they_read(run_all, tmp_path, monkeypatch, name, tables):
    """bench_entropy's and bench_energy's jobs check the full or the quick runs they read,
    name the missing ones and the bench_training command that trains them."""
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    job = next(j for j in run_all.JOBS if j.name == name)
    for quick in (False, True):
        runs = (
            [run_all.ENTROPY_MODEL[quick]]
            if name == "bench_entropy"
            else [m.partition("=")[2] for m in run_all.ENERGY_MODELS[quick].split(",")]
        )
        for i, run in enumerate(runs):
            why = job.needs(quick)
            assert all(r in why for r in runs[i:]) and tables in why
            assert ("--quick" in why) == quick
            (tmp_path / run / "best").mkdir(parents=True)
        assert job.needs(quick) is None


def test_write_section_replaces_in_place_and_inserts_a_new_one_before_its_anchor(
    monkeypatch, tmp_path
):
    """An existing section is replaced where it stands; a new one goes just before the
    ``before`` section, or at the end when that section is absent."""
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import write_section

    path = tmp_path / "r.md"
    a, z = "<!-- a:start -->\na1\n<!-- a:end -->", "<!-- z:start -->\nz\n<!-- z:end -->"
    path.write_text(f"# R\n\n{a}\n\ntext\n\n{z}\n")
    write_section("a", "a2", path)
    write_section("b", "b1", path, before="z")
    write_section("c", "c1", path, before="missing")
    text = path.read_text()
    order = [text.index(f"<!-- {k}:start -->") for k in "abzc"]
    assert order == sorted(order) and "a1" not in text and "a2\n<!-- a:end -->" in text
    assert "text\n\n<!-- b:start -->\nb1\n<!-- b:end -->\n\n<!-- z:start -->" in text
