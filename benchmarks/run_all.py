"""Regenerate the benchmark tables of docs/RESULTS.md: every job, or a quick version of each.

Each job is one benchmark command that writes one or more sections of the results file
(between ``<!-- name:start -->`` and ``<!-- name:end -->`` markers). The full run writes
docs/RESULTS.md itself. ``--quick`` runs each job with fewer repeats and a smaller grid and
writes to ``runs/bench-quick/RESULTS.md`` instead, so that quick numbers never replace the
full tables; each quick section starts with the exact command that made it. After every job
the script prints which sections it refreshed and how many of their numbers changed.

Jobs whose inputs are missing (the SmolLM2 package, a trained checkpoint) are skipped with
the reason. ``--list`` shows the jobs and their commands without running anything.

    python benchmarks/run_all.py --list
    python benchmarks/run_all.py --quick
    python benchmarks/run_all.py --only bench_tt,bench_model
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_energy import models_under
from bench_training import FULL, QUICK

from qtensorformer.compress.models import require_transformers, smollm2_gguf_path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "RESULTS.md"
QUICK_RESULTS = ROOT / "runs" / "bench-quick" / "RESULTS.md"
#: The first line of every quick section, before the command that made it.
STAMP = "> Quick run (`benchmarks/run_all.py --quick`): "
SMALL_CHECKPOINT = "runs/wt2-small-dense-1ep"
SMALL_TRAIN = (
    "qtf train --preset small --dense --data wikitext-2 --epochs 1 --seq-len 128 "
    f"--batch-size 16 --eval-every 500 --out {SMALL_CHECKPOINT}"
)
SMALL_COMPRESS = (
    f"--model {SMALL_CHECKPOINT} --seq-len 128 --calib-samples 32 --windows 64 "
    "--calib-data ../shared/data/wikitext-2/valid.txt "
    "--eval-data ../shared/data/wikitext-2/test.txt"
)


def _has_smollm2(quick: bool) -> str | None:
    """None when the embedded SmolLM2 can be loaded, else the library's own reason (with the
    install command). The same for the full and the quick run."""
    try:
        smollm2_gguf_path()
        require_transformers(extra="smollm2", gguf=True)
    except (ImportError, FileNotFoundError) as e:
        return str(e)
    return None


def _has_small_checkpoint(quick: bool) -> str | None:
    """None when the small dense checkpoint is there (the full and the quick run use it)."""
    if (ROOT / SMALL_CHECKPOINT).is_dir():
        return None
    return f"{SMALL_CHECKPOINT} is missing; train it first: {SMALL_TRAIN}"


#: bench_training's tables in docs/RESULTS.md (each listed once its full table is there).
TRAINING_TABLES = ("seeds", "ablation", "scale", "core")
#: The every-pillar run bench_entropy reads: the seeds table's seed 0 (full or quick).
ENTROPY_MODEL = {quick: f"{b.root}/1ep-all-seed0" for quick, b in ((False, FULL), (True, QUICK))}
#: bench_energy's ``--models`` (name=run,...): seed 0 of the one-epoch dense, TT and every pillar.
ENERGY_MODELS = {quick: models_under(b.root) for quick, b in ((False, FULL), (True, QUICK))}


def _has_runs(runs: dict[bool, list[str]], tables: str) -> Callable[[bool], str | None]:
    """A ``needs`` check: None when every run folder of the full or the quick budget has its
    best model, else which are missing and the bench_training command that trains them."""

    def check(quick: bool) -> str | None:
        missing = [p for p in runs[quick] if not (ROOT / p / "best").is_dir()]
        if not missing:
            return None
        flag = "--quick " if quick else ""
        return (
            f"{', '.join(missing)} missing; train: "
            f"python benchmarks/bench_training.py {flag}--tables {tables}"
        )

    return check


_has_entropy_model = _has_runs({q: [p] for q, p in ENTROPY_MODEL.items()}, "seeds")
_has_energy_models = _has_runs(
    {q: [item.partition("=")[2] for item in m.split(",")] for q, m in ENERGY_MODELS.items()},
    "seeds,ablation",
)


@dataclass
class Job:
    """One benchmark command: the sections it writes, its full and quick arguments (after
    ``python benchmarks/<script>``), and a check that its inputs are there for the full
    (``quick=False``) or the quick run (None: ready; else the reason, with the fix)."""

    script: str
    sections: list[str]
    full: str
    quick: str
    needs: Callable[[bool], str | None] = field(default=lambda quick: None)

    @property
    def name(self) -> str:
        return self.sections[0]

    def argv(self, quick: bool) -> list[str]:
        args = shlex.split(self.quick if quick else self.full)
        return [sys.executable, f"benchmarks/{self.script}", *args]


JOBS: list[Job] = [
    Job("bench_quantum.py", ["bench_quantum"], "--write",
        "--qubits 4 --batches 1024 --no-lightning --repeats 3 --pl-repeats 1 --write"),
    Job("bench_tt.py", ["bench_tt"], "--write",
        "--repeats 2 --seconds 0.1 --tokens 1024 --no-tltorch --write"),
    Job("bench_kernel_norm.py", ["bench_kernel_norm"], "--write", "--steps 50 --seeds 1 --write"),
    Job("bench_model.py", ["bench_model"], "--write", "--repeats 1 --write"),
    Job("bench_train_speed.py", ["bench_train_speed"], "--write", "--repeats 1 --write"),
    Job("bench_onnx.py", ["bench_onnx"], "--write",
        "--shapes 1x128 --repeats 3 --models dense,tt --write"),
    Job("bench_generate.py", ["bench_generate"], "--write", "--new 32 --repeats 2 --write"),
    Job("bench_svd.py", ["bench_svd"], "--write", "--repeats 3 --write"),
    Job("bench_compress.py", ["bench_compress_small"],
        f"{SMALL_COMPRESS} --write --section bench_compress_small",
        f"{SMALL_COMPRESS} --methods svd-llm,tt-aware --ratios 0.4 --allocations uniform "
        "--write --section bench_compress_small",
        _has_small_checkpoint),
    Job("bench_compressed_speed.py", ["bench_compressed_speed_small"],
        f"--model {SMALL_CHECKPOINT} --seq-len 128 --write",
        f"--model {SMALL_CHECKPOINT} --seq-len 128 --ratios 0.4 --repeats 3 --write",
        _has_small_checkpoint),
    Job("bench_compress.py", ["bench_compress"], "--write",
        "--methods svd-llm --ratios 0.4 --allocations uniform --calib-samples 4 --windows 2 "
        "--no-baseline "
        "--write", _has_smollm2),
    Job("bench_compressed_speed.py", ["bench_compressed_speed"],
        "--model smollm2 --ratios 0.2,0.4,0.6 --write",
        "--model smollm2 --ratios 0.4 --repeats 2 --new-tokens 4 --seq-len 256 --no-strict --write",
        _has_smollm2),
    Job("bench_sharing.py", ["bench_sharing_smollm2"], "--model smollm2 --write",
        "--model smollm2 --types self_attn.q_proj --ratios 0.4 --calib-samples 4 --holdout 1 "
        "--seq-len 512 --write", _has_smollm2),
    Job("bench_ttfit_cg.py", ["bench_ttfit_cg"], "--write",
        "--iters 5 --calib-samples 4 --holdout 1 --write", _has_smollm2),
    Job("bench_ttfit_cg.py", ["bench_ttfit_sweeps"],
        "--iters 20 --sweeps 4,2,1 --section bench_ttfit_sweeps --write",
        "--iters 5 --sweeps 1 --calib-samples 4 --holdout 1 --section bench_ttfit_sweeps "
        "--write", _has_smollm2),
    *(Job("bench_training.py", [f"bench_training_{t}"], f"--tables {t} --write",
          f"--quick --tables {t} --write") for t in TRAINING_TABLES),
    Job("bench_energy.py", ["bench_energy"], "--write",
        f"--models {ENERGY_MODELS[True]} --repeats 5 --write", _has_energy_models),
    Job("bench_entropy.py", ["bench_entropy"], f"--model {ENTROPY_MODEL[False]} --write",
        f"--model {ENTROPY_MODEL[True]} --windows 8 --write", _has_entropy_model),
    Job("bench_compress_summary.py", ["bench_compress_summary"], "--write", "--write"),
    Job("bench_demo_settings.py", ["bench_demo_settings"], "--write",
        "--ratios 0.2 --samples 4 --windows 2 --heal-samples 4 --heals '' --write",
        _has_smollm2),
]  # fmt: skip


def sections(text: str) -> dict[str, str]:
    """Every ``<!-- name:start -->`` … ``<!-- name:end -->`` section of ``text`` by name."""
    pattern = re.compile(r"<!-- ([\w-]+):start -->\n(.*?)\n<!-- \1:end -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def changed_numbers(before: str | None, after: str) -> int:
    """How many numbers of ``after`` differ from ``before`` position by position (all of
    them when the section is new), counting a change in how many there are."""
    new = NUMBER.findall(after)
    if before is None:
        return len(new)
    old = NUMBER.findall(before)
    return sum(a != b for a, b in zip(old, new, strict=False)) + abs(len(old) - len(new))


def stamp(path: Path, names: list[str], command: str) -> None:
    """Put ``command`` at the top of each quick section, so that it names what made it."""
    text = path.read_text()
    for name in names:
        marker = f"<!-- {name}:start -->\n"
        line = f"{STAMP}`{command}`\n\n"
        if marker in text and line not in text:
            text = text.replace(marker, marker + line, 1)
    path.write_text(text)


def _read(path: Path) -> dict[str, str]:
    """The sections of ``path`` without their quick-run stamps."""
    found = sections(path.read_text()) if path.exists() else {}
    return {k: re.sub(rf"^{re.escape(STAMP)}.*\n\n", "", v) for k, v in found.items()}


def run_job(job: Job, quick: bool, target: Path, dry_run: bool) -> str:
    """Run one job (unless its inputs are missing) and say what it refreshed."""
    why = job.needs(quick)
    command = shlex.join(["python", *job.argv(quick)[1:]])
    if why is not None:
        return f"skipped {job.name}: {why}"
    if dry_run:
        return f"would run: {command}"
    before = _read(target)
    env = {**os.environ, "QTF_RESULTS": str(target)}
    t0 = time.perf_counter()
    proc = subprocess.run(job.argv(quick), cwd=ROOT, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return f"FAILED {job.name} (exit {proc.returncode}, {seconds:.0f} s): {command}"
    after = _read(target)
    if quick:
        stamp(target, job.sections, command)
    parts = [
        f"{s}: {changed_numbers(before.get(s), after[s])} numbers changed"
        if s in after
        else f"{s}: not written"
        for s in job.sections
    ]
    return f"refreshed in {seconds:.0f} s: " + "; ".join(parts)


def select(only: str | None) -> list[Job]:
    """The jobs named in ``only`` (comma-separated section names), or all of them."""
    if not only:
        return JOBS
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {j.name: j for j in JOBS}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"unknown job(s) {unknown}; choose from {sorted(known)}")
    return [known[w] for w in wanted]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"small grids, into {QUICK_RESULTS}")
    ap.add_argument("--only", default=None, help="comma-separated job names (see --list)")
    ap.add_argument("--list", action="store_true", help="show the jobs and their commands")
    ap.add_argument("--dry-run", action="store_true", help="say what would run")
    args = ap.parse_args(argv)
    jobs = select(args.only)
    if args.list:
        for j in jobs:
            full, quick = shlex.join(j.argv(False)[1:]), shlex.join(j.argv(True)[1:])
            print(f"{j.name}\n  full:  {full}\n  quick: {quick}")
        return 0
    target = QUICK_RESULTS if args.quick else RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    failed = 0
    for j in jobs:
        print(f"== {j.name}", flush=True)
        line = run_job(j, args.quick, target, args.dry_run)
        failed += line.startswith("FAILED")
        print(line, flush=True)
    seconds = time.perf_counter() - t0
    print(f"{len(jobs)} jobs in {seconds:.0f} s, {failed} failed; tables in {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
