"""ModelConfig: the Q-TensorFormer's sizes and pillars, validated on creation, JSON-serialisable.

Every pillar has a switch, so the dense baseline is the same class with all of them off
(:meth:`ModelConfig.dense`). :func:`count_parameters` counts a model's parameters from its
config alone (by formula, without building it); the tests hold it to the built model's count.
"""

from __future__ import annotations

import json
import math
from dataclasses import InitVar, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .nn.kernel_attention import KERNEL_NORMS
from .quantum.ansatz import ANSATZE, ansatz_weight_shape
from .quantum.entropy import entropy_bound

__all__ = [
    "PILLARS",
    "PRESETS",
    "ModelConfig",
    "count_parameters",
    "fit_rank_to_budget",
]

#: Preset sizes (the seed's small/medium/large/xl); anything else comes from the defaults.
PRESETS: dict[str, dict[str, int]] = {
    "small": {"d_model": 128, "n_layers": 3, "n_heads": 4},
    "medium": {"d_model": 256, "n_layers": 4, "n_heads": 4},
    "large": {"d_model": 512, "n_layers": 6, "n_heads": 8},
    "xl": {"d_model": 768, "n_layers": 12, "n_heads": 12},
}

#: The switches :meth:`ModelConfig.dense` turns off.
PILLARS = (
    "use_tt_ffn",
    "use_tt_attention",
    "use_tt_embedding",
    "use_quantum_encoder",
    "use_quantum_attention",
    "use_adaptive_rank",
    "use_selective_routing",
    "use_qkan",
)

ENTROPY_SOURCES = ("quantum", "attention")


