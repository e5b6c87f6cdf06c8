"""Training runs behind the results tables: each run is named once, trained (or resumed) by
``qtf train`` in its own process, and measured from its ``best/`` checkpoint.

A run is a :class:`RunSpec` (a folder name, a row label and the ``qtf train`` arguments).
:func:`train` starts it, resumes it when its folder holds checkpoints, and skips it when its
summary says it finished. :func:`measure` scores the model with the best validation
perplexity on the whole test split and counts, on real test text, what one query costs: FLOPs
per token, circuits, the routed fraction, the mean TT-FFN rank and the energy estimate of
every hardware profile. Its result is cached beside the run (``bench_metrics.json``, keyed by
the checkpoint file). :func:`latencies_ms` times several models side by side.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from _common import MALLOC_ENV, interleaved_medians_ms

from qtensorformer.data import load_corpus, load_tokenizer
from qtensorformer.energy import PROFILES, EnergyEstimator, FlopsBreakdown
from qtensorformer.files import TOKENIZER_DIR, WEIGHTS_FILE, RunDir, read_json, write_json
from qtensorformer.model import QTensorFormer
from qtensorformer.train import evaluate

ROOT = Path(__file__).resolve().parent.parent
#: Statuses of a run that needs no more training.
FINISHED = ("completed", "early_stopped", "time_limit")
#: Tokens of one query (the energy estimate) and windows of real test text for the counts.
QUERY_LEN = 128
COUNT_WINDOWS = 8
CACHE = "bench_metrics.json"


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


def model_dir(run_dir: Path) -> Path:
    """The run's ``best/`` model, or its newest checkpoint when it never evaluated."""
    run = RunDir(run_dir)
    if run.has_best():
        return run.best
    newest = run.newest_checkpoint()
    if newest is None:
        raise FileNotFoundError(f"{run_dir} holds no model: train it first")
    return newest


def best_step(run_dir: Path) -> int | None:
    """The step of the lowest logged validation perplexity (the one ``best/`` holds)."""
    evals = [e for e in RunDir(run_dir).read_metrics() if e.get("event") == "eval"]
    return min(evals, key=lambda e: e["ppl"])["step"] if evals else None


def measure(spec: RunSpec, root: Path, test_max_tokens: int | None = None) -> RunMetrics:
    """Test perplexity (every test token, or the first ``test_max_tokens``) and per-query costs
    of the run's best model (cached beside the run)."""
    run_dir = root / spec.name
    src = model_dir(run_dir)
    key = f"{_cache_key(src)}:{test_max_tokens}"
    cache = run_dir / CACHE
    if cache.is_file() and read_json(cache).get("key") == key:
        return RunMetrics(**{**read_json(cache)["metrics"], "label": spec.label})
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
    metrics = RunMetrics(
        name=spec.name,
        label=spec.label,
        status=summary.get("status", "unfinished"),
        params=model.num_parameters(),
        steps=int(summary.get("steps", 0)),
        best_step=best_step(run_dir),
        test_ppl=res.ppl,
        test_word_ppl=res.ppl if tok.kind == "word" else res.word_ppl,
        test_tokens=res.tokens,
        tokenizer=tok.describe(),
        **query_costs(model, test_ids),
    )
    write_json(cache, {"key": key, "metrics": asdict(metrics)})
    return metrics


def _cache_key(src: Path) -> str:
    st = (src / WEIGHTS_FILE).stat()
    return f"{src}:{st.st_size}:{st.st_mtime_ns}"


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
def latencies_ms(
    run_dirs: dict[str, Path], repeats: int = 15, warmup: int = 2, batch: int = 1
) -> dict[str, float]:
    """Median ms per token of one eval forward on ``batch`` × :data:`QUERY_LEN` random
    tokens (fewer for a model with a shorter context), for every model, timed side by side
    in rounds (each model once per round, in a shuffled order)."""
    models = {k: QTensorFormer.from_pretrained(model_dir(d)).eval() for k, d in run_dirs.items()}
    g = torch.Generator().manual_seed(0)
    n = {k: min(QUERY_LEN, m.config.max_seq_len) for k, m in models.items()}
    calls = {
        k: partial(m, torch.randint(0, m.config.vocab_size, (batch, n[k]), generator=g))
        for k, m in models.items()
    }
    ms = interleaved_medians_ms(calls, repeats, warmup)
    return {k: v / (batch * n[k]) for k, v in ms.items()}


def dumps(metrics: list[RunMetrics]) -> str:
    """The metrics as JSON (the tables' raw numbers, for logs)."""
    return json.dumps([asdict(m) for m in metrics], indent=1)
