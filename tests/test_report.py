"""`qtf report`: Markdown + self-contained HTML from a tiny comparison and a single run."""

from __future__ import annotations

import json
import re

import matplotlib.image as mpimg
from typer.testing import CliRunner

from qtensorformer.cli import app
from qtensorformer.report import load_runs, write_report


def _demo(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        app,
        ["demo", "--max-tokens", "3000", "--variants", "dense,all", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    return out


def test_report_of_a_comparison(tmp_path):
    out = _demo(tmp_path)
    r = CliRunner().invoke(app, ["report", str(out), "--text", "the bank by the river"])
    assert r.exit_code == 0, r.output
    rep = out / "report"
    md = (rep / "report.md").read_text()
    page = (rep / "report.html").read_text()
    rows = json.loads((out / "compare.json").read_text())["rows"]
    for row in rows:  # the table holds the measured numbers
        assert f"{row['test_ppl']:,.2f}" in md and f"{row['params']:,d}" in md
    for fig in ("curves", "pareto", "tokens", "histograms", "routed", "energy"):
        png = rep / "figures" / f"{fig}.png"
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


def test_report_of_one_run_and_errors(tmp_path):
    out = _demo(tmp_path)
    paths = write_report(out / "dense", tmp_path / "rep1")
    assert paths["markdown"].is_file() and paths["html"].is_file()
    assert "routed" not in paths  # a dense model routes nothing: no routing figure
    runs, comp = load_runs(out / "dense")
    assert [r.name for r in runs] == ["dense"] and comp == {}
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "neither a run folder" in r.output
