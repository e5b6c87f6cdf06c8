"""replace_modules: swap the submodules of any ``nn.Module`` that a filter selects.

One mechanism for every module swap in the library (distilling DARUAN to a B-spline KAN,
compressing linears post-training), in the style of torchao's ``quantize_``: a *config*
object says what to build, a *handler* registered for the config's type builds the
replacement of one module, and a *filter* ``filter_fn(module, name) -> bool`` says which
modules to replace. The walk goes over the module tree by name; a replaced module's children
are not visited.

Example:
    >>> from dataclasses import dataclass
    >>> from torch import nn
    >>> @dataclass
    ... class Widen:
    ...     factor: int = 2
    >>> @register_handler(Widen)
    ... def _widen(module: nn.Linear, name: str, config: Widen) -> nn.Module:
    ...     return nn.Linear(module.in_features, module.out_features * config.factor)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> replace_modules(model, Widen(3), lambda m, name: name == "2")
    ['2']
    >>> model[2].out_features
    6
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = [
    "FilterFn",
    "Handler",
    "handler_for",
    "is_linear",
    "register_handler",
    "registered_configs",
    "replace_modules",
]

#: ``filter_fn(module, name) -> bool``: whether to replace ``module`` (its dotted name).
FilterFn = Callable[[nn.Module, str], bool]
#: ``handler(module, name, config) -> nn.Module``: the replacement of one module.
Handler = Callable[[nn.Module, str, Any], nn.Module]

_HANDLERS: dict[type, Handler] = {}


def register_handler(config_type: type) -> Callable[[Handler], Handler]:
    """Decorator: register ``handler(module, name, config)`` for configs of ``config_type``
    (and its subclasses, unless they register their own)."""
    if not isinstance(config_type, type):
        raise TypeError(f"register_handler needs a config class, got {config_type!r}")

    def deco(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        return fn

    return deco


def registered_configs() -> tuple[type, ...]:
    """The config types that have a handler."""
    return tuple(_HANDLERS)


def handler_for(config: Any) -> Handler:
    """The handler registered for ``type(config)`` (or its nearest registered base class)."""
    for cls in type(config).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    known = ", ".join(sorted(c.__name__ for c in _HANDLERS)) or "none"
    raise TypeError(
        f"no module handler is registered for {type(config).__name__}; registered config "
        f"types: {known}. Register one with @register_handler({type(config).__name__})"
    )


def is_linear(module: nn.Module, name: str = "") -> bool:
    """The default filter: every ``nn.Linear``."""
    return isinstance(module, nn.Linear)


def replace_modules(
    model: nn.Module,
    config: Any,
    filter_fn: FilterFn | None = None,
) -> list[str]:
    """Replace, in place, every submodule of ``model`` that ``filter_fn`` selects by what the
    handler registered for ``config``'s type builds from it.

    ``config`` may also be a plain callable ``fn(module, name) -> nn.Module``. ``filter_fn``
    defaults to :func:`is_linear`. The root module itself is never replaced. Returns the
    dotted names of the replaced modules, in walk order.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"replace_modules needs an nn.Module, got {type(model).__name__}")
    if callable(config) and not any(c in _HANDLERS for c in type(config).__mro__):
        fn = config

        def build(module: nn.Module, name: str) -> nn.Module:
            return fn(module, name)
    else:
        handler = handler_for(config)

        def build(module: nn.Module, name: str) -> nn.Module:
            return handler(module, name, config)

    select = filter_fn or is_linear
    replaced: list[str] = []
    _walk(model, "", select, build, replaced)
    return replaced


def _walk(parent: nn.Module, prefix: str, select, build, replaced: list[str]) -> None:
    for child_name, child in list(parent.named_children()):
        name = f"{prefix}{child_name}"
        if select(child, name):
            new = build(child, name)
            if not isinstance(new, nn.Module):
                raise TypeError(
                    f"the handler returned {type(new).__name__} for {name}, not an nn.Module"
                )
            setattr(parent, child_name, new)
            replaced.append(name)
        else:
            _walk(child, f"{name}.", select, build, replaced)
