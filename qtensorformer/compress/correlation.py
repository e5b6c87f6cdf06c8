"""Pearson and Spearman correlation with confidence intervals and permutation p-values.

Used by the layer analysis (entropy of each layer's spectrum against its sensitivity to
compression). Only numpy and the standard library: scipy is not a dependency here. The
formulas, checked against ``scipy.stats`` in the tests:

* Pearson r; its confidence interval by the Fisher transform, z = atanh(r) ± q/√(n − 3)
  (the interval ``scipy.stats.pearsonr(...).confidence_interval()`` gives);
* Spearman ρ = Pearson r of the ranks (ties share their mean rank); its interval by the
  Fisher transform with the Bonett–Wright standard error √((1 + ρ²/2)/(n − 3));
* two-sided p-values by a seeded permutation test (``permutations`` shuffles of y), which
  needs no distributional assumption and suits the few (10–30) layers of a model.

Example:
    >>> c = pearson([1, 2, 3, 4, 5], [2.1, 3.9, 6.2, 8.1, 9.8])
    >>> round(c.r, 4), c.n
    (0.9988, 5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["Correlation", "pearson", "rankdata", "spearman"]


@dataclass(frozen=True)
class Correlation:
    """One correlation: ``method`` (``pearson`` or ``spearman``), coefficient ``r``, its
    ``ci`` (low, high) at ``confidence``, two-sided permutation ``p`` (None when not
    computed) and the number of pairs ``n``."""

    method: str
    r: float
    ci: tuple[float, float]
    p: float | None
    n: int
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        p = "" if self.p is None else f", p = {self.p:.3g}"
        return (
            f"{self.method} {self.r:+.3f} ({self.confidence:.0%} CI {self.ci[0]:+.3f} to "
            f"{self.ci[1]:+.3f}{p}, n = {self.n})"
        )


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {a.shape} and {b.shape}")
    if len(a) < 4:
        raise ValueError(f"a correlation with a confidence interval needs >= 4 pairs, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x and y must be finite")
    if a.std() == 0 or b.std() == 0:
        raise ValueError("x or y is constant: the correlation is undefined")
    return a, b


def _r(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip((a @ b) / math.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties given their mean rank (``scipy.stats.rankdata``'s default)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    s = np.sort(a)
    for value in np.unique(s[1:][np.diff(s) == 0]):  # the values that occur more than once
        tied = a == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _fisher_ci(r: float, se: float, confidence: float) -> tuple[float, float]:
    q = NormalDist().inv_cdf(0.5 + confidence / 2)
    z = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15))
    return math.tanh(z - q * se), math.tanh(z + q * se)


def _permutation_p(a: np.ndarray, b: np.ndarray, r: float, permutations: int, seed: int) -> float:
    """Two-sided: the share of shuffles of b (the observed order counted once) whose |r| is
    at least the observed |r|."""
    rng = np.random.default_rng(seed)
    a0 = a - a.mean()
    a0 /= math.sqrt(a0 @ a0)
    shuffled = np.stack([rng.permutation(b) for _ in range(permutations)])  # (P, n)
    shuffled -= shuffled.mean(1, keepdims=True)
    rs = shuffled @ a0 / np.sqrt((shuffled**2).sum(1))
    hits = int((np.abs(rs) >= abs(r) - 1e-12).sum())
    return (hits + 1) / (permutations + 1)


def _correlation(method: str, a, b, se, confidence, permutations, seed) -> Correlation:
    """r of (a, b), its Fisher-z interval with standard error ``se(r, n)``, and the
    permutation p-value (``permutations=0``: none)."""
    r = _r(a, b)
    ci = _fisher_ci(r, se(r, len(a)), confidence)
    p = _permutation_p(a, b, r, permutations, seed) if permutations else None
    return Correlation(method, r, ci, p, len(a), confidence)


def pearson(
    x: Sequence[float],
    y: Sequence[float],
    confidence: float = 0.95,
    permutations: int = 9999,
    seed: int = 0,
) -> Correlation:
    """Pearson r of (x, y) with a Fisher-z interval and a permutation p-value
    (``permutations=0``: no p-value)."""
    a, b = _pairs(x, y)
    se = lambda r, n: 1 / math.sqrt(n - 3)  # noqa: E731
    return _correlation("pearson", a, b, se, confidence, permutations, seed)


def spearman(
    x: Sequence[float],
    y: Sequence[float],
    confidence: float = 0.95,
    permutations: int = 9999,
    seed: int = 0,
) -> Correlation:
    """Spearman ρ of (x, y) with a Bonett–Wright interval and a permutation p-value."""
    a, b = _pairs(x, y)
    se = lambda r, n: math.sqrt((1 + r * r / 2) / (n - 3))  # noqa: E731
    return _correlation("spearman", rankdata(a), rankdata(b), se, confidence, permutations, seed)
