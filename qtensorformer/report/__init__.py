"""Reports of training runs: a Markdown file with PNG figures and a self-contained HTML page.

``write_report(run_dir)`` reads a run folder or a comparison folder (one run folder per
variant) and writes ``report/report.md``, ``report/report.html`` (figures embedded as PNG) and
``report/figures/*.png``:

- the comparison table (parameters, test perplexity, speed);
- training curves (training loss, validation perplexity) and the Pareto front;
- one sample text run through the model with the most pillars: each word coloured by its
  entanglement score, its TT rank and whether it was routed to quantum attention;
- entropy and rank histograms and the routed fraction, per layer, over a longer sample;
- estimated energy per query on every hardware profile (labelled as estimates).

It runs in three steps, each usable alone: :func:`collect` reads the folder into a
:class:`ReportData` (numbers, no formatting); :func:`draw_figures` draws its figures;
:func:`render_markdown` and :func:`render_html` write it out.
"""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write
from .collect import DEFAULT_TEXT, RunRecord, collect, load_runs
from .content import ReportData
from .figures import draw_figures
from .html import render_html
from .markdown import render_markdown

__all__ = [
    "DEFAULT_TEXT",
    "ReportData",
    "RunRecord",
    "collect",
    "draw_figures",
    "load_runs",
    "render_html",
    "render_markdown",
    "write_report",
]

REPORT_FOLDER = "report"
FIGURES_FOLDER = "figures"


def _write_text(path: Path, content: str) -> Path:
    """Write ``content`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(content, encoding="utf-8"))


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    text: str | None = None,
    data_dir: str | None = None,
    sample_tokens: int = 512,
    seq_len: int = 128,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the figures for the run(s) in ``run_dir``.

    ``out_dir`` defaults to ``run_dir/report``; ``text``, ``data_dir``, ``sample_tokens`` and
    ``seq_len`` are passed to :func:`collect`. Returns the paths written (one per figure, then
    ``markdown`` and ``html``). Raises FileNotFoundError when ``run_dir`` is neither a run nor
    a comparison folder.

    Example (a run folder written by ``qtf train`` or ``qtf demo``)::

        paths = write_report("runs/demo")
        print(paths["html"])
    """
    data = collect(
        run_dir, text=text, data_dir=data_dir, sample_tokens=sample_tokens, seq_len=seq_len
    )
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / REPORT_FOLDER
    paths = draw_figures(data, out / FIGURES_FOLDER)
    links = {k: f"{FIGURES_FOLDER}/{p.name}" for k, p in paths.items()}
    paths["markdown"] = _write_text(out / "report.md", render_markdown(data, links))
    images = {k: p.read_bytes() for k, p in paths.items() if k != "markdown"}
    paths["html"] = _write_text(out / "report.html", render_html(data, images))
    return paths