class _hybridmethod:
    """A method that binds to the instance when there is one, else to the class."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        target = obj if obj is not None else cls
        return self.func.__get__(target, cls)


@dataclass
class ModelConfig:
    """Sizes and switches of a :class:`~qtensorformer.QTensorFormer`; validates itself.

    ``hidden_dim`` is accepted as an alias of ``d_model``. Defaults: the ``small`` sizes with
    TT compression of the embedding, attention and FFN, and the quantum feature encoder on;
    quantum-kernel attention, selective routing, adaptive ranks and DARUAN (``use_qkan``)
    off. ``ModelConfig.dense(...)`` gives the same sizes with every pillar off.

    Per-token entanglement score S_t: ``entropy_source="quantum"`` takes the von Neumann
    entropy of each block's encoder state (needs ``use_quantum_encoder``); ``"attention"``
    takes the entropy of the token's causal attention distribution (averaged over heads).
    The rank scheduler uses r_t = clip(r_min + round(α·S_t), r_min, r_max) with
    ``rank_alpha`` α (None: α = (r_max − r_min) / S_max, so the whole entropy range spans the
    rank range); ``rank_step`` s > 1 rounds ranks to r_min + s·k (fewer token groups, faster).
    ``qkan_base`` gives each DARUAN the QKAN layer's SiLU base branch and
    post-activation scale and shift (configs saved without the field load with it off).
    ``kan_grid`` marks a model whose DARUANs were distilled to B-spline KANs with that many
    intervals (see :func:`~qtensorformer.nn.distill_to_kan`).

    Example:
        >>> cfg = ModelConfig(vocab_size=10000, hidden_dim=128, n_layers=3, tt_rank=4)
        >>> cfg.d_model, cfg.d_ff, cfg.hidden_dim
        (128, 512, 128)
        >>> ModelConfig.preset("medium").dense().use_tt_ffn
        False
        >>> ModelConfig.from_json(cfg.to_json()) == cfg
        True
    """

    vocab_size: int = 10000
    d_model: int | None = None
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int | None = None
    max_seq_len: int = 256
    dropout: float = 0.1
    tt_rank: int = 8
    embedding_rank: int | None = None
    n_qubits: int = 4
    n_circuit_layers: int = 2
    ansatz: str = "real"
    use_tt_ffn: bool = True
    use_tt_attention: bool = True
    use_tt_embedding: bool = True
    use_quantum_encoder: bool = True
    use_quantum_attention: bool = False
    use_adaptive_rank: bool = False
    use_selective_routing: bool = False
    use_qkan: bool = False
    entropy_source: str = "quantum"
    route_fraction: float = 0.2
    router_tau: float = 0.1
    route_loss_weight: float = 1.0
    r_min: int = 2
    r_max: int | None = None
    rank_alpha: float | None = None
    rank_cost_weight: float = 0.01
    rank_step: int = 1
    kernel_norm: str = "rowsum"
    qkan_reps: int = 2
    qkan_base: bool = True
    kan_grid: int | None = None
    max_params: int | None = None
    init_std: float = 0.02
    hidden_dim: InitVar[int | None] = None

    def __post_init__(self, hidden_dim: int | None) -> None:
        if hidden_dim is not None:
            if self.d_model is not None and self.d_model != hidden_dim:
                raise ValueError(
                    f"ModelConfig: hidden_dim={hidden_dim} and d_model={self.d_model} disagree; "
                    "hidden_dim is an alias of d_model, give one of them"
                )
            self.d_model = hidden_dim
        if self.d_model is None:
            self.d_model = 128
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"ModelConfig: {msg}")

        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "tt_rank"):
            _check_int(name, getattr(self, name), 1)
        for name in ("n_circuit_layers", "qkan_reps", "r_min", "rank_step"):
            _check_int(name, getattr(self, name), 1)
        for name in ("d_ff", "embedding_rank", "r_max", "max_params", "kan_grid"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        for name in (*PILLARS, "qkan_base"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.d_model % self.n_heads:
            fail(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "choose n_heads that divides d_model"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            fail(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 < float(self.route_fraction) < 1.0:
            fail(f"route_fraction must be in (0, 1), got {self.route_fraction!r}")
        for name in ("router_tau", "init_std"):
            if not float(getattr(self, name)) > 0:
                fail(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("route_loss_weight", "rank_cost_weight"):
            if not float(getattr(self, name)) >= 0:
                fail(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.rank_alpha is not None and not float(self.rank_alpha) > 0:
            fail(f"rank_alpha must be > 0 (or None for the automatic span), got {self.rank_alpha}")
        if self.ansatz not in ANSATZE:
            fail(f"ansatz={self.ansatz!r} is not one of {ANSATZE}")
        if self.entropy_source not in ENTROPY_SOURCES:
            fail(f"entropy_source={self.entropy_source!r} is not one of {ENTROPY_SOURCES}")
        if self.kernel_norm not in KERNEL_NORMS:
            fail(f"kernel_norm={self.kernel_norm!r} is not one of {KERNEL_NORMS}")
        if self.uses_quantum_circuits and not 2 <= self.n_qubits <= 12:
            fail(f"n_qubits must be in 2..12 for the quantum pillars, got {self.n_qubits!r}")
        if self.r_max is None:
            self.r_max = self.tt_rank
        if self.use_adaptive_rank:
            if not self.use_tt_ffn:
                fail(
                    "use_adaptive_rank needs a TT-FFN whose rank it can adapt; set use_tt_ffn=True"
                )
            if not self.r_min <= self.r_max <= self.tt_rank:
                fail(
                    f"need r_min <= r_max <= tt_rank, got r_min={self.r_min}, "
                    f"r_max={self.r_max}, tt_rank={self.tt_rank}"
                )
        if self.kan_grid is not None and not self.use_qkan:
            fail(
                "kan_grid describes a DARUAN activation distilled to a B-spline KAN; it needs "
                "use_qkan=True (or kan_grid=None)"
            )
        if self.use_selective_routing and not self.use_quantum_attention:
            fail(
                "use_selective_routing routes tokens to the quantum-kernel attention path; "
                "set use_quantum_attention=True"
            )
        needs_score = self.use_adaptive_rank or self.use_selective_routing
        if needs_score and self.entropy_source == "quantum" and not self.use_quantum_encoder:
            fail(
                "entropy_source='quantum' takes the score from the quantum encoder; set "
                "use_quantum_encoder=True or entropy_source='attention'"
            )

    # ------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def uses_quantum_circuits(self) -> bool:
        """Whether any part of the model simulates a multi-qubit circuit."""
        return self.use_quantum_encoder or self.use_quantum_attention

    @property
    def score_max(self) -> float:
        """S_max of the configured entanglement score (nats)."""
        if self.entropy_source == "quantum":
            return entropy_bound(self.n_qubits, tuple(range(self.n_qubits // 2)))
        return math.log(self.max_seq_len)

    @property
    def alpha(self) -> float:
        """The rank scheduler's α (``rank_alpha`` or the automatic span)."""
        if self.rank_alpha is not None:
            return float(self.rank_alpha)
        return max(self.r_max - self.r_min, 1e-3) / self.score_max

    @property
    def emb_rank(self) -> int:
        return self.embedding_rank if self.embedding_rank is not None else self.tt_rank

    @property
    def pillars(self) -> dict[str, bool]:
        return {p: getattr(self, p) for p in PILLARS}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """The seed's sizes: ``small`` (d=128, L=3), ``medium`` (256, 4), ``large`` (512, 6),
        ``xl`` (768, 12), with the default pillars; ``overrides`` replace any field."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @_hybridmethod
    def dense(self_or_cls, preset: str | None = None, **overrides: Any) -> ModelConfig:
        """The dense baseline: same sizes, every pillar off.

        ``config.dense()`` turns off the pillars of an existing config; ``ModelConfig.dense(
        "small", vocab_size=...)`` or ``ModelConfig.dense(d_model=..., ...)`` builds one.
        Switches given explicitly win, so ``ModelConfig.dense("small", use_tt_ffn=True)`` is
        the one-pillar ablation.
        """
        off = dict.fromkeys(PILLARS, False)
        if isinstance(self_or_cls, ModelConfig):
            if preset is not None:
                raise TypeError("config.dense() takes no preset; use ModelConfig.dense(preset)")
            return replace(self_or_cls, **{**off, **overrides})
        if preset is not None:
            return self_or_cls.preset(preset, **{**off, **overrides})
        return self_or_cls(**{**off, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)} | {"hidden_dim"}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"ModelConfig: unknown field(s) {unknown}; known fields are {sorted(names)}"
            )
        if "qkan_base" not in d:  # configs saved before the base branch existed
            d = {**d, "qkan_base": False}
        return cls(**d)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the config; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ModelConfig:
        """A config from JSON text or from a JSON file."""
        src = str(text_or_path)
        if not src.lstrip().startswith("{"):
            p = Path(src)
            if not p.is_file():
                raise FileNotFoundError(f"no config file at {p}")
            src = p.read_text()
        try:
            d = json.loads(src)
        except json.JSONDecodeError as e:
            raise ValueError(f"ModelConfig: the config is not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise ValueError("ModelConfig: the JSON must be an object of fields")
        return cls.from_dict(d)


ModelConfig.hidden_dim = property(  # type: ignore[assignment]
    lambda self: self.d_model, doc="Alias of ``d_model``."
)


def _check_int(name: str, v: Any, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"ModelConfig: {name} must be an int >= {lo}, got {v!r}")


# ---------------------------------------------------------------------- parameter count
def _tt_params(rows: int, cols: int, rank: int) -> int:
    """Parameters of a TT-matrix rows×cols at uniform rank, on the default mode layout."""
    from .tensor.factorize import default_n_modes, factorize
    from .tensor.tt import _full_ranks, tt_num_params

    k = default_n_modes(rows, cols)
    rm, cm = factorize(rows, k).modes, factorize(cols, k).modes
    ranks = tuple(min(rank, f) for f in _full_ranks(rm, cm))
    return tt_num_params(rm, cm, ranks)


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameters by component, from the config alone (formulas, no model is built).

    Keys: ``embedding`` (tied with the LM head), ``positions``, ``encoder``, ``attention``,
    ``kernel_attention``, ``router``, ``rank_scheduler``, ``ffn``, ``activation``,
    ``norms``, and ``total``.

    Example:
        >>> count_parameters(ModelConfig.dense("small"))["embedding"]
        1280000
    """
    c = config
    d, f, L, h, q = c.d_model, c.d_ff, c.n_layers, c.n_heads, c.n_qubits
    lin = (lambda i, o: _tt_params(o, i, c.tt_rank) + o) if c.use_tt_attention else None
    out: dict[str, int] = {}
    out["embedding"] = (
        _tt_params(c.vocab_size, d, c.emb_rank) if c.use_tt_embedding else c.vocab_size * d
    )
    out["positions"] = c.max_seq_len * d
    circuit = math.prod(ansatz_weight_shape(c.ansatz, c.n_circuit_layers, q))
    # per block: proj d→q, circuit, proj q→d, own LayerNorm
    out["encoder"] = L * (d * q + q + circuit + q * d + d + 2 * d) if c.use_quantum_encoder else 0
    if c.use_tt_attention:
        att = lin(d, 3 * d) + lin(d, d)
    else:
        att = (d * 3 * d + 3 * d) + (d * d + d)
    out["attention"] = L * att
    # per head: q and k angle projections head_dim→q (+bias) and a temperature; one circuit
    out["kernel_attention"] = (
        L * (h * 2 * (c.head_dim * q + q) + h + circuit) if c.use_quantum_attention else 0
    )
    out["router"] = L if c.use_selective_routing else 0
    out["rank_scheduler"] = L if c.use_adaptive_rank else 0
    if c.use_tt_ffn:
        ffn = _tt_params(f, d, c.tt_rank) + f + _tt_params(d, f, c.tt_rank) + d
    else:
        ffn = d * f + f + f * d + d
    out["ffn"] = L * ffn
    if c.kan_grid is not None:  # distilled B-spline KAN: G + 3 coefficients per channel
        out["activation"] = L * f * (c.kan_grid + 3 + (1 if c.qkan_base else 0))
    elif c.use_qkan:  # DARUAN: θ (r+1, 2), w (r), b (r) per channel (+ β, a, c with the base)
        per = 2 * (c.qkan_reps + 1) + 2 * c.qkan_reps + (3 if c.qkan_base else 0)
        out["activation"] = L * f * per
    else:
        out["activation"] = 0
    out["norms"] = L * 4 * d + 2 * d
    out["total"] = sum(out.values())
    return out


