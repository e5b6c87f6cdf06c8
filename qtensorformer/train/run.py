"""Runs from names: data + tokenizer preparation, model configs by variant, training one model,
and comparing variants under one token budget (what ``qtf train``/``compare``/``demo`` call).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import VARIANT_NAMES, VARIANTS, ModelConfig, model_config
from ..data import Tokenizer, build_tokenizer, load_corpus
from ..files import RunDir, write_json
from ..model import QTensorFormer
from .config import TrainConfig
from .evaluate import PROTOCOL
from .trainer import Trainer, TrainResult, dist_env

__all__ = [
    "VARIANTS",
    "VARIANT_NAMES",
    "PreparedData",
    "compare",
    "model_config",
    "prepare_data",
    "train_one",
]


@dataclass
class PreparedData:
    """Token streams of each split, the tokenizer, and the word counts (per-word ppl)."""

    name: str
    source: str
    tokenizer: Tokenizer
    ids: dict[str, torch.Tensor]
    words: dict[str, int]

    def info(self) -> dict[str, Any]:
        return {
            "data": self.name,
            "data_source": self.source,
            "tokenizer": self.tokenizer.describe(),
            "tokens": {k: int(v.numel()) for k, v in self.ids.items()},
        }


def prepare_data(
    name: str = "wikitext-2",
    data_dir: str | None = None,
    tokenizer: str | Tokenizer = "word",
    use_hf: bool = True,
) -> PreparedData:
    """Load corpus ``name`` and tokenise every split (``tokenizer``: a spec for
    :func:`~qtensorformer.data.build_tokenizer`, or a tokenizer, e.g. from a checkpoint)."""
    corpus = load_corpus(name, data_dir, use_hf=use_hf)
    tok = build_tokenizer(tokenizer, corpus.train) if isinstance(tokenizer, str) else tokenizer
    ids = {s: tok.encode_lines(corpus.split(s)) for s in ("train", "valid", "test")}
    words = {s: corpus.num_tokens(s) for s in ("train", "valid", "test")}
    return PreparedData(name, corpus.source, tok, ids, words)


def train_one(
    model_cfg: ModelConfig,
    data: PreparedData,
    train_cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    console: Console | None = None,
    quiet: bool = False,
    summary_table: bool = True,
) -> tuple[QTensorFormer, TrainResult]:
    """Build (seeded), train and evaluate one model; the run folder gets ``run.json``."""
    torch.manual_seed(train_cfg.seed)
    model = QTensorFormer(model_cfg)
    run_dir = Path(run_dir)
    info = {**data.info(), "model_config": model.config.to_dict(), "params": model.num_parameters()}
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and dist_env()[1] == 0:
        write_json(RunDir(run_dir).info, {**info, "train_config": train_cfg.to_dict()})
    trainer = Trainer(
        model,
        data.ids["train"],
        data.ids["valid"],
        train_cfg,
        run_dir,
        data.tokenizer,
        data.ids["test"],
        data.words,
        extra_summary={k: info[k] for k in ("data", "tokenizer", "params")},
        console=console,
        quiet=quiet,
        summary_table=summary_table,
    )
    return model, trainer.fit(resume=resume)


def compare(
    variants: list[str],
    preset: str,
    data: PreparedData,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    console: Console | None = None,
    quiet_runs: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Train each variant with the same data, token budget, schedule and seed; print and save
    one table (``out_dir/compare.json``, ``compare.md``)."""
    console = console or Console()
    out_dir = Path(out_dir)
    rows = []
    for v in variants:
        cfg = model_config(v, preset, data.tokenizer.vocab_size, **overrides)
        console.rule(f"{preset} / {VARIANT_NAMES.get(v, v)}")
        t0 = time.perf_counter()
        model, res = train_one(cfg, data, train_cfg, out_dir / v, console=console, quiet=quiet_runs)
        if res.status == "interrupted":
            console.print("[yellow]comparison stopped: the remaining variants were not trained[/]")
            break
        rows.append(_compare_row(v, model, res, time.perf_counter() - t0))
    console.print(_compare_table(rows, _compare_title(preset, data)))
    console.print(
        f"[dim]Same data, token budget ({train_cfg.max_tokens or 'epoch-based'}), schedule and "
        f"seed for every model. Perplexity: {PROTOCOL.format(L=train_cfg.seq_len)}.[/]"
    )
    table_json = RunDir(out_dir).compare
    write_json(table_json, {"rows": rows, **data.info(), "train_config": train_cfg.to_dict()})
    table_json.with_suffix(".md").write_text(_compare_markdown(rows))
    return rows


def _compare_row(
    variant: str, model: QTensorFormer, res: TrainResult, wall_seconds: float
) -> dict[str, Any]:
    """One variant's line of the comparison."""
    return {
        "variant": variant,
        "name": VARIANT_NAMES.get(variant, variant),
        "params": model.num_parameters(),
        "status": res.status,
        "steps": res.steps,
        "tokens": res.tokens,
        "valid_ppl": res.valid.ppl if res.valid else None,
        "test_ppl": res.test.ppl if res.test else None,
        "test_word_ppl": res.test.word_ppl if res.test else None,
        "tokens_per_s": res.tokens_per_second,
        "train_seconds": res.train_seconds,
        "wall_seconds": wall_seconds,
    }


def _compare_cells(r: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Name, parameters, test perplexity and throughput of row ``r``, each also relative to
    the ``base`` row (the dense baseline, else the first)."""
    fewer = base["params"] / r["params"]
    rel = r["test_ppl"] / base["test_ppl"] - 1 if r["test_ppl"] and base["test_ppl"] else None
    speed = r["tokens_per_s"] / base["tokens_per_s"]
    return [
        r["name"],
        f"{r['params']:,}",
        f"{fewer:.2f}",
        f"{r['test_ppl']:.2f}" if r["test_ppl"] else "-",
        f"{rel:+.1%}" if rel is not None else "-",
        f"{r['tokens_per_s']:,.0f}",
        f"{speed:.2f}",
        f"{r['train_seconds']:.0f}",
    ]


def _baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in rows if r["variant"] == "dense"), rows[0])


def _compare_title(preset: str, data: PreparedData) -> str:
    """The table's title: the preset, and the corpus by name and by the files it came from
    (a ``--data-dir`` may hold another corpus under a known name)."""
    return f"{preset}: {data.name} from {data.source} ({data.tokenizer.describe()})"


def _compare_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=escape(title))  # paths may hold brackets
    for col in (
        "model",
        "params",
        "× fewer",
        "test ppl",
        "vs dense",
        "tokens/s",
        "× speed",
        "train s",
        "status",
    ):
        table.add_column(col, justify="left" if col in ("model", "status") else "right")
    base = _baseline(rows)
    for r in rows:
        table.add_row(*_compare_cells(r, base), r["status"])
    return table


def _compare_markdown(rows: list[dict[str, Any]]) -> str:
    md = [
        "| model | params | × fewer params | test ppl | ppl vs dense | train tokens/s | "
        "speed vs dense | train s | steps | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = _baseline(rows)
    for r in rows:
        cells = [*_compare_cells(r, base), str(r["steps"]), r["status"]]
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def overrides_from_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["use_qkan=true", "tt_rank=4"]`` → ModelConfig overrides (JSON values)."""
    names = {f.name for f in dataclasses.fields(ModelConfig)} | {"hidden_dim"}
    out: dict[str, Any] = {}
    for p in pairs:
        key, sep, val = p.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {p!r}")
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(f"--set: {key!r} is not a ModelConfig field{hint}")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out
