"""The layer analysis (:class:`~qtensorformer.compress.analysis.AnalysisReport`) written out:
``analysis.md`` with PNG figures, a self-contained ``analysis.html`` and ``analysis.json``.

Figures: the spectra of every matrix type (plain and whitened, one line a layer), the entropy
by layer, and the sensitivity by layer against the whitened entropy.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compress.analysis import AnalysisConfig, AnalysisReport, analyze
from ..compress.evaluate import calibration_ids, find_raw_text, raw_text_perplexity
from ..compress.models import load_causal_lm
from ..files import atomic_write
from .figures import _plt, _save, _value_axis, viridis_hex

__all__ = ["AnalysisRun", "analysis_tables", "analyze_model", "write_analysis"]

MEASURES = {
    "entropy": "entropy of σ(W)",
    "w_entropy": "entropy of σ(W·S), whitened",
    "w_discarded": "whitened energy discarded at the budget rank",
}
FIGURES = ("spectra", "entropy", "sensitivity")
_NO_CORRELATION = (
    "No correlation: a correlation with a confidence interval needs at least 4 layers, and "
    "this model has {n}."
)
ALT = {"spectra": "singular spectra", "entropy": "entropy by layer", "sensitivity": "sensitivity"}


# ---------------------------------------------------------------------------- figures
def _draw_spectra(rep: AnalysisReport, path: Path) -> Path:
    kinds = rep.kinds()
    fig, axes = _plt().subplots(2, len(kinds), figsize=(2.8 * len(kinds) + 1, 6), squeeze=False)
    for col, kind in enumerate(kinds):
        for row, field in enumerate(("spectrum", "w_spectrum")):
            ax = axes[row][col]
            for m in (m for m in rep.matrices if m.kind == kind):
                s = getattr(m, field)
                top = s[0] if s and s[0] > 0 else 1.0
                colour = viridis_hex(m.layer / max(rep.n_layers - 1, 1))
                ax.plot([v / top for v in s], color=colour, lw=1)
            ax.set_yscale("log")
            ax.set_title(f"{kind}\n{'plain' if row == 0 else 'whitened'}", fontsize=9)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("σᵢ / σ₁")
            if row == 1:
                ax.set_xlabel("index i")
    fig.suptitle("Singular spectra, one line a layer (dark: first, yellow: last)")
    return _save(fig, path)


def _draw_entropy(rep: AnalysisReport, path: Path) -> Path:
    fig, axes = _plt().subplots(1, 2, figsize=(11, 4))
    layers = list(range(rep.n_layers))
    for ax, field, title in zip(
        axes, ("entropy", "w_entropy"), ("plain σ(W)", "whitened σ(W·S)"), strict=True
    ):
        for i, kind in enumerate(rep.kinds()):
            ys = {m.layer: getattr(m, field) for m in rep.matrices if m.kind == kind}
            ax.plot(sorted(ys), [ys[k] for k in sorted(ys)], "o-", ms=3, color=f"C{i}", label=kind)
        ax.plot(layers, rep.per_layer(field), color="black", lw=2.5, label="mean")
        ax.set(xlabel="layer", ylabel="entropy (nats)", title=f"Entropy of the spectrum, {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def _draw_sensitivity(rep: AnalysisReport, path: Path) -> Path | None:
    if not rep.sensitivity:
        return None
    fig, (a, b) = _plt().subplots(1, 2, figsize=(11, 4))
    layers = [s.layer for s in rep.sensitivity]
    change = [100 * s.change for s in rep.sensitivity]
    a.bar(layers, change, color="C3")
    a.set(
        xlabel="layer",
        ylabel="perplexity change (%)",
        title=f"Only this layer compressed ({rep.ratio:.0%} removed)",
    )
    a.grid(alpha=0.3, axis="y")
    x = [rep.per_layer("w_entropy")[k] for k in layers]
    b.scatter(x, change, c=[viridis_hex(k / max(rep.n_layers - 1, 1)) for k in layers])
    for k, xi, yi in zip(layers, x, change, strict=True):
        b.annotate(str(k), (xi, yi), fontsize=7, textcoords="offset points", xytext=(3, 3))
    corr = rep.correlations.get("w_entropy")
    label = "; ".join(f"{c.method} {c.r:+.2f}" for c in corr) if corr else "too few layers"
    b.set(
        xlabel="mean whitened entropy (nats)",
        ylabel="perplexity change (%)",
        title=f"Entropy vs sensitivity ({label})",
    )
    if min(change) > 0:
        _value_axis(b, change)
    b.grid(alpha=0.3)
    return _save(fig, path)


def _draw(rep: AnalysisReport, folder: Path) -> dict[str, Path]:
    drawn = {
        "spectra": _draw_spectra(rep, folder / "spectra.png"),
        "entropy": _draw_entropy(rep, folder / "entropy.png"),
        "sensitivity": _draw_sensitivity(rep, folder / "sensitivity.png"),
    }
    return {k: p for k, p in drawn.items() if p is not None}


# ---------------------------------------------------------------------------- tables
def analysis_tables(rep: AnalysisReport) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables as (header, rows): ``layers``, ``kinds``, ``correlations``."""
    sens = {s.layer: s for s in rep.sensitivity}
    ent, went = rep.per_layer("entropy"), rep.per_layer("w_entropy")
    eff, disc = rep.per_layer("w_effective_rank"), rep.per_layer("w_discarded")
    layers = []
    for k in range(rep.n_layers):
        s = sens.get(k)
        layers.append(
            [
                str(k),
                f"{ent[k]:.3f}",
                f"{went[k]:.3f}",
                f"{eff[k]:.1f}",
                f"{disc[k]:.1%}",
                "—" if s is None else f"{s.ppl:,.2f}",
                "—" if s is None else f"{s.change:+.2%}",
            ]
        )
    kinds = []
    for kind in rep.kinds():
        ms = [m for m in rep.matrices if m.kind == kind]
        means = {
            f: sum(getattr(m, f) for m in ms) / len(ms)
            for f in ("entropy", "w_entropy", "discarded", "w_discarded")
        }
        n, m = ms[0].shape
        kinds.append(
            [
                kind,
                f"{n}×{m}",
                str(ms[0].rank),
                f"{means['entropy']:.3f}",
                f"{means['w_entropy']:.3f}",
                f"{means['discarded']:.1%}",
                f"{means['w_discarded']:.1%}",
            ]
        )
    corr = [
        [MEASURES[k], c.method, f"{c.r:+.3f}", f"{c.ci[0]:+.3f} to {c.ci[1]:+.3f}", f"{c.p:.3g}"]
        for k, cs in rep.correlations.items()
        for c in cs
    ]
    return {
        "layers": (
            [
                "layer",
                "entropy",
                "whitened entropy",
                "whitened eff. rank",
                "whitened discarded",
                "ppl, this layer compressed",
                "change",
            ],
            layers,
        ),
        "kinds": (
            [
                "matrix type",
                "shape",
                "budget rank",
                "entropy",
                "whitened entropy",
                "discarded",
                "whitened discarded",
            ],
            kinds,
        ),
        "correlations": (
            ["per-layer measure vs sensitivity", "method", "r", "95% CI", "permutation p"],
            corr,
        ),
    }


