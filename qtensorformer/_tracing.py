"""Whether code is being traced for export or compilation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["tensor_cache", "tracing"]

T = TypeVar("T")


def tracing() -> bool:
    """True while torch.export / torch.compile / ONNX export trace the code: value checks
    that read tensor data are skipped then (the traced graph cannot branch on data)."""
    return bool(
        torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    )


def tensor_cache(fn: Callable[..., T]) -> Callable[..., T]:
    """``functools.lru_cache`` for functions that build constant tensors, bypassed while
    tracing (a traced call makes fake tensors, which must not be cached). Cached tensors are
    built outside ``torch.inference_mode``: an inference tensor made by a first call under
    inference mode would break every later call that autograd records."""

    @functools.lru_cache(maxsize=256)
    def cached(*args):
        with torch.inference_mode(False):
            return fn(*args)

    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args) if tracing() else cached(*args)

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return wrapper
