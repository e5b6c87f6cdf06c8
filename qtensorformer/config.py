"""ModelConfig: the Q-TensorFormer's sizes and pillars, validated on creation, JSON-serialisable.

Every pillar has a switch, so the dense baseline is the same class with all of them off
(:meth:`ModelConfig.dense`). This module imports nothing from the rest of the library: the
parameter count by formula lives in :mod:`qtensorformer.nn.sizing`.
"""

from __future__ import annotations

import json
import math
from dataclasses import InitVar, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "ANSATZE",
    "ENTROPY_SOURCES",
    "KERNEL_NORMS",
    "PILLARS",
    "PRESETS",
    "VARIANTS",
    "VARIANT_NAMES",
    "ModelConfig",
    "model_config",
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

#: Per-token entanglement scores: the quantum encoder's state, or the attention distribution.
ENTROPY_SOURCES = ("quantum", "attention")
#: Circuit ansatze: ``"strong"`` (Rot + CNOT ring, complex) and ``"real"`` (RY + CNOT, real).
ANSATZE = ("strong", "real")
#: Normalisations of the fidelity-kernel attention scores (see ``nn.kernel_attention``).
KERNEL_NORMS = ("softmax", "rowsum")

#: Named model variants: the pillars each turns on (everything else off).
VARIANTS: dict[str, dict[str, bool]] = {
    "dense": {},
    "tt": {"use_tt_embedding": True, "use_tt_attention": True, "use_tt_ffn": True},
    "default": {
        "use_tt_embedding": True,
        "use_tt_attention": True,
        "use_tt_ffn": True,
        "use_quantum_encoder": True,
    },
    "all": {
        "use_tt_embedding": True,
        "use_tt_attention": True,
        "use_tt_ffn": True,
        "use_quantum_encoder": True,
        "use_quantum_attention": True,
        "use_selective_routing": True,
        "use_adaptive_rank": True,
        "use_qkan": True,
    },
}
VARIANT_NAMES = {
    "dense": "dense baseline",
    "tt": "TT compression only",
    "default": "TT + quantum encoder",
    "all": "every pillar",
}


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
            # the cut between the first ⌊q/2⌋ wires and the rest: S_max = min(q_A, q_B)·log 2
            return (self.n_qubits // 2) * math.log(2.0)
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


def model_config(variant: str, preset: str, vocab_size: int, **overrides: Any) -> ModelConfig:
    """The preset's sizes with the variant's pillars (see :data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    pillars = {**ModelConfig.dense().pillars, **VARIANTS[variant]}
    return ModelConfig.preset(preset, vocab_size=vocab_size, **{**pillars, **overrides})


def _check_int(name: str, v: Any, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"ModelConfig: {name} must be an int >= {lo}, got {v!r}")
