"""`qtf report`: Markdown + self-contained HTML from a tiny comparison and a single run; the
collect step on real run folders; the two renderers on hand-built data."""

from __future__ import annotations

import base64
import json
import re

import matplotlib.image as mpimg
import pytest
from typer.testing import CliRunner

from qtensorformer.cli import app
from qtensorformer.files import RunDir
from qtensorformer.report import (
    ReportData,
    collect,
    load_runs,
    render_html,
    render_markdown,
    write_report,
)
from qtensorformer.report.content import (
    Curve,
    Decision,
    EnergyTable,
    LayerDistribution,
    LayerNote,
    ModelRow,
    ParetoPoint,
    ParetoSeries,
    RunSetup,
    TokenAnalysis,
)

FIGURES = ("curves", "pareto", "tokens", "histograms", "routed", "energy")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A tiny comparison (dense and all pillars) written once for every test here."""
    out = tmp_path_factory.mktemp("report") / "demo"
    r = CliRunner().invoke(
        app,
        [
            "demo",
            "--no-compress",
            "--max-tokens",
            "3000",
            "--variants",
            "dense,all",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    return out


# ---------------------------------------------------------------------------- end to end
def test_report_of_a_comparison(demo, tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(
        app, ["report", str(demo), "--out", str(out), "--text", "the bank by the river"]
    )
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    rows = json.loads(RunDir(demo).compare.read_text())["rows"]
    for row in rows:  # the table holds the measured numbers
        assert f"{row['test_ppl']:,.2f}" in md and f"{row['params']:,d}" in md
        assert f"{row['test_ppl']:,.2f}" in page
    for fig in FIGURES:
        png = out / "figures" / f"{fig}.png"
        assert f"figures/{fig}.png" in md
        img = mpimg.imread(png)  # a real, decodable image of a sensible size
        assert img.shape[0] > 200 and img.shape[1] > 300
    # self-contained: every figure embedded, no file references
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 6
    assert "figures/" not in page
    # the sample text, one coloured span per token with its entropy, rank and path
    spans = re.findall(r'<span style="background:#[0-9a-f]{6}[^"]*" title="entropy ([^"]+)">', page)
    assert len(spans) == 5 and all("rank" in s and "path" in s for s in spans)
    assert ">river<sup>" in page
    assert "ESTIMATE" in md.upper() and "Decisions per token: all" in md


def test_report_of_one_run_and_errors(demo, tmp_path):
    paths = write_report(demo / "dense", tmp_path / "rep1")
    assert paths["markdown"].is_file() and paths["html"].is_file()
    assert list(paths)[-2:] == ["markdown", "html"]
    assert "routed" not in paths  # a dense model routes nothing: no routing figure
    runs, comp = load_runs(demo / "dense")
    assert [r.name for r in runs] == ["dense"] and comp == {}
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        load_runs(tmp_path / "nothing")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "neither a run folder" in r.output


# ---------------------------------------------------------------------------- collect
def test_collect_reads_a_run_folder(demo):
    run = RunDir(demo / "all")
    summary = run.read_summary()
    metrics = run.read_metrics()
    data = collect(run.path, text="the bank by the river")
    assert data.title == str(run.path) and data.setup is not None
    assert data.setup.data == summary["data"] and data.setup.protocol == summary["protocol"]
    # the models table: numbers as recorded, not formatted
    (row,) = data.models
    assert row.name == "all" and row.params == summary["params"]
    assert row.test_ppl == summary["test_ppl"] and isinstance(row.test_ppl, float)
    assert not data.dense_baseline and row.ppl_vs_dense is None
    # curves and Pareto points from metrics.jsonl and pareto.json
    (curve,) = data.curves
    assert curve.train_steps == [m["step"] for m in metrics if m.get("event") == "train"]
    assert curve.eval_ppl == [m["ppl"] for m in metrics if m.get("event") == "eval"]
    (series,) = data.pareto
    assert series.points and any(p.on_front for p in series.points)
    # the per-token decisions: one row per layer, the given text's tokens in each
    tokens = data.tokens
    assert tokens is not None and tokens.model == "all" and tokens.sample == "given text"
    n_layers = len(tokens.layers)
    assert n_layers > 0 and len(tokens.decisions) == n_layers and len(tokens.notes) == n_layers
    assert [d.token for d in tokens.decisions[0]] == ["the", "bank", "by", "the", "river"]
    # the all-pillars model routes: every layer has a fraction and a training target
    for d in tokens.layers:
        assert 0.0 <= d.routed_fraction <= 1.0 and d.target is not None
        assert len(d.entropies) == tokens.n_tokens and len(d.ranks) == tokens.n_tokens
    assert data.energy is not None and list(data.energy.uj) == ["all"]
    assert all(v > 0 for v in data.energy.uj["all"].values())


def test_collect_of_a_comparison(demo):
    data = collect(demo, sample_tokens=64)
    rows = json.loads(RunDir(demo).compare.read_text())["rows"]
    assert [m.name for m in data.models] == [r["variant"] for r in rows]
    assert data.dense_baseline
    dense, allp = data.models
    assert dense.ppl_vs_dense == pytest.approx(0.0) and dense.fewer_params == pytest.approx(1.0)
    assert allp.ppl_vs_dense == pytest.approx(allp.test_ppl / dense.test_ppl - 1)
    assert allp.fewer_params == pytest.approx(dense.params / allp.params)
    assert data.tokens is not None and data.tokens.model == "all"  # the most pillars
    assert data.energy is not None and list(data.energy.uj) == ["dense", "all"]


# ---------------------------------------------------------------------------- renderers
def _hand_built() -> ReportData:
    """A report with every section, a token and a title that need escaping in HTML."""
    layer0 = [
        Decision("<unk>", 0.25, 3, "quantum"),
        Decision("bank", 0.75, 5, "classical"),
        Decision("&", None, None, "classical"),
    ]
    return ReportData(
        title="runs/<demo>",
        setup=RunSetup("synthetic", "word-level", "exp(mean NLL)"),
        models=[
            ModelRow("dense", 1_234_567, 123.456, 130.0, 99.4, 12.0, "completed", 0.0, 1.0),
            ModelRow("all", 400_000, 135.8016, None, None, None, None, 0.1, 3.08641675),
        ],
        dense_baseline=True,
        tokens=TokenAnalysis(
            model="all",
            sample="given text",
            entropy_source="quantum",
            decisions=[layer0],
            notes=[LayerNote("Layer 0: 3 tokens", ["'<unk>' got TT rank 3"])],
            layers=[LayerDistribution(0, [0.25, 0.75], [3, 5], 1 / 3, 0.2)],
            n_tokens=3,
        ),
        energy=EnergyTable(128, {"dense": {"cpu": 12345.678}, "all": {"cpu": 0.5}}),
    )


def test_markdown_from_hand_built_data():
    links = {k: f"figures/{k}.png" for k in FIGURES}
    md = render_markdown(_hand_built(), links)
    assert md.startswith("# Report: runs/<demo>\n")
    assert "Data: synthetic (word-level). Perplexity protocol: exp(mean NLL)" in md
    assert "| dense | 1,234,567 | 123.46 | 130.00 | 99 | 12 | completed | +0.0% | 1.00 |" in md
    assert "| all | 400,000 | 135.80 | - | - | - | - | +10.0% | 3.09 |" in md
    assert "| 0 | 0.500 | 4.00 | 33.3% |" in md  # means and routed fraction per layer
    assert "- Layer 0: 3 tokens\n  - '<unk>' got TT rank 3" in md
    assert "| dense | 1.235e+04 |" in md and "| cpu µJ |" in md
    for k in FIGURES:
        assert f"]({links[k]})" in md


def test_html_from_hand_built_data():
    images = {k: k.encode() for k in FIGURES}
    page = render_html(_hand_built(), images)
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert "<h1>Report: runs/&lt;demo&gt;</h1>" in page
    assert "<td>123.46</td>" in page and "<td>1,234,567</td>" in page
    assert "<th>× fewer params</th>" in page and "<td>+10.0%</td>" in page
    # tokens escaped, the routed one outlined, ranks as superscripts, no raw markup leaks
    assert ">&lt;unk&gt;<sup>3</sup></span>" in page and "<unk>" not in page
    assert ">&amp;</span>" in page  # no rank, no superscript
    assert page.count("outline:3px solid #d62728") == 1
    assert (
        "<li>Layer 0: 3 tokens<ul><li>&#x27;&lt;unk&gt;&#x27; got TT rank 3</li></ul></li>" in page
    )
    # every figure embedded as given, none linked
    for k in FIGURES:
        assert f"data:image/png;base64,{base64.b64encode(k.encode()).decode()}" in page
    assert "figures/" not in page


def test_renderers_leave_out_what_is_missing():
    data = ReportData(title="r", models=[ModelRow("dense", test_ppl=88.0)])
    md = render_markdown(data, {})
    page = render_html(data, {})
    for out in (md, page):
        assert "88.00" in out and "ppl vs dense" not in out
        assert "Data:" not in out and "Training" not in out and "Decisions per token" not in out
        assert "Energy" not in out
    assert "<img" not in page and "![" not in md


# ---------------------------------------------------------------------------- figures that read
def test_a_newline_token_is_drawn_and_keeps_the_notes_list_whole(demo, tmp_path):
    text = "the bank\nby the river"  # the line break becomes the end-of-line token
    paths = write_report(demo, tmp_path / "rep", text=text)
    md = paths["markdown"].read_text()
    page = paths["html"].read_text()
    data = collect(demo, text=text, sample_tokens=64)
    tokens = [d.token for d in data.tokens.decisions[0]]
    assert "↵" in tokens and all(t.strip() and "\n" not in t for t in tokens)
    assert ">↵<sup>" in page or ">↵</span>" in page
    notes = md.split("## Decisions per token", 1)[1].split("\n\nPer layer", 1)[0]
    bullets = [line for line in notes.splitlines() if line.startswith(("- ", "  - "))]
    assert bullets and notes.rstrip().endswith(bullets[-1])  # no line breaks out of the list


def _captured(monkeypatch):
    """Figures drawn by the report's functions, kept open instead of saved."""
    import qtensorformer.report.figures as figs

    kept = []
    monkeypatch.setattr(figs, "_save", lambda fig, path: kept.append(fig) or path)
    return figs, kept


