"""Training runs behind the results tables: each run is named once, trained (or resumed) by
``qtf train`` in its own process, measured from its ``best/`` checkpoint, and recorded.

A run is a :class:`RunSpec` (a folder name, a row label and the ``qtf train`` arguments).
:func:`train` starts it, resumes it when its folder holds checkpoints, and skips it when its
summary says it finished. :func:`measure` scores the model with the best validation
perplexity on the whole test split, counts on real test text what one query costs (FLOPs
per token, circuits, the routed fraction, the mean TT-FFN rank, the energy estimate of every
hardware profile), and times it beside a dense model of the same sizes. It writes the result
to a record (``<records>/<run>.json``: the numbers, the run's arguments, the machine and the
date), which the tables read from then on: the full tables' records are kept in the
repository (``benchmarks/records/training/``), so a table can gather runs trained in
different sessions, and deleting a record retrains and remeasures its run.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from _common import MALLOC_ENV, interleaved_medians_ms, machine

from qtensorformer.data import load_corpus, load_tokenizer
from qtensorformer.energy import PROFILES, EnergyEstimator, FlopsBreakdown
from qtensorformer.files import TOKENIZER_DIR, RunDir, read_json, write_json
from qtensorformer.model import QTensorFormer
from qtensorformer.train import evaluate

ROOT = Path(__file__).resolve().parent.parent
#: Statuses of a run that needs no more training.
FINISHED = ("completed", "early_stopped", "time_limit")
#: Tokens of one query (the energy estimate) and windows of real test text for the counts.
QUERY_LEN = 128
COUNT_WINDOWS = 8


@dataclass(frozen=True)
class RunSpec:
    """One training run: its folder under the runs root, its row label, and the arguments of
    ``qtf train`` (without ``--out`` and ``--resume``)."""

    name: str
    label: str
    args: tuple[str, ...]

    def command(self, root: Path) -> list[str]:
        """The ``qtf train`` command line of this run in ``root``."""
        return ["qtf", "train", *self.args, "--out", str(root / self.name)]


def status(run_dir: Path) -> str | None:
    """The run's summary status (None when it never finished a summary)."""
    summary = RunDir(run_dir).read_summary()
    return None if summary is None else summary.get("status")


def train(spec: RunSpec, root: Path) -> str:
    """Train ``spec`` in ``root`` unless it finished: resumed when it has checkpoints. Runs
    ``qtf train`` in a child process under the benchmarks' allocator settings and returns
    the final status; raises RuntimeError when the child fails."""
    run_dir = root / spec.name
    if status(run_dir) in FINISHED:
        return status(run_dir)
    argv = spec.command(root)
    if RunDir(run_dir).newest_checkpoint() is not None:
        argv.append("--resume")
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(argv)}", flush=True)
    cmd = [sys.executable, "-m", "qtensorformer", *argv[1:]]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **MALLOC_ENV})
    if proc.returncode != 0:
        raise RuntimeError(f"{spec.name}: qtf train exited with {proc.returncode}")
    return status(run_dir) or "unknown"


