"""Read a run folder or a comparison folder into a :class:`~.content.ReportData`.

Nothing here formats or draws: the models table, the curves and the Pareto points come from
the run files; the per-token decisions and the per-layer distributions from an audit of the
model with the most pillars; the energy from the FLOPs of each model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import Tokenizer, load_corpus, load_tokenizer
from ..energy import PROFILES, EnergyEstimator, model_flops
from ..explain import AuditTrail, audit, explain_trail
from ..files import TOKENIZER_DIR, RunDir, read_json
from ..model import QTensorFormer
from ..train import latest_checkpoint
from .content import (
    Curve,
    Decision,
    EnergyTable,
    LayerDistribution,
    LayerNote,
    ModelRow,
    ParetoPoint,
    ParetoSeries,
    ReportData,
    RunSetup,
    TokenAnalysis,
)

__all__ = ["DEFAULT_TEXT", "RunRecord", "collect", "load_runs"]

DEFAULT_TEXT = (
    "the bank raised its interest rate after the river flooded the town , and the council met "
    "to discuss the pitch of the new stadium ."
)
SHORT_SAMPLE = 32  # tokens of the per-token figure


@dataclass
class RunRecord:
    """What one run folder holds (``model_dir``: its ``best/`` model or latest checkpoint)."""

    name: str
    path: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    pareto: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None

    @property
    def pillars(self) -> int:
        """How many ``use_*`` switches of the model configuration are on."""
        cfg = self.info.get("model_config", {})
        return sum(bool(v) for k, v in cfg.items() if k.startswith("use_"))


def _load_run(name: str, path: Path) -> RunRecord:
    run = RunDir(path)
    return RunRecord(
        name=name,
        path=run.path,
        metrics=run.read_metrics(),
        summary=run.read_summary() or {},
        pareto=read_json(run.pareto) or {},
        info=run.read_info() or {},
        model_dir=run.best if run.has_best() else latest_checkpoint(run.path),
    )


def load_runs(run_dir: str | Path) -> tuple[list[RunRecord], dict[str, Any]]:
    """The runs under ``run_dir`` (a comparison folder or one run) and the comparison table."""
    run = RunDir(run_dir)
    if run.is_comparison():
        comp = read_json(run.compare)
        return [_load_run(r["variant"], run.path / r["variant"]) for r in comp["rows"]], comp
    if run.is_run():
        return [_load_run(run.path.name, run.path)], {}
    raise FileNotFoundError(
        f"{run.path} is neither a run folder ({run.metrics.name}) nor a comparison folder "
        f"({run.compare.name}); point qtf report at what qtf train or qtf compare wrote"
    )


# ---------------------------------------------------------------------------- run files
def _setup(runs: list[RunRecord]) -> RunSetup | None:
    info = runs[0].info
    if not info:
        return None
    return RunSetup(info.get("data"), info.get("tokenizer"), runs[0].summary.get("protocol"))


def _model_row(run: RunRecord, base: RunRecord | None) -> ModelRow:
    s = run.summary
    row = ModelRow(
        name=run.name,
        params=s.get("params"),
        test_ppl=s.get("test_ppl"),
        valid_ppl=s.get("valid_ppl"),
        tokens_per_second=s.get("tokens_per_second"),
        train_seconds=s.get("train_seconds"),
        status=s.get("status"),
    )
    if base is not None:
        if row.test_ppl:
            row.ppl_vs_dense = row.test_ppl / base.summary["test_ppl"] - 1
        if row.params and base.summary.get("params"):
            row.fewer_params = base.summary["params"] / row.params
    return row


def _dense_baseline(runs: list[RunRecord]) -> RunRecord | None:
    """The run named ``dense`` when it has a test perplexity to compare with."""
    base = next((r for r in runs if r.name == "dense"), None)
    return base if base is not None and base.summary.get("test_ppl") else None


def _curve(run: RunRecord) -> Curve:
    train = [m for m in run.metrics if m.get("event") == "train"]
    evals = [m for m in run.metrics if m.get("event") == "eval"]
    return Curve(
        name=run.name,
        train_steps=[m["step"] for m in train],
        train_loss=[m["lm_loss"] for m in train],
        eval_steps=[m["step"] for m in evals],
        eval_ppl=[m["ppl"] for m in evals],
    )


def _pareto(run: RunRecord) -> ParetoSeries | None:
    points = run.pareto.get("points") or []
    if not points:
        return None
    front = {p["step"] for p in run.pareto.get("front", [])}
    return ParetoSeries(
        run.name, [ParetoPoint(p["params"], p["ppl"], p["step"] in front) for p in points]
    )


# ---------------------------------------------------------------------------- token analysis
def _sample_ids(
    run: RunRecord, tok: Tokenizer, text: str | None, data_dir: str | None, n: int
) -> tuple[list[int], str]:
    """Token ids of ``text`` or, when the run's corpus can be read, its validation split."""
    if text is not None:
        if "\n" not in text:
            return tok.encode(text), "given text"
        # lines as the corpus reads them: an end-of-line token after each
        ids = tok.encode_lines(text.splitlines()).tolist()
        return (ids if text.endswith("\n") else ids[:-1]), "given text"
    try:
        corpus = load_corpus(run.info.get("data", "wikitext-2"), data_dir, use_hf=False)
        ids = tok.encode_lines(corpus.split("valid"))[:n].tolist()
        if len(ids) >= 8:
            return ids, f"first {len(ids)} tokens of the {corpus.name} validation split"
    except (FileNotFoundError, ValueError, KeyError):
        pass
    return tok.encode(DEFAULT_TEXT), "built-in sample sentence"


