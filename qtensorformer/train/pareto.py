"""Pareto tracking: every evaluation is a point (perplexity, parameters, FLOPs per token,
estimated energy, measured latency); the non-dominated set is kept, saved and plotted.

A point dominates another when it is no worse in every objective and better in at least one
(all objectives are minimised; an objective missing from either point is left out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..energy.latency import measure_latency_ms
from ..files import RunDir, write_json

__all__ = ["OBJECTIVES", "ParetoPoint", "ParetoTracker", "dominates", "measure_latency_ms"]

OBJECTIVES = ("ppl", "params", "flops_per_token", "energy_uj", "latency_ms")


@dataclass
class ParetoPoint:
    """One evaluation: validation perplexity, parameters, forward FLOPs per token, measured
    latency (ms) and estimated energy (µJ) per query, at ``step`` after ``tokens`` tokens."""

    step: int
    ppl: float
    params: int
    flops_per_token: float
    latency_ms: float
    energy_uj: float | None = None
    tokens: int = 0


def dominates(a: ParetoPoint, b: ParetoPoint) -> bool:
    """Whether ``a`` is no worse than ``b`` in every objective and better in one."""
    better = False
    for k in OBJECTIVES:
        x, y = getattr(a, k), getattr(b, k)
        if x is None or y is None:
            continue
        if x > y:
            return False
        better = better or x < y
    return better


class ParetoTracker:
    """Keeps every point and the non-dominated set; ``save(dir)`` writes ``pareto.json`` and,
    when matplotlib is installed, ``pareto.png`` (perplexity against FLOPs per token).

    Example:
        >>> t = ParetoTracker()
        >>> t.add(ParetoPoint(1, 100.0, 10, 5.0, 2.0))
        True
        >>> t.add(ParetoPoint(2, 120.0, 10, 5.0, 2.0))  # dominated by step 1
        False
        >>> [p.step for p in t.front]
        [1]
    """

    def __init__(self) -> None:
        self.points: list[ParetoPoint] = []
        self.front: list[ParetoPoint] = []

    def add(self, p: ParetoPoint) -> bool:
        """Record ``p``; returns whether it is on the front."""
        self.points.append(p)
        if any(dominates(q, p) for q in self.front):
            return False
        self.front = [q for q in self.front if not dominates(p, q)] + [p]
        return True

    def save(self, directory: str | Path) -> Path:
        """Write ``pareto.json`` (and ``pareto.png`` when matplotlib is installed) into
        ``directory``; returns the JSON file."""
        path = RunDir(directory).pareto
        write_json(
            path,
            {
                "objectives (all minimised)": list(OBJECTIVES),
                "front": [asdict(p) for p in self.front],
                "points": [asdict(p) for p in self.points],
            },
        )
        self.plot(path.with_suffix(".png"))
        return path

    def plot(self, path: Path) -> None:
        """Perplexity against MFLOP per token, the front highlighted (skipped without the
        optional matplotlib)."""
        try:
            import matplotlib  # optional dependency

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter(
            [p.flops_per_token / 1e6 for p in self.points],
            [p.ppl for p in self.points],
            s=12,
            c="lightgray",
            label="evaluations",
        )
        ax.scatter(
            [p.flops_per_token / 1e6 for p in self.front],
            [p.ppl for p in self.front],
            s=20,
            c="C0",
            label="non-dominated",
        )
        ax.set_xlabel("MFLOP per token (forward)")
        ax.set_ylabel("validation perplexity")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