def _tick_labels(ax):
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_yticklabels() if t.get_text()]


def test_log_axes_label_plain_numbers_and_the_lowest_value(monkeypatch, tmp_path):
    figs, kept = _captured(monkeypatch)
    series = [ParetoSeries("a", [ParetoPoint(1e6, 3.7, True)])]
    series.append(ParetoSeries("b", [ParetoPoint(2e6, 412.0, True)]))
    figs.draw_pareto(series, tmp_path / "p.png")
    ax = kept[-1].axes[0]
    labels = _tick_labels(ax)
    assert ax.get_yscale() == "log"
    assert labels and all(re.fullmatch(r"[\d,.]+", t) for t in labels), labels  # no 4×10⁰
    values = [float(t.replace(",", "")) for t in labels]
    assert min(values) <= 3.7 * 1.13 and max(values) >= 412 / 1.13  # both ends labelled


def test_one_evaluation_gets_a_sensible_axis_and_its_value(monkeypatch, tmp_path):
    figs, kept = _captured(monkeypatch)
    curve = Curve("dense", [10, 20], [5.6, 5.5], [20], [248.3])
    figs.draw_curves([curve], tmp_path / "c.png")
    ax = kept[-1].axes[1]
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "linear" and lo == 0 and hi >= 248.3 * 1.2  # not 235 to 262
    assert any(t.get_text() == "248.3" for t in ax.texts)


