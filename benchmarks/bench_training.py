"""The training tables of docs/RESULTS.md: core metrics at convergence, three seeds at one
epoch, the ablation, and the scale-up, each trained here and measured from its best model.

Each table names its runs (small preset on WikiText-2 unless stated; ``--quick`` shrinks every
budget to a few minutes of training in all). A run with a record (``benchmarks/records/
training/<run>.json``, see ``_training.py``) is read from it; any other is trained, or resumed
(``qtf train --resume``) when unfinished, then measured and recorded, so the command can be
stopped and run again, in this session or a later one; ``--no-train`` builds the tables from
records and finished runs only. A run shared by two tables (the one-epoch dense and
every-pillar models are the seeds table, the ablation's two ends and the scale-up's small
row) is trained once.

    python benchmarks/bench_training.py --tables core --write
    python benchmarks/bench_training.py --tables seeds,ablation,scale --write
    python benchmarks/bench_training.py --list          # every run's command and state
    python benchmarks/bench_training.py --runs 1ep-tt-seed0,1ep-rank-seed0   # just these
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from _common import write_section
from _training import (
    ROOT,
    RunMetrics,
    RunSpec,
    measure,
    read_record,
    run_state,
    status,
    train,
)

from qtensorformer.config import PRESETS, model_config
from qtensorformer.energy import PROFILES
from qtensorformer.model import QTensorFormer

WT2 = ("--data", "wikitext-2", "--seq-len", "128", "--batch-size", "16")
SMALL = ("--preset", "small")
RANKS = ("--set", "embedding_rank=384", "--set", "tt_rank=64")
EVERY = ("--variant", "all", *RANKS, "--set", "rank_step=8")
SEEDS = (0, 1, 2)
#: WikiText-2's full word-level vocabulary (the scale-up table counts parameters with it).
WT2_VOCAB = 33_278


@dataclass(frozen=True)
class Budget:
    """A run's length and evaluation settings: the full tables' and ``--quick``'s."""

    converge: tuple[str, ...]
    one_epoch: tuple[str, ...]
    seeds: tuple[int, ...]
    root: str
    #: Where the runs' records are kept (relative to the repository).
    records: str
    latency_repeats: int
    #: What the tables' headings call the two lengths.
    converge_name: str = "at convergence"
    one_epoch_name: str = "one epoch"
    test_max_tokens: int | None = None


#: The core runs stop early on valid perplexity (3 evaluations, 1.5 epochs, without a new best)
#: or after 3 epochs, the cosine schedule spanning them: the "steps (best)" column shows
#: whether the best model came before the end, and the valid-change column how much the last
#: epoch still gained. Three, not more: a run must finish within one working session here
#: (training throughput: docs/RESULTS.md, bench_train_speed).
FULL = Budget(
    converge=("--epochs", "3", "--patience", "3", "--eval-every", "500"),
    one_epoch=("--max-tokens", "2088000", "--eval-every", "250"),
    seeds=SEEDS,
    root="runs/core",
    records="benchmarks/records/training",
    latency_repeats=15,
    converge_name="at 3 epochs (early stopping on valid)",
)
#: ``--quick``: a few steps per run, only to check that every table is reproduced (its time:
#: docs/RESULTS.md, "Regenerating every table").
QUICK = Budget(
    converge=(
        "--max-tokens",
        "6000",
        "--warmup",
        "1",
        "--patience",
        "1",
        "--eval-every",
        "1",
        "--eval-max-tokens",
        "1000",
        "--final-eval-max-tokens",
        "2000",
    ),
    one_epoch=(
        "--max-tokens",
        "4000",
        "--warmup",
        "1",
        "--eval-every",
        "2",
        "--eval-max-tokens",
        "1000",
        "--final-eval-max-tokens",
        "2000",
    ),
    seeds=(0, 1),
    root="runs/bench-quick/training",
    records="runs/bench-quick/training/records",
    latency_repeats=3,
    converge_name="at 6,000 tokens (quick)",
    one_epoch_name="4,000 tokens (quick)",
    test_max_tokens=2_000,
)


def core_specs(b: Budget) -> list[RunSpec]:
    """Dense vs every pillar to convergence, word-level and BPE."""
    out = []
    for tok, prefix in (("word", "word"), ("bpe:8000", "bpe8000")):
        common = (*SMALL, *WT2, *b.converge, "--tokenizer", tok)
        out += [
            RunSpec(f"{prefix}-dense", "dense baseline", (*common, "--dense")),
            RunSpec(f"{prefix}-all", "every pillar", (*common, *EVERY)),
        ]
    return out


