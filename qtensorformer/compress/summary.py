"""What a compression run did: one record per replaced module, and the totals.

Parameter counts of a module are its weight parameters (n·m before; the factors or cores
after); its bias is kept dense, listed separately, and left out of the budget. The model
totals count every parameter of the model (shared tensors once).

Example:
    >>> rec = ModuleReport("blocks.0.ffn.w1", "svd", "lowrank", (8,), 4096, 1536, 64,
    ...                    weight_error=0.5, activation_error=None, seconds=0.01)
    >>> rep = CompressionReport("svd", {"ratio": 0.5}, {rec.name: rec}, 10000, 7440)
    >>> round(rep.selected_ratio, 3), round(rep.model_ratio, 3)
    (0.625, 0.256)
    >>> CompressionReport.from_dict(rep.to_dict()) == rep
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CompressionReport", "ModuleReport"]


@dataclass
class ModuleReport:
    """One replaced module: ``method``, ``topology`` (``"lowrank"`` or
    ``"tt(out=…, in=…)"``), bond ``ranks``, weight parameters before/after, ``bias`` size,
    relative errors (weight ‖W − Ŵ‖/‖W‖; activation ‖X(W − Ŵ)ᵀ‖/‖XWᵀ‖ on the calibration
    data, None without it; ``heldout_error`` the same on held-out calibration sequences),
    wall-clock ``seconds`` and the ``preconditioner`` used."""

    name: str
    method: str
    topology: str
    ranks: tuple[int, ...]
    params_before: int
    params_after: int
    bias: int
    weight_error: float
    activation_error: float | None
    seconds: float
    preconditioner: str = "identity"
    heldout_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ranks"] = list(self.ranks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModuleReport:
        return cls(**{**d, "ranks": tuple(d["ranks"])})


@dataclass
class CompressionReport:
    """Per-module records (``modules``, by dotted name) and totals of a run."""

    method: str
    config: dict[str, Any]
    modules: dict[str, ModuleReport]
    model_params_before: int
    model_params_after: int
    calibration: dict[str, int] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def selected_before(self) -> int:
        return sum(m.params_before for m in self.modules.values())

    @property
    def selected_after(self) -> int:
        return sum(m.params_after for m in self.modules.values())

    @property
    def selected_ratio(self) -> float:
        """Fraction of the selected matrices' weight parameters removed."""
        before = self.selected_before
        return 1.0 - self.selected_after / before if before else 0.0

    @property
    def model_ratio(self) -> float:
        """Fraction of the whole model's parameters removed."""
        before = self.model_params_before
        return 1.0 - self.model_params_after / before if before else 0.0

    def topologies(self) -> dict[str, str]:
        return {name: m.topology for name, m in self.modules.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "modules": {name: m.to_dict() for name, m in self.modules.items()},
            "model_params_before": self.model_params_before,
            "model_params_after": self.model_params_after,
            "calibration": self.calibration,
            "seconds": self.seconds,
            "notes": list(self.notes),
            "selected_ratio": self.selected_ratio,
            "model_ratio": self.model_ratio,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompressionReport:
        return cls(
            d["method"],
            d["config"],
            {name: ModuleReport.from_dict(m) for name, m in d["modules"].items()},
            d["model_params_before"],
            d["model_params_after"],
            d.get("calibration"),
            d.get("seconds", 0.0),
            list(d.get("notes", [])),
        )

    def summary(self) -> str:
        """A few lines: method, modules, ratios, mean errors."""
        mods = list(self.modules.values())
        w = sum(m.weight_error for m in mods) / max(len(mods), 1)
        acts = [m.activation_error for m in mods if m.activation_error is not None]
        act = f"{sum(acts) / len(acts):.4f}" if acts else "n/a (no calibration)"
        return (
            f"{self.method}: {len(mods)} modules, {self.selected_ratio:.1%} of their weights "
            f"removed ({self.selected_before:,} → {self.selected_after:,}), model "
            f"{self.model_ratio:.1%} smaller ({self.model_params_before:,} → "
            f"{self.model_params_after:,}); mean relative weight error {w:.4f}, activation "
            f"error {act}; {self.seconds:.1f} s"
        )
