"""Parameter budgets: how many parameters each compressed matrix may keep.

Index legend: n out_features, m in_features, r rank.
A matrix n × m keeps at most (1 − ratio)·n·m weight parameters (its bias stays dense and is
not counted). In low-rank form that is the uniform rank r = ⌊(1 − ratio)·n·m / (n + m)⌋, so
each matrix lands within one rank step (n + m parameters) below its share. ``"spectrum"``
allocation instead spends the total budget (1 − ratio)·Σ n·m by one global greedy pass:
every rank step of every matrix costs n + m and saves the energy its singular value would
discard, σ_i² / Σ_j σ_j² (the fraction of that matrix's energy: activation-weighted when σ
are those of the whitened W·S), and the steps of highest energy per parameter are taken
first (every matrix keeps at least rank 1, at most ⌊n·m / (n + m)⌋, where low rank stops
saving parameters). ``"spectrum-absolute"`` weighs σ_i² itself, which hands the budget to
the matrices with the largest activations (on SmolLM2-135M it was far worse than uniform:
docs/RESULTS.md, compression section).

Example:
    >>> uniform_rank(576, 1536, 0.2)
    335
    >>> shared_rank(576, 1536, 2, 0.2)  # two layers share one basis: a higher rank
    526
    >>> import torch
    >>> spectra = {"a": torch.tensor([4.0, 3.0, 2.0, 1.0]), "b": torch.tensor([1.0, 0.5, 0.1, 0.0])}
    >>> allocate_spectrum(spectra, {"a": (4, 4), "b": (4, 4)}, ratio=0.5)
    {'a': 1, 'b': 1}
    >>> allocate_spectrum(spectra, {"a": (8, 8), "b": (8, 8)}, ratio=0.5)
    {'a': 2, 'b': 2}
    >>> allocate_spectrum(spectra, {"a": (8, 8), "b": (8, 8)}, ratio=0.5, relative=False)
    {'a': 3, 'b': 1}
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["allocate_spectrum", "dense_rank", "param_budget", "shared_rank", "uniform_rank"]


def param_budget(out_features: int, in_features: int, ratio: float) -> int:
    """⌊(1 − ratio)·n·m⌋: the weight parameters a matrix keeps."""
    return int((1.0 - ratio) * out_features * in_features)


def dense_rank(out_features: int, in_features: int) -> int:
    """⌊n·m / (n + m)⌋: the largest rank whose factors are no larger than the matrix."""
    return max(1, out_features * in_features // (out_features + in_features))


def uniform_rank(out_features: int, in_features: int, ratio: float) -> int:
    """⌊(1 − ratio)·n·m / (n + m)⌋ (at least 1)."""
    n, m = out_features, in_features
    return max(1, int((1.0 - ratio) * n * m / (n + m)))


def shared_rank(out_features: int, in_features: int, members: int, ratio: float) -> int:
    """Basis Sharing's rank of a group of ``members`` matrices n × m sharing one basis (r × m)
    with their own coefficients (n × r): the largest r with r·(m + g·n) ≤ (1 − ratio)·g·n·m
    (at least 1); one member gives :func:`uniform_rank`."""
    n, m, g = out_features, in_features, members
    return max(1, param_budget(g * n, m, ratio) // (m + g * n))


def allocate_spectrum(
    spectra: Mapping[str, torch.Tensor],
    shapes: Mapping[str, tuple[int, int]],
    ratio: float,
    floors: Mapping[str, int] | None = None,
    relative: bool = True,
    weights: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Ranks for every matrix from one global greedy pass over the discarded energy per
    parameter, σ_i² / (n + m), within (1 − ratio)·Σ n·m parameters; ``relative``: each
    matrix's σ_i² divided by its total Σ_j σ_j² (the fraction of its energy), else absolute;
    ``weights[name]``: a factor on that matrix's energies (its importance; default 1).

    ``spectra[name]``: singular values (descending) of that matrix (whitened for
    activation-aware methods); ``shapes[name]``: its (out_features, in_features);
    ``floors[name]``: the fewest parameters the matrix may get (e.g. the smallest tensor
    train of its topology; default one rank step), so its rank starts at ⌈floor / (n + m)⌉.
    """
    if set(spectra) != set(shapes):
        raise ValueError("spectra and shapes must name the same matrices")
    budget = sum(param_budget(n, m, ratio) for n, m in shapes.values())
    floors = floors or {}
    ranks = {name: max(1, -(-floors.get(name, 0) // (n + m))) for name, (n, m) in shapes.items()}
    spent = sum(r * sum(shapes[name]) for name, r in ranks.items())
    if spent > budget:
        raise ValueError(
            f"ratio={ratio} leaves {budget} parameters, fewer than the smallest allowed form of "
            f"every matrix needs ({spent}): lower the ratio"
        )
    steps = []  # (energy per parameter, name, rank after the step)
    for name, s in spectra.items():
        n, m = shapes[name]
        sq = s.detach().double().square()
        total = float(sq.sum())
        scale = (weights or {}).get(name, 1.0)
        energy = ((sq / total if relative and total > 0 else sq) * scale).tolist()
        cap = min(dense_rank(n, m), len(energy))
        start = ranks[name]
        steps += [(energy[i] / (n + m), name, i + 1) for i in range(start, cap)]
    # highest first; within a matrix σ is descending, so its steps come in rank order
    steps.sort(key=lambda t: (-t[0], t[2]))
    for _, name, rank in steps:
        n, m = shapes[name]
        if ranks[name] == rank - 1 and spent + n + m <= budget:
            ranks[name] = rank
            spent += n + m
    return ranks