def one_epoch(
    name: str, label: str, args: Iterable[str], b: Budget, seed: int = 0, preset: str = "small"
) -> RunSpec:
    """A one-epoch run (word-level) of ``preset`` with ``seed``."""
    args = ("--preset", preset, *WT2, *b.one_epoch, *args, "--seed", str(seed))
    return RunSpec(f"1ep-{name}-seed{seed}", label, args)


def seed_specs(b: Budget) -> list[RunSpec]:
    """Dense and every pillar at one epoch, one run per seed."""
    return [one_epoch(n, lab, a, b, s) for n, lab, a in ENDS for s in b.seeds]


ENDS = (("dense", "dense baseline", ("--dense",)), ("all", "every pillar", EVERY))
ABLATION_MIDDLE = (
    ("tt", "+ TT compression (embedding rank 384, TT rank 64)", ("--variant", "tt", *RANKS)),
    (
        "rank",
        "+ adaptive rank (score: quantum-encoder entropy; encoder included)",
        ("--variant", "default", *RANKS, "--set", "use_adaptive_rank=true", "--set", "rank_step=8"),
    ),
    (
        "qka",
        "+ quantum-kernel attention (every token)",
        (
            "--variant",
            "default",
            *RANKS,
            "--set",
            "use_adaptive_rank=true",
            "--set",
            "rank_step=8",
            "--set",
            "use_quantum_attention=true",
        ),
    ),
    (
        "route",
        "+ selective routing (20% of tokens)",
        ("--variant", "all", *RANKS, "--set", "rank_step=8", "--set", "use_qkan=false"),
    ),
)


def ablation_specs(b: Budget) -> list[RunSpec]:
    """The cumulative rows (the ends with every seed); the energy-budget row is added by
    :func:`budget_spec` once the dense model's energy is known."""
    dense = [one_epoch("dense", "dense baseline", ("--dense",), b, s) for s in b.seeds]
    middle = [one_epoch(n, lab, a, b) for n, lab, a in ABLATION_MIDDLE]
    every = [one_epoch("all", "+ DARUAN (= every pillar)", EVERY, b, s) for s in b.seeds]
    return dense + middle + every


def budget_spec(b: Budget, energy_uj: float) -> RunSpec:
    """Every pillar under an energy budget per query (``energy_uj`` on ``cpu_xeon``)."""
    args = (*EVERY, "--max-energy-uj", f"{energy_uj:.0f}")
    return one_epoch("all-budget", "+ energy budget (the dense model's estimate)", args, b)


#: Medium's every-pillar budget: 2.19× fewer parameters than medium dense (11,711,488), the
#: small preset's ratio; ``max_params`` then picks TT rank 96 for every TT layer.
MEDIUM_BUDGET = 5_350_000


def scale_specs(b: Budget) -> list[RunSpec]:
    """Small (the seeds table's seed-0 runs) and medium, dense and every pillar, one epoch."""
    every = ("--variant", "all", "--set", "rank_step=8", "--set", f"max_params={MEDIUM_BUDGET}")
    label = f"medium, every pillar (max_params={MEDIUM_BUDGET:,})"
    return [
        *(one_epoch(n, f"small, {lab}", a, b) for n, lab, a in ENDS),
        one_epoch("medium-dense", "medium, dense", ("--dense",), b, preset="medium"),
        one_epoch("medium-all", label, every, b, preset="medium"),
    ]


# ---------------------------------------------------------------------------------- tables
def fmt(x: float | None, spec: str = ",.2f") -> str:
    return "—" if x is None else format(x, spec)


def rel(x: float, base: float) -> str:
    return f"{x / base - 1:+.1%}"


def spread(values: list[float]) -> str:
    """``mean ± sample std (min–max, n)`` of ``values``."""
    if len(values) == 1:
        return f"{values[0]:,.2f} (one seed)"
    m, s = statistics.fmean(values), statistics.stdev(values)
    return f"{m:,.2f} ± {s:,.2f} ({min(values):,.2f}–{max(values):,.2f}, n={len(values)})"


def commands(specs: list[RunSpec], root: Path) -> str:
    return "\n".join(" ".join(s.command(root)) for s in specs)


def header(
    title: str, cmd: str, specs: list[RunSpec], ms: dict[str, RunMetrics], b: Budget
) -> list[str]:
    dates = sorted({ms[s.name].measured for s in specs})
    return [
        f"### {title}",
        "",
        f"Command: `{cmd}` (trains the runs below that have no record in `{b.records}/`, "
        "measures each one's `best/` model and records it; recorded runs are read).  ",
        f"{machine_line(specs, ms)} (measured {', '.join(dates)}; each run's record names its own)",
        "",
        "```bash",
        commands(specs, Path(b.root)),
        "```",
        "",
    ]