def _verdict_lines(rep: AnalysisReport) -> list[str]:
    out = []
    for measure in ("entropy", "w_entropy"):
        v = rep.middle_verdict(measure)
        lo, hi = v["middle"]
        out.append(
            f"{MEASURES[measure]}: are the middle layers ({lo}–{hi}) the most entangled? "
            f"{'Yes' if v['middle_highest'] else 'No'}. Peak at layer {v['peak_layer']} "
            f"({'inside' if v['peak_in_middle'] else 'outside'} the middle third); "
            f"middle-third mean {v['middle_mean']:.3f} vs outer {v['outer_mean']:.3f} "
            f"({v['difference']:+.1%})."
        )
    return out


def _intro(rep: AnalysisReport, title: str, protocol: str | None) -> list[str]:
    cal = rep.calibration
    lines = [
        f"Model: {title}. Calibration: {cal['n_samples']} × {cal['seq_len']} tokens "
        f"(statistics of the uncompressed model). Budget: {rep.ratio:.0%} of each matrix's "
        "parameters removed (SVD-LLM's uniform rank). Analysis took "
        f"{rep.seconds:,.0f} s.",
    ]
    if rep.base_ppl is not None:
        lines.append(
            f"Sensitivity: perplexity with one layer's matrices truncated by SVD-LLM at that "
            f"rank; uncompressed {rep.base_ppl:,.2f}. Perplexity protocol: {protocol or '?'}."
        )
    return lines


# ---------------------------------------------------------------------------- renderers
def _md_table(table: tuple[list[str], list[list[str]]]) -> list[str]:
    header, rows = table
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*out, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _markdown(rep, title, protocol, figures: dict[str, str]) -> str:
    t = analysis_tables(rep)
    lines = [f"# Layer analysis: {title}", "", *_intro(rep, title, protocol), ""]
    lines += ["## Verdicts", "", *(f"- {v}" for v in _verdict_lines(rep)), ""]
    if rep.correlations:
        lines += ["## Entropy and sensitivity", "", *_md_table(t["correlations"])]
    elif rep.sensitivity:
        lines += ["## Entropy and sensitivity", "", _NO_CORRELATION.format(n=rep.n_layers), ""]
    for key in FIGURES:
        if key in figures:
            lines += [f"![{ALT[key]}]({figures[key]})", ""]
    lines += ["## Per layer", "", *_md_table(t["layers"])]
    lines += ["## Per matrix type", "", *_md_table(t["kinds"])]
    return "\n".join(lines)


