"""Reports of training runs: a Markdown file with PNG figures and a self-contained HTML page.

``write_report(run_dir)`` reads a run folder (``metrics.jsonl``, ``summary.json``,
``pareto.json``, ``best/``) or a comparison folder (``compare.json`` and one run folder per
variant) and writes ``report/report.md``, ``report/report.html`` (figures embedded as PNG) and
``report/figures/*.png``:

- the comparison table (parameters, test perplexity, speed);
- training curves (training loss, validation perplexity) and the Pareto front;
- one sample text run through the model with the most pillars: each word coloured by its
  entanglement score, its TT rank and whether it was routed to quantum attention;
- entropy and rank histograms and the routed fraction, per layer, over a longer sample;
- estimated energy per query on every hardware profile (labelled as estimates).
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["RunRecord", "load_runs", "write_report"]

DEFAULT_TEXT = (
    "the bank raised its interest rate after the river flooded the town , and the council met "
    "to discuss the pitch of the new stadium ."
)


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
        cfg = self.info.get("model_config", {})
        return sum(bool(v) for k, v in cfg.items() if k.startswith("use_"))


def _read_json(p: Path) -> dict:
    return json.loads(p.read_text()) if p.is_file() else {}


def _load_run(name: str, path: Path) -> RunRecord:
    from .train import latest_checkpoint

    metrics = []
    if (path / "metrics.jsonl").is_file():
        for line in (path / "metrics.jsonl").read_text().splitlines():
            if line.strip():
                metrics.append(json.loads(line))
    model_dir = path / "best" if (path / "best" / "model.safetensors").is_file() else None
    model_dir = model_dir or latest_checkpoint(path)
    return RunRecord(
        name,
        path,
        metrics,
        _read_json(path / "summary.json"),
        _read_json(path / "pareto.json"),
        _read_json(path / "run.json"),
        model_dir,
    )


def load_runs(run_dir: str | Path) -> tuple[list[RunRecord], dict[str, Any]]:
    """The runs under ``run_dir`` (a comparison folder or one run) and the comparison table."""
    run_dir = Path(run_dir)
    if (run_dir / "compare.json").is_file():
        comp = _read_json(run_dir / "compare.json")
        runs = [_load_run(r["variant"], run_dir / r["variant"]) for r in comp["rows"]]
        return runs, comp
    if (run_dir / "metrics.jsonl").is_file():
        return [_load_run(run_dir.name, run_dir)], {}
    raise FileNotFoundError(
        f"{run_dir} is neither a run folder (metrics.jsonl) nor a comparison folder "
        "(compare.json); point qtf report at what qtf train or qtf compare wrote"
    )


# ---------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _fig_curves(runs: list[RunRecord], out: Path) -> Path | None:
    plt = _plt()
    if not any(r.metrics for r in runs):
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, r in enumerate(runs):
        tr = [m for m in r.metrics if m.get("event") == "train"]
        ev = [m for m in r.metrics if m.get("event") == "eval"]
        # tokens are per step in the log; the x axis is the optimiser step
        if tr:
            a.plot([m["step"] for m in tr], [m["lm_loss"] for m in tr], color=f"C{i}", label=r.name)
        if ev:
            b.plot(
                [m["step"] for m in ev], [m["ppl"] for m in ev], "o-", color=f"C{i}", label=r.name
            )
    a.set(xlabel="step", ylabel="training LM loss (nats/token)", title="Training loss")
    b.set(xlabel="step", ylabel="validation perplexity", title="Validation perplexity")
    b.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter

    for axis in (b.yaxis,):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, out / "curves.png")


def _fig_pareto(runs: list[RunRecord], out: Path) -> Path | None:
    plt = _plt()
    pts = [(r, r.pareto.get("points", [])) for r in runs if r.pareto.get("points")]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (r, points) in enumerate(pts):
        front = {p["step"] for p in r.pareto.get("front", [])}
        xs = [p["params"] / 1e6 for p in points]
        ys = [p["ppl"] for p in points]
        ax.scatter(xs, ys, s=18, color=f"C{i}", alpha=0.35)
        fx = [p["params"] / 1e6 for p in points if p["step"] in front]
        fy = [p["ppl"] for p in points if p["step"] in front]
        ax.scatter(fx, fy, s=50, color=f"C{i}", edgecolor="black", label=f"{r.name} (front)")
    ax.set(
        xlabel="parameters (millions)",
        ylabel="validation perplexity",
        title="Evaluations and non-dominated points",
    )
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "pareto.png")


def _fig_tokens(trail, out: Path) -> Path:
    """Layers × tokens heat map of the score, with ranks written in and routed tokens boxed."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    L = trail.n_layers
    recs = [trail.layer(i) for i in range(L)]
    n = len(recs[0])
    ent = [[r.entropy if r.entropy is not None else float("nan") for r in row] for row in recs]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * n), 0.8 + 0.7 * L))
    im = ax.imshow(ent, aspect="auto", cmap="viridis")
    for li, row in enumerate(recs):
        for t, r in enumerate(row):
            if r.rank is not None:
                bright = im.norm(r.entropy) > 0.6 if r.entropy is not None else True
                ax.text(
                    t,
                    li,
                    str(r.rank),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if bright else "white",
                )
            if r.path == "quantum":
                ax.add_patch(Rectangle((t - 0.5, li - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(n), [r.token for r in recs[0]], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(L), [f"layer {i}" for i in range(L)])
    ax.set_title(
        "Score per token (colour), TT rank (number), routed to quantum attention (red box)"
    )
    fig.colorbar(im, ax=ax, label="entropy (nats)", fraction=0.03)
    return _save(fig, out / "tokens.png")


def _fig_hists(trail, out: Path) -> tuple[Path | None, Path | None]:
    plt = _plt()
    L = trail.n_layers
    hist_path = routed_path = None
    ents = [
        [r.entropy for r in trail.records if r.layer == i and r.entropy is not None]
        for i in range(L)
    ]
    ranks = [
        [r.rank for r in trail.records if r.layer == i and r.rank is not None] for i in range(L)
    ]
    if any(ents) or any(len(set(x)) > 1 for x in ranks):
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
        for i in range(L):
            if ents[i]:
                a.hist(ents[i], bins=30, histtype="step", lw=1.5, label=f"layer {i}")
            if ranks[i]:
                lo, hi = min(ranks[i]), max(ranks[i])
                b.hist(
                    ranks[i],
                    bins=range(lo, hi + 2),
                    histtype="step",
                    lw=1.5,
                    label=f"layer {i}",
                    align="left",
                )
        a.set(xlabel="entropy score (nats)", ylabel="tokens", title="Entropy per layer")
        b.set(xlabel="TT-FFN rank", ylabel="tokens", title="Rank per layer")
        for ax in (a, b):
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        hist_path = _save(fig, out / "histograms.png")
    routed = [[r.path == "quantum" for r in trail.records if r.layer == i] for i in range(L)]
    if any(r.hardness is not None for r in trail.records):
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        fr = [sum(x) / max(len(x), 1) for x in routed]
        ax.bar(range(L), fr, color="C3")
        targets = trail.settings.get("targets") or []
        for i, tg in enumerate(targets):
            if tg is not None:
                ax.hlines(tg, i - 0.4, i + 0.4, colors="black", linestyles="--")
        ax.set_xticks(range(L), [f"layer {i}" for i in range(L)])
        ax.set(ylabel="routed fraction", title="Tokens routed to quantum attention (-- target)")
        ax.set_ylim(0, max(0.05, *fr, *(t for t in targets if t is not None)) * 1.25)
        routed_path = _save(fig, out / "routed.png")
    return hist_path, routed_path


def _fig_energy(energy: dict[str, dict[str, float]], out: Path) -> Path | None:
    plt = _plt()
    if not energy:
        return None
    names = list(next(iter(energy.values())))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    k = len(energy)
    w = 0.8 / k
    for i, (model, vals) in enumerate(energy.items()):
        ax.bar([j + i * w for j in range(len(names))], [vals[h] for h in names], w, label=model)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=20)
    ax.set_yscale("log")
    ax.set(
        ylabel="µJ per query (ESTIMATE, log scale)",
        title="Estimated energy per query by hardware profile",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out / "energy.png")


# ---------------------------------------------------------------------------- analysis
def _sample_ids(run: RunRecord, tok, text: str | None, data_dir: str | None, n: int):
    """Token ids of ``text`` or, when the run's corpus can be read, its validation split."""
    if text is not None:
        return tok.encode(text), "given text"
    try:
        from .data import load_corpus

        corpus = load_corpus(run.info.get("data", "wikitext-2"), data_dir, use_hf=False)
        ids = tok.encode_lines(corpus.split("valid"))[:n].tolist()
        if len(ids) >= 8:
            return ids, f"first {len(ids)} tokens of the {corpus.name} validation split"
    except (FileNotFoundError, ValueError, KeyError):
        pass
    return tok.encode(DEFAULT_TEXT), "built-in sample sentence"


def _energy_table(runs: list[RunRecord], seq_len: int) -> dict[str, dict[str, float]]:
    from .energy import PROFILES, EnergyEstimator, model_flops
    from .model import QTensorFormer

    out = {}
    for r in runs:
        if r.model_dir is None:
            continue
        m = QTensorFormer.from_pretrained(r.model_dir)
        f = model_flops(m, min(seq_len, m.config.max_seq_len))
        out[r.name] = {h: EnergyEstimator(h).estimate(f).energy_uj for h in PROFILES}
    return out


def _colour(v: float | None, lo: float, hi: float) -> str:
    import matplotlib

    if v is None:
        return "#dddddd"
    x = 0.0 if hi <= lo else (v - lo) / (hi - lo)
    return matplotlib.colors.to_hex(matplotlib.colormaps["viridis"](x))


def _html_tokens(trail, layer: int) -> str:
    recs = trail.layer(layer)
    ents = [r.entropy for r in recs if r.entropy is not None]
    lo, hi = (min(ents), max(ents)) if ents else (0.0, 1.0)
    spans = []
    for r in recs:
        c = _colour(r.entropy, lo, hi)
        light = r.entropy is not None and hi > lo and (r.entropy - lo) / (hi - lo) > 0.6
        style = f"background:{c};color:{'#000' if light else '#fff'};padding:2px 4px;margin:2px;"
        style += "border-radius:3px;display:inline-block;"
        if r.path == "quantum":
            style += "outline:3px solid #d62728;"
        title = f"entropy {r.entropy}, rank {r.rank}, path {r.path}"
        rank = f"<sup>{r.rank}</sup>" if r.rank is not None else ""
        spans.append(
            f'<span style="{style}" title="{html.escape(title)}">'
            f"{html.escape(r.token)}{rank}</span>"
        )
    return "".join(spans)


# ---------------------------------------------------------------------------- report
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(v, spec: str = ",.2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    text: str | None = None,
    data_dir: str | None = None,
    sample_tokens: int = 512,
    seq_len: int = 128,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the figures for the run(s) in ``run_dir``.

    Returns the paths written (``markdown``, ``html`` and one per figure).

    Example (a run folder written by ``qtf train`` or ``qtf demo``)::

        paths = write_report("runs/demo")
        print(paths["html"])
    """
    from .data import load_tokenizer
    from .explain import audit, explain_trail
    from .model import QTensorFormer

    runs, _ = load_runs(run_dir)
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    figs = out / "figures"
    paths: dict[str, Path] = {}

    # ------------------------------------------------------------ comparison table
    header = ["model", "params", "test ppl", "valid ppl", "tokens/s", "train s", "status"]
    rows = []
    for r in runs:
        s = r.summary
        rows.append(
            [
                r.name,
                _fmt(s.get("params"), ",d") if s.get("params") is not None else "-",
                _fmt(s.get("test_ppl")),
                _fmt(s.get("valid_ppl")),
                _fmt(s.get("tokens_per_second"), ",.0f"),
                _fmt(s.get("train_seconds"), ",.0f"),
                str(s.get("status", "-")),
            ]
        )
    base = next((r for r in runs if r.name == "dense"), None)
    if base is not None and base.summary.get("test_ppl"):
        header += ["ppl vs dense", "× fewer params"]
        for row, r in zip(rows, runs, strict=True):
            tp, bp = r.summary.get("test_ppl"), base.summary["test_ppl"]
            row.append(f"{tp / bp - 1:+.1%}" if tp else "-")
            row.append(
                f"{base.summary['params'] / r.summary['params']:.2f}"
                if r.summary.get("params")
                else "-"
            )

    # ------------------------------------------------------------ figures
    for key, p in (("curves", _fig_curves(runs, figs)), ("pareto", _fig_pareto(runs, figs))):
        if p is not None:
            paths[key] = p
    target = max(
        (r for r in runs if r.model_dir is not None), key=lambda r: r.pillars, default=None
    )
    analysis_md, token_html, explanations, sample_note = [], "", [], ""
    if target is not None:
        model = QTensorFormer.from_pretrained(target.model_dir)
        tok_dir = target.model_dir / "tokenizer"
        tok = load_tokenizer(tok_dir) if tok_dir.is_dir() else None
        L = model.config.max_seq_len
        if tok is not None:
            ids, sample_note = _sample_ids(target, tok, text, data_dir, sample_tokens)
        else:
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(0, model.config.vocab_size, (sample_tokens,), generator=g).tolist()
            sample_note = "random tokens (no tokenizer saved with the model)"
        short = torch.tensor(ids[: min(len(ids), 32, L)])
        trail = audit(model, short, tok)
        paths["tokens"] = _fig_tokens(trail, figs)
        token_html = _html_tokens(trail, 0)
        explanations = explain_trail(trail)
        # a longer sample for the per-layer distributions: rows of up to L tokens
        k = max(1, len(ids) // min(L, seq_len))
        width = min(L, seq_len, len(ids))
        long_ids = torch.tensor(ids[: k * width]).view(k, width)
        long_trail = audit(model, long_ids, tok)
        h, rt = _fig_hists(long_trail, figs)
        if h is not None:
            paths["histograms"] = h
        if rt is not None:
            paths["routed"] = rt
        for li in range(long_trail.n_layers):
            recs = [x for x in long_trail.records if x.layer == li]
            e = [x.entropy for x in recs if x.entropy is not None]
            rk = [x.rank for x in recs if x.rank is not None]
            routed = [x.path == "quantum" for x in recs]
            analysis_md.append(
                [
                    str(li),
                    _fmt(sum(e) / len(e), ".3f") if e else "-",
                    _fmt(sum(rk) / len(rk), ".2f") if rk else "-",
                    f"{sum(routed) / len(routed):.1%}" if recs[0].hardness is not None else "-",
                ]
            )
    energy = _energy_table(runs, seq_len)
    if energy:
        paths["energy"] = _fig_energy(energy, figs)

    # ------------------------------------------------------------ markdown
    md = [f"# Report: {run_dir}", ""]
    first = runs[0].info
    if first:
        md += [
            f"Data: {first.get('data', '-')} ({first.get('tokenizer', '-')}). "
            f"Perplexity protocol: {runs[0].summary.get('protocol', '-')}",
            "",
        ]
    md += ["## Models", "", _md_table(header, rows), ""]
    if "curves" in paths:
        md += ["## Training", "", "![training curves](figures/curves.png)", ""]
    if "pareto" in paths:
        md += [
            "## Pareto front",
            "",
            "Every evaluation (faint) and the non-dominated ones "
            "(perplexity, parameters, FLOPs per token, latency, energy).",
            "",
            "![pareto](figures/pareto.png)",
            "",
        ]
    if target is not None:
        md += [
            f"## Decisions per token: {target.name}",
            "",
            f"Sample: {sample_note}; score: {model.config.entropy_source} entropy.",
            "",
            "![tokens](figures/tokens.png)",
            "",
        ]
        md += [("  - " if line.startswith("  ") else "- ") + line.strip() for line in explanations]
        md += [
            "",
            f"Per layer, over {long_ids.numel()} tokens:",
            "",
            _md_table(["layer", "mean entropy", "mean rank", "routed"], analysis_md),
            "",
        ]
        for key, title in (("histograms", "Entropy and rank"), ("routed", "Routing")):
            if key in paths:
                md += [f"![{title}](figures/{paths[key].name})", ""]
    if energy:
        names = list(next(iter(energy.values())))
        md += [
            "## Energy per query (estimates)",
            "",
            f"Forward FLOPs of one query of {seq_len} random tokens × J/FLOP of each profile "
            "(docs/ENERGY.md). These are estimates, not measurements.",
            "",
            _md_table(
                ["model", *[f"{h} µJ" for h in names]],
                [[m, *[f"{v[h]:,.4g}" for h in names]] for m, v in energy.items()],
            ),
            "",
            "![energy](figures/energy.png)",
            "",
        ]
    out.mkdir(parents=True, exist_ok=True)
    md_text = "\n".join(md) + "\n"
    (out / "report.md").write_text(md_text)
    paths["markdown"] = out / "report.md"

    # ------------------------------------------------------------ html (self-contained)
    def img(p: Path) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'

    body = []
    for line in md_text.splitlines():
        if line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            body.append(img(out / name))
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            h2 = html.escape(line[3:])
            body.append(f"<h2>{h2}</h2>")
            if h2.startswith("Decisions per token") and token_html:
                body.append(
                    f"<p>Layer 0, colour = entropy, superscript = TT rank, red outline "
                    f"= routed to quantum attention:</p><p>{token_html}</p>"
                )
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-:"):
                continue
            tag = "th" if not body or not body[-1].startswith("<tr") else "td"
            body.append(
                "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"
            )
        elif line.lstrip().startswith("- "):
            body.append(f"<li>{html.escape(line.lstrip()[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    # wrap consecutive rows in tables, list items in lists
    page, open_tag = [], None
    for b in body:
        tag = "table" if b.startswith("<tr") else "ul" if b.startswith("<li") else None
        if tag != open_tag:
            if open_tag:
                page.append(f"</{open_tag}>")
            if tag:
                page.append(f"<{tag}>")
            open_tag = tag
        page.append(b)
    if open_tag:
        page.append(f"</{open_tag}>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    )
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Q-TensorFormer report"
        f"</title><style>{style}</style></head><body>{''.join(page)}</body></html>"
    )
    (out / "report.html").write_text(doc)
    paths["html"] = out / "report.html"
    return paths