def _random_ids(vocab_size: int, n: int) -> list[int]:
    """``n`` reproducible random token ids, for a model saved without its tokenizer."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (n,), generator=g).tolist()


def _decisions(trail: AuditTrail) -> list[list[Decision]]:
    """The first sequence's decisions, per layer then token."""
    return [
        [Decision(r.token, r.entropy, r.rank, r.path) for r in trail.layer(i)]
        for i in range(trail.n_layers)
    ]


def _notes(lines: list[str]) -> list[LayerNote]:
    """Explanation lines (indented ones detail the line above) as one note per layer."""
    notes: list[LayerNote] = []
    for line in lines:
        if line.startswith("  ") and notes:
            notes[-1].details.append(line.strip())
        else:
            notes.append(LayerNote(line.strip()))
    return notes


def _distributions(trail: AuditTrail) -> list[LayerDistribution]:
    """Scores, ranks and routed fraction of every layer over all the trail's sequences."""
    targets = trail.settings.get("targets") or []
    out = []
    for li in range(trail.n_layers):
        recs = [r for r in trail.records if r.layer == li]
        has_router = bool(recs) and recs[0].hardness is not None
        routed = sum(r.path == "quantum" for r in recs) / max(len(recs), 1)
        out.append(
            LayerDistribution(
                layer=li,
                entropies=[r.entropy for r in recs if r.entropy is not None],
                ranks=[r.rank for r in recs if r.rank is not None],
                routed_fraction=routed if has_router else None,
                target=targets[li] if li < len(targets) else None,
            )
        )
    return out


def _token_analysis(
    run: RunRecord, text: str | None, data_dir: str | None, sample_tokens: int, seq_len: int
) -> TokenAnalysis:
    """Audit the run's model on a short sample (per token) and a long one (per layer)."""
    if run.model_dir is None:
        raise ValueError(
            f"{run.path} holds no saved model (best/ or checkpoints/): train it before "
            "asking for its per-token decisions"
        )
    model = QTensorFormer.from_pretrained(run.model_dir)
    tok_dir = run.model_dir / TOKENIZER_DIR
    tok = load_tokenizer(tok_dir) if tok_dir.is_dir() else None
    if tok is not None:
        ids, sample = _sample_ids(run, tok, text, data_dir, sample_tokens)
    else:
        ids = _random_ids(model.config.vocab_size, sample_tokens)
        sample = "random tokens (no tokenizer saved with the model)"
    max_len = model.config.max_seq_len
    short = audit(model, torch.tensor(ids[: min(len(ids), SHORT_SAMPLE, max_len)]), tok)
    # the long sample: as many rows of up to max_len tokens as the sample fills
    width = min(max_len, seq_len, len(ids))
    rows = max(1, len(ids) // min(max_len, seq_len))
    long_trail = audit(model, torch.tensor(ids[: rows * width]).view(rows, width), tok)
    return TokenAnalysis(
        model=run.name,
        sample=sample,
        entropy_source=model.config.entropy_source,
        decisions=_decisions(short),
        notes=_notes(explain_trail(short)),
        layers=_distributions(long_trail),
        n_tokens=rows * width,
    )


def _energy(runs: list[RunRecord], seq_len: int) -> EnergyTable | None:
    """Estimated µJ per query of every run's model on every hardware profile."""
    uj, head, classical = {}, {}, {}
    for r in runs:
        if r.model_dir is None:
            continue
        m = QTensorFormer.from_pretrained(r.model_dir)
        f = model_flops(m, min(seq_len, m.config.max_seq_len))
        uj[r.name] = {h: EnergyEstimator(h).estimate(f).energy_uj for h in PROFILES}
        classical[r.name] = f.total - f.simulation
        head[r.name] = f.by_module.get("lm_head", 0) / max(classical[r.name], 1)
    kinds = {h: p.kind for h, p in PROFILES.items()}
    return EnergyTable(seq_len, uj, kinds, head, classical) if uj else None


# ---------------------------------------------------------------------------- collect
def collect(
    run_dir: str | Path,
    text: str | None = None,
    data_dir: str | None = None,
    sample_tokens: int = 512,
    seq_len: int = 128,
) -> ReportData:
    """Everything the report of ``run_dir`` (a run or a comparison folder) shows.

    ``text``: the sample for the per-token decisions (default: the run's validation text);
    ``sample_tokens``: tokens of the per-layer distributions; ``seq_len``: query length of
    the energy estimates. Raises FileNotFoundError when ``run_dir`` holds neither.
    """
    runs, _ = load_runs(run_dir)
    base = _dense_baseline(runs)
    target = max(
        (r for r in runs if r.model_dir is not None), key=lambda r: r.pillars, default=None
    )
    return ReportData(
        title=str(Path(run_dir)),
        setup=_setup(runs),
        models=[_model_row(r, base) for r in runs],
        dense_baseline=base is not None,
        curves=[_curve(r) for r in runs],
        pareto=[s for s in map(_pareto, runs) if s is not None],
        tokens=None
        if target is None
        else _token_analysis(target, text, data_dir, sample_tokens, seq_len),
        energy=_energy(runs, seq_len),
    )