def machine_line(specs: list[RunSpec], ms: dict[str, RunMetrics]) -> str:
    """``Machine: X`` when every run was trained and measured on one machine, else which
    runs on which (training on another CPU changes the numbers, not only the speed)."""
    by: dict[str, list[str]] = {}
    for s in specs:
        names = by.setdefault(ms[s.name].machine, [])
        if s.name not in names:
            names.append(s.name)
    if len(by) == 1:
        return f"Machine: {next(iter(by))}"
    return "Machines: " + "; ".join(f"{m}: {', '.join(n)}" for m, n in sorted(by.items()))


#: The core table's tokenizers: run-name prefix -> (short name, detail for the heading).
CORE_TOKENIZERS = {"word": ("Word-level", "vocabulary 33,278"), "bpe8000": ("BPE", "8,000 tokens")}


def core_table(ms: dict[str, RunMetrics], prefix: str) -> list[str]:
    """One tokenizer's rows: dense and every pillar side by side (speed: each model against a
    dense model of its sizes timed beside it, so the dense row shows the timing's noise)."""
    d, a = ms[f"{prefix}-dense"], ms[f"{prefix}-all"]
    rows = [
        "| model | params | × fewer | steps (best) | status | valid ppl change, last third "
        "| test ppl | vs dense | ppl per word | MFLOP / token | circuits / token | routed "
        "| mean FFN rank | ms / token | speed vs dense |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in (d, a):
        rows.append(
            f"| {m.label} | {m.params:,} | {d.params / m.params:.2f} | {m.steps:,} "
            f"({fmt(m.best_step, ',')}) | {m.status} | {fmt(m.late_valid_change(), '+.1%')} | "
            f"{m.test_ppl:,.2f} | "
            f"{rel(m.test_ppl, d.test_ppl)} | {fmt(m.test_word_ppl)} | "
            f"{m.flops_per_token / 1e6:.2f} | {m.circuits_per_token:.1f} | "
            f"{fmt(m.routed_fraction, '.1%')} | {fmt(m.mean_rank, '.1f')} | "
            f"{m.ms_per_token:.3f} | {m.speed_vs_dense:.2f} |"
        )
    return rows


def energy_table(ms: list[RunMetrics]) -> list[str]:
    """Estimated µJ per 128-token query of test text on every hardware profile."""
    rows = [
        "| model | " + " | ".join(PROFILES) + " |",
        "|---|" + "---:|" * len(PROFILES),
    ]
    for m in ms:
        cells = " | ".join(f"{m.energy_uj[h]:,.0f}" for h in PROFILES)
        tokenizer, _ = CORE_TOKENIZERS[m.name.split("-")[0]]
        rows.append(f"| {tokenizer}: {m.label} | {cells} |")
    return rows


def build_core(b: Budget, cmd: str, train_missing: bool) -> str | None:
    title = f"Core metrics: dense vs every pillar {b.converge_name} (issue #17)"
    started = begin(title, core_specs(b), b, cmd, train_missing)
    if started is None:
        return None
    ms, lines = started
    for prefix, (name, detail) in CORE_TOKENIZERS.items():
        lines += [f"{name} ({detail}):", "", *core_table(ms, prefix), ""]
    lines += [
        "Estimated energy per query (µJ, one 128-token window of test text):",
        "",
        *energy_table(list(ms.values())),
    ]
    return "\n".join(lines)


def build_seeds(b: Budget, cmd: str, train_missing: bool) -> str | None:
    n = len(b.seeds)
    title = f"{b.one_epoch_name.capitalize()}, {n} seeds: dense vs every pillar (issue #17)"
    started = begin(title, seed_specs(b), b, cmd, train_missing)
    if started is None:
        return None
    ms, lines = started
    lines += [
        "| model | params | test ppl per seed | mean ± std (min–max) | mean vs dense |",
        "|---|---:|---|---:|---:|",
    ]
    means = {}
    for name, label, _ in ENDS:
        runs = [ms[f"1ep-{name}-seed{s}"] for s in b.seeds]
        means[name] = statistics.fmean(r.test_ppl for r in runs)
        per = ", ".join(f"{r.test_ppl:,.2f}" for r in runs)
        ppl = [r.test_ppl for r in runs]
        vs = rel(means[name], means["dense"])
        lines.append(f"| {label} | {runs[0].params:,} | {per} | {spread(ppl)} | {vs} |")
    return "\n".join(lines)


def build_ablation(b: Budget, cmd: str, train_missing: bool) -> str | None:
    specs = ablation_specs(b)
    ms = collect(specs, b, train_missing)
    if ms is None:
        return None
    dense = ms[specs[0].name]
    extra = budget_spec(b, dense.energy_uj["cpu_xeon"])
    more = collect([extra], b, train_missing)
    if more is None:
        return None
    ms.update(more)
    specs.append(extra)
    title = f"Ablation at {b.one_epoch_name}: what each pillar adds (issue #17)"
    lines = header(title, cmd, specs, ms, b)
    lines += [
        "| component added | params | test ppl | ppl vs dense | MFLOP / token | FLOPs vs dense "
        "| energy vs dense (cpu_xeon) | speed vs dense | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups = _rows(specs)
    d_mean = statistics.fmean(ms[s.name].test_ppl for s in groups[0])
    for group in groups:
        runs = [ms[s.name] for s in group]
        m, ppl = runs[0], [r.test_ppl for r in runs]
        mean = statistics.fmean(ppl)
        lines.append(
            f"| {m.label} | {m.params:,} | {spread(ppl) if len(ppl) > 1 else f'{mean:,.2f}'} | "
            f"{rel(mean, d_mean)} | {m.flops_per_token / 1e6:.2f} | "
            f"{rel(m.flops_per_token, dense.flops_per_token)} | "
            f"{rel(m.energy_uj['cpu_xeon'], dense.energy_uj['cpu_xeon'])} | "
            f"{m.speed_vs_dense:.2f} | {len(runs)} |"
        )
    return "\n".join(lines)


def _rows(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """The specs grouped by row (a row's seeds share a name up to ``-seedN``)."""
    groups: dict[str, list[RunSpec]] = {}
    for s in specs:
        groups.setdefault(s.name.rsplit("-seed", 1)[0], []).append(s)
    return list(groups.values())


def param_rows() -> list[str]:
    """Parameters of every preset (by code, vocabulary 33,278): dense, the default
    compressed config (every pillar at TT rank 8, as ``qtf params``), and every pillar at
    the trained small model's ranks (embedding 384, TT 64)."""
    rows = [
        "| preset | d_model / layers / heads | dense | every pillar, TT rank 8 (× fewer) "
        "| every pillar, ranks 384 / 64 (× fewer) | float32 MB: dense → rank 8 → 384 / 64 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p, sz in PRESETS.items():
        d, r8, r64 = _count(p), _count(p, tt_rank=8), _count(p, embedding_rank=384, tt_rank=64)
        rows.append(
            f"| {p} | {sz['d_model']} / {sz['n_layers']} / {sz['n_heads']} | {d:,} | "
            f"{r8:,} ({d / r8:.1f}) | {r64:,} ({d / r64:.2f}) | "
            f"{d * 4e-6:.1f} → {r8 * 4e-6:.1f} → {r64 * 4e-6:.1f} |"
        )
    return rows


def _count(preset: str, **ranks: int) -> int:
    """Parameters of ``preset`` (vocabulary 33,278): dense without ``ranks``, else every
    pillar at those ranks."""
    variant = "all" if ranks else "dense"
    over = {**ranks, "rank_step": 8} if ranks else {}
    cfg = model_config(variant, preset, WT2_VOCAB, max_seq_len=128, **over)
    return QTensorFormer(cfg).num_parameters()


def build_scale(b: Budget, cmd: str, train_missing: bool) -> str | None:
    title = "Scale-up: parameters of every preset, and trained perplexity (issue #17)"
    specs = scale_specs(b)
    started = begin(title, specs, b, cmd, train_missing)
    if started is None:
        return None
    ms, lines = started
    lines += [*param_rows(), "", f"Trained {b.one_epoch_name} (word-level WikiText-2, seed 0):", ""]
    return "\n".join([*lines, *scale_rows(ms, specs)])


def scale_rows(ms: dict[str, RunMetrics], specs: list[RunSpec]) -> list[str]:
    """The trained rows: each preset's dense run, then its every-pillar run against it."""
    lines = [
        "| model | params (× fewer) | test ppl | vs dense of its preset | speed vs dense |",
        "|---|---:|---:|---:|---:|",
    ]
    for dense, every in zip(specs[::2], specs[1::2], strict=True):
        d = ms[dense.name]
        for s in (dense, every):
            m = ms[s.name]
            vs, fewer = rel(m.test_ppl, d.test_ppl), d.params / m.params
            lines.append(
                f"| {s.label} | {m.params:,} ({fewer:.2f}) | {m.test_ppl:,.2f} | {vs} | "
                f"{m.speed_vs_dense:.2f} |"
            )
    return lines


def begin(
    title: str, specs: list[RunSpec], b: Budget, cmd: str, train_missing: bool
) -> tuple[dict[str, RunMetrics], list[str]] | None:
    """The runs' metrics (see :func:`collect`) and the table's heading; None when runs are
    missing."""
    ms = collect(specs, b, train_missing)
    return None if ms is None else (ms, header(title, cmd, specs, ms, b))


def collect(specs: list[RunSpec], b: Budget, train_missing: bool) -> dict[str, RunMetrics] | None:
    """Every run's metrics: read from its record, else trained when missing (when asked),
    measured and recorded; None when some run has neither a record nor a finished folder and
    training was not asked for (the reason is printed)."""
    root, records = ROOT / b.root, ROOT / b.records
    out = {}
    for s in specs:
        if s.name in out:
            continue
        known = read_record(s, records, b.test_max_tokens)
        if known is None and train_missing:
            train(s, root)
        elif known is None and status(root / s.name) is None:
            print(f"not recorded or finished: {s.name} ({' '.join(s.command(Path(b.root)))})")
            return None
        out[s.name] = known or measure(s, root, records, b.test_max_tokens, b.latency_repeats)
    return out


TABLES: dict[str, Callable[[Budget, str, bool], str | None]] = {
    "core": build_core,
    "seeds": build_seeds,
    "ablation": build_ablation,
    "scale": build_scale,
}
SPECS: dict[str, Callable[[Budget], list[RunSpec]]] = {
    "core": core_specs,
    "seeds": seed_specs,
    "ablation": ablation_specs,
    "scale": scale_specs,
}


def all_specs(b: Budget) -> dict[str, RunSpec]:
    """Every table's runs by name, with the energy-budget run once the dense seed-0 run (whose
    energy sets its budget) is recorded."""
    specs = {s.name: s for make in SPECS.values() for s in make(b)}
    dense = read_record(specs["1ep-dense-seed0"], ROOT / b.records, b.test_max_tokens)
    if dense is not None:
        extra = budget_spec(b, dense.energy_uj["cpu_xeon"])
        specs[extra.name] = extra
    return specs


def list_runs(names: list[str], b: Budget) -> None:
    """Each table's ``qtf train`` commands, each followed by its run's state."""
    root, records = ROOT / b.root, ROOT / b.records
    every = all_specs(b)
    for t in names:
        specs = SPECS[t](b)
        if t == "ablation":
            specs += [s for n, s in every.items() if n.startswith("1ep-all-budget")]
        print(f"# {t}")
        for s in specs:
            state = run_state(s, root, records, b.test_max_tokens)
            print(f"{' '.join(s.command(Path(b.root)))}  # {state}")
        if t == "ablation" and len(specs) == len(ablation_specs(b)):
            print("# and every pillar under --max-energy-uj (once the dense model is recorded)")


def train_runs(names: list[str], b: Budget) -> int:
    """Train, measure and record the named runs in this order (no tables)."""
    every = all_specs(b)
    unknown = [n for n in names if n not in every]
    if unknown:
        print(f"unknown run(s) {unknown}; choose from {sorted(every)}", file=sys.stderr)
        return 2
    for name, m in collect([every[n] for n in names], b, True).items():
        print(f"{name}: test ppl {m.test_ppl:,.2f}, {m.speed_vs_dense:.2f}× dense speed")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--tables", default="core,seeds,ablation,scale", help=f"comma-separated: {','.join(TABLES)}"
    )
    ap.add_argument("--quick", action="store_true", help="tiny budgets (minutes, not hours)")
    ap.add_argument("--no-train", action="store_true", help="only tabulate finished runs")
    ap.add_argument("--list", action="store_true", help="print the runs' commands and states")
    ap.add_argument("--runs", help="comma-separated run names: train and record just these")
    ap.add_argument("--write", action="store_true", help="write the tables to the results file")
    args = ap.parse_args(argv)
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        ap.error(f"unknown table(s) {unknown}; choose from {list(TABLES)}")
    b = QUICK if args.quick else FULL
    if args.list:
        list_runs(names, b)
        return 0
    if args.runs:
        return train_runs([r.strip() for r in args.runs.split(",") if r.strip()], b)
    given = argv if argv is not None else sys.argv[1:]
    cmd = "python benchmarks/bench_training.py " + " ".join(given)
    for t in names:
        body = TABLES[t](b, cmd, not args.no_train)
        if body is None:
            print(f"{t}: runs missing, table not built")
            continue
        print(body)
        if args.write:
            write_section(f"bench_training_{t}", body, before="bench_entropy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
