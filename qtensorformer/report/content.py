"""What a report shows, as plain data: the output of :func:`~.collect.collect` and the input of
the renderers. Numbers stay numbers here (``None`` where a run did not record them); the
renderers choose how to write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Curve",
    "Decision",
    "EnergyTable",
    "LayerDistribution",
    "LayerNote",
    "ModelRow",
    "ParetoPoint",
    "ParetoSeries",
    "ReportData",
    "RunSetup",
    "TokenAnalysis",
]


@dataclass
class ModelRow:
    """One line of the models table.

    ``ppl_vs_dense``: test perplexity over the dense model's, minus one; ``fewer_params``: the
    dense model's parameters over this one's (both None without a dense baseline).
    """

    name: str
    params: int | None = None
    test_ppl: float | None = None
    valid_ppl: float | None = None
    tokens_per_second: float | None = None
    train_seconds: float | None = None
    status: str | None = None
    ppl_vs_dense: float | None = None
    fewer_params: float | None = None


@dataclass
class RunSetup:
    """The corpus, tokenizer and perplexity protocol of the (first) run."""

    data: str | None = None
    tokenizer: str | None = None
    protocol: str | None = None


@dataclass
class Curve:
    """The training loss and the validation perplexity of one run, by optimiser step."""

    name: str
    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_ppl: list[float] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.train_steps or self.eval_steps)


@dataclass
class ParetoPoint:
    """One evaluation: its parameters, validation perplexity and whether it is non-dominated."""

    params: int
    ppl: float
    on_front: bool


@dataclass
class ParetoSeries:
    """Every evaluation of one run."""

    name: str
    points: list[ParetoPoint] = field(default_factory=list)


@dataclass
class Decision:
    """What one layer decided for one token: its score, TT rank and attention path."""

    token: str
    entropy: float | None
    rank: int | None
    path: str

    @property
    def routed(self) -> bool:
        """Whether the router sent this token to quantum attention."""
        return self.path == "quantum"


@dataclass
class LayerNote:
    """A plain-language summary of one layer and the tokens that illustrate it."""

    summary: str
    details: list[str] = field(default_factory=list)


@dataclass
class LayerDistribution:
    """One layer's scores and ranks over the long sample; ``routed_fraction`` is None when
    the layer has no router, ``target`` its training target (if any)."""

    layer: int
    entropies: list[float] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    routed_fraction: float | None = None
    target: float | None = None

    @property
    def mean_entropy(self) -> float | None:
        return sum(self.entropies) / len(self.entropies) if self.entropies else None

    @property
    def mean_rank(self) -> float | None:
        return sum(self.ranks) / len(self.ranks) if self.ranks else None


@dataclass
class TokenAnalysis:
    """The per-token decisions of one model.

    ``decisions[layer][t]``: a short sample, token by token; ``layers``: distributions over a
    longer sample of ``n_tokens`` tokens; ``sample``: where the sample came from.
    """

    model: str
    sample: str
    entropy_source: str
    decisions: list[list[Decision]] = field(default_factory=list)
    notes: list[LayerNote] = field(default_factory=list)
    layers: list[LayerDistribution] = field(default_factory=list)
    n_tokens: int = 0


@dataclass
class EnergyTable:
    """Estimated µJ per query of ``seq_len`` tokens: ``uj[model][hardware profile]``;
    ``kinds[profile]``: ``classical``, ``simulator`` or ``qpu``; ``classical_flops[model]``:
    the model's classical forward FLOPs per query; ``lm_head_share[model]``: the fraction of
    them spent in the LM head."""

    seq_len: int
    uj: dict[str, dict[str, float]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    lm_head_share: dict[str, float] = field(default_factory=dict)
    classical_flops: dict[str, int] = field(default_factory=dict)

    @property
    def profiles(self) -> list[str]:
        return list(next(iter(self.uj.values()), {}))


@dataclass
class ReportData:
    """Everything one report shows, for one run or a comparison of runs."""

    title: str
    setup: RunSetup | None = None
    models: list[ModelRow] = field(default_factory=list)
    dense_baseline: bool = False
    curves: list[Curve] = field(default_factory=list)
    pareto: list[ParetoSeries] = field(default_factory=list)
    tokens: TokenAnalysis | None = None
    energy: EnergyTable | None = None
