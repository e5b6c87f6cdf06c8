"""Factorisation of layer dimensions into tensor-train modes.

A dimension n is split into K modes m_1·…·m_K = n (mode 1 most significant in the flat
index). When n has a large prime factor (e.g. the WikiText-2 vocabulary 33,278 = 2·7·2377)
no balanced split exists, so :func:`factorize` may *pad*: it returns modes whose product is the
smallest n' ≥ n (within ``max_pad``) that splits with the best balance. Layers pad their input
with zeros and drop the padded outputs, so padding changes parameter counts, never results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Modes", "balanced_factors", "check_modes", "default_n_modes", "factorize"]


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def balanced_factors(n: int, n_modes: int) -> tuple[int, ...]:
    """Exact factors of ``n`` into ``n_modes`` integers, as equal as the primes allow.

    Largest primes are placed first, each on the currently smallest factor; the result is
    sorted in descending order.

    Example:
        >>> balanced_factors(512, 3)
        (8, 8, 8)
        >>> balanced_factors(33278, 3)
        (2377, 7, 2)
    """
    if n < 1 or n_modes < 1:
        raise ValueError(f"need n >= 1 and n_modes >= 1, got n={n}, n_modes={n_modes}")
    factors = [1] * n_modes
    for p in sorted(_prime_factors(n), reverse=True):
        i = min(range(n_modes), key=lambda j: factors[j])
        factors[i] *= p
    return tuple(sorted(factors, reverse=True))


def _imbalance(f: tuple[int, ...]) -> float:
    return max(f) / max(min(f), 1)


def default_n_modes(*dims: int) -> int:
    """Default number of TT modes: about one mode per factor of 8 of the smallest dimension
    (512 → 3; 128 → 2; 512×2048 → 3), at least 2. More modes mean fewer parameters at a given
    rank but larger intermediates in the factorised contraction."""
    return max(2, round(math.log(min(dims)) / math.log(8)))


@dataclass(frozen=True)
class Modes:
    """Mode sizes of one dimension; ``padded`` = their product (≥ ``dim``)."""

    dim: int
    modes: tuple[int, ...]

    @property
    def padded(self) -> int:
        return math.prod(self.modes)

    @property
    def padding(self) -> int:
        return self.padded - self.dim


def factorize(n: int, n_modes: int | None = None, max_pad: float = 0.02) -> Modes:
    """Balanced modes for dimension ``n``, padding ``n`` by at most ``max_pad`` (fraction) when
    the exact split is unbalanced.

    The smallest n' in [n, n·(1 + max_pad)] whose split has a largest/smallest mode ratio of at
    most 2 is chosen (so n itself when it splits well); if none does, the best-balanced split.
    ``max_pad=0`` forces an exact factorisation.

    Example:
        >>> factorize(512, 3).modes
        (8, 8, 8)
        >>> m = factorize(33278, 3)
        >>> m.modes, m.padding
        ((40, 32, 26), 2)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"dimension must be a positive int, got {n!r}")
    k = n_modes if n_modes is not None else default_n_modes(n)
    if k < 1:
        raise ValueError(f"n_modes must be >= 1, got {k}")
    best = balanced_factors(n, k)
    for cand in range(n, int(n * (1 + max_pad)) + 1):
        f = balanced_factors(cand, k)
        if _imbalance(f) <= 2.0:  # balanced enough (every power of two is): least padding wins
            return Modes(n, f)
        if _imbalance(f) < _imbalance(best) - 1e-12:
            best = f
    return Modes(n, best)


def check_modes(modes, dim: int, name: str, allow_pad: bool = False) -> tuple[int, ...]:
    """Validate user-given modes of a dimension: positive ints whose product is ``dim`` (or at
    least ``dim`` when ``allow_pad``: the layer pads with zeros)."""
    try:
        modes = tuple(int(m) for m in modes)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of ints, got {modes!r}") from None
    if not modes or any(m < 1 for m in modes):
        raise ValueError(f"{name}={modes} must be a non-empty sequence of positive ints")
    prod = math.prod(modes)
    if prod < dim or (prod != dim and not allow_pad):
        raise ValueError(
            f"{name}={modes} multiply to {prod}, not to the dimension {dim}; "
            f"give modes whose product is {dim} (e.g. {balanced_factors(dim, len(modes))}) or "
            "leave them out to factorise automatically"
        )
    return modes
