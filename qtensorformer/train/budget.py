"""Budget control during training: keep measured latency (and estimated energy) per query under
a limit by routing fewer tokens to the quantum path and lowering the adaptive ranks.

At every evaluation the controller compares the measurement with its limit; when over, for
every block it (a) lowers the router's target fraction by ``factor`` and raises θ by
``theta_step`` (fewer tokens take the quantum-kernel path) and (b) scales the rank scheduler's
α by ``factor`` (lower TT-FFN ranks). Each adjustment is returned for the log. A model with
neither a router nor an adaptive rank has no knob: the controller says so once. A limit can
also be out of reach with knobs: :meth:`BudgetController.floor` puts every knob at its floor
(no token routed, every rank at r_min) so that the caller can measure the least cost the
controller can reach, and :meth:`BudgetController.unreachable` says which limits it misses;
:meth:`BudgetController.check_floor` does both once per run, given a way to measure the costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["BudgetController"]


class BudgetController:
    """Adjusts router thresholds and rank α toward ``limits`` (``{"latency_ms": x,
    "energy_uj": y}``; missing entries are not controlled).

    Example:
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> m = QTensorFormer(ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1,
        ...                               use_adaptive_rank=True))
        >>> ctl = BudgetController(m, {"latency_ms": 1e-9})
        >>> actions = ctl.update({"latency_ms": 5.0})
        >>> actions[0]["action"].startswith("rank alpha")
        True
    """

    def __init__(
        self, model, limits: dict[str, float], factor: float = 0.8, theta_step: float = 0.05
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.model, self.limits = model, {k: v for k, v in limits.items() if v is not None}
        self.factor, self.theta_step = factor, theta_step
        self.routers = [b.attn.router for b in model.blocks if b.attn.router is not None]
        self.ranks = [b.rank for b in model.blocks if b.rank is not None]
        self.warned = False
        self.floor_checked = False  # check_floor has measured the floor
        self.out_of_reach: set[str] = set()  # the limits the floor exceeds

    def reachable(self, metric: str) -> bool:
        """True when ``metric`` has a limit, the model has knobs, and the floor (when checked)
        is under the limit."""
        return self.has_knob and metric in self.limits and metric not in self.out_of_reach

    @property
    def has_knob(self) -> bool:
        return bool(self.routers or self.ranks)

    @torch.no_grad()
    def update(self, measured: dict[str, float | None]) -> list[dict]:
        """Compare ``measured`` with the limits; adjust when over; return the actions taken."""
        over = {
            k: (measured[k], lim)
            for k, lim in self.limits.items()
            if measured.get(k) is not None and measured[k] > lim
        }
        if not over:
            return []
        if not self.has_knob:
            if self.warned:
                return []
            self.warned = True
            k, (v, lim) = next(iter(over.items()))
            return [
                {
                    "metric": k,
                    "value": v,
                    "limit": lim,
                    "action": "none: the model has no router or adaptive rank to adjust",
                }
            ]
        actions = []
        k, (v, lim) = next(iter(over.items()))
        for r in self.routers:
            r.route_fraction = max(1e-3, r.route_fraction * self.factor)
            r.threshold.add_(self.theta_step)
        if self.routers:
            actions.append(
                {
                    "metric": k,
                    "value": v,
                    "limit": lim,
                    "action": f"router: target fraction ×{self.factor} → "
                    f"{self.routers[0].route_fraction:.3f}, θ +{self.theta_step} → "
                    f"{float(self.routers[0].threshold):.3f} (block 0)",
                }
            )
        for s in self.ranks:
            s.log_alpha.add_(math.log(self.factor))
        if self.ranks:
            actions.append(
                {
                    "metric": k,
                    "value": v,
                    "limit": lim,
                    "action": f"rank alpha ×{self.factor} → {self.ranks[0].alpha:.4g} (block 0)",
                }
            )
        return actions

    @contextmanager
    def floor(self) -> Iterator[None]:
        """Every knob at its floor inside the block (θ = +∞: no token routed; α = 0: every
        rank at r_min); the knobs are restored on exit."""
        thetas = [r.threshold.detach().clone() for r in self.routers]
        alphas = [s.log_alpha.detach().clone() for s in self.ranks]
        with torch.no_grad():
            for r in self.routers:
                r.threshold.fill_(math.inf)
            for s in self.ranks:
                s.log_alpha.fill_(-math.inf)
        try:
            yield
        finally:
            with torch.no_grad():
                for r, t in zip(self.routers, thetas, strict=True):
                    r.threshold.copy_(t)
                for s, a in zip(self.ranks, alphas, strict=True):
                    s.log_alpha.copy_(a)

    def unreachable(self, at_floor: dict[str, float | None]) -> list[dict]:
        """The limits still exceeded by ``at_floor`` (costs measured under :meth:`floor`), each
        with a message that names the least reachable value and the fix."""
        out = []
        for k, lim in self.limits.items():
            v = at_floor.get(k)
            if v is None or v <= lim:
                continue
            message = (
                f"{k} limit {lim:.4g} is out of reach: with no token routed and every rank at "
                f"its minimum the model still costs {v:.4g}, so the parts the controller "
                f"cannot change (embeddings, LM head, attention, fixed-rank layers) exceed it; "
                f"set the limit to at least {v:.4g} or make those parts smaller"
            )
            out.append({"metric": k, "floor": v, "limit": lim, "message": message})
        return out

    def check_floor(self, measure: Callable[[], dict[str, float | None]]) -> list[dict]:
        """Once per controller: ``measure()`` the costs with every knob at its floor, remember
        the limits they exceed (see :meth:`reachable`) and return those as :meth:`unreachable`
        does; later calls (and a model without knobs) return ``[]`` without measuring."""
        if self.floor_checked or not self.has_knob:
            return []
        self.floor_checked = True
        with self.floor():
            at_floor = measure()
        warnings = self.unreachable(at_floor)
        self.out_of_reach = {w["metric"] for w in warnings}
        return warnings