def test_energy_panels_split_classical_and_circuit_hardware(monkeypatch, tmp_path):
    figs, kept = _captured(monkeypatch)
    energy = EnergyTable(
        128,
        {
            m: {"cpu_xeon": 50.0 * f, "gpu_a100": 8.0 * f, "ibm_quantum": 4e13}
            for m, f in (("dense", 1.0), ("tt", 0.97))
        },
        {"cpu_xeon": "classical", "gpu_a100": "classical", "ibm_quantum": "qpu"},
        {"dense": 0.81, "tt": 0.86},
        {"dense": 4_100_000, "tt": 3_980_000},
    )
    figs.draw_energy(energy, tmp_path / "e.png")
    left, right = kept[-1].axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["cpu_xeon", "gpu_a100"]
    assert [t.get_text() for t in right.get_xticklabels()] == ["ibm_quantum"]
    assert left.get_ylim()[1] < 100  # not flattened by the QPU's 4e13
    from qtensorformer.report.text import energy_caption

    caption = energy_caption(energy)
    assert "dense 4.1 MFLOP (LM head 81%), tt 4.0 MFLOP (LM head 86%)" in caption
    assert "barely changes the classical energy" in caption
    md = render_markdown(ReportData(title="r", energy=energy), {"energy": "e.png"})
    assert caption in md


def test_collect_measures_the_lm_heads_share(demo):
    data = collect(demo, sample_tokens=64)
    assert set(data.energy.lm_head_share) == {"dense", "all"}
    assert all(0 < s < 1 for s in data.energy.lm_head_share.values())
    from qtensorformer.report.text import energy_caption

    caption = energy_caption(data.energy)  # a small vocabulary: the head is not most of it
    assert max(data.energy.lm_head_share.values()) < 0.5
    assert "MFLOP" in caption and "barely changes" not in caption
    assert (
        data.energy.kinds["ibm_quantum"] == "qpu" and data.energy.kinds["cpu_xeon"] == "classical"
    )