def fit_rank_to_budget(config: ModelConfig) -> ModelConfig:
    """Resolve ``max_params``: the config with the largest ``tt_rank`` (and embedding rank)
    whose model fits the budget. Unchanged when ``max_params`` is None.

    Raises ValueError when even rank 1 does not fit, or when no TT pillar is on and the dense
    model is over budget.
    """
    c = config
    if c.max_params is None:
        return c
    tt_on = c.use_tt_ffn or c.use_tt_attention or c.use_tt_embedding
    if not tt_on:
        n = count_parameters(c)["total"]
        if n > c.max_params:
            raise ValueError(
                f"max_params={c.max_params:,} but the model without TT layers has {n:,} "
                "parameters; turn on a TT pillar (use_tt_ffn/attention/embedding) or raise "
                "the budget"
            )
        return c

    def at(r: int) -> ModelConfig:
        kw: dict[str, Any] = {"tt_rank": r, "embedding_rank": None}
        if c.use_adaptive_rank:
            kw["r_max"] = r
            kw["r_min"] = min(c.r_min, r)
        return replace(c, **kw)

    lo_n = count_parameters(at(1))["total"]
    if lo_n > c.max_params:
        raise ValueError(
            f"max_params={c.max_params:,} cannot be met: even TT rank 1 gives {lo_n:,} "
            "parameters; raise the budget, shrink d_model/vocab_size/max_seq_len, or turn on "
            "more TT pillars"
        )
    lo, hi = 1, 1
    while count_parameters(at(hi * 2))["total"] <= c.max_params and hi < 4096:
        hi *= 2
    hi *= 2
    while hi - lo > 1:  # largest r with count(at(r)) <= max_params
        mid = (lo + hi) // 2
        if count_parameters(at(mid))["total"] <= c.max_params:
            lo = mid
        else:
            hi = mid
    return at(lo)
