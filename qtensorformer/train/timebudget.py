"""Sizing a run to a wall-clock budget (``max_minutes``): how many steps fit, and how much
of the final evaluation, once a few steps and one evaluation batch have been timed.

The budget covers the whole run: training steps, the periodic validation estimates and the
final evaluation. The final evaluation gets at most ``final_share`` of the budget; when the
full splits would take longer, each split is scored on its first tokens only (the result
says how many). The learning-rate schedule then spans the steps that fit, so a short run
leaves its warm-up and finishes its decay.

Example:
    >>> plan = plan_steps(budget_s=120, elapsed_s=5, step_now=10, total_steps=10_000,
    ...                   step_s=0.5, eval_s_per_token=1e-4, periodic_eval_tokens=20_000,
    ...                   eval_every=500, final_tokens=[200_000, 240_000])
    >>> plan.steps, plan.final_eval_tokens
    (190, 120000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TimePlan", "plan_steps"]


@dataclass
class TimePlan:
    """``steps``: the schedule's length; ``final_eval_tokens``: tokens scored per split at the
    end (None: every token); ``reserve_s``: seconds kept for that final evaluation."""

    steps: int
    final_eval_tokens: int | None
    reserve_s: float


def plan_steps(
    *,
    budget_s: float,
    elapsed_s: float,
    step_now: int,
    total_steps: int,
    step_s: float,
    eval_s_per_token: float,
    periodic_eval_tokens: int,
    eval_every: int,
    final_tokens: list[int],
    final_share: float = 0.2,
) -> TimePlan:
    """The plan for the rest of a run (see the module docstring): never more steps than
    ``total_steps``, never fewer than ``step_now + 1``."""
    full = sum(final_tokens) * eval_s_per_token
    cap_s = final_share * budget_s
    final_eval_tokens = None
    reserve = full
    if full > cap_s and final_tokens:
        final_eval_tokens = max(1, int(cap_s / eval_s_per_token / len(final_tokens)))
        reserve = sum(min(n, final_eval_tokens) for n in final_tokens) * eval_s_per_token
    per_step = step_s + periodic_eval_tokens * eval_s_per_token / max(eval_every, 1)
    left = budget_s - elapsed_s - reserve
    fit = step_now + max(1, math.floor(left / per_step))
    return TimePlan(min(total_steps, fit), final_eval_tokens, reserve)
