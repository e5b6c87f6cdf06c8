"""Saving and loading compressed models: safetensors weights plus a JSON manifest.

A folder holds ``model.safetensors`` (the whole state dict, shared tensors once) and
``compressed.json``: a format tag, the model class, the base model's config, one entry per
compressed module (layer type, shapes, ranks/modes, bias) and the weights' size and SHA-256.
Both files are written atomically, the manifest last. :func:`load_compressed` rebuilds the
layer types in a freshly built model of the uncompressed architecture, then loads the
weights; anything foreign, corrupt, truncated or mismatched raises
:class:`~qtensorformer.files.CheckpointError`.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from qtensorformer.compress import SVDConfig
    >>> from qtensorformer.nn.replace import replace_modules
    >>> def build():
    ...     return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    >>> model = build()
    >>> names = replace_modules(model, SVDConfig(ratio=0.5))
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_compressed(model, {"modules": names}, folder)
    >>> loaded = load_compressed(folder, build())
    >>> x = torch.randn(3, 8)
    >>> torch.equal(loaded(x), model(x))
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from ..files import CheckpointError, atomic_write
from ..nn.replace import replace_modules
from ..tensor import TTLinear
from ..tensor.lowrank import LowRankLinear
from .calibrate import is_compressible, linear_weight
from .summary import CompressionReport

__all__ = [
    "FORMAT",
    "MANIFEST",
    "WEIGHTS",
    "build_layer",
    "layer_spec",
    "load_compressed",
    "read_manifest",
    "save_compressed",
]

FORMAT = "qtensorformer.compressed"
VERSION = 1
MANIFEST = "compressed.json"
WEIGHTS = "model.safetensors"


# ---------------------------------------------------------------------------- layer specs
def layer_spec(module: nn.Module) -> dict[str, Any]:
    """What it takes to rebuild a compressed layer (without its values)."""
    if isinstance(module, LowRankLinear):
        return {
            "type": "LowRankLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "rank": module.rank,
            "bias": module.bias is not None,
        }
    if isinstance(module, TTLinear):
        return {
            "type": "TTLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "in_modes": list(module.in_modes),
            "out_modes": list(module.out_modes),
            "ranks": list(module.max_ranks),
            "bias": module.bias is not None,
        }
    raise TypeError(f"{type(module).__name__} is not a compressed layer (LowRankLinear, TTLinear)")


def build_layer(name: str, spec: dict[str, Any], like: nn.Module) -> nn.Module:
    """An empty layer of ``spec`` with the dtype/device of the module it replaces."""
    w = linear_weight(like)
    if tuple(w.shape) != (spec["out_features"], spec["in_features"]):
        raise CheckpointError(
            f"{name}: the manifest has a {spec['out_features']}×{spec['in_features']} layer but "
            f"the base model's is {tuple(w.shape)}: wrong base model?"
        )
    kw = {"bias": bool(spec["bias"]), "device": w.device, "dtype": w.dtype}
    if spec["type"] == "LowRankLinear":
        return LowRankLinear(spec["in_features"], spec["out_features"], int(spec["rank"]), **kw)
    return TTLinear(
        spec["in_features"],
        spec["out_features"],
        [int(r) for r in spec["ranks"]],
        in_modes=tuple(spec["in_modes"]),
        out_modes=tuple(spec["out_modes"]),
        **kw,
    )


_SPEC_KEYS = {
    "LowRankLinear": {"in_features", "out_features", "rank", "bias"},
    "TTLinear": {"in_features", "out_features", "in_modes", "out_modes", "ranks", "bias"},
}


def _check_spec(name: str, spec: Any) -> None:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in _SPEC_KEYS or not _SPEC_KEYS[kind] <= set(spec):
        raise CheckpointError(f"the manifest's entry for {name} is malformed: {spec!r}")


# ---------------------------------------------------------------------------- saving
def _base_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if callable(getattr(config, "to_dict", None)):
        return config.to_dict()
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _module_names(report_or_manifest: CompressionReport | dict[str, Any]) -> list[str]:
    if isinstance(report_or_manifest, CompressionReport):
        return list(report_or_manifest.modules)
    modules = report_or_manifest.get("modules") if isinstance(report_or_manifest, dict) else None
    if modules is None:
        raise TypeError("give a CompressionReport or a manifest dict with 'modules'")
    return list(modules)


def save_compressed(
    model: nn.Module,
    report_or_manifest: CompressionReport | dict[str, Any],
    directory: str | Path,
    base_config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and the manifest of its compressed modules (those the report,
    or the manifest's ``modules``, names) to ``directory``; returns the manifest path.

    ``base_config``: the uncompressed model's config dict (default: ``model.config``'s).
    """
    directory = Path(directory)
    modules = dict(model.named_modules())
    missing = [n for n in _module_names(report_or_manifest) if n not in modules]
    if missing:
        raise ValueError(f"the model has no modules {missing}: was it compressed?")
    specs = {n: layer_spec(modules[n]) for n in _module_names(report_or_manifest)}
    weights = atomic_write(directory / WEIGHTS, lambda p: save_model(model, str(p)))
    report = report_or_manifest if isinstance(report_or_manifest, CompressionReport) else None
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "base_config": base_config if base_config is not None else _base_config(model),
        "modules": specs,
        "weights": {"file": WEIGHTS, "bytes": weights.stat().st_size, "sha256": _sha256(weights)},
        "report": report.to_dict() if report is not None else None,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(directory / MANIFEST, lambda p: p.write_text(text))


# ---------------------------------------------------------------------------- loading
def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The validated manifest of a compressed-model folder (CheckpointError if it is not one)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{directory} has no {MANIFEST}: not a compressed model written by save_compressed"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({err}); save the model again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} manifest (foreign file)")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(
            f"{path} has format version {manifest.get('version')!r}; this library reads up to "
            f"{VERSION}: upgrade qtensorformer"
        )
    for key in ("modules", "weights"):
        if not isinstance(manifest.get(key), dict):
            raise CheckpointError(f"{path} lacks its {key!r} section: corrupt or truncated")
    for name, spec in manifest["modules"].items():
        _check_spec(name, spec)
    return manifest


def _check_weights(directory: Path, manifest: dict[str, Any]) -> Path:
    info = manifest["weights"]
    path = directory / str(info.get("file", WEIGHTS))
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the folder is incomplete")
    if path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
        raise CheckpointError(
            f"{path} does not match its manifest (size or SHA-256): truncated or replaced"
        )
    return path


def load_compressed(directory: str | Path, base_model: nn.Module) -> nn.Module:
    """Turn ``base_model`` (built with the uncompressed architecture, e.g. from the
    manifest's ``base_config``) into the saved compressed model, in place, and return it."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    weights = _check_weights(directory, manifest)
    saved_class = manifest.get("model_class")
    if saved_class and saved_class != type(base_model).__name__:
        raise CheckpointError(
            f"the folder holds a compressed {saved_class}, but the base model is a "
            f"{type(base_model).__name__}"
        )
    specs = manifest["modules"]
    present = {n for n, m in base_model.named_modules() if n in specs and is_compressible(m)}
    if present != set(specs):
        raise CheckpointError(
            f"the base model lacks the linears {sorted(set(specs) - present)} of the manifest: "
            "wrong base model?"
        )
    replace_modules(base_model, lambda m, n: build_layer(n, specs[n], m), lambda m, n: n in specs)
    try:
        load_model(base_model, str(weights), strict=True)
    except (RuntimeError, ValueError, OSError) as err:
        raise CheckpointError(f"cannot load {weights} into the model: {err}") from None
    return base_model