@dataclass
class RunMetrics:
    """What :func:`measure` found for one run (perplexities of its ``best/`` model)."""

    name: str
    label: str
    status: str
    params: int
    steps: int
    best_step: int | None
    test_ppl: float
    test_word_ppl: float | None
    test_tokens: int
    tokenizer: str
    flops_per_token: float
    circuits_per_token: float
    routed_fraction: float | None
    mean_rank: float | None
    energy_uj: dict[str, float] = field(default_factory=dict)
    #: Median ms per token of one eval forward on a 128-token query: the model, and a freshly
    #: initialised dense model of the same sizes timed beside it (a dense model's cost does
    #: not depend on its weights).
    ms_per_token: float = math.nan
    dense_ms_per_token: float = math.nan
    #: Where and when it was measured, and the ``qtf train`` arguments of the run.
    machine: str = ""
    measured: str = ""
    #: ``[step, valid ppl]`` of every evaluation during training.
    valid_curve: list[list[float]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    test_max_tokens: int | None = None

    @property
    def speed_vs_dense(self) -> float:
        """How many times faster than the dense model of its sizes (below 1: slower)."""
        return self.dense_ms_per_token / self.ms_per_token

    def late_valid_change(self, fraction: float = 1 / 3) -> float | None:
        """Relative change of valid perplexity over the last ``fraction`` of the training
        steps (from the last evaluation at or before that point to the final one): near zero
        when the run had converged. None without two evaluations that far apart."""
        if not self.valid_curve:
            return None
        end_step, end = self.valid_curve[-1]
        earlier = [p for s, p in self.valid_curve if s <= end_step * (1 - fraction)]
        return end / earlier[-1] - 1 if earlier else None


def model_dir(run_dir: Path) -> Path:
    """The run's ``best/`` model, or its newest checkpoint when it never evaluated."""
    run = RunDir(run_dir)
    if run.has_best():
        return run.best
    newest = run.newest_checkpoint()
    if newest is None:
        raise FileNotFoundError(f"{run_dir} holds no model: train it first")
    return newest


def valid_curve(run_dir: Path) -> list[list[float]]:
    """``[step, valid ppl]`` of every evaluation the run logged."""
    evals = [e for e in RunDir(run_dir).read_metrics() if e.get("event") == "eval"]
    return [[e["step"], e["ppl"]] for e in evals]


def best_step(curve: list[list[float]]) -> int | None:
    """The step of the lowest validation perplexity (the one ``best/`` holds)."""
    return int(min(curve, key=lambda e: e[1])[0]) if curve else None


def read_record(spec: RunSpec, records: Path, test_max_tokens: int | None) -> RunMetrics | None:
    """The run's record when it was measured with these arguments and this test slice."""
    rec = read_json(records / f"{spec.name}.json")
    if rec is None or rec.get("args") != list(spec.args):
        return None
    if rec.get("test_max_tokens") != test_max_tokens:
        return None
    return RunMetrics(**{**rec, "label": spec.label})


def run_state(spec: RunSpec, root: Path, records: Path, test_max_tokens: int | None) -> str:
    """Where the run stands: recorded, finished, checkpointed, or not started."""
    rec = read_record(spec, records, test_max_tokens)
    if rec is not None:
        return f"recorded {rec.measured}: test ppl {rec.test_ppl:,.2f}"
    done = status(root / spec.name)
    if done is not None:
        return f"{done}, not yet recorded"
    if not (root / spec.name).is_dir():
        return "not started"
    newest = RunDir(root / spec.name).newest_checkpoint()
    return "started, no checkpoint yet" if newest is None else f"unfinished: {newest.name}"


def measure(
    spec: RunSpec,
    root: Path,
    records: Path,
    test_max_tokens: int | None = None,
    repeats: int = 15,
) -> RunMetrics:
    """Test perplexity (every test token, or the first ``test_max_tokens``), per-query costs
    and speed against dense of the run's best model, read from its record or measured and
    recorded."""
    known = read_record(spec, records, test_max_tokens)
    if known is not None:
        return known
    run_dir = root / spec.name
    src = model_dir(run_dir)
    model = QTensorFormer.from_pretrained(src).eval()
    tok = load_tokenizer(src / TOKENIZER_DIR)
    info = RunDir(run_dir).read_info() or {}
    corpus = load_corpus(info.get("data", "wikitext-2"))
    test_ids = tok.encode_lines(corpus.split("test"))  # the test split alone
    seq_len = int(info.get("train_config", {}).get("seq_len", model.config.max_seq_len))
    res = evaluate(
        model,
        test_ids,
        seq_len,
        32,
        test_max_tokens,
        corpus.num_tokens("test"),
        "cpu",
        progress=f"test {spec.name}",
    )
    summary = RunDir(run_dir).read_summary() or {}
    ms, dense_ms = speed_ms(model, repeats)
    curve = valid_curve(run_dir)
    metrics = RunMetrics(
        name=spec.name,
        label=spec.label,
        status=summary.get("status", "unfinished"),
        params=model.num_parameters(),
        steps=int(summary.get("steps", 0)),
        best_step=best_step(curve),
        test_ppl=res.ppl,
        test_word_ppl=res.ppl if tok.kind == "word" else res.word_ppl,
        test_tokens=res.tokens,
        tokenizer=tok.describe(),
        **query_costs(model, test_ids),
        ms_per_token=ms,
        dense_ms_per_token=dense_ms,
        machine=machine(),
        measured=time.strftime("%Y-%m-%d"),
        valid_curve=curve,
        args=list(spec.args),
        test_max_tokens=test_max_tokens,
    )
    if metrics.status in FINISHED:
        write_json(records / f"{spec.name}.json", asdict(metrics))
    return metrics


@torch.no_grad()
def query_costs(model: QTensorFormer, test_ids: torch.Tensor) -> dict:
    """FLOPs and circuits per token, routed fraction and mean FFN rank over the first
    :data:`COUNT_WINDOWS` windows of :data:`QUERY_LEN` test tokens (the model's context when
    shorter), and the energy estimate of every hardware profile for one query (the first
    window)."""
    n = min(QUERY_LEN, model.config.max_seq_len)
    windows = test_ids[: COUNT_WINDOWS * n].view(COUNT_WINDOWS, n)  # (w, n)
    model(windows)  # builds the eval weight caches
    _, _, stats = model(windows)
    routed = [s.routed_fraction for s in stats.layers if s.routed is not None]
    ranks = [s.rank.float().mean().item() for s in stats.layers if s.rank is not None]
    _, _, one = model(windows[:1])
    flops = FlopsBreakdown.from_stats(one, model, n)
    return {
        "flops_per_token": stats.total_flops / stats.tokens,
        "circuits_per_token": stats.circuits / stats.tokens,
        "routed_fraction": statistics.fmean(routed) if routed else None,
        "mean_rank": statistics.fmean(ranks) if ranks else None,
        "energy_uj": {h: EnergyEstimator(h).estimate(flops).energy_uj for h in PROFILES},
    }


@torch.no_grad()
def speed_ms(model: QTensorFormer, repeats: int = 15, warmup: int = 2) -> tuple[float, float]:
    """Median ms per token of one eval forward on :data:`QUERY_LEN` random tokens (fewer for a
    model with a shorter context): ``model``'s and a seeded, freshly initialised dense
    model's of the same sizes, timed side by side in rounds (each once per round, in a
    shuffled order)."""
    torch.manual_seed(0)
    dense = QTensorFormer(model.config.dense(max_params=None)).eval()
    n = min(QUERY_LEN, model.config.max_seq_len)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, n), generator=g)  # (1, n)
    calls = {"model": partial(model, ids), "dense": partial(dense, ids)}
    ms = interleaved_medians_ms(calls, repeats, warmup)
    return ms["model"] / n, ms["dense"] / n


def dumps(metrics: list[RunMetrics]) -> str:
    """The metrics as JSON (the tables' raw numbers, for logs)."""
    return json.dumps([asdict(m) for m in metrics], indent=1)
