"""replace_modules and the handler registry: the one mechanism that swaps modules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from qtensorformer.nn.replace import handler_for, register_handler, replace_modules


@dataclass
class _Scale:
    factor: float


class _Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor


@register_handler(_Scale)
def _scale(module: nn.Module, name: str, config: _Scale) -> nn.Module:
    return _Scaled(module, config.factor)


@dataclass
class _ScaleTwice(_Scale):
    pass


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 8)), nn.Linear(8, 2)
    ).double()


def test_replaces_every_selected_module_by_name_and_keeps_the_rest():
    torch.manual_seed(0)
    net = _net()
    x = torch.randn(5, 4, dtype=torch.float64)
    ref = net(x)
    names = replace_modules(net, _Scale(1.0))  # default filter: every nn.Linear
    assert names == ["0", "1.1", "2"]
    assert all(isinstance(net.get_submodule(n), _Scaled) for n in names)
    torch.testing.assert_close(net(x), ref)  # factor 1: same function
    # a replaced module's children are not visited again (the wrapped Linear stays)
    assert replace_modules(net, _Scale(2.0), lambda m, n: isinstance(m, _Scaled)) == names
    assert isinstance(net[0].inner, _Scaled) and isinstance(net[0].inner.inner, nn.Linear)


def test_filter_by_name_and_subclass_configs_use_the_base_handler():
    net = _net()
    assert replace_modules(net, _ScaleTwice(3.0), lambda m, n: n == "1.1") == ["1.1"]
    assert net[1][1].factor == 3.0 and isinstance(net[0], nn.Linear)
    assert handler_for(_ScaleTwice(1.0)) is _scale


def test_a_plain_callable_is_a_handler():
    net = _net()
    got = replace_modules(net, lambda m, n: nn.Identity(), lambda m, n: isinstance(m, nn.ReLU))
    assert got == ["1.0"] and isinstance(net[1][0], nn.Identity)


def test_clear_errors():
    with pytest.raises(TypeError, match="no module handler is registered for int"):
        replace_modules(_net(), 3)
    with pytest.raises(TypeError, match=r"not an nn\.Module"):
        replace_modules(_net(), lambda m, n: "oops")
    with pytest.raises(TypeError, match=r"needs an nn\.Module"):
        replace_modules("model", _Scale(1.0))
    with pytest.raises(TypeError, match="config class"):
        register_handler(_Scale(1.0))
