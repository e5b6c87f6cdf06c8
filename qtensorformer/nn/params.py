"""Which parameters take weight decay, asked of the layers themselves.

A layer that stores its weight in another form lists its decayed parameters in a
``decayed_parameters()`` method (the TT layers: their cores; a low-rank layer: its two
factors); ``nn.Linear`` and ``nn.Embedding`` decay their ``weight``. Biases, norms, circuit
angles, activations, router thresholds and rank scales take none.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
    >>> [tuple(p.shape) for p in decayed_parameters(model)]
    [(8, 4)]
"""

from __future__ import annotations

from torch import nn

__all__ = ["decayed_parameters", "param_groups"]


def _own_decayed(module: nn.Module) -> list[nn.Parameter]:
    listed = getattr(module, "decayed_parameters", None)
    if callable(listed):
        return list(listed())
    if isinstance(module, (nn.Linear, nn.Embedding)):
        return [module.weight]
    return []


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``model`` that takes weight decay, each once, in module order."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for m in model.modules():
        for p in _own_decayed(m):
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: :func:`decayed_parameters` with ``weight_decay``, the rest
    without."""
    decay = decayed_parameters(model)
    seen = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in seen]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