def _html(rep, title, protocol, images: dict[str, bytes]) -> str:
    esc = html.escape
    t = analysis_tables(rep)

    def table(tb):
        head = "".join(f"<th>{esc(c)}</th>" for c in tb[0])
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in tb[1])
        return f"<table><tr>{head}</tr>{body}</table>"

    def img(key):
        data = base64.b64encode(images[key]).decode()
        return f'<img src="data:image/png;base64,{data}" alt="{ALT[key]}" style="max-width:100%">'

    parts = [f"<h1>Layer analysis: {esc(title)}</h1>"]
    parts += [f"<p>{esc(line)}</p>" for line in _intro(rep, title, protocol)]
    parts += ["<h2>Verdicts</h2><ul>"] + [f"<li>{esc(v)}</li>" for v in _verdict_lines(rep)]
    parts.append("</ul>")
    if rep.correlations:
        parts += ["<h2>Entropy and sensitivity</h2>", table(t["correlations"])]
    elif rep.sensitivity:
        parts += ["<h2>Entropy and sensitivity</h2>"]
        parts.append(f"<p>{esc(_NO_CORRELATION.format(n=rep.n_layers))}</p>")
    parts += [img(k) for k in FIGURES if k in images]
    parts += ["<h2>Per layer</h2>", table(t["layers"]), "<h2>Per matrix type</h2>"]
    parts.append(table(t["kinds"]))
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Layer analysis</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_analysis(
    rep: AnalysisReport, out: str | Path, title: str, protocol: str | None = None
) -> dict[str, Path]:
    """Write ``analysis.md``, ``analysis.html``, ``analysis.json`` and ``figures/*.png`` into
    ``out``; returns their paths by name."""
    out = Path(out)
    figures = _draw(rep, out / "figures")
    links = {k: f"figures/{p.name}" for k, p in figures.items()}
    images = {k: p.read_bytes() for k, p in figures.items()}
    paths = {f"figure {k}": p for k, p in figures.items()}
    record: dict[str, Any] = {"model": title, "protocol": protocol, **rep.to_dict()}
    for m in record["matrices"]:  # spectra to 6 significant digits: a third of the size
        for key in ("spectrum", "w_spectrum"):
            m[key] = [float(f"{v:.6g}") for v in m[key]]
    for name, text in (
        ("analysis.md", _markdown(rep, title, protocol, links)),
        ("analysis.html", _html(rep, title, protocol, images)),
        ("analysis.json", json.dumps(record, separators=(",", ":"))),
    ):
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        paths[name.split(".")[1]] = out / name
    return paths


@dataclass
class AnalysisRun:
    """What :func:`analyze_model` did: the report, the model's source, the perplexity
    protocol of the sensitivity evaluations and the files written."""

    report: AnalysisReport
    source: str
    protocol: str | None
    paths: dict[str, Path]


def analyze_model(
    spec: str,
    out: str | Path,
    *,
    ratio: float = 0.4,
    calib_data: str | None = None,
    calib_samples: int = 32,
    seq_len: int = 1024,
    eval_data: str | None = None,
    windows: int = 8,
    sensitivity: bool = True,
    progress: bool = True,
) -> AnalysisRun:
    """Load the causal LM ``spec`` (as ``qtf eval`` reads it), analyse it on calibration text
    (default raw WikiText-2 valid), measure each layer's sensitivity on the first
    ``windows`` windows of ``seq_len`` tokens of ``eval_data`` (default raw WikiText-2
    test), and write the report into ``out``."""
    loaded = load_causal_lm(spec)
    tok = loaded.tokenizer
    if tok is None:
        raise ValueError(f"{loaded.source} has no tokenizer saved with it: the analysis needs one")
    calibration = calibration_ids(tok, calib_data, calib_samples, seq_len)
    text = eval_data or find_raw_text("test")
    protocol: list[str] = []

    def evaluate(model) -> float:
        res = raw_text_perplexity(
            model, tok, text, seq_len=seq_len, windows=windows, progress=False
        )
        protocol[:] = [res.protocol]
        return res.ppl

    config = AnalysisConfig(ratio=ratio, sensitivity=sensitivity, progress=progress)
    rep = analyze(loaded.model, calibration, config, evaluate if sensitivity else None)
    proto = protocol[0] if protocol else None
    paths = write_analysis(rep, out, str(spec), proto)
    return AnalysisRun(rep, str(loaded.source), proto, paths)
